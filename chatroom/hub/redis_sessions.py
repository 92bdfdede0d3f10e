"""What a ``RedisHub`` (redis.py) knows of sessions: this node's, and through
``ClusterView`` (redis_view.py) every node's; the questions it answers from that view,
and what it tells other nodes of its sessions (presence events, kicks, wills, changes of
cached records). Sans-I/O: records go to the ``Outgoing`` queue (redis_queue.py) that
``chatroom.net.redis_link`` publishes; what arrives is handled in redis.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from chatroom.core.outbox import Priority
from chatroom.core.presence import Presence, Session
from chatroom.hub import redis_wire as wire
from chatroom.hub.base import EVERYTHING
from chatroom.hub.delivery import RoomLogs, end, rivals
from chatroom.hub.redis_queue import Outgoing
from chatroom.hub.redis_view import ClusterView, RemoteOutlet
from chatroom.protocol import messages_pb2 as pb

_RELIABLE = Priority.RELIABLE


def _ignore(kind: str, key: str, state: list[object] | None) -> None:
    """Nothing caches what other nodes change (until the server says what does)."""


def node_of(session: Session) -> str:
    outlet = session.outlet
    assert isinstance(outlet, RemoteOutlet)
    return outlet.node


class NodeSessions:
    """The sessions part of ``RedisHub``: its state, this node's sessions, the
    cluster's presence, and what other nodes are told about them."""

    def __init__(self, node: str, prefix: str = "chatroom:", queue: int = 10_000) -> None:
        self.node = node
        self.prefix = prefix
        self.view = ClusterView(node)
        self.outgoing = Outgoing(queue)
        self.connected = False  # set by the link while Redis answers
        self.subscribed: set[str] = set()  # chatrooms whose channel this node hears
        self.rooms_changed = False  # a chatroom got its first viewer here, or lost its last
        self.resync_wanted: set[str] = set()  # nodes whose snapshot to load
        self.wake: Callable[[], None] = lambda: None  # the link: something to publish
        self.bad_records = 0
        # Told the tokens of this node's sessions that another node's login ended.
        self.on_kicked: Callable[[list[str]], None] = lambda tokens: None
        # Device tags of which a client keeps one session (single-device login).
        self.exclusive: Callable[[str], bool] = lambda tag: False
        # Told which sessions here another node's kick took out of their chatroom.
        self.on_left_room: Callable[[list[Session]], None] = lambda sessions: None
        # Told what another node changed of the services' caches (``Hub.changed``).
        self.on_changed: Callable[[str, str, list[object] | None], None] = _ignore
        self._heard_back: set[str] = set()  # local sessions whose login Redis ordered
        self._local = Presence()
        self._mirror: dict[Session, Session] = {}  # local session -> its stand-in
        self._by_token: dict[str, Session] = {}  # local sessions
        # chatrooms with viewers here: their frame log; their viewers on every node
        self._logs = RoomLogs(self.view.presence.room_count)
        # Viewers of a room on other nodes per viewer here (the node's flusher asks).
        self.elsewhere = self._logs.elsewhere

    def channel(self, kind: str, name: str = "") -> str:
        return f"{self.prefix}{kind}:{name}" if name else f"{self.prefix}{kind}"

    def local_rooms(self) -> set[str]:
        return self._local.rooms()

    def watched_here(self, cid: str) -> bool:
        """Whether a session of this node watches chatroom ``cid``."""
        return self._local.room_count(cid) > 0

    def snapshot(self) -> list[list[object]]:
        """This node's sessions: token, client, tag, chatroom."""
        return [[s.token, s.peer_id, s.tag, s.room] for s in self._local.sessions()]

    # -- this node's sessions -----------------------------------------------------

    def attach(self, session: Session) -> None:
        self._local.add(session)
        self._by_token[session.token] = session
        stand_in = Session(session.peer_id, RemoteOutlet(self.node), session.tag)
        stand_in.token = session.token
        self._mirror[session] = stand_in
        self.view.presence.add(stand_in)
        self._note(["+", session.token, session.peer_id, session.tag])

    def detach(self, session: Session) -> None:
        session.closed = True
        room = session.room
        self._local.remove(session)
        self._logs.leave(room, session)
        if self._by_token.get(session.token) is session:
            del self._by_token[session.token]
        self._heard_back.discard(session.token)
        stand_in = self._mirror.pop(session, None)
        if stand_in is not None:
            self.view.presence.remove(stand_in)
            self._note(["-", session.token])

    def join_room(self, cid: str, session: Session) -> str | None:
        left = self._local.join_room(cid, session)
        self._logs.leave(left, session)
        self._logs.join(cid, session)
        stand_in = self._mirror.get(session)
        if stand_in is not None and stand_in.room != cid:
            self.view.presence.join_room(cid, stand_in)
            self._note(["j", session.token, cid])
        return left

    def leave_room(self, cid: str, peer_id: str) -> list[Session]:
        """This node's sessions leave at once; the nodes holding others of the client
        watching ``cid`` are told, before anything this node publishes after it."""
        elsewhere = {node_of(s) for s in self.view.presence.sessions_of(peer_id) if s.room == cid}
        elsewhere.discard(self.node)
        for node in sorted(elsewhere):
            self._send(node, {"k": "v", "peer": peer_id, "c": cid})
        return self._leave_here(cid, peer_id)

    def _leave_here(self, cid: str, peer_id: str) -> list[Session]:
        left = [s for s in self._local.sessions_of(peer_id) if s.room == cid]
        for session in left:
            self._local.leave_room(session)
            self._logs.leave(cid, session)
            stand_in = self._mirror.get(session)
            if stand_in is not None:
                self.view.presence.leave_room(stand_in)
                self._note(["l", session.token])
        return left

    def _note(self, event: list[object]) -> None:
        self.view.note(event, publish=self.connected)
        if event[0] != "+":
            self.rooms_changed = True
        self.wake()

    # -- queries (the whole cluster) ------------------------------------------------

    def in_room(self, cid: str, peer_id: str) -> bool:
        return self.view.presence.in_room(cid, peer_id)

    def is_online(self, peer_id: str) -> bool:
        return self.view.presence.is_online(peer_id)

    def online_of(self, peer_ids: Iterable[str]) -> list[str]:
        presence = self.view.presence
        return [p for p in peer_ids if presence.is_online(p)]

    def online_count(self, cid: str) -> int:
        return self.view.presence.room_count(cid)

    def others_online(self, session: Session) -> bool:
        sessions = self.view.presence.sessions_of(session.peer_id)
        return any(s.token != session.token for s in sessions)

    def holds_tag(self, peer_id: str, tag: str, keep: Session | None = None) -> bool:
        skip = keep.token if keep is not None else None
        sessions = self.view.presence.sessions_of(peer_id)
        return any(s.tag == tag and s.token != skip for s in sessions)

    # -- single-device login ----------------------------------------------------------

    def kick(
        self,
        peer_id: str,
        tag: str | None,
        code: int,
        reason: str,
        detail: str,
        keep: Session | None,
    ) -> list[str]:
        kept = self._mirror.get(keep) if keep is not None else None
        ended = rivals(self.view.presence.sessions_of(peer_id), tag, kept)
        by_node: dict[str, list[str]] = {}
        for stand_in in ended:
            by_node.setdefault(node_of(stand_in), []).append(stand_in.token)
        self._end(peer_id, by_node.pop(self.node, []), code, reason, detail)
        for node, tokens in by_node.items():
            header = {"k": "k", "peer": peer_id, "t": tokens, "c": code, "r": reason, "d": detail}
            self._send(node, header)
        return [s.token for s in ended]

    def _end(self, peer_id: str, tokens: list[str], code: int, reason: str, detail: str) -> None:
        for session in list(self._local.sessions_of(peer_id)):
            if session.token in tokens:
                end(session, code, reason, detail, self.detach)

    def _send(self, node: str, header: wire.Header) -> None:
        if self.connected:
            self.outgoing.offer(self.channel("node", node), wire.encode(header), _RELIABLE)
            self.wake()

    # -- wills ------------------------------------------------------------------------

    def register_will(self, session: Session, will: pb.DirectCommand) -> None:
        self._void_wills(session.peer_id, session.token)
        session.will = will
        nodes = {node_of(s) for s in self.view.presence.sessions_of(session.peer_id)}
        for node in nodes - {self.node}:
            self._send(node, {"k": "w", "peer": session.peer_id, "keep": session.token})

    def _void_wills(self, peer_id: str, keep: str) -> None:
        for other in self._local.sessions_of(peer_id):
            if other.token != keep:
                other.will = None

    def cancel_will(self, session: Session) -> None:
        session.will = None

    def take_will(self, session: Session) -> pb.DirectCommand | None:
        will, session.will = session.will, None
        return will

    # -- the other nodes' caches ----------------------------------------------------
    # On the presence channel, through the queue that carries this node's pushes: Redis
    # hands every node the change before any push this node queued after it.

    def changed(self, kind: str, key: str, state: list[object] | None = None) -> None:
        if self.connected:
            record = wire.encode({"k": "i", "n": self.node, "w": kind, "key": key, "v": state})
            self.outgoing.offer(self.channel("presence"), record, _RELIABLE)
            self.wake()

    def missed_changes(self) -> None:
        """Changes of other nodes may have been missed (Redis was away, or a node's
        presence): every cached record is read again from the store."""
        self.on_changed(EVERYTHING, "", None)

    def farewell(self) -> None:
        """This node shuts down: the others forget its sessions at once."""
        if self.connected:
            record = wire.encode({"k": "b", "n": self.node})
            self.outgoing.offer(self.channel("presence"), record, _RELIABLE)
            self.wake()
