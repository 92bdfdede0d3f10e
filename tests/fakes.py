"""Fakes for handler tests without sockets: a hub that records what it was asked to
deliver, a link standing for the connection a command arrived on, and ports that do
their work at once. ``handler_context`` assembles a real ``Context`` around them (a
real memory store, a manual clock)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from chatroom.config import Config
from chatroom.core.clock import ManualClock
from chatroom.core.model import (
    JSON,
    Conversation,
    ConvEventRecord,
    ConvType,
    Message,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.hub.base import HubStatistics
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, Subprotocol, parse_subprotocol
from chatroom.service.context import Context
from chatroom.service.ports import Committed, Ports
from chatroom.store.memory import MemoryStore


@dataclass(frozen=True, slots=True)
class Delivery:
    """One request to the hub: ``how`` (``session``, ``client``, ``clients``,
    ``members``, ``room``), to whom (a peer id, a cid, the ids...), what, ``skip``."""

    how: str
    to: object
    command: pb.GenericCommand
    priority: Priority
    skip: Session | None


@dataclass(frozen=True, slots=True)
class Kick:
    peer_id: str
    tag: str | None
    code: int
    keep: Session | None


class FakeHub:
    """A ``Hub`` that records deliveries instead of pushing; who is online and who
    watches which chatroom is whatever the test (or attach/join_room) made it."""

    alone = False  # every ``changed`` is recorded, as a cluster node would send it

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.kicks: list[Kick] = []
        self.sessions: list[Session] = []
        self.rooms: dict[str, set[str]] = {}  # cid -> peer ids watching
        self.changes: list[tuple[str, str, list[object] | None]] = []  # Hub.changed

    def attach(self, session: Session) -> None:
        self.sessions.append(session)

    def detach(self, session: Session) -> None:
        session.closed = True
        if session in self.sessions:
            self.sessions.remove(session)

    def join_room(self, cid: str, session: Session) -> str | None:
        left, session.room = session.room, cid
        self.rooms.setdefault(cid, set()).add(session.peer_id)
        return left

    def leave_room(self, cid: str, peer_id: str) -> list[Session]:
        self.rooms.get(cid, set()).discard(peer_id)
        return []  # no session here watches a room (``rooms`` holds peer ids)

    def is_online(self, peer_id: str) -> bool:
        return any(s.peer_id == peer_id for s in self.sessions)

    def online_of(self, peer_ids: Iterable[str]) -> list[str]:
        return [p for p in peer_ids if self.is_online(p)]

    def online_count(self, cid: str) -> int:
        return len(self.rooms.get(cid, ()))

    def in_room(self, cid: str, peer_id: str) -> bool:
        return peer_id in self.rooms.get(cid, ())

    def others_online(self, session: Session) -> bool:
        return any(s.peer_id == session.peer_id and s is not session for s in self.sessions)

    def holds_tag(self, peer_id: str, tag: str, keep: Session | None = None) -> bool:
        return any(s.peer_id == peer_id and s.tag == tag and s is not keep for s in self.sessions)

    def _record(
        self, how: str, to: object, p: Prepared, priority: Priority, skip: Session | None
    ) -> None:
        self.deliveries.append(Delivery(how, to, p.command, priority, skip))

    def to_session(
        self, prepared: Prepared, session: Session, priority: Priority = Priority.RELIABLE
    ) -> int:
        self._record("session", session.peer_id, prepared, priority, None)
        return 1

    def to_client(
        self,
        prepared: Prepared,
        peer_id: str,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> int:
        self._record("client", peer_id, prepared, priority, skip)
        return 1

    def to_clients(
        self,
        prepared: Prepared,
        peer_ids: Iterable[str],
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> list[str]:
        self._record("clients", list(peer_ids), prepared, priority, skip)
        return []

    def to_members(
        self,
        prepared: Prepared,
        conv: Conversation,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> int:
        self._record("members", conv.cid, prepared, priority, skip)
        return 1

    def to_room(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
        skip_client: str | None = None,
    ) -> int:
        self._record("room", cid, prepared, priority, skip)
        return 1

    def kick(
        self,
        peer_id: str,
        tag: str | None,
        code: int,
        reason: str,
        detail: str,
        keep: Session | None,
    ) -> list[str]:
        self.kicks.append(Kick(peer_id, tag, code, keep))
        kicked = [
            s
            for s in self.sessions
            if s.peer_id == peer_id and (tag is None or s.tag == tag) and s is not keep
        ]
        for session in kicked:
            self.detach(session)
        return [s.token for s in kicked]

    def register_will(self, session: Session, will: pb.DirectCommand) -> None:
        session.will = will

    def cancel_will(self, session: Session) -> None:
        session.will = None

    def take_will(self, session: Session) -> pb.DirectCommand | None:
        will, session.will = session.will, None
        return will

    def changed(self, kind: str, key: str, state: list[object] | None = None) -> None:
        self.changes.append((kind, key, state))

    def statistics(self) -> HubStatistics:
        return HubStatistics(len(self.sessions), 0, len(self.rooms), len(self.deliveries))


class FakeLink:
    """The connection a command arrived on: replies sent early are kept in ``sent``."""

    def __init__(self, subprotocol: str = "lc.protobuf2.3") -> None:
        chosen = parse_subprotocol(subprotocol)
        assert chosen is not None
        self._subprotocol = chosen
        self._sessions: dict[str, Session] = {}
        self.sent: list[pb.GenericCommand] = []

    @property
    def subprotocol(self) -> Subprotocol:
        return self._subprotocol

    def session_for(self, peer_id: str | None) -> Session | None:
        if peer_id:
            return self._sessions.get(peer_id)
        return next(iter(self._sessions.values()), None)

    def attach(self, session: Session) -> None:
        self._sessions[session.peer_id] = session

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def backlog(self) -> int:
        return 0

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        raise AssertionError("handlers push through the hub")

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        self.sent.append(cmd)

    def kick(self, code: int, reason: str) -> None:
        raise AssertionError("handlers do not close connections")

    def detach(self, session: Session) -> None:
        if self._sessions.get(session.peer_id) is session:
            del self._sessions[session.peer_id]


class StoringCommitter:
    """Stores each message at once and calls back (no batching)."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    async def submit(self, message: Message, callback: Committed) -> None:
        await self._store.append_messages([message])
        callback(None)


