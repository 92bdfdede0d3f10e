"""The WebSocket layer: handshake, inbound frames, and raw outbound writes.

Built on the sans-I/O core of the ``websockets`` package (``ServerProtocol``) driven by
Trio streams. The first versions used trio-websocket, as the design card proposed; the
benchmark showed its per-connection cost (a reader task, a handler task, an internal
nursery, a message channel, wsproto and h11 state) at about twice the memory per idle
connection of the Python ``websockets`` peer, and wsproto parses frames about five
times slower (ecosystem.md section 6). design.md section 3 kept the layer behind this
one module so that it could be swapped; nothing else imports ``websockets``.

Inbound: ``Transport.receive`` returns whole messages (text as ``str``, binary as
``bytes``), reassembling fragments; pongs and the reply to a client's close go out
through the connection's own outbound queue (``control_sink``), so they never cut into
a frame. Outbound data frames are pre-encoded by the caller (``ws_frame``) and written
with ``write_nowait`` (one non-blocking ``send``) or ``write`` (waiting).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import termios
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import trio
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol as WsSubprotocol

from chatroom.protocol.codec import Subprotocol

log = logging.getLogger(__name__)

__all__ = [
    "ConnectionClosed",
    "Rejected",
    "Transport",
    "TransportBroken",
    "serve_websocket",
]

_RECEIVE_BYTES = 65536
_NO_PARTS: tuple[()] = ()  # shared by every connection not inside a fragmented message
_CLIENT_HEADER = 6  # bytes before a short client frame's payload (with its mask key)
_CLOSE_WAIT = 2.0  # seconds to wait for the client's half of the closing handshake
# websockets logs every connection at INFO; ours are counted in statistics() instead.
_PROTOCOL_LOG = logging.getLogger("chatroom.transport.websockets")
_PROTOCOL_LOG.setLevel(logging.WARNING)


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
        "_eof",
        "_events",
        "_fd",
        "_frame_size",
        "_kind",
        "_lock",
        "_parts",
        "_protocol",
        "_stream",
        "sink",
    )

    def __init__(self, stream: trio.SocketStream, protocol: ServerProtocol):
        self._stream = stream
        # Cached: only this class closes the socket, and it sets -1 first, so a
        # closed (and possibly reused) descriptor number is never written to.
        self._fd = stream.socket.fileno()
        self._protocol = protocol
        self._lock = trio.StrictFIFOLock()
        self._events: list[object] = []  # received, not yet handled; oldest last
        self._kind: Opcode | None = None  # type of the message being reassembled
        self._parts: list[bytes] | tuple[()] = _NO_PARTS  # of a fragmented message
        self._eof = False
        self._frame_size = 64  # bytes per inbound frame, as last seen (for backlog)
        # Where protocol-generated frames (pongs, the close reply) go: the owner's
        # outbound queue, so that they never cut into a data frame. Until one is set
        # they are written directly.
        self.sink: Callable[[bytes], None] | None = None

    # -- inbound ----------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message. Raises ``ConnectionClosed`` at the end."""
        protocol = self._protocol
        while True:
            while self._events:
                message = self._handle(self._events.pop())
                if message is not None:
                    return message
            if self._eof or protocol.state is not State.OPEN:
                raise ConnectionClosed(*self._close_info())
            # The socket is read here rather than through SocketStream.receive_some:
            # while a connection waits, that call chain keeps four more coroutine
            # frames and a context manager alive (~1.3 KB per idle connection).
            # Nothing read stays in a local of this coroutine while it waits.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                self._feed(os.read(self._fd, _RECEIVE_BYTES) if self._fd >= 0 else b"")
            except BlockingIOError:
                try:
                    await trio.lowlevel.wait_readable(self._fd)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._eof = True  # closed by us meanwhile
                continue
            except OSError:
                self._feed(b"")  # reset: the same as the end of the stream
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()

    def _feed(self, data: bytes) -> None:
        """Parse what was read (``b""``: the end) into events, oldest last."""
        protocol = self._protocol
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
            self._eof = True
        events = protocol.events_received()
        if events:
            # From the frames themselves: a read that ends inside a frame would
            # make bytes over frames (of this read) too small or too large.
            payload = sum(len(e.data) for e in events if isinstance(e, Frame))
            self._frame_size = payload // len(events) + _CLIENT_HEADER
            events.reverse()
            self._events = events + self._events
        self._emit_protocol_output()

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
        close = self._protocol.close_rcvd or self._protocol.close_sent
        if close is None:
            return 1006, "connection lost"
        return close.code, close.reason

    def _handle(self, event: object) -> str | bytes | None:
        if not isinstance(event, Frame):
            return None
        opcode = event.opcode
        if opcode is Opcode.CLOSE:
            self._events.clear()
            raise ConnectionClosed(*self._close_info())
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:  # unfragmented, nearly always: no reassembly list
                data = bytes(event.data)
                return data if opcode is Opcode.BINARY else self._text(data)
            self._kind = opcode
            self._parts = []
        elif opcode is not Opcode.CONT:
            return None  # ping (the protocol queued the pong) or pong
        if not isinstance(self._parts, list):
            return None  # a continuation of nothing (websockets fails the connection)
        self._parts.append(bytes(event.data))
        if not event.fin:
            return None
        data = b"".join(self._parts)
        self._parts = _NO_PARTS
        return data if self._kind is Opcode.BINARY else self._text(data)

    def _text(self, data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError:
            self._protocol.fail(1007, "invalid UTF-8 in a text frame")
            self._emit_protocol_output()
            raise ConnectionClosed(1007, "invalid UTF-8") from None

    def _emit_protocol_output(self) -> None:
        data = b"".join(self._protocol.data_to_send())
        if not data:
            return
        if self.sink is not None:
            self.sink(data)
        else:
            self.write_nowait(data)

    # -- outbound ---------------------------------------------------------------------

    def write_nowait(self, data: bytes) -> int:
        """Write what the kernel takes right now; return the number of bytes written
        (0 when the socket buffer is full or a waiting write is in progress)."""
        if self._lock.locked():
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
        try:
            await trio.lowlevel.wait_writable(self._stream.socket)
        except (trio.ClosedResourceError, OSError) as exc:
            raise TransportBroken(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the socket. The caller sets a deadline."""
        async with self._lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportBroken(str(exc)) from exc

    async def aclose(self, code: int, reason: str) -> None:
        """Send a close frame (unless closing already), half-close, wait briefly for
        the client to finish, then close the socket. The caller bounds it."""
        try:
            if self._protocol.state is State.OPEN:
                self._protocol.send_close(code, reason.encode()[:120].decode(errors="ignore"))
            data = b"".join(self._protocol.data_to_send())
            if data:
                await self.write(data)
            # Wait for the client's close frame before closing the socket: closing with
            # unread input would reset the connection and could lose what we sent.
            protocol = self._protocol
            with trio.move_on_after(_CLOSE_WAIT):
                while protocol.close_rcvd is None:
                    data = await self._stream.receive_some(_RECEIVE_BYTES)
                    if not data:
                        break
                    protocol.receive_data(data)
                    protocol.events_received()
                    protocol.data_to_send()
        except (TransportBroken, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except InvalidState:
            pass
        finally:
            self._eof = True
            self._fd = -1
            await self._stream.aclose()

    async def abort(self) -> None:
        """Close the socket without a closing handshake (the client sees 1006)."""
        self._fd = -1
        await self._stream.aclose()

    @property
    def closed(self) -> bool:
        return self._fd < 0 or self._stream.socket.fileno() < 0


# Picks the subprotocol: (offered names, request path) -> the choice (its ``name`` is
# echoed, None echoes nothing), or raise ``Rejected`` to refuse the handshake.
Chooser = Callable[[list[str], str], Subprotocol]
# A connection handler: (transport, the chooser's choice, remote address) -> None.
Handler = Callable[[Transport, Subprotocol, str], Awaitable[None]]


class Rejected(Exception):
    """Raised by a Chooser: refuse the handshake with HTTP 400 and this text."""


async def serve_websocket(
    handler: Handler,
    choose: Chooser,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    handshake_timeout: float,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket connections until cancelled; ``task_status`` gets the port."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    accept = partial(
        _accept,
        handler=handler,
        choose=choose,
        max_message_bytes=max_message_bytes,
        handshake_timeout=handshake_timeout,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, accept, listeners)
        task_status.started(bound)


async def _accept(
    stream: trio.SocketStream,
    *,
    handler: Handler,
    choose: Chooser,
    max_message_bytes: int,
    handshake_timeout: float,
) -> None:
    """The opening handshake, then the handler. Every failure closes this socket only."""
    try:
        with trio.move_on_after(handshake_timeout) as scope:
            opened = await _handshake(stream, choose, max_message_bytes)
        if scope.cancelled_caught or opened is None:
            await stream.aclose()
            return
        transport, subprotocol = opened
        del opened  # the handshake's headers are not kept for the connection's life
        try:
            peer = stream.socket.getpeername()
            remote = f"{peer[0]}:{peer[1]}"
        except OSError:
            remote = "?"
        try:
            await handler(transport, subprotocol, remote)
        finally:
            # Through the transport, so that its cached descriptor is retired first.
            with trio.CancelScope(shield=True):
                await transport.abort()
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.aclose()
    except Exception:
        log.exception("WebSocket connection failed")
        await stream.aclose()


async def _handshake(
    stream: trio.SocketStream, choose: Chooser, max_message_bytes: int
) -> tuple[Transport, Subprotocol] | None:
    chosen: list[Subprotocol | None] = [None]

    def select(protocol: ServerProtocol, offered: Sequence[WsSubprotocol]) -> WsSubprotocol | None:
        name = chosen[0].name if chosen[0] is not None else None
        return None if name is None else WsSubprotocol(name)

    protocol = ServerProtocol(
        select_subprotocol=select, max_size=max_message_bytes, logger=_PROTOCOL_LOG
    )
    request: Request | None = None
    early: list[object] = []  # frames that came in the same packets as the request
    while request is None:
        data = await stream.receive_some(_RECEIVE_BYTES)
        if not data:
            return None
        protocol.receive_data(data)
        for event in protocol.events_received():
            if isinstance(event, Request):
                request = event
            elif request is not None:
                early.append(event)
        if request is None and protocol.handshake_exc is not None:
            protocol.send_response(protocol.reject(400, "bad WebSocket handshake\n"))
            await stream.send_all(b"".join(protocol.data_to_send()))
            return None
    offered = [
        name.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol")
        for name in header.split(",")
        if name.strip()
    ]
    try:
        chosen[0] = choose(offered, request.path)
        response = protocol.accept(request)
    except Rejected as exc:
        response = protocol.reject(400, f"{exc}\n")
    protocol.send_response(response)
    await stream.send_all(b"".join(protocol.data_to_send()))
    if response.status_code != 101 or chosen[0] is None:
        return None
    _forget_handshake(protocol)
    transport = Transport(stream, protocol)
    early.reverse()
    transport._events = early
    return transport, chosen[0]


def _forget_handshake(protocol: ServerProtocol) -> None:
    """Let the request's headers go (about 2.6 KB per connection): the parser
    generator keeps the request in a local for the connection's life. A fresh parser
    in the OPEN state reads frames only; it is safe to swap while no frame is half
    read, i.e. while the reader's buffer is empty (relies on websockets 17.4, pinned)."""
    if not protocol.reader.buffer and protocol.state is State.OPEN:
        protocol.parser = protocol.parse()
        next(protocol.parser)
    # The subprotocol callback (a closure, bound to the protocol) is done with too.
    protocol.__dict__.pop("select_subprotocol", None)
