"""Who is online, and who watches which chatroom. Pure; every query is O(1).

A ``Session`` is one logged-in IM client (a clientId on one connection; several may
share a connection); ``Outlet`` is what a session needs of its connection.

A client is online while it has at least one session. A chatroom's online count is the
number of distinct clients watching it, so a user on two devices counts once and a
session that disappears without a goodbye stops counting as soon as it is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from chatroom.core.outbox import Priority
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared


class Outlet(Protocol):
    """What a session needs from its connection: never blocks, never awaits."""

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None: ...

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None: ...

    def kick(self, code: int, reason: str) -> None:
        """Close the whole connection with a WebSocket close code."""

    def detach(self, session: Session) -> None:
        """Forget a session that ended (logout, or taken over by another device)."""


@dataclass(eq=False, slots=True)
class Session:
    """One IM client. Identity is the object: two logins of one clientId are two
    sessions. ``room`` is the chatroom it watches (one at a time). An ``operator``
    session is no login: the REST API acting for a client (service/operator.py), which
    the membership checks of sending and reading history let through."""

    peer_id: str
    outlet: Outlet
    tag: str | None = None
    device_id: str | None = None
    token: str = ""
    room: str | None = None
    closed: bool = False
    operator: bool = False
    no_sync: bool = False  # an operator's send reaches none of the sender's own sessions
    will: pb.DirectCommand | None = field(default=None, repr=False)

    def push(self, prepared: Prepared, priority: Priority = Priority.RELIABLE) -> None:
        if not self.closed:
            self.outlet.push(prepared, self.peer_id, priority)


@dataclass(frozen=True, slots=True)
class PresenceStatistics:
    sessions: int
    clients: int
    rooms: int


class Presence:
    def __init__(self) -> None:
        self._by_peer: dict[str, list[Session]] = {}
        self._sessions = 0
        # cid -> {peer_id: number of that client's sessions in the room}
        self._room_clients: dict[str, dict[str, int]] = {}
        self._room_sessions: dict[str, set[Session]] = {}

    # sessions

    def add(self, session: Session) -> None:
        self._by_peer.setdefault(session.peer_id, []).append(session)
        self._sessions += 1

    def remove(self, session: Session) -> None:
        """Forget a session and take it out of its room. Idempotent."""
        self.leave_room(session)
        sessions = self._by_peer.get(session.peer_id)
        if sessions is None or session not in sessions:
            return
        sessions.remove(session)
        self._sessions -= 1
        if not sessions:
            del self._by_peer[session.peer_id]

    def sessions_of(self, peer_id: str) -> list[Session]:
        return self._by_peer.get(peer_id, [])

    def sessions_of_all(self, peer_ids: Iterable[str]) -> Iterator[Session]:
        by_peer = self._by_peer
        for peer_id in peer_ids:
            sessions = by_peer.get(peer_id)
            if sessions:
                yield from sessions

    def is_online(self, peer_id: str) -> bool:
        return peer_id in self._by_peer

    def sessions(self) -> Iterator[Session]:
        for sessions in self._by_peer.values():
            yield from sessions

    # chatrooms

    def join_room(self, cid: str, session: Session) -> str | None:
        """Put the session in room ``cid``; return the room it left, if any."""
        left = session.room
        if left == cid:
            return None
        if left is not None:
            self.leave_room(session)
        # (not ``setdefault``: it would make an empty dict and set at every join)
        clients = self._room_clients.get(cid)
        if clients is None:
            clients = self._room_clients[cid] = {}
            self._room_sessions[cid] = set()
        clients[session.peer_id] = clients.get(session.peer_id, 0) + 1
        self._room_sessions[cid].add(session)
        session.room = cid
        return left

    def leave_room(self, session: Session) -> None:
        cid = session.room
        if cid is None:
            return
        session.room = None
        sessions = self._room_sessions[cid]
        sessions.discard(session)
        clients = self._room_clients[cid]
        remaining = clients[session.peer_id] - 1
        if remaining:
            clients[session.peer_id] = remaining
        else:
            del clients[session.peer_id]
        if not sessions:
            del self._room_sessions[cid]
            del self._room_clients[cid]

    def rooms(self) -> set[str]:
        """The chatrooms watched by at least one session."""
        return set(self._room_sessions)

    def room_sessions(self, cid: str) -> set[Session]:
        return self._room_sessions.get(cid, set())

    def room_count(self, cid: str) -> int:
        return len(self._room_clients.get(cid, ()))

    def in_room(self, cid: str, peer_id: str) -> bool:
        return peer_id in self._room_clients.get(cid, ())

    def statistics(self) -> PresenceStatistics:
        return PresenceStatistics(self._sessions, len(self._by_peer), len(self._room_sessions))
