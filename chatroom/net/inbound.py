"""A connection's inbound side: reading commands, running their handlers in arrival
order, answering errors, and the read deadlines (idle 4107, no login 4108).

``Inbound`` is a part of ``Connection`` (net/connection.py), which holds the state
these methods use (its ``__slots__``): a base class with no state of its own, so that
a connection stays one object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
import trio

from chatroom.config import Config
from chatroom.core.presence import Session
from chatroom.core.ratelimit import FloodGuard, TokenBucket
from chatroom.net.transport import Transport
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Subprotocol, decode_checked
from chatroom.protocol.errors import (
    NOT_STORED,
    STORE_FAILED,
    ChatError,
    CloseCode,
    ErrorCode,
    ProtocolError,
)
from chatroom.service import dispatch
from chatroom.service.context import SENT, Context, Handler, SyncHandler, failure_reply
from chatroom.store.base import IntegrityError, StoreError

log = logging.getLogger("chatroom.net.connection")

_JSON = Codec.JSON  # a module constant: an Enum class attribute costs ~0.9 k instructions
_SESSION, _OPEN, _DIRECT = pb.session, pb.open, pb.direct  # (no module attribute each time)
_OMIT_PEER_ID = 128  # configBitmap bit 7: the client does not need peerId on pushes
_FIRST_CLIENT_ROUTING = frozenset({"4", "5"})  # JS SDK majors that route by first client


def _json_request_id(codec: Codec, message: str | bytes) -> int | None:
    """The ``i`` of a JSON object that is not a valid command, if it has a usable one."""
    if codec is not Codec.JSON:
        return None
    try:
        obj = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    i = obj.get("i") if isinstance(obj, dict) else None
    if isinstance(i, int) and not isinstance(i, bool) and -(2**31) <= i < 2**31:
        return i
    return None


def _omits_peer_id(login: pb.SessionCommand) -> bool:
    """Whether pushes to a socket whose only client logged in with ``login`` may leave
    ``peerId`` out (the socket's first login; JSON clients always get it).

    The client says so with configBitmap bit 7 (JS 5.0.0-rc.x, Swift). JS 4.x and
    5.0.0-alpha/beta do not, yet they hand a push without ``peerId`` to the first client
    they created on the socket (``realtime._firstIMClient``, dist/realtime.js); JS 3.x
    drops it, and other SDKs are not known to route it, so they get ``peerId``. A
    re-login (``r``) gets it too: after a reconnect the SDK re-opens its clients on a
    new socket, and the first of them is its first client only if that one never
    closed.
    """
    if login.r:
        return False
    if login.configBitmap & _OMIT_PEER_ID:
        return True
    name, _, version = login.ua.partition("/")
    return name == "js" and version.split(".", 1)[0] in _FIRST_CLIENT_ROUTING


if TYPE_CHECKING:  # Connection passes itself to handlers as their Link
    from chatroom.service.context import Link as _Base
else:
    _Base = object


class Inbound(_Base):
    """The reader of a ``Connection`` and what it calls."""

    if not TYPE_CHECKING:  # mypy would hold the assignments to Connection's slots
        __slots__ = ()  # no state here, and no __dict__ per connection

    _transport: Transport
    _subprotocol: Subprotocol
    _ctx: Context
    _config: Config
    _sessions: dict[str, Session]
    _omit_peer_id: bool
    _first_omits: bool
    _logins: int
    _close: tuple[int, str] | None
    _shutting_down: bool
    _read_scope: trio.CancelScope | None
    _now: Callable[[], float]
    _seen: float
    _login_deadline: float
    _budget: TokenBucket
    _tasks: trio.Nursery | None
    _flood: FloodGuard | None
    remote: str

    if TYPE_CHECKING:  # Connection's

        def close_soon(self, code: int, reason: str) -> None: ...

        def left_room(self) -> None: ...

    def _command(self, message: str | bytes) -> tuple[pb.GenericCommand, Handler] | None:
        """Run a message read from the client (``Connection.serve`` reads them): a
        synchronous handler at once; an asynchronous one is returned, for the reader
        to await before it reads on (commands run in arrival order)."""
        now = self._seen  # when the read that brought it came (``frames_read``)
        within_budget = self._budget.take(now)
        try:
            cmd, control = decode_checked(self._subprotocol.codec, message)
        except ProtocolError as exc:
            # Not a command. A JSON object may still name its ``i``: that request is
            # answered; otherwise an error push it is.
            stub = pb.GenericCommand(cmd=pb.error)
            i = _json_request_id(self._subprotocol.codec, message)
            if i is not None:
                stub.i = i
            self._error(stub, ChatError(ErrorCode.INVALID_COMMAND, str(exc)[:200]), True)
            if not within_budget:
                self._over_budget(now)  # a flood of garbage is a flood too
            return None
        if not within_budget:
            # Decoded first, so that the refusal answers the request by its ``i``.
            self._ctx.counters.refused_requests += 1
            self._refuse(cmd, ErrorCode.APP_QUOTA_EXCEEDED, "too many requests", now)
            return None
        command = cmd.cmd  # (0 when absent: HasField tells)
        if command == _DIRECT and not self._user_allows(cmd, now):
            self._ctx.counters.refused_messages += 1
            self._refuse(cmd, ErrorCode.MESSAGE_SENT_QUOTA_EXCEEDED, "too many messages", now)
            return None
        if cmd.HasField("cmd"):
            sync, handler = dispatch.route_present(command, cmd, control)
        elif cmd.HasField("i"):
            sync, handler = dispatch.route(cmd, control)  # (unsupported: answered by i)
        else:
            # Nothing names it, nothing could answer it by i: an error push it is.
            self._error(cmd, ChatError(ErrorCode.INVALID_COMMAND, "missing cmd"), True)
            return None
        if sync is not None:
            self._run_sync(cmd, sync)
        elif handler is not None:
            return cmd, handler
        return None

    def _user_allows(self, cmd: pb.GenericCommand, now: float) -> bool:
        """Whether the sender's budget, shared by all its connections, takes this
        message (without a session there is no sender: the handler answers 4105)."""
        session = self.session_for(cmd.peerId)
        return session is None or self._ctx.policies.user_budgets.take(session.peer_id, now)

    def _refuse(self, cmd: pb.GenericCommand, code: ErrorCode, reason: str, now: float) -> None:
        """Answer a request over budget; close a client that keeps flooding."""
        self._error(cmd, ChatError(code, reason))
        self._over_budget(now)

    def _over_budget(self, now: float) -> None:
        if self._flood is None:
            self._flood = FloodGuard(self._config.flood_close_after)
        if self._flood.refused(now) and self._close is None:
            log.info("closing %s: request flood", self.remote)
            self.close_soon(CloseCode.QUOTA_EXCEEDED, "request flood")

    # -- the read deadlines, kept by net/deadlines.py ----------------------------------

    def due(self) -> float:
        """When this client is to be closed: ``idle_timeout`` after its last frame (a
        ping too) or the reply to it; without a session, at its login deadline if that
        comes first."""
        idle = self._seen + self._config.idle_timeout
        if self._sessions or idle < self._login_deadline:
            return idle
        return self._login_deadline

    def expired(self) -> None:
        """The ``due`` time came: 4107, or 4108 without a session. Not while shutting
        down: nothing is read then, and the connection waits for ``goaway``."""
        if self._shutting_down:
            return
        if self._sessions:
            self.close_soon(CloseCode.READ_TIMEOUT, "idle timeout")
        else:
            self.close_soon(CloseCode.LOGIN_TIMEOUT, "no login")

    def frames_read(self) -> None:
        """A read brought frames: the idle time starts again (net/deadlines.py finds
        it out when the old deadline comes: nothing moves now)."""
        self._seen = self._now()

    def _run_sync(self, cmd: pb.GenericCommand, handler: SyncHandler) -> None:
        try:
            reply = handler(self._ctx, self, cmd)
        except ChatError as err:
            self._error(cmd, err)
        except Exception:
            self._crashed(cmd)
        else:
            self._reply(cmd, reply, cmd.cmd == _SESSION and cmd.op == _OPEN)

    async def _run(self, cmd: pb.GenericCommand, handler: Handler) -> None:  # noqa: ASYNC910
        # A handler that fails before its first await is not a checkpoint; the reader
        # loop around us is one on every iteration.
        opening = cmd.cmd == _SESSION and cmd.op == _OPEN
        if opening:
            # While a login and its sync are under way, every push names its client:
            # the SDK knows its first client only once that client's open resolved,
            # after the frames that came with the reply have been dispatched.
            self._omit_peer_id = False
            self.left_room()  # if it followed a chatroom, its pushes are queued from here
        try:
            reply = await handler(self._ctx, self, cmd)
        except ChatError as err:
            self._error(cmd, err)
        except StoreError as err:
            self._store_failed(cmd, err)
        except Exception:
            self._crashed(cmd)
        else:
            self._reply(cmd, reply, opening)
        # The client was waiting for this reply, not idle: its idle time starts now (a
        # login that took long on a busy cluster node is not counted against it).
        self._seen = self._now()
        if opening:
            self._omit_peer_id = self._logins == 1 and self._first_omits

    def _store_failed(self, cmd: pb.GenericCommand, err: StoreError) -> None:
        """The store failed under a handler (PostgreSQL unreachable, a disk error):
        nothing of the request was stored or acknowledged; the client is told so and
        may try again. Bad data (IntegrityError) is a defect and logged as one."""
        if isinstance(err, IntegrityError):
            self._crashed(cmd)
            return
        name = pb.CommandType.Name(cmd.cmd)
        log.warning("%s of %s refused, the store failed: %s", name, self.remote, err)
        reason = NOT_STORED if cmd.cmd == pb.direct else STORE_FAILED
        self._error(cmd, ChatError(ErrorCode.INTERNAL_ERROR, reason))

    def _crashed(self, cmd: pb.GenericCommand) -> None:
        log.exception("handler failed for %s", pb.CommandType.Name(cmd.cmd))
        self._error(cmd, ChatError(ErrorCode.INTERNAL_ERROR, "internal error"))

    def _reply(
        self, cmd: pb.GenericCommand, reply: pb.GenericCommand | None, opening: bool
    ) -> None:
        """Send ``reply`` to ``cmd`` (``opening``: a login, which the socket counts)."""
        if opening and reply is not None:
            self._logins += 1
            if self._logins == 1:
                self._first_omits = self._subprotocol.codec is not _JSON and _omits_peer_id(
                    cmd.sessionMessage
                )
        if reply is None or reply is SENT:
            return
        if cmd.HasField("i"):
            reply.i = cmd.i
        self.send(reply)

    def _error(
        self, cmd: pb.GenericCommand | None, err: ChatError, undecodable: bool = False
    ) -> None:
        """Reply with the error. A command without ``i`` (the SDK's acks and read
        marks) gets an error push only on the JSON codec, since the SDK treats an
        ``i``-less error as a connection error; a frame that is not a command always
        gets one."""
        self._ctx.counters.errors += 1
        has_i = cmd is not None and cmd.HasField("i")
        reply = failure_reply(cmd if cmd is not None else pb.GenericCommand(), err)
        if cmd is not None and has_i:
            reply.i = cmd.i
        elif self._subprotocol.codec is not Codec.JSON and not undecodable:
            return
        if cmd is not None and 0 < len(cmd.peerId) <= self._config.max_client_id_length:
            # Routes the error to the SDK's client of that id; a longer one names no
            # client and is not echoed (it may be a megabyte).
            reply.peerId = cmd.peerId
        self.send(reply)
