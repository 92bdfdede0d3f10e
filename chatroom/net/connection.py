"""One client WebSocket: its reader, its writer, its sessions and its deadlines.

The reader decodes commands and runs their handlers in arrival order; replies and pushes
go into the bounded ``Outbox``. The ``Flusher`` writes queued frames with a
non-blocking send; only when the kernel refuses bytes does this connection's writer
task take over and wait, under ``write_timeout``. Anything unexpected closes this
connection only (1011), never the server.
"""

from __future__ import annotations

import contextlib
import logging

import orjson
import trio

from chatroom.config import Config
from chatroom.core.outbox import Outbox, Priority, Verdict
from chatroom.core.presence import Session
from chatroom.core.ratelimit import FloodGuard, TokenBucket
from chatroom.net.flusher import Flusher
from chatroom.net.transport import ConnectionClosed, Transport, TransportBroken
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, Subprotocol, decode, encode
from chatroom.protocol.errors import (
    NOT_STORED,
    STORE_FAILED,
    ChatError,
    CloseCode,
    ErrorCode,
    ProtocolError,
)
from chatroom.protocol.framing import ws_frame
from chatroom.protocol.roomlog import RoomLog
from chatroom.service import dispatch
from chatroom.service import messages as message_service
from chatroom.service import session as session_service
from chatroom.service.context import SENT, Context, Handler, SyncHandler, failure_reply
from chatroom.store.base import IntegrityError, StoreError

log = logging.getLogger(__name__)

_FLUSH_BYTES = 256 * 1024  # most bytes handed to one system call
_SLOW_CLOSE_WAIT = 1.0  # seconds to finish a cut frame before closing a slow consumer
_SHED_NOTICE_EVERY = 1.0  # seconds: at most one ``shed`` notice per connection per this
_OMIT_PEER_ID = 128  # configBitmap bit 7: the client does not need peerId on pushes
_FIRST_CLIENT_ROUTING = frozenset({"4", "5"})  # JS SDK majors that route by first client
_ACCEPTED = Verdict.ACCEPTED
_OVERFLOW = Verdict.OVERFLOW


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


