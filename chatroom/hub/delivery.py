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