@dataclass
class RecordingJournal:
    sessions: dict[str, SessionRecord | None] = field(default_factory=dict)

    def session(self, token: str, record: SessionRecord | None) -> None:
        self.sessions[token] = record

    def nonce(self, nonce: str, expires_ms: int) -> None:
        pass

    def conv_event(self, record: ConvEventRecord) -> None:
        pass

    def receipt(self, cid: str, mid: str, record: PendingReceipt | None) -> None:
        pass

    def will(self, peer_id: str, record: WillRecord | None) -> None:
        pass

    def revoked(self, token: str) -> bool:
        return token in self.sessions and self.sessions[token] is None


class NoPush:
    enabled = False

    def offer(self, notification: dict[str, JSON]) -> bool:
        return False


async def handler_context(hub: FakeHub, config: Config | None = None) -> Context:
    """A context over an opened memory store, the fakes above and a manual clock."""
    store = MemoryStore()
    await store.open()
    ports = Ports(StoringCommitter(store), RecordingJournal(), NoPush())
    config = config or Config(db=":memory:")
    return Context.build(config, store, ports, hub=hub, clock=ManualClock())


def conversation(cid: str, kind: ConvType, members: list[str]) -> Conversation:
    return Conversation(cid, kind, members[0] if members else "a", members, {}, 0, 0)


class Recorder:
    """An outlet that keeps what it was given (a hub never closes a connection)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[Prepared, str, Priority]] = []
        self.sent: list[pb.GenericCommand] = []
        self.detached: list[Session] = []

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        self.pushed.append((prepared, peer_id, priority))

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        self.sent.append(cmd)

    def kick(self, code: int, reason: str) -> None:
        raise AssertionError("a hub never closes a connection")

    def detach(self, session: Session) -> None:
        self.detached.append(session)
