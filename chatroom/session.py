"""A logged-in IM client: one clientId on one connection (several may share one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from chatroom.outbox import Priority
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
    sessions. ``room`` is the chatroom it watches (one at a time)."""

    peer_id: str
    outlet: Outlet
    tag: str | None = None
    device_id: str | None = None
    token: str = ""
    room: str | None = None
    closed: bool = False
    will: pb.DirectCommand | None = field(default=None, repr=False)

    def push(self, prepared: Prepared, priority: Priority = Priority.RELIABLE) -> None:
        if not self.closed:
            self.outlet.push(prepared, self.peer_id, priority)
