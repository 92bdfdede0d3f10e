"""``LocalHub``: the Hub of a single process, over ``core.presence.Presence``.

Every query is O(1) per client asked. A broadcast walks the recipients' sessions once
and pushes the shared ``Prepared`` into each one's connection without a call in between
(``delivery.deliver``, which the Redis hub shares).
"""

from __future__ import annotations

from collections.abc import Iterable

from chatroom.core.model import Conversation, ConvType
from chatroom.core.outbox import Priority
from chatroom.core.presence import Presence, Session
from chatroom.hub.base import HubStatistics
from chatroom.hub.delivery import RoomLogs, deliver, end, rivals
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared

_RELIABLE = Priority.RELIABLE
_TRANSIENT = ConvType.TRANSIENT


class LocalHub:
    """Implements ``chatroom.hub.base.Hub`` for the sessions of this process."""

    __slots__ = ("_deliveries", "_logs", "_presence")

    alone = True  # Hub.alone: this process is the only node

    def __init__(self) -> None:
        self._presence = Presence()
        self._deliveries = 0
        self._logs = RoomLogs()  # chatrooms with viewers: their frame log

    # -- this node's sessions -----------------------------------------------------

    def attach(self, session: Session) -> None:
        self._presence.add(session)

    def detach(self, session: Session) -> None:
        session.closed = True
        room = session.room
        self._presence.remove(session)
        self._logs.leave(room, session)

    def join_room(self, cid: str, session: Session) -> str | None:
        left = self._presence.join_room(cid, session)
        if left is not None:
            self._logs.leave(left, session)
        self._logs.join(cid, session)
        return left

    def leave_room(self, cid: str, peer_id: str) -> list[Session]:
        left = [s for s in self._presence.sessions_of(peer_id) if s.room == cid]
        for session in left:
            self._presence.leave_room(session)
            self._logs.leave(cid, session)
        return left

    # -- queries --------------------------------------------------------------------

    def in_room(self, cid: str, peer_id: str) -> bool:
        return self._presence.in_room(cid, peer_id)

    def is_online(self, peer_id: str) -> bool:
        return self._presence.is_online(peer_id)

    def online_of(self, peer_ids: Iterable[str]) -> list[str]:
        return [p for p in peer_ids if self._presence.is_online(p)]

    def online_count(self, cid: str) -> int:
        return self._presence.room_count(cid)

    def others_online(self, session: Session) -> bool:
        return any(s is not session for s in self._presence.sessions_of(session.peer_id))

    def holds_tag(self, peer_id: str, tag: str, keep: Session | None = None) -> bool:
        return any(s.tag == tag and s is not keep for s in self._presence.sessions_of(peer_id))

    # -- delivery -------------------------------------------------------------------

    def to_session(
        self, prepared: Prepared, session: Session, priority: Priority = _RELIABLE
    ) -> int:
        return self._push(prepared, (session,), priority, None)

    def to_client(
        self,
        prepared: Prepared,
        peer_id: str,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> int:
        return self._push(prepared, self._presence.sessions_of(peer_id), priority, skip)

    def to_clients(
        self,
        prepared: Prepared,
        peer_ids: Iterable[str],
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> list[str]:
        sessions = [s for s in self._presence.sessions_of_all(peer_ids) if s is not skip]
        self._push(prepared, sessions, priority, None)
        return [s.token for s in sessions]

    def to_members(
        self,
        prepared: Prepared,
        conv: Conversation,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
    ) -> int:
        if conv.kind is _TRANSIENT:
            return self.to_room(prepared, conv.cid, priority, skip)
        return self._push(prepared, self._presence.sessions_of_all(conv.members), priority, skip)

    def to_room(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority = _RELIABLE,
        skip: Session | None = None,
        skip_client: str | None = None,
    ) -> int:
        count = self._logs.deliver(prepared, cid, priority, skip, skip_client)
        self._deliveries += count
        return count

    def _push(
        self,
        prepared: Prepared,
        sessions: Iterable[Session],
        priority: Priority,
        skip: Session | None,
    ) -> int:
        count = deliver(prepared, sessions, priority, skip)
        self._deliveries += count
        return count

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
        ended = rivals(self._presence.sessions_of(peer_id), tag, keep)
        for session in ended:
            end(session, code, reason, detail, self.detach)
        return [s.token for s in ended]

    # -- wills ------------------------------------------------------------------------

    def register_will(self, session: Session, will: pb.DirectCommand) -> None:
        for other in self._presence.sessions_of(session.peer_id):
            other.will = None
        session.will = will

    def cancel_will(self, session: Session) -> None:
        session.will = None

    def take_will(self, session: Session) -> pb.DirectCommand | None:
        will, session.will = session.will, None
        return will

    def changed(self, kind: str, key: str, state: list[object] | None = None) -> None:
        """Alone: no other node caches anything."""

    def statistics(self) -> HubStatistics:
        p = self._presence.statistics()
        return HubStatistics(p.sessions, p.clients, p.rooms, self._deliveries)
