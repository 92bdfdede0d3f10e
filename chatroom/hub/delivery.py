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
    """The frame log of each chatroom with viewers here (protocol/roomlog.py), and
    who watches it: the hubs tell it every join and leave of a session of theirs.

    A chatroom push is appended to its room's log once; the viewers that follow the
    log are written by the room's next flush, the others (stragglers) are pushed it
    one by one (a push may make one a follower). Both hubs fan a chatroom's pushes
    out through here, in the order this node delivers them (for a cluster node: the
    order Redis gave every node).

    A cluster node gives ``count``, a chatroom's viewers on every node (the cluster's
    presence): ``elsewhere`` then tells the node's flusher, for a room it writes, how
    many viewers other nodes write per viewer here, so that it gathers as many
    messages per write as one node with all of them would (net/flusher.py)."""

    __slots__ = ("_logs", "count")

    def __init__(self, count: Callable[[str], int] | None = None) -> None:
        self._logs: dict[str, RoomLog[Session]] = {}
        self.count = count

    def elsewhere(self, log: RoomLog[Session]) -> float:
        """Viewers of ``log``'s chatroom on other nodes, per viewer here (0 when none,
        or not a cluster node)."""
        here = len(log)
        if self.count is None or not here:
            return 0.0
        return max(0, self.count(log.cid) - here) / here

    def join(self, cid: str, session: Session) -> None:
        log = self._logs.get(cid)
        if log is None:
            log = self._logs[cid] = RoomLog(cid)
        if session not in log.following:
            log.stragglers[session] = None

    def leave(self, cid: str | None, session: Session) -> None:
        """``session`` no longer watches ``cid`` (None: it watched none)."""
        log = self._logs.get(cid) if cid is not None else None
        if log is not None:
            log.leave(session)
            if not log:
                del self._logs[cid]  # type: ignore[arg-type]

    def deliver(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority,
        skip: Session | None,
        skip_client: str | None = None,
    ) -> int:
        """Push to the room's viewers here but ``skip`` and ``skip_client``'s
        sessions; how many it reached."""
        log = self._logs.get(cid)
        if log is None:
            return 0
        if skip is not None:
            log.exclude(skip)
        if skip_client is not None:
            for session in [s for s in log.following if s.peer_id == skip_client]:
                log.exclude(session)
        count = len(log.followers)  # written by the flush
        prepared.at = log.append(prepared, priority)
        prepared.room = log
        try:
            for session in tuple(log.stragglers):  # a push may make one a follower
                if (
                    session is not skip
                    and not session.closed
                    and (skip_client is None or session.peer_id != skip_client)
                ):
                    session.outlet.push(prepared, session.peer_id, priority)
                    count += 1
        finally:
            prepared.room = None
        return count


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
