"""The WebSocket layer after the handshake (handshake.py): inbound frames, and raw
outbound writes.

The opening handshake is parsed and answered by the sans-I/O core of the
``websockets`` package (handshake.py); after it, frames are read by chatroom's
own ``FrameReader`` (protocol/framing.py), so that an open connection keeps no
protocol object and no parser generator (~1.4 KB each). The first versions used
trio-websocket, as the design card proposed; the benchmark showed its per-connection
cost (a reader task, a handler task, an internal nursery, a message channel, wsproto
and h11 state) at about twice the memory per idle connection of the Python
``websockets`` peer, and wsproto parses frames about five times slower (ecosystem.md
section 6). design.md section 3 kept the layer behind one module so that it could be
swapped; it is two now, this one and handshake.py, and nothing else imports
``websockets``.

Inbound: ``Transport.receive`` returns whole messages (text as ``str``, binary as
``bytes``), reassembling fragments; its ``owner`` (the connection) is told of every
read that brought frames, pings and pongs included (``frames_read``); pongs and the
reply to a client's close go out through the owner's outbound queue
(``control_frames``), so they never cut into a frame. Outbound data frames are
pre-encoded by the caller (``ws_frame``) and written with ``write_nowait`` (one
non-blocking ``send``) or ``write`` (waiting).
"""

from __future__ import annotations

import fcntl
import os
import sys
import termios
from collections.abc import Awaitable
from typing import Protocol

import trio

from chatroom.net import readiness as _readiness
from chatroom.net.listen import Stream, fileno_of
from chatroom.protocol.framing import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameError,
    FrameReader,
    close_frame,
    close_payload,
    control_frame,
)

__all__ = [
    "CLOSE_WAIT",
    "RECEIVE_BYTES",
    "ConnectionClosed",
    "Transport",
    "TransportBroken",
    "read_now",
]

RECEIVE_BYTES = 65536
_Frame = tuple[int, bool, bytes]  # opcode, fin, unmasked payload
_NO_PARTS: tuple[()] = ()  # shared by every connection not inside a fragmented message
_NO_EVENTS: tuple[()] = ()  # shared by every connection with no frame left to handle
_CLIENT_HEADER = 6  # bytes before a short client frame's payload (with its mask key)
CLOSE_WAIT = 2.0  # seconds to wait for the client's half of the closing handshake


class Owner(Protocol):
    """What a transport tells its connection (one reference: no bound method objects
    kept per connection)."""

    def control_frames(self, frames: bytes) -> None:
        """Pongs and the reply to a client's close, to queue in order with the rest."""

    def frames_read(self) -> None:
        """A read brought whole frames of any kind (control frames too)."""


class ConnectionClosed(Exception):
    """The WebSocket is closed; ``code`` is the close code received or sent (1006 when
    the TCP connection ended without a closing handshake)."""

    def __init__(self, code: int, reason: str = ""):
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}".strip())


class TransportBroken(Exception):
    """The socket can no longer be written (reset, closed)."""