class Connection:
    __slots__ = (
        "_binary",
        "_budget",
        "_close",
        "_codec",
        "_config",
        "_ctx",
        "_dirty",
        "_first_omits",
        "_flood",
        "_flusher",
        "_handling",
        "_log",
        "_log_from",
        "_log_to",
        "_login_deadline",
        "_logins",
        "_omit_peer_id",
        "_pending",
        "_read_scope",
        "_seen",
        "_sessions",
        "_shed_next",
        "_shed_told",
        "_shed_waiting",
        "_shutting_down",
        "_subprotocol",
        "_tasks",
        "_transport",
        "_writer_busy",
        "_writer_done",
        "_writer_scope",
        "outbox",
        "remote",
    )

    def __init__(
        self,
        transport: Transport,
        subprotocol: Subprotocol,
        ctx: Context,
        flusher: Flusher,
        remote: str = "",
    ):
        config: Config = ctx.config
        self._transport = transport
        transport.sink = self._send_control
        transport.on_frames = self._heard
        self._subprotocol = subprotocol
        self._codec = subprotocol.codec
        self._binary = subprotocol.codec.binary_frames
        self._ctx = ctx
        self._config = config
        self._flusher = flusher
        self.remote = remote
        self.outbox = Outbox(
            config.outbox_max_bytes,
            config.outbox_max_frames,
            ctx.counters.shed,
            ctx.policies.queued,
        )
        self._sessions: dict[str, Session] = {}
        self._omit_peer_id = False  # pushes leave peerId out (see _omits_peer_id)
        self._first_omits = False  # what the first login announced
        self._logins = 0  # sessions ever opened on this socket
        self._pending = b""  # the unwritten tail of a partial write
        # A chatroom's frame log this connection reads instead of queueing its pushes
        # (protocol/roomlog.py), and the range of it still to write: only while the
        # outbox is empty (so order holds) and the socket keeps up.
        self._log: RoomLog | None = None
        self._log_from = self._log_to = 0
        self._writer_busy = False
        self._shutting_down = False
        self._dirty = False
        self._close: tuple[int, str] | None = None
        # The server-wide nursery that runs this connection's writer and shed notice
        # tasks, while serving: one nursery per connection would cost ~1 KB each.
        self._tasks: trio.Nursery | None = None
        # While a writer task exists: its scope (write deadline; close_soon cancels
        # it) and the event it sets when it has ended (``_finish`` waits for it).
        self._writer_scope: trio.CancelScope | None = None
        self._writer_done: trio.Event | None = None
        # The read scope: its deadline is when the client is due to be closed as idle
        # (4107) or not logged in (4108), at the latest (see _heard).
        self._read_scope: trio.CancelScope | None = None
        self._seen = 0.0  # when the last frame came (set when reading starts)
        self._login_deadline = 0.0  # set when reading starts
        self._handling = False  # an async handler is under way
        self._budget = TokenBucket(config.requests_per_second, config.request_burst, 0.0)
        self._flood: FloodGuard | None = None  # made at the first refusal
        self._shed_told = 0  # the count of shed frames the client was last told
        self._shed_next = 0.0  # when the next ``shed`` notice may go
        self._shed_waiting = False  # a notice is due (its task is waiting)

    # -- Link / Outlet (used by handlers; never await) --------------------------------

    @property
    def subprotocol(self) -> Subprotocol:
        return self._subprotocol

    def session_for(self, peer_id: str | None) -> Session | None:
        if peer_id:
            return self._sessions.get(peer_id)
        return next(iter(self._sessions.values()), None)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def backlog(self) -> int:
        return self._transport.backlog

    def attach(self, session: Session) -> None:
        first = not self._sessions
        self._sessions[session.peer_id] = session
        if first and self._read_scope is not None:
            # Logged in: the login deadline no longer holds, the idle one does.
            self._read_scope.deadline = self._expiry()

    def detach(self, session: Session) -> None:
        if self._sessions.get(session.peer_id) is session:
            del self._sessions[session.peer_id]
            if not self._sessions:
                # The login deadline starts again from the last frame.
                self._login_deadline = self._seen + self._config.login_timeout
                if self._read_scope is not None:
                    self._read_scope.deadline = self._expiry()

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        """Queue one recipient's copy of a broadcast: ``_enqueue`` inlined, since this
        runs once per recipient. A chatroom push to a viewer that keeps up only
        extends the range of the room's log that its next flush writes."""
        if self._close is not None:
            return
        room = prepared.room
        if room is not None and self._omit_peer_id and not self._writer_busy:
            if self._log is room and self._log_to == prepared.at:
                self._log_to += 1
                return
            if self._log is None and not self.outbox.queued_bytes:
                self._log = room
                self._log_from, self._log_to = prepared.at, prepared.at + 1
                if not self._dirty:
                    self._dirty = True
                    self._flusher.mark(self)
                return
        if self._log is not None:
            self._spill()
        frame = prepared.frame(self._codec, None if self._omit_peer_id else peer_id)
        verdict = self.outbox.offer(frame, priority)
        if verdict is _ACCEPTED:
            if not self._dirty and not self._writer_busy:
                self._dirty = True
                self._flusher.mark(self)
        elif verdict is _OVERFLOW:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        self._enqueue(ws_frame(encode(self._codec, cmd), self._binary), priority)

    def kick(self, code: int, reason: str) -> None:
        self.close_soon(code, reason)

    # -- outbound ---------------------------------------------------------------------

    def close_over_budget(self) -> None:
        """The server-wide queue budget is spent and this connection holds the most:
        its backlog is dropped now (the memory is what counts) and it is closed with
        4120; the client catches up after reconnecting."""
        self.outbox.clear()
        self._log = None
        self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: server queue budget spent")

    def _send_control(self, frames: bytes) -> None:
        """Pongs and the reply to a client's close, in order with everything else."""
        self._enqueue(frames, Priority.RELIABLE)

    def _enqueue(self, frame: bytes, priority: Priority) -> None:
        if self._close is not None:
            return
        if self._log is not None:
            self._spill()
        verdict = self.outbox.offer(frame, priority)
        if verdict is Verdict.OVERFLOW:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
        elif verdict is Verdict.ACCEPTED and not self._dirty and not self._writer_busy:
            self._dirty = True
            self._flusher.mark(self)

    def _spill(self) -> None:
        """Queue the unread range of the room's log in the outbox, as any push: the
        connection stops reading the log (something else is to be written after it,
        or the range has a gap)."""
        room, self._log = self._log, None
        assert room is not None
        for prepared, priority in room.entries[self._log_from : self._log_to]:
            verdict = self.outbox.offer(prepared.frame(self._codec, None), Priority(priority))
            if verdict is _OVERFLOW:
                self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
                return

    def flush_nowait(self) -> int:
        """Write queued frames now, as far as the kernel takes them (Flusher); the
        number of frames written or taken from the outbox."""
        self._dirty = False
        if self._writer_busy:
            return 0
        outbox = self.outbox
        room = self._log
        if room is not None:  # the outbox is empty
            self._log = None
            data = room.unread(self._codec, self._log_from, self._log_to)
            count = self._log_to - self._log_from
        else:
            frames = outbox.take(_FLUSH_BYTES)
            if not frames:
                return 0
            if outbox.shed != self._shed_told:
                self._shed_to_tell()
            data = b"".join(frames)
            count = len(frames)
        try:
            written = self._transport.write_nowait(data)
        except TransportBroken:
            self.close_soon(CloseCode.NORMAL, "connection lost")
            return 0
        if written < len(data):
            self._pending = data[written:]
            self._writer_busy = True
            if self._tasks is not None:
                # A writer task exists only while a socket refuses bytes: an idle
                # connection costs no task. Its scope and event are made here, not
                # in the task, so that ``close_soon`` and ``_finish`` see them at once.
                deadline = trio.current_time() + self._config.write_timeout
                self._writer_scope = trio.CancelScope(deadline=deadline)
                if self._close is not None:
                    self._writer_scope.cancel()
                self._writer_done = trio.Event()
                self._tasks.start_soon(self._writer, self._writer_scope, self._writer_done)
        elif outbox.queued_bytes:  # more than one write's worth (no frame is empty)
            self._dirty = True
            self._flusher.mark(self)
        return count

    async def _writer(self, scope: trio.CancelScope, done: trio.Event) -> None:
        """Drain the outbox while the socket is full, then end (until needed again).
        A write deadline that passes closes the client as a slow consumer; a close
        cancels ``scope``. Runs in the server-wide nursery: nothing may escape."""
        await trio.lowlevel.cancel_shielded_checkpoint()  # never raises: ``done`` is set
        try:
            with scope:
                await self._drain()
            if scope.cancelled_caught:  # the deadline, or a close (then a no-op)
                self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: write timeout")
            else:
                self._writer_busy = False
        except TransportBroken:
            self.close_soon(CloseCode.NORMAL, "connection lost")
        except Exception:
            log.exception("writer of %s failed", self.remote)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._writer_scope = None
            self._writer_done = None
            done.set()

    async def _drain(self) -> None:
        """Write the pending tail and the outbox, waiting for the socket as needed.

        ``_pending`` always holds exactly the bytes not yet written, even when this
        is cancelled, so the frame stream stays whole and a close frame can follow.
        """
        await trio.lowlevel.checkpoint()
        if self._log is not None:
            self._spill()
        while self._pending or self.outbox:
            if not self._pending:
                self._pending = b"".join(self.outbox.take(_FLUSH_BYTES))
                if self.outbox.shed != self._shed_told:
                    self._shed_to_tell()
            written = self._transport.write_nowait(self._pending)
            if written:
                self._pending = self._pending[written:]
            else:
                await self._transport.wait_writable()

    def _shed_to_tell(self) -> None:
        """Frames were shed for this client since it was last told: a JSON client is
        told how many (protobuf clients have no command for it), at most once per
        ``_SHED_NOTICE_EVERY``. Checked once per write, never per frame."""
        if self._shed_waiting or self._codec is not Codec.JSON or self._tasks is None:
            return
        self._shed_waiting = True
        self._tasks.start_soon(self._tell_shed)

    async def _tell_shed(self) -> None:
        # Waits out the interval, then tells the count as it is by then: a viewer who
        # keeps losing frames gets one small notice a second, not one per frame.
        # At most ``_SHED_NOTICE_EVERY`` seconds, even after a close (then the notice
        # is not queued): no scope of its own to cancel.
        await trio.sleep_until(self._shed_next)
        self._shed_waiting = False
        self._shed_next = trio.current_time() + _SHED_NOTICE_EVERY
        self._shed_told = count = self.outbox.shed
        notice = b'{"cmd":"shed","count":%d}' % count
        self._enqueue(ws_frame(notice, False), Priority.HIGH)

    # -- inbound ----------------------------------------------------------------------

    async def _reader(self) -> None:
        """Read and run commands until the client leaves (or the read scope, around
        this, is cancelled: a close, or its deadline)."""
        while True:
            message = await self._transport.receive()  # ConnectionClosed ends us
            now = self._seen  # when the read that brought it came (``_heard``)
            within_budget = self._budget.take(now)
            try:
                cmd = decode(self._subprotocol.codec, message)
            except ProtocolError as exc:
                # Not a command. A JSON object may still name its ``i``: that request
                # is answered; otherwise an error push it is.
                stub = pb.GenericCommand(cmd=pb.error)
                i = _json_request_id(self._subprotocol.codec, message)
                if i is not None:
                    stub.i = i
                self._error(stub, ChatError(ErrorCode.INVALID_COMMAND, str(exc)[:200]), True)
                if not within_budget:
                    self._over_budget(now)  # a flood of garbage is a flood too
                continue
            if not within_budget:
                # Decoded first, so that the refusal answers the request by its ``i``.
                self._ctx.counters.refused_requests += 1
                self._refuse(cmd, ErrorCode.APP_QUOTA_EXCEEDED, "too many requests", now)
                continue
            if cmd.cmd == pb.direct and not self._user_allows(cmd, now):
                self._ctx.counters.refused_messages += 1
                self._refuse(cmd, ErrorCode.MESSAGE_SENT_QUOTA_EXCEEDED, "too many messages", now)
                continue
            if not cmd.HasField("cmd") and not cmd.HasField("i"):
                # Nothing names it, nothing could answer it by i: an error push it is.
                self._error(cmd, ChatError(ErrorCode.INVALID_COMMAND, "missing cmd"), True)
                continue
            sync, handler = dispatch.route(cmd)
            if sync is not None:
                self._run_sync(cmd, sync)
            elif handler is not None:
                await self._run(cmd, handler)

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

    def _expiry(self) -> float:
        """When this client is due to be closed: ``idle_timeout`` after its last frame
        (a ping too); without a session, no later than the login deadline."""
        idle = self._seen + self._config.idle_timeout
        return idle if self._sessions else min(idle, self._login_deadline)

    def _heard(self) -> None:
        """A read brought frames. The read scope's deadline is not moved at every
        frame (moving a trio deadline cost a tenth of a login and join's
        instructions), only once it is within half the idle timeout of now. So it
        may come before ``_expiry`` (never after it): ``serve`` then reads on under
        a new scope. A login or a logout moves it at once (``attach``, ``detach``)."""
        scope = self._read_scope
        now = self._seen = trio.current_time()
        if scope is not None and scope.deadline - now < self._config.idle_timeout * 0.5:
            expiry = self._expiry()
            if expiry != scope.deadline:
                scope.deadline = expiry

    def _run_sync(self, cmd: pb.GenericCommand, handler: SyncHandler) -> None:
        try:
            reply = handler(self._ctx, self, cmd)
        except ChatError as err:
            self._error(cmd, err)
        except Exception:
            self._crashed(cmd)
        else:
            self._reply(cmd, reply)

    async def _run(self, cmd: pb.GenericCommand, handler: Handler) -> None:  # noqa: ASYNC910
        # A handler that fails before its first await is not a checkpoint; the reader
        # loop around us is one on every iteration.
        opening = cmd.cmd == pb.session and cmd.op == pb.open
        if opening:
            # While a login and its sync are under way, every push names its client:
            # the SDK knows its first client only once that client's open resolved,
            # after the frames that came with the reply have been dispatched.
            self._omit_peer_id = False
        self._handling = True  # a read deadline now is a timeout (see serve)
        try:
            reply = await handler(self._ctx, self, cmd)
        except ChatError as err:
            self._error(cmd, err)
        except StoreError as err:
            self._store_failed(cmd, err)
        except Exception:
            self._crashed(cmd)
        else:
            self._reply(cmd, reply)
        self._handling = False
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

    def _reply(self, cmd: pb.GenericCommand, reply: pb.GenericCommand | None) -> None:
        if cmd.cmd == pb.session and cmd.op == pb.open and reply is not None:
            self._logins += 1
            if self._logins == 1:
                self._first_omits = self._subprotocol.codec is not Codec.JSON and _omits_peer_id(
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

    # -- lifetime ---------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """End this connection with a close code (idempotent, never awaits)."""
        if self._close is None:
            self._close = (int(code), reason)
            if code == CloseCode.SLOW_CONSUMER:
                self._ctx.counters.closed_slow += 1
                log.info("closing %s: %s", self.remote, reason)
            if self._read_scope is not None:
                self._read_scope.cancel()
            if self._writer_scope is not None:
                self._writer_scope.cancel()

    def stop_reading(self) -> None:
        """First step of a graceful shutdown: take no more commands, keep writing."""
        self._shutting_down = True
        if self._read_scope is not None:
            self._read_scope.cancel()

    def goaway(self) -> None:
        """Last step of a graceful shutdown: ask the client to reconnect elsewhere,
        then close once what is queued has been written. Will messages are not sent:
        the server leaving is not the user leaving."""
        self._shutting_down = True
        self.send(pb.GenericCommand(cmd=pb.goaway))
        self.close_soon(CloseCode.GOING_AWAY, "server shutting down")

    async def serve(self, tasks: trio.Nursery) -> None:
        """Run until the client leaves or the connection is closed; then clean up.
        ``tasks`` (server-wide) runs the writer when the socket is full."""
        self._tasks = tasks
        self._seen = trio.current_time()
        self._login_deadline = self._seen + self._config.login_timeout
        try:
            while True:  # not a coroutine of its own: ~0.5 KB more per idle connection
                with trio.CancelScope(deadline=self._expiry()) as scope:
                    self._read_scope = scope
                    if self._close is not None:
                        scope.cancel()
                    await self._reader()
                if not self._read_on(scope):
                    break
            if self._shutting_down and self._close is None:
                # Reading stopped for shutdown: stay open for the acks of what was
                # read, until goaway() closes us (close_soon cancels this scope).
                with trio.CancelScope() as self._read_scope:
                    await trio.sleep_forever()
        except (ConnectionClosed, TransportBroken):
            pass  # the client went away
        except Exception:
            log.exception("connection %s failed", self.remote)
            self.close_soon(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            with trio.move_on_after(self._config.handshake_timeout, shield=True):
                await self._finish()

    def _read_on(self, scope: trio.CancelScope) -> bool:
        """The read scope ended (it can only be cancelled): whether to read on under a
        new one, as when its deadline came before ``_expiry`` while waiting for a
        frame (nothing was cut short). A deadline that is due closes the client."""
        if self._shutting_down or self._close is not None or not scope.cancelled_caught:
            return False
        if not self._handling and trio.current_time() < self._expiry():
            return True
        if self._sessions:
            self.close_soon(CloseCode.READ_TIMEOUT, "idle timeout")
        else:
            self.close_soon(CloseCode.LOGIN_TIMEOUT, "no login")
        return False

    async def _finish(self) -> None:
        """Sessions still open here ended without a logout: their wills are sent."""
        await trio.lowlevel.checkpoint()
        self._tasks = None  # no new writer task from here on
        if self._writer_done is not None:
            # A writer is under way: it stops at its next checkpoint, with
            # ``_pending`` exact, so the close frame can follow what it wrote.
            if self._writer_scope is not None:
                self._writer_scope.cancel()
            await self._writer_done.wait()
        self._writer_busy = True  # the flusher must not write while this drains
        live = session_service.disconnected(self._ctx, list(self._sessions.values()))
        self._sessions.clear()
        if not self._shutting_down:
            message_service.send_wills(self._ctx, live)
        code, reason = self._close or (CloseCode.NORMAL, "bye")
        if not self._transport.closed:
            deadline = self._config.write_timeout
            if code == CloseCode.SLOW_CONSUMER:
                # It is not reading: finish the frame in flight, drop the backlog.
                self.outbox.clear()
                self._log = None
                deadline = _SLOW_CLOSE_WAIT
            with trio.move_on_after(deadline):
                with contextlib.suppress(TransportBroken):
                    await self._drain()
            if self._pending:
                # A frame is cut short: a close frame now would corrupt the stream.
                await self._transport.abort()
            else:
                await self._transport.aclose(code, reason)
        self.outbox.clear()
        self._log = None
        self._pending = b""
