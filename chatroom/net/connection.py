"""One client WebSocket: its reader, its writer, its sessions and its deadlines.

The reader decodes commands and runs their handlers in arrival order; replies and pushes
go into the bounded ``Outbox``. The ``Flusher`` writes queued frames with a
non-blocking send; only when the kernel refuses bytes does this connection's writer
task take over and wait, under ``write_timeout``. Anything unexpected closes this
connection only (1011), never the server.

``Connection`` is one object made of three parts: the reader and its deadlines
(net/inbound.py ``Inbound``), the writer task (net/writer.py ``Writer``), and, here,
its state, what handlers and the hub call (a push, a send, a kick) and its lifetime.
The parts are base classes without state of their own: the hot path (``push``,
``flush_nowait``) reads the same slots as before, with no object in between.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

import trio

from chatroom.config import Config
from chatroom.core.outbox import Outbox, Priority, Verdict
from chatroom.core.presence import Session
from chatroom.core.ratelimit import FloodGuard, TokenBucket
from chatroom.net import deadlines
from chatroom.net.flusher import Flusher
from chatroom.net.inbound import Inbound
from chatroom.net.roomwriter import RoomWriter
from chatroom.net.transport import RECEIVE_BYTES, ConnectionClosed, Transport, TransportBroken
from chatroom.net.writer import FLUSH_BYTES as _FLUSH_BYTES
from chatroom.net.writer import Writer
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, Subprotocol, encode
from chatroom.protocol.errors import CloseCode
from chatroom.protocol.framing import ws_frame
from chatroom.protocol.roomlog import RoomLog
from chatroom.service import messages as message_service
from chatroom.service import session as session_service
from chatroom.service.context import Context

log = logging.getLogger(__name__)

_SLOW_CLOSE_WAIT = 1.0  # seconds to finish a cut frame before closing a slow consumer
_STREAK = 16  # commands read at once handled in a row, at most, before giving way
_ACCEPTED = Verdict.ACCEPTED
_OVERFLOW = Verdict.OVERFLOW


_Step = tuple[Coroutine[Any, Any, None], Any]  # a coroutine that waits, and what it yielded


def _until_it_waits(coro: Coroutine[Any, Any, None]) -> _Step | None:
    """Run ``coro`` until it first yields to trio (it waits): None if it ended before
    that, else it and what it yielded, for ``_GoOn``."""
    try:
        trap = coro.send(None)
    except StopIteration:
        return None
    return coro, trap


class _GoOn:
    """Awaiting it runs ``coro``, which yielded ``trap`` already (``_until_it_waits``),
    to its end as ``await coro`` would: its first step hands trio ``trap``, the others
    are ``coro``'s (``await`` sends and throws what trio sends it on to them)."""

    __slots__ = ("_coro", "_trap")

    def __init__(self, coro: Coroutine[Any, Any, None], trap: Any) -> None:
        self._coro = coro
        self._trap = trap

    def __await__(self) -> Generator[Any, Any, None]:
        return cast(Generator[Any, Any, None], self)  # (as ``await`` drives one)

    def __next__(self) -> Any:
        trap, self._trap = self._trap, None
        return self._coro.send(None) if trap is None else trap

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, *exc: Any) -> Any:
        return self._coro.throw(*exc)

    def close(self) -> None:
        self._coro.close()


