"""The WebSocket layer: handshake, inbound frames, and raw outbound writes.

The opening handshake is parsed and answered by the sans-I/O core of the
``websockets`` package (``ServerProtocol``); after it, frames are read by chatroom's
own ``FrameReader`` (protocol/framing.py), so that an open connection keeps no
protocol object and no parser generator (~1.4 KB each). The first versions used
trio-websocket, as the design card proposed; the benchmark showed its per-connection
cost (a reader task, a handler task, an internal nursery, a message channel, wsproto
and h11 state) at about twice the memory per idle connection of the Python
``websockets`` peer, and wsproto parses frames about five times slower (ecosystem.md
section 6). design.md section 3 kept the layer behind this one module so that it could
be swapped; nothing else imports ``websockets``.

Inbound: ``Transport.receive`` returns whole messages (text as ``str``, binary as
``bytes``), reassembling fragments; ``on_frames`` tells of every read that brought
frames, pings and pongs included; pongs and the reply to a client's close go out
through the connection's own outbound queue (``sink``), so they never cut into
a frame. Outbound data frames are pre-encoded by the caller (``ws_frame``) and written
with ``write_nowait`` (one non-blocking ``send``) or ``write`` (waiting).
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import sys
import termios
from collections.abc import Awaitable, Callable, Generator, Sequence
from functools import partial
from http import HTTPStatus

import trio
from websockets.exceptions import (
    HeaderLineTooLong,
    RequestLineTooLong,
    TooManyHeaders,
)
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol as WsSubprotocol

from chatroom.protocol.codec import Subprotocol, shown
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

log = logging.getLogger(__name__)

__all__ = [
    "ConnectionClosed",
    "RefusalLog",
    "Rejected",
    "Transport",
    "TransportBroken",
    "remote_of",
    "serve_websocket",
]

_RECEIVE_BYTES = 65536
# Bytes of a request head buffered before the protocol object is made. Browsers send
# well under 2 KiB; a longer head goes on to the parser, which enforces its limits.
_HEAD_BUFFER = 16384
_Frame = tuple[int, bool, bytes]  # opcode, fin, unmasked payload
_NO_PARTS: tuple[()] = ()  # shared by every connection not inside a fragmented message
_CLIENT_HEADER = 6  # bytes before a short client frame's payload (with its mask key)
_CLOSE_WAIT = 2.0  # seconds to wait for the client's half of the closing handshake
_LOGGED_CHARS = 100  # of a refused request's detail in the log line
# websockets logs every connection at INFO; ours are counted in statistics() instead.
_PROTOCOL_LOG = logging.getLogger("chatroom.net.transport.websockets")
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
        "_close",
        "_eof",
        "_events",
        "_fd",
        "_frame_size",
        "_kind",
        "_open",
        "_parts",
        "_reader",
        "_stream",
        "_writing",
        "on_frames",
        "sink",
    )

    def __init__(self, stream: trio.SocketStream, reader: FrameReader):
        self._stream = stream
        # Cached: only this class closes the socket, and it sets -1 first, so a
        # closed (and possibly reused) descriptor number is never written to.
        self._fd = stream.socket.fileno()
        # Frames only: the handshake's parser (websockets') is gone by now.
        self._reader = reader
        self._open = True  # no close frame sent or received yet
        self._close: tuple[int, str] | None = None  # the close received, else sent
        # True while ``write`` waits: ``write_nowait`` must not cut into its bytes. A
        # flag, not a lock (~340 bytes per connection): ``write`` runs once, to close.
        self._writing = False
        self._events: list[_Frame] = []  # data frames not yet handled; oldest last
        self._kind = OP_TEXT  # type of the message being reassembled
        self._parts: list[bytes] | tuple[()] = _NO_PARTS  # of a fragmented message
        self._eof = False
        self._frame_size = 64  # bytes per inbound frame, as last seen (for backlog)
        # Where protocol-generated frames (pongs, the close reply) go: the owner's
        # outbound queue, so that they never cut into a data frame. Until one is set
        # they are written directly.
        self.sink: Callable[[bytes], None] | None = None
        # Called when a read brought whole frames of any kind, control frames too
        # (``receive`` returns only messages): the owner's idle deadline.
        self.on_frames: Callable[[], None] | None = None

    # -- inbound ----------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message. Raises ``ConnectionClosed`` at the end."""
        while True:
            while self._events:
                message = self._handle(self._events.pop())
                if message is not None:
                    return message
            if self._eof or not self._open:
                raise ConnectionClosed(*self._close_info())
            # The socket is read here rather than through SocketStream.receive_some:
            # while a connection waits, that call chain keeps four more coroutine
            # frames and a context manager alive (~1.3 KB per idle connection).
            # Nothing read stays in a local of this coroutine while it waits.
            await trio.lowlevel.checkpoint_if_cancelled()
            data = _read(self._fd)
            if data is None:
                # Waited for outside any ``except`` block: a handled exception stays
                # alive while its handler awaits (~520 bytes per idle connection).
                try:
                    await trio.lowlevel.wait_readable(self._fd)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._eof = True  # closed by us meanwhile
                continue
            self._feed(data)
            if data:
                await trio.lowlevel.cancel_shielded_checkpoint()

    def _feed(self, data: bytes) -> None:
        """Parse what was read (``b""``: the end) into data frames, oldest last;
        answer pings and a close at once, as the protocol requires."""
        if not data:
            self._eof = True
            return
        if not self._open:
            return  # after a close, nothing more is read but its reply (``aclose``)
        frames, error = self._reader.feed(data)
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
            self._events = events + self._events
            if self.on_frames is not None:
                self.on_frames()
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
            self._events.clear()
            self._fail(1007, "invalid UTF-8 in a text frame")
            raise ConnectionClosed(1007, "invalid UTF-8") from None

    def _emit(self, data: bytes) -> None:
        """A control frame of ours: through the owner's queue once there is one."""
        if self.sink is not None:
            self.sink(data)
        else:
            self.write_nowait(data)

    # -- outbound ---------------------------------------------------------------------

    def write_nowait(self, data: bytes) -> int:
        """Write what the kernel takes right now; return the number of bytes written
        (0 when the socket buffer is full or a waiting write is in progress)."""
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
        try:
            await trio.lowlevel.wait_writable(self._stream.socket)
        except (trio.ClosedResourceError, OSError) as exc:
            raise TransportBroken(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the socket. The caller sets a deadline."""
        if self._writing:  # one ``write`` at a time: its caller never makes two
            raise TransportBroken("a write is under way")
        self._writing = True
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportBroken(str(exc)) from exc
        finally:
            self._writing = False

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
            with trio.move_on_after(_CLOSE_WAIT):
                while not self._eof and not await self._closing_read():
                    pass
        except (TransportBroken, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._eof = True
            self._fd = -1
            await self._stream.aclose()

    async def _closing_read(self) -> bool:
        """Read once while closing: whether the client's close frame came."""
        data = await self._stream.receive_some(_RECEIVE_BYTES)
        if not data:
            self._eof = True
            return False
        frames, error = self._reader.feed(data)
        return error is not None or any(frame[0] == OP_CLOSE for frame in frames)

    async def abort(self) -> None:
        """Close the socket without a closing handshake (the client sees 1006)."""
        self._fd = -1
        self._eof = True
        await self._stream.aclose()

    @property
    def closed(self) -> bool:
        return self._fd < 0 or self._stream.socket.fileno() < 0


# Picks the subprotocol: (offered names, request path) -> the choice (its ``name`` is
# echoed, None echoes nothing), or raise ``Rejected`` to refuse the handshake.
Chooser = Callable[[list[str], str], Subprotocol]
# A connection handler: (transport, the chooser's choice, remote address) -> None.
Handler = Callable[[Transport, Subprotocol, str], Awaitable[None]]
# Serves one accepted stream, given it and the plain server (stream, client's address).
Serve = Callable[[trio.SocketStream, str | None], Awaitable[None]]
Wrapper = Callable[[Serve, trio.SocketStream], Awaitable[None]]
# What a handshake ends with: the open WebSocket, a refusal to send, or nothing (the
# client left).
_Outcome = tuple[Transport, Subprotocol] | bytes | None


class Rejected(Exception):
    """Raised by a Chooser: refuse the handshake with HTTP 400 and this text."""


class RefusalLog:
    """Logs refused handshakes: at most one line per kind of failure every
    ``interval`` seconds, saying how many of that kind went unlogged since. A flood of
    bad requests costs a line a minute, not a line (or a traceback) each. Kinds come
    from a fixed set (exception classes, ``timeout``), so the table stays small."""

    __slots__ = ("_interval", "_kinds")

    def __init__(self, interval: float = 60.0):
        self._interval = interval
        self._kinds: dict[str, tuple[float, int]] = {}  # kind -> (logged at, unlogged)

    def note(self, kind: str, remote: str, detail: str) -> None:
        now = trio.current_time()
        last = self._kinds.get(kind)
        if last is not None and now - last[0] < self._interval:
            self._kinds[kind] = (last[0], last[1] + 1)
            return
        self._kinds[kind] = (now, 0)
        unlogged = last[1] if last is not None else 0
        log.info(
            "refused WebSocket handshake (%s) from %s: %s (%d more since the last such line)",
            kind,
            remote,
            shown(detail, _LOGGED_CHARS),
            unlogged,
        )


async def serve_websocket(
    handler: Handler,
    choose: Chooser,
    host: str,
    port: int,
    *,
    max_message_bytes: int,
    handshake_timeout: float,
    on_unserved: Callable[[], None] | None = None,
    wrap: Wrapper | None = None,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept WebSocket connections until cancelled; ``task_status`` gets the port.
    ``sock``, when given, is the listening socket to use (bound with SO_REUSEPORT,
    chatroom/net/listen.py) instead of one opened on ``host:port``.
    ``wrap`` (TLS, chatroom/net/tls.py) is given each accepted stream and the function
    that serves a plain one.
    ``on_unserved`` is called whenever a connection closes without reaching the
    handler (its handshake refused, abandoned or timed out).

    A request that is not a WebSocket handshake gets an HTTP error with a short text
    body (400; 414 or 431 for a request line or headers over 8 KiB; 426 without the
    upgrade headers) and is logged by ``RefusalLog``; so is a client that does not
    finish its handshake within ``handshake_timeout``."""
    if sock is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(sock))]
    bound = listeners[0].socket.getsockname()[1]
    accept = partial(
        _accept,
        handler=handler,
        choose=choose,
        max_message_bytes=max_message_bytes,
        handshake_timeout=handshake_timeout,
        refusals=RefusalLog(),
        on_unserved=on_unserved,
    )
    serve = accept if wrap is None else partial(wrap, accept)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, serve, listeners)
        task_status.started(bound)


async def _accept(
    stream: trio.SocketStream,
    remote: str | None = None,
    *,
    handler: Handler,
    choose: Chooser,
    max_message_bytes: int,
    handshake_timeout: float,
    refusals: RefusalLog,
    on_unserved: Callable[[], None] | None,
) -> None:
    """The opening handshake, then the handler. Every failure closes this socket only.
    ``remote`` names the client when the socket does not (behind TLS termination)."""
    remote = remote_of(stream) if remote is None else remote
    served = False
    try:
        with trio.move_on_after(handshake_timeout) as scope:
            outcome = await _handshake(stream, choose, max_message_bytes, refusals, remote)
        if scope.cancelled_caught:
            refusals.note("timeout", remote, f"none within {handshake_timeout:g} s")
            outcome = None
        if not isinstance(outcome, tuple):
            if outcome is not None:
                await _refuse(stream, outcome)
            await stream.aclose()
            return
        served = True
        transport, subprotocol = outcome
        del outcome  # the handshake's headers are not kept for the connection's life
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
    finally:
        if not served and on_unserved is not None:
            on_unserved()


def remote_of(stream: trio.SocketStream) -> str:
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "?"
    return f"{peer[0]}:{peer[1]}"


async def _refuse(stream: trio.SocketStream, response: bytes) -> None:
    """Send an HTTP refusal and end the stream, then read and drop what the client
    still sends for a moment before the socket is closed: closing with unread input
    resets the connection, and the client would lose the reply (it may be sending a
    1 MB header line). Bounded by ``_CLOSE_WAIT``."""
    with trio.move_on_after(_CLOSE_WAIT):
        await stream.send_all(response)
        await stream.send_eof()
        while await stream.receive_some(_RECEIVE_BYTES):
            pass


async def _handshake(
    stream: trio.SocketStream,
    choose: Chooser,
    max_message_bytes: int,
    refusals: RefusalLog,
    remote: str,
) -> _Outcome:
    # Until the head is complete a connection holds its bytes only: no protocol object,
    # no parsed headers. A flood of half-open handshakes then costs little and leaves
    # little behind to fragment the heap.
    head, ended = await _read_head(stream.socket.fileno())
    if not head:
        return None  # the client left without a word
    chosen: list[Subprotocol | None] = [None]

    def select(protocol: ServerProtocol, offered: Sequence[WsSubprotocol]) -> WsSubprotocol | None:
        name = chosen[0].name if chosen[0] is not None else None
        return None if name is None else WsSubprotocol(name)

    protocol = ServerProtocol(
        select_subprotocol=select, max_size=max_message_bytes, logger=_PROTOCOL_LOG
    )
    try:
        head_end = _HeadEnd()
        request = _parse(protocol, head_end, head)
        del head
        if request is None and protocol.handshake_exc is None and not ended:
            request = await _read_request(stream, protocol, head_end)  # over the cap
        if request is None:
            return _unparsed(protocol, remote, refusals)
        response = _respond(protocol, request, chosen, choose, remote, refusals)
        if chosen[0] is None:
            return response
        # Nearly always the kernel takes the 101 at once: no reschedule for it.
        sent = _write_some(stream.socket.fileno(), response)
        if sent < len(response):
            await stream.send_all(response[sent:])
        # From here on frames only, parsed by our reader: websockets' protocol object
        # (~1 KB with its parser) is not kept for the connection's life.
        transport = Transport(stream, FrameReader(max_message_bytes))
        if head_end.rest:
            transport._feed(head_end.rest)  # frames the client sent right after
        return transport, chosen[0]
    finally:
        _release(protocol)


async def _read_head(fd: int) -> tuple[bytes, bool]:
    """What the client sent up to the blank line that ends its request head (and what
    came in the same reads), or up to ``_HEAD_BUFFER`` bytes if it is not over by
    then; and whether the client ended the stream. Read from the descriptor itself: a
    connection waiting here keeps three coroutine frames, not the nine of
    ``SocketStream.receive_some``."""
    head = b""
    ended = waited = False
    while not ended and not _head_over(head):
        data = _read(fd)
        if data is None:
            await trio.lowlevel.wait_readable(fd)
            waited = True
            continue
        ended = not data
        head += data
    if not waited:  # a wait is a checkpoint: one reschedule less per connection
        await trio.lowlevel.checkpoint()
    return head, ended  # noqa: ASYNC910 (it waited, or checkpointed just above)


def _read(fd: int) -> bytes | None:
    """What the socket holds (``b""``: the end, a reset, or a closed socket; None:
    nothing yet)."""
    if fd < 0:
        return b""
    try:
        return os.read(fd, _RECEIVE_BYTES)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # reset: the same as the end of the stream


def _write_some(fd: int, data: bytes) -> int:
    """The bytes of ``data`` the socket takes now (0: none, or it is broken: the
    waiting write that follows finds out)."""
    try:
        return os.write(fd, data)
    except OSError:
        return 0


def _head_over(head: bytes) -> bool:
    # A blank line ends the head: CRLF CRLF, or bare LFs (which the parser refuses).
    return b"\n\r\n" in head or b"\n\n" in head or len(head) > _HEAD_BUFFER


class _HeadEnd:
    """Finds where a request head ends (CRLF CRLF) in the bytes read so far, so that
    the HTTP parser gets the head only and the frames after it go to the transport."""

    __slots__ = ("found", "rest", "tail")

    def __init__(self) -> None:
        self.tail = b""  # the last bytes given to the parser (a blank line may span)
        self.rest = b""  # what came after the head
        self.found = False

    def head_part(self, data: bytes) -> bytes:
        """The part of ``data`` that belongs to the head; the rest goes to ``rest``."""
        if self.found:
            self.rest += data
            return b""
        at = (self.tail + data).find(b"\r\n\r\n")
        if at < 0:
            self.tail = (self.tail + data)[-3:]
            return data
        self.found = True
        cut = at + 4 - len(self.tail)
        self.rest = data[cut:]
        return data[:cut]


def _parse(protocol: ServerProtocol, head_end: _HeadEnd, data: bytes) -> Request | None:
    """Feed the head's part of ``data`` to the protocol; the request, once parsed.
    None: more is needed, or the request is invalid (see ``handshake_exc``)."""
    protocol.receive_data(head_end.head_part(data))
    request: Request | None = None
    for event in protocol.events_received():
        if isinstance(event, Request):
            request = event
    return request


async def _read_request(
    stream: trio.SocketStream, protocol: ServerProtocol, head_end: _HeadEnd
) -> Request | None:
    """The rest of a request head longer than ``_HEAD_BUFFER`` (None: the client left,
    or sent something else than an HTTP request: see ``handshake_exc``)."""
    while True:
        data = await stream.receive_some(_RECEIVE_BYTES)
        if not data:
            return None
        request = _parse(protocol, head_end, data)
        if request is not None or protocol.handshake_exc is not None:
            return request


def _unparsed(protocol: ServerProtocol, remote: str, refusals: RefusalLog) -> bytes | None:
    """The refusal of a request that could not be parsed (None: the client left).
    Built here rather than by the protocol, which answers only some of these."""
    exc = protocol.handshake_exc
    if exc is None:
        return None
    if isinstance(exc, RequestLineTooLong):
        status, text = HTTPStatus.REQUEST_URI_TOO_LONG, "request line too long"
    elif isinstance(exc, HeaderLineTooLong | TooManyHeaders):
        status, text = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header fields too large"
    else:
        status, text = HTTPStatus.BAD_REQUEST, "not an HTTP request"
    cause = exc.__cause__ or exc
    refusals.note(type(exc).__name__, remote, f"{int(status)} {text}: {cause}")
    body = f"{text}\n".encode()
    head = (
        f"HTTP/1.1 {int(status)} {status.phrase}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _respond(
    protocol: ServerProtocol,
    request: Request,
    chosen: list[Subprotocol | None],
    choose: Chooser,
    remote: str,
    refusals: RefusalLog,
) -> bytes:
    """The response to a parsed request: 101, or a refusal (logged); ``chosen[0]``
    is left None for a refusal."""
    offered = [
        name.strip()
        for header in request.headers.get_all("Sec-WebSocket-Protocol")
        for name in header.split(",")
        if name.strip()
    ]
    kind = None
    try:
        chosen[0] = choose(offered, request.path)
        response = protocol.accept(request)
    except Rejected as exc:
        kind, response = "Rejected", protocol.reject(400, f"{exc}\n")
    protocol.send_response(response)
    if response.status_code != 101:
        chosen[0] = None
        # No local holds the error: its traceback's frames link back to this one.
        if kind is None:
            kind = type(protocol.handshake_exc or response).__name__
        detail = f"{response.status_code} {response.body.decode(errors='replace').strip()}"
        refusals.note(kind, remote, detail)
        request._exception = None  # its traceback holds the request: a cycle
    return b"".join(protocol.data_to_send())


def _release(protocol: ServerProtocol) -> None:
    """Break the protocol's reference cycles, so that reference counting frees it at
    once: its parser generator and its bound subprotocol callback refer back to it,
    and a handshake error's traceback holds the parser's frames. Left to the cycle
    collector they would wait for a full pass, since gcpolicy freezes what lives over
    a second, as a half-open handshake does (about 4 KB each, until 15 minutes)."""
    protocol.parser = _spent_parser()
    protocol.__dict__.pop("select_subprotocol", None)
    protocol.handshake_exc = None


def _spent_parser() -> Generator[None, None, None]:
    """A parser that ignores everything: after ``_release`` nothing is parsed."""
    while True:
        yield
