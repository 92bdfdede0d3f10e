"""What every hub does with the sessions of its own process: push to them, and end
the ones a login takes over. ``LocalHub`` and ``RedisHub`` both deliver through here.

``deliver`` runs once per recipient of every broadcast, so it stays exactly this
lean: one identity test, one flag, one call into the connection (``Session.push``
inlined). A session is skipped by identity; the Redis hub hands the session a token
stands for (``RedisHub._skipped``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.roomlog import RoomLog


def deliver(
    prepared: Prepared,
    sessions: Iterable[Session],
    priority: Priority,
    skip: Session | None,
) -> int:
    """Push ``prepared`` to every open session but ``skip``; how many it reached."""
    count = 0
    for session in sessions:
        if session is not skip and not session.closed:
            session.outlet.push(prepared, session.peer_id, priority)
            count += 1
    return count


class RoomLogs:
    """The frame log of each chatroom with viewers here (protocol/roomlog.py): a
    chatroom push is appended to its room's log once and handed to the viewers with
    its place in it, so that a viewer that keeps up writes its unread part of the log
    in one write. Both hubs fan a chatroom's pushes out through here, in the order this
    node delivers them (for a cluster node: the order Redis gave every node)."""

    __slots__ = ("_logs",)

    def __init__(self) -> None:
        self._logs: dict[str, RoomLog] = {}

    def forget(self, cid: str) -> None:
        """The room has no viewer here any more."""
        self._logs.pop(cid, None)

    def deliver(
        self,
        prepared: Prepared,
        cid: str,
        sessions: Iterable[Session],
        priority: Priority,
        skip: Session | None,
    ) -> int:
        """``deliver`` to the room's viewers here, through the room's log."""
        log = self._logs.get(cid)
        if log is None or log.full:
            log = self._logs[cid] = RoomLog()
        prepared.at = log.append(prepared, priority)
        prepared.room = log
        try:
            return deliver(prepared, sessions, priority, skip)
        finally:
            prepared.room = None


def rivals(sessions: Iterable[Session], tag: str | None, keep: Session | None) -> list[Session]:
    """The sessions a login with ``tag`` ends (all of them when ``tag`` is None), but
    ``keep`` (the Redis hub gives its stand-in)."""
    return [s for s in sessions if (tag is None or s.tag == tag) and s is not keep]


def end(
    session: Session, code: int, reason: str, detail: str, detach: Callable[[Session], None]
) -> None:
    """Tell a local session it was closed (``session/closed`` with the reason), take it
    out of the hub (``detach``) and then out of its connection."""
    push = pb.GenericCommand(cmd=pb.session, op=pb.closed, peerId=session.peer_id)
    push.sessionMessage.code = code
    push.sessionMessage.reason = reason
    push.sessionMessage.detail = detail
    session.outlet.send(push)
    detach(session)
    session.outlet.detach(session)