class Connection(Inbound, Writer):
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
        "_login_deadline",
        "_logins",
        "_now",
        "_omit_peer_id",
        "_pending",
        "_read_scope",
        "_room",
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
        "deadline_slot",
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
        now: Callable[[], float] = trio.current_time,
    ):
        """``now``: trio's time, as its clock tells it: ``current_time`` of the run's
        clock, which the server hands every connection, costs half of
        ``trio.current_time`` (three calls deep); every frame reads it."""
        config: Config = ctx.config
        self._transport = transport
        transport.owner = self  # its frames_read and control_frames
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
        # The chatroom whose flushes write this connection's pushes instead of its
        # outbox (it follows the room's log: protocol/roomlog.py): only while the
        # outbox is empty (so order holds) and the socket keeps up.
        self._room: RoomLog[Session] | None = None
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
        # The read scope, which a close cancels, once a handler waited (see
        # ``serve``). It has no deadline: the idle (4107) and login (4108) deadlines
        # are kept by net/deadlines.py (see ``due``).
        self._read_scope: trio.CancelScope | None = None
        self._now = now
        self._seen = 0.0  # when the last frame came (set when reading starts)
        self._login_deadline = 0.0  # set when reading starts
        self.deadline_slot: deadlines.Slot | None = None  # (net/deadlines.py's)
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
        self._sessions[session.peer_id] = session

    def detach(self, session: Session) -> None:
        if self._sessions.get(session.peer_id) is session:
            del self._sessions[session.peer_id]
            if not self._sessions:
                # The login deadline starts again from the last frame.
                self._login_deadline = self._seen + self._config.login_timeout
                deadlines.sooner(self)

    def push(self, prepared: Prepared, peer_id: str, priority: Priority) -> None:
        """Queue one recipient's copy of a broadcast: ``_enqueue`` inlined, since this
        runs once per recipient. A chatroom push that finds this viewer caught up
        makes it a follower of the room: from this frame on the room's flushes write
        it, and the hub no longer pushes to it one by one."""
        if self._close is not None:
            return
        room = prepared.room
        if (
            room is not None
            and self._omit_peer_id
            and not self._writer_busy
            and not self.outbox.queued_bytes
            and self._room is None
            and self._tasks is not None  # serving, not finishing
        ):
            session = self._sessions.get(peer_id)
            if session is not None:
                if room.wake is None:
                    RoomWriter(room, self._flusher)
                self._room = room
                room.follow(self, session, self._codec, self._transport.fileno, prepared.at)
                return
        if self._room is not None:
            self._unfollow()
        frame = prepared.frame(self._codec, None if self._omit_peer_id else peer_id)
        verdict = self.outbox.offer(frame, priority)
        if verdict is _ACCEPTED:
            if not self._dirty and not self._writer_busy:
                self._dirty = True
                self._flusher.mark(self)
        elif verdict is _OVERFLOW:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")

    def send(self, cmd: pb.GenericCommand, priority: Priority = Priority.RELIABLE) -> None:
        frame = ws_frame(encode(self._codec, cmd), self._binary)
        if (
            self._close is None
            and not self.outbox.queued_bytes
            and not self._writer_busy
            and self._room is None
            and self._tasks is not None  # serving, not finishing
            and self.outbox.shed == self._shed_told
        ):
            # Nothing is queued before it (a reply, nearly always): written now, as the
            # flusher would write it alone, without the outbox, the flusher's list and
            # its cycle (a login and a join each send one).
            self._write_now(frame)
        else:
            self._enqueue(frame, priority)

    def _write_now(self, data: bytes) -> int:
        """One non-blocking write of ``data``: the bytes the kernel took, the rest
        handed to a writer task; -1 when the socket is broken (the connection closes)."""
        try:
            written = self._transport.write_nowait(data)
        except TransportBroken:
            self.close_soon(CloseCode.NORMAL, "connection lost")
            return -1
        if written < len(data):
            self._pending = data[written:]
            self._start_writer()
        return written

    def kick(self, code: int, reason: str) -> None:
        self.close_soon(code, reason)

    # -- outbound ---------------------------------------------------------------------

    def close_over_budget(self) -> None:
        """The server-wide queue budget is spent and this connection holds the most:
        its backlog is dropped now (the memory is what counts) and it is closed with
        4120; the client catches up after reconnecting."""
        self.outbox.clear()
        self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: server queue budget spent")

    def control_frames(self, frames: bytes) -> None:
        """Pongs and the reply to a client's close, in order with everything else."""
        self._enqueue(frames, Priority.RELIABLE)

    def _enqueue(self, frame: bytes, priority: Priority) -> None:
        if self._close is not None:
            return
        if self._room is not None:
            self._unfollow()
        verdict = self.outbox.offer(frame, priority)
        if verdict is _OVERFLOW:
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")
        elif verdict is _ACCEPTED and not self._dirty and not self._writer_busy:
            self._dirty = True
            self._flusher.mark(self)

    def _unfollow(self) -> None:
        """Stop following the room: what its flushes did not write yet is queued in
        the outbox, as any push, before whatever made this connection leave."""
        room, self._room = self._room, None
        assert room is not None
        for prepared, priority in room.unfollow(self):
            self._enqueue(prepared.frame(self._codec, None), Priority(priority))

    # -- Follower (protocol/roomlog.py) ----------------------------------------------

    def left_room(self) -> None:
        if self._room is not None:
            self._unfollow()

    def fell_behind(self, data: bytes, written: int) -> None:
        if self._room is not None:
            self._unfollow()  # the flush wrote it every frame: nothing is queued
        if written < 0:
            self.close_soon(CloseCode.NORMAL, "connection lost")
        else:
            self._pending = data[written:]
            self._start_writer()

    def flush_nowait(self) -> int:
        """Write queued frames now, as far as the kernel takes them (Flusher); the
        number of frames written or taken from the outbox."""
        self._dirty = False
        if self._writer_busy:
            return 0
        outbox = self.outbox
        frames = outbox.take(_FLUSH_BYTES)
        if not frames:
            return 0
        if outbox.shed != self._shed_told:
            self._shed_to_tell()
        data = b"".join(frames)
        count = len(frames)
        written = self._write_now(data)
        if written < 0:
            return 0
        if written == len(data) and outbox.queued_bytes:  # more than a write (no frame is empty)
            self._dirty = True
            self._flusher.mark(self)
        return count

    # -- lifetime ---------------------------------------------------------------------

    def close_soon(self, code: int, reason: str) -> None:
        """End this connection with a close code (idempotent, never awaits)."""
        if self._close is None:
            self._close = (int(code), reason)
            if self._room is not None:  # nothing more of the room: it is closing
                self._room.unfollow(self)
                self._room = None
            if code == CloseCode.SLOW_CONSUMER:
                self._ctx.counters.closed_slow += 1
                log.info("closing %s: %s", self.remote, reason)
            self._stop_reader()
            if self._writer_scope is not None:
                self._writer_scope.cancel()

    def stop_reading(self) -> None:
        """First step of a graceful shutdown: take no more commands, keep writing."""
        self._shutting_down = True
        self._stop_reader()

    def _stop_reader(self) -> None:
        """The reader is to stop (a close, a shutdown): its scope is cancelled, or,
        without one, a wait for the socket is woken (the loop then sees why)."""
        if self._read_scope is not None:
            self._read_scope.cancel()
        elif self._tasks is not None:  # reading (not finishing, nor before serve)
            self._transport.interrupt()

    async def _scoped_from_now_on(
        self, outer: object, handler: Coroutine[Any, Any, None], trap: Any
    ) -> None:
        """A handler waits (``_until_it_waits``): the read scope is entered (``serve``
        exits it), so that a close cancels this and every later wait, and the handler
        run to its end.
        ``outer``: the task's innermost cancel scope's status before the handler ran.
        A handler that entered a cancel scope of its own before it waited (a
        ``trio.sleep`` does) must run inside the read scope, not around it: it is
        finished first, a close then ending the loop once it returns."""
        if trio.lowlevel.current_task()._cancel_status is outer:
            self._enter_read_scope()
            await _GoOn(handler, trap)
        else:
            await _GoOn(handler, trap)
            self._enter_read_scope()

    def _enter_read_scope(self) -> None:
        """Enter the read scope (``serve`` exits it), cancelled at once if reading
        is to stop already."""
        scope = self._read_scope = trio.CancelScope()
        scope.__enter__()
        if self._close is not None or self._shutting_down:
            scope.cancel()

    def goaway(self) -> None:
        """Last step of a graceful shutdown: ask the client to reconnect elsewhere,
        then close once what is queued has been written. Will messages are not sent:
        the server leaving is not the user leaving."""
        self._shutting_down = True
        self.send(pb.GenericCommand(cmd=pb.goaway))
        self.close_soon(CloseCode.GOING_AWAY, "server shutting down")

    async def serve(
        self, tasks: trio.Nursery, ended: Callable[[Connection], None] | None = None
    ) -> None:
        """Run until the client leaves or the connection is closed; then clean up and
        call ``ended``. ``tasks`` (server-wide) runs the writer when the socket is full."""
        self._tasks = tasks
        config = self._config
        self._seen = self._now()
        self._login_deadline = self._seen + config.login_timeout
        deadlines.watch(self, tasks, config.login_timeout, config.idle_timeout)
        transport = self._transport
        try:
            # The reading loop is written out here, not called: each coroutine frame
            # of an idle connection's wait costs 200-300 bytes (``bench.idlemem``).
            got: int | None = 1  # (see below)
            # The read scope, which a close cancels, is entered only once a handler
            # waits (from the start where a close cannot end a wait for the socket:
            # without the readiness set). Until then a close wakes a waiting read
            # (``_stop_reader``) and the loop ends at its next turn: a scope costs
            # ~30 k instructions to enter, and the handlers of a crowd's login and
            # join do not wait.
            if not transport.interruptible:
                self._enter_read_scope()
            # The task's innermost cancel scope (trio's record of it: no public call
            # tells it) while the loop holds none, for ``_scoped_from_now_on``.
            outer = trio.lowlevel.current_task()._cancel_status
            try:
                # Commands handled since this loop last gave way; -1 just after a
                # wait, which was a checkpoint (one local: each costs idle memory).
                streak = 0
                # Bytes the last read took (None: none were there). Less than it
                # asked for, the socket was empty then: the loop waits until it is
                # readable instead of reading again at once, which a client waiting
                # for each reply answers with EAGAIN (a system call and an OSError
                # per request). A hint only: the wait returns at once if bytes came
                # meanwhile. At first: the handshake's read of the head.
                while self._close is None and not self._shutting_down:
                    message = transport.next_message()  # ConnectionClosed at the end
                    if message is None:
                        if got is not None and 0 < got < RECEIVE_BYTES:
                            got = None
                        else:
                            if streak >= 0:  # (after a wait: read first, see
                                # Transport.wait_readable; the wait was a checkpoint)
                                await trio.lowlevel.checkpoint_if_cancelled()
                            got = transport.read_some()
                        if got is None:
                            try:  # not waited for in an ``except`` block (see receive)
                                await transport.wait_readable()
                            except (trio.BrokenResourceError, trio.ClosedResourceError):
                                transport.lost()
                            got = RECEIVE_BYTES  # readable: read at once
                            streak = -1
                        elif got and streak >= 0:  # a wait was a checkpoint already
                            await trio.lowlevel.cancel_shielded_checkpoint()
                            streak = 0
                        continue
                    pending = self._command(message)
                    message = None  # nothing read stays referenced while it waits
                    if pending is not None:
                        if self._read_scope is not None:
                            await self._run(*pending)
                        else:
                            waiting = _until_it_waits(self._run(*pending))
                            if waiting is not None:  # it waits: a close cancels it
                                await self._scoped_from_now_on(outer, *waiting)
                                waiting = None
                        pending = None
                    streak = 1 if streak < 0 else streak + 1
                    if streak == _STREAK:
                        # A handler need not be a checkpoint (a join, with all it
                        # needs in memory): many commands read at once give way
                        # to the other connections now and then.
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        streak = 0
            # As a ``with`` block around the loop would, for the read scope if it was
            # entered: only the scope's own cancellation ends here.
            except BaseException as exc:  # noqa: ASYNC103 (raised again but for it)
                scope = self._read_scope
                if scope is None or not scope.__exit__(type(exc), exc, exc.__traceback__):
                    raise
            else:
                if self._read_scope is not None:
                    self._read_scope.__exit__(None, None, None)
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
            try:
                with trio.move_on_after(self._config.handshake_timeout, shield=True):
                    await self._finish()
            finally:
                if ended is not None:
                    ended(self)

    async def _finish(self) -> None:
        """Sessions still open here ended without a logout: their wills are sent."""
        deadlines.forget(self)
        self._tasks = None  # no new writer task, and no room follows, from here on
        if self._room is not None:  # before the socket may close (and its number be reused)
            self._unfollow()
        await trio.lowlevel.checkpoint()
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
        self._pending = b""