class Transport:
    """Inbound messages and outbound pre-encoded frames of one WebSocket."""

    __slots__ = (
        "_close",
        "_eof",
        "_events",
        "_fd",
        "_frame_size",
        "_kind",
        "_open",
        "_parts",
        "_reader",
        "_readiness",
        "_stream",
        "_writing",
        "owner",
    )

    def __init__(self, stream: Stream, reader: FrameReader):
        self._stream = stream
        # Cached: only this class closes the socket, and it sets -1 first, so a
        # closed (and possibly reused) descriptor number is never written to.
        self._fd = fileno_of(stream)
        # The run's edge-triggered epoll set, which watches this socket from now until
        # it closes (net/readiness.py); None: waits go through trio's.
        ready = _readiness.current()
        self._readiness = ready if ready is not None and ready.add(self._fd) else None
        # Frames only: the handshake's parser (websockets') is gone by now.
        self._reader = reader
        self._open = True  # no close frame sent or received yet
        self._close: tuple[int, str] | None = None  # the close received, else sent
        # True while ``write`` waits: ``write_nowait`` must not cut into its bytes. A
        # flag, not a lock (~340 bytes per connection): ``write`` runs once, to close.
        self._writing = False
        # Data frames not yet handled, oldest last (none: the shared empty tuple).
        self._events: list[_Frame] | tuple[()] = _NO_EVENTS
        self._kind = OP_TEXT  # type of the message being reassembled
        self._parts: list[bytes] | tuple[()] = _NO_PARTS  # of a fragmented message
        self._eof = False
        self._frame_size = 64  # bytes per inbound frame, as last seen (for backlog)
        # Told of every read that brought frames (its idle deadline) and handed the
        # frames the protocol makes (pongs, the close reply), for its outbound queue
        # so that they never cut into a data frame. Until one is set they are written
        # directly.
        self.owner: Owner | None = None

    # -- inbound ----------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message. Raises ``ConnectionClosed`` at the end. (A connection
        runs the same steps in its own loop: one coroutine frame less while idle.)"""
        waited = False
        while True:
            message = self.next_message()
            if message is not None:
                # Read already (that read was a checkpoint): returned without another.
                return message  # noqa: ASYNC910
            await trio.lowlevel.checkpoint_if_cancelled()
            got = self.read_some()
            if got is None:
                # Waited for outside any ``except`` block: a handled exception stays
                # alive while its handler awaits (~520 bytes per idle connection).
                try:
                    await self.wait_readable()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.lost()
                waited = True
            elif got and not waited:  # a wait was a checkpoint: one reschedule less
                await trio.lowlevel.cancel_shielded_checkpoint()

    def next_message(self) -> str | bytes | None:
        """The next whole message already read, or None when the socket must be read
        first (``read_some``). Raises ``ConnectionClosed`` at the end."""
        events = self._events
        while events:
            frame = events.pop()
            if not events:
                self._events = _NO_EVENTS  # no empty list kept while idle
            if frame[0] == OP_BINARY and frame[1]:
                return frame[2]  # a whole binary message (``_handle``'s first case)
            message = self._handle(frame)
            if message is not None:
                return message
        if self._eof or not self._open:
            raise ConnectionClosed(*self._close_info())
        return None

    def read_some(self) -> int | None:
        """Read what the socket holds now, without waiting: the bytes read (0 at its
        end), or None when it holds nothing yet (wait until it is readable).

        The socket is read here rather than through SocketStream.receive_some: while
        a connection waits, that call chain keeps four more coroutine frames and a
        context manager alive (~1.3 KB per idle connection)."""
        data = read_now(self._fd)
        if data is None:
            return None
        self.feed(data)
        return len(data)

    def wait_readable(self) -> Awaitable[None]:
        """Until the socket has bytes (or its end) that came since the last read (a
        checkpoint). ``trio.ClosedResourceError`` if it is closed meanwhile. Not a
        coroutine of its own (one frame less while a connection waits): the caller
        awaits what it returns. The set is edge-triggered: a caller that waits before
        reading (``Connection.serve``, after a short read) reads once a wait returned,
        before any other checkpoint, lest a cancellation leave bytes no event tells
        of again."""
        if self._readiness is None:
            return trio.lowlevel.wait_readable(self._fd)  # noqa: ASYNC105
        return self._readiness.wait_readable(self._fd, self._wait_cancelled)

    @property
    def interruptible(self) -> bool:
        """Whether ``interrupt`` can end a wait (the run's readiness set watches the
        socket); else only a cancel scope can."""
        return self._readiness is not None

    def interrupt(self) -> bool:
        """End a ``wait_readable`` under way (it returns as if bytes came): whether one
        was. Only when ``interruptible``."""
        return self._readiness is not None and self._readiness.interrupt(self._fd)

    def _wait_cancelled(self, _: object) -> trio.lowlevel.Abort:
        assert self._readiness is not None  # only its waits are given this
        return self._readiness.cancelled(self._fd)

    def _forget(self) -> None:
        """The socket is about to close: no wait may outlive it."""
        if self._readiness is not None and self._fd >= 0:
            self._readiness.forget(self._fd)
        self._fd = -1

    def lost(self) -> None:
        """The socket was closed (by us) while a read waited for it."""
        self._eof = True

    def feed(self, data: bytes) -> None:
        """Parse what was read (``b""``: the end) into data frames, oldest last;
        answer pings and a close at once, as the protocol requires."""
        if not data:
            self._eof = True
            return
        if not self._open:
            return  # after a close, nothing more is read but its reply (``aclose``)
        frames, error = self._reader.feed(data)
        if len(frames) == 1 and error is None and not self._events:
            frame = frames[0]
            if frame[0] < OP_CLOSE:  # one data frame (nearly every read): the list is
                # the events as they are, oldest last
                self._frame_size = len(frame[2]) + _CLIENT_HEADER
                self._events = frames
                if self.owner is not None:
                    self.owner.frames_read()
                return
        if frames:
            events: list[_Frame] = []
            payload = 0
            for frame in frames:
                opcode = frame[0]
                payload += len(frame[2])
                if opcode == OP_PING:
                    self._emit(control_frame(OP_PONG, frame[2]))
                elif opcode == OP_CLOSE:
                    try:
                        self._close = close_payload(frame[2])
                    except FrameError as exc:
                        error = exc
                        break
                    self._open = False
                    self._eof = True  # the client sends nothing after its close
                    self._emit(close_frame(*self._close))  # the echo
                    break  # nothing after a close counts
                elif opcode != OP_PONG:
                    events.append(frame)
            # From the frames themselves: a read that ends inside a frame would
            # make bytes over frames (of this read) too small or too large.
            self._frame_size = payload // len(frames) + _CLIENT_HEADER
            events.reverse()
            if self._events:
                events.extend(self._events)
            if events:
                self._events = events
            if self.owner is not None:
                self.owner.frames_read()
        if error is not None:
            self._fail(error.code, error.reason)

    def _fail(self, code: int, reason: str) -> None:
        """Close for a protocol violation: the close frame goes out, nothing more is
        read; ``receive`` raises once the messages before the violation are out."""
        if self._open:
            self._open = False
            self._close = (code, reason)
            self._emit(close_frame(code, reason))

    @property
    def backlog(self) -> int:
        """Frames received and not yet handed out by ``receive``: those already read,
        and an estimate of those still in the kernel's receive queue (its bytes over
        the size of the frames last read). A sender the server cannot keep up with
        fills that queue first; without it the backlog would look like one read."""
        return len(self._events) + self._unread_bytes() // self._frame_size

    def _unread_bytes(self) -> int:
        if self._fd < 0:
            return 0
        try:
            raw = fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(raw, sys.byteorder, signed=True)

    def _close_info(self) -> tuple[int, str]:
        return (1006, "connection lost") if self._close is None else self._close

    def _handle(self, frame: _Frame) -> str | bytes | None:
        """The message a data frame completes, if any (the reader checked the order
        of fragments)."""
        opcode, fin, data = frame
        if opcode != OP_CONT:
            if fin:  # unfragmented, nearly always: no reassembly list
                return data if opcode == OP_BINARY else self._text(data)
            self._kind = opcode
            self._parts = []
        if not isinstance(self._parts, list):
            return None  # never: the reader refuses a continuation of nothing
        self._parts.append(data)
        if not fin:
            return None
        data = b"".join(self._parts)
        self._parts = _NO_PARTS
        return data if self._kind == OP_BINARY else self._text(data)

    def _text(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError:
            self._events = _NO_EVENTS
            self._fail(1007, "invalid UTF-8 in a text frame")
            raise ConnectionClosed(1007, "invalid UTF-8") from None

    def _emit(self, data: bytes) -> None:
        """A control frame of ours: through the owner's queue once there is one."""
        if self.owner is not None:
            self.owner.control_frames(data)
        else:
            self.write_nowait(data)

    # -- outbound ---------------------------------------------------------------------

    @property
    def fileno(self) -> int:
        """The socket's number (-1 once closed)."""
        return self._fd

    def write_nowait(self, data: bytes | memoryview) -> int:
        """Write what the kernel takes right now; return the number of bytes written
        (0 when the socket buffer is full or a waiting write is in progress);
        ``TransportBroken`` if the socket is closed or broken."""
        if self._writing:
            return 0
        if self._fd < 0:
            raise TransportBroken("socket closed")
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise TransportBroken(str(exc)) from exc

    async def wait_writable(self) -> None:
        """Until the socket takes more bytes (or is closed)."""
        if self._fd < 0:
            await trio.lowlevel.checkpoint()
            raise TransportBroken("socket closed")
        try:
            await trio.lowlevel.wait_writable(self._fd)
        except (trio.ClosedResourceError, OSError) as exc:
            raise TransportBroken(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the socket. The caller sets a deadline.
        (On the descriptor, as ``SocketStream.send_all`` would: a stream of the
        accept loop then never makes its socket objects, net/listen.py.)"""
        if self._writing:  # one ``write`` at a time: its caller never makes two
            raise TransportBroken("a write is under way")
        await trio.lowlevel.checkpoint_if_cancelled()
        rest = memoryview(data)  # what is left, without a copy per partial write
        sent = self.write_nowait(rest)
        if sent == len(rest):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while sent < len(rest):
            rest = rest[sent:]
            # While it waits, nothing else may write (``write_nowait`` writes nothing);
            # between its wake-up and its own write there is no checkpoint.
            self._writing = True
            try:
                await self.wait_writable()
            finally:
                self._writing = False
            sent = self.write_nowait(rest)

    async def aclose(self, code: int, reason: str) -> None:
        """Send a close frame (unless closing already), half-close, wait briefly for
        the client to finish, then close the socket. The caller bounds it."""
        try:
            if self._open:
                self._open = False
                self._close = (code, reason)
                await self.write(close_frame(code, reason))
            # Wait for the client's close frame before closing the socket: closing with
            # unread input would reset the connection and could lose what we sent.
            with trio.move_on_after(CLOSE_WAIT):
                while not self._eof and not await self._closing_read():
                    pass
        except (TransportBroken, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._eof = True
            self._forget()
            await self._stream.aclose()

    async def _closing_read(self) -> bool:
        """Read once while closing: whether the client's close frame came."""
        await trio.lowlevel.checkpoint_if_cancelled()
        data = read_now(self._fd)
        if data is None:
            try:
                await self.wait_readable()
            except trio.ClosedResourceError:
                data = b""
            else:
                data = read_now(self._fd)
        if data is None:
            return False  # nothing after all: read again
        if not data:
            self._eof = True
            return False
        # Past a protocol error the reader skips to the next frame it can trust (or
        # reads nothing more), so a refused frame's rest is not taken for the close.
        frames, _ = self._reader.feed(data)
        return any(frame[0] == OP_CLOSE for frame in frames)

    async def abort(self) -> None:
        """Close the socket without a closing handshake (the client sees 1006)."""
        self._forget()
        self._eof = True
        await self._stream.aclose()

    @property
    def closed(self) -> bool:
        return self._fd < 0 or fileno_of(self._stream) < 0


def read_now(fd: int) -> bytes | None:
    """What the socket holds (``b""``: the end, a reset, or a closed socket; None:
    nothing yet)."""
    if fd < 0:
        return b""
    try:
        return os.read(fd, RECEIVE_BYTES)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # reset: the same as the end of the stream
