"""A connection's writer task, for while its socket refuses bytes, and the ``shed``
notices of a JSON client that lost frames.

``Writer`` is a part of ``Connection`` (net/connection.py), which holds the state these
methods use (its ``__slots__``) and writes what the socket takes at once
(``flush_nowait``): a base class with no state of its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from chatroom.config import Config
from chatroom.core.outbox import Outbox, Priority
from chatroom.net.transport import Transport, TransportBroken
from chatroom.protocol.codec import Codec
from chatroom.protocol.errors import CloseCode
from chatroom.protocol.framing import ws_frame

log = logging.getLogger("chatroom.net.connection")

FLUSH_BYTES = 256 * 1024  # most bytes handed to one system call
_SHED_NOTICE_EVERY = 1.0  # seconds: at most one ``shed`` notice per connection per this


class Writer:
    """The writer task of a ``Connection`` and its shed notices."""

    if not TYPE_CHECKING:  # mypy would hold the assignments to Connection's slots
        __slots__ = ()  # no state here, and no __dict__ per connection

    _transport: Transport
    _codec: Codec
    _config: Config
    _close: tuple[int, str] | None
    outbox: Outbox
    _pending: bytes
    _writer_busy: bool
    _tasks: trio.Nursery | None
    _writer_scope: trio.CancelScope | None
    _writer_done: trio.Event | None
    _shed_told: int
    _shed_next: float
    _shed_waiting: bool
    remote: str

    if TYPE_CHECKING:  # Connection's

        def close_soon(self, code: int, reason: str) -> None: ...

        def _enqueue(self, frame: bytes, priority: Priority) -> None: ...

    def _start_writer(self) -> None:
        """The socket refused part of a write (``_pending`` holds the rest): a writer
        task finishes it. A writer task exists only while a socket refuses bytes: an
        idle connection costs no task. Its scope and event are made here, not in the
        task, so that ``close_soon`` and ``_finish`` see them at once."""
        self._writer_busy = True
        if self._tasks is not None:
            deadline = trio.current_time() + self._config.write_timeout
            self._writer_scope = trio.CancelScope(deadline=deadline)
            if self._close is not None:
                self._writer_scope.cancel()
            self._writer_done = trio.Event()
            self._tasks.start_soon(self._writer, self._writer_scope, self._writer_done)

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
        while self._pending or self.outbox:
            if not self._pending:
                self._pending = b"".join(self.outbox.take(FLUSH_BYTES))
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
