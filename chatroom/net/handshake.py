"""The WebSocket opening handshake: accepting connections, reading a request head,
answering it (101 or an HTTP refusal), and handing the open socket to a ``Transport``.

A plain upgrade request is read and answered by quickhead.py; any other head is
parsed and answered by the sans-I/O core of the ``websockets`` package
(``ServerProtocol``), which is released as soon as the handshake ends: an open
connection keeps no protocol object (transport.py). This module and transport.py are
the WebSocket layer of design.md section 3; nothing else imports ``websockets``.
"""

from __future__ import annotations

import logging
import os
import socket
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

from chatroom.net.listen import accept_all
from chatroom.net.quickhead import quick_request, switching
from chatroom.net.transport import CLOSE_WAIT, RECEIVE_BYTES, Transport, read_now
from chatroom.protocol.codec import Subprotocol, shown
from chatroom.protocol.framing import FrameReader

# The refusal log keeps the name it had before the handshake had a module of its own:
# operators filter on it.
log = logging.getLogger("chatroom.net.transport")

__all__ = [
    "Chooser",
    "Handler",
    "RefusalLog",
    "Rejected",
    "Serve",
    "Wrapper",
    "remote_of",
    "serve_websocket",
]

# Bytes of a request head buffered before the protocol object is made. Browsers send
# well under 2 KiB; a longer head goes on to the parser, which enforces its limits.
_HEAD_BUFFER = 16384
_LOGGED_CHARS = 100  # of a refused request's detail in the log line
# websockets logs every connection at INFO; ours are counted in statistics() instead.
_PROTOCOL_LOG = logging.getLogger("chatroom.net.transport.websockets")
_PROTOCOL_LOG.setLevel(logging.WARNING)


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
        for listener in listeners:
            nursery.start_soon(accept_all, listener.socket, serve, nursery)
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
    1 MB header line). Bounded by ``CLOSE_WAIT``."""
    with trio.move_on_after(CLOSE_WAIT):
        await stream.send_all(response)
        await stream.send_eof()
        while await stream.receive_some(RECEIVE_BYTES):
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
    quick = quick_request(head)
    if quick is not None:
        try:
            choice = choose(quick.offered, quick.path)
        except Rejected:
            pass  # refused by the full path below, which says why
        else:
            response = switching(quick.key, choice.name)
            return await _opened(stream, response, quick.rest, choice, max_message_bytes)
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
        return await _opened(stream, response, head_end.rest, chosen[0], max_message_bytes)
    finally:
        _release(protocol)


async def _opened(
    stream: trio.SocketStream,
    response: bytes,
    rest: bytes,
    chosen: Subprotocol,
    max_message_bytes: int,
) -> tuple[Transport, Subprotocol]:
    """Send the 101; the open WebSocket, given ``rest``, the bytes the client sent
    after its head (its first frames)."""
    # Nearly always the kernel takes the 101 at once: no reschedule for it.
    sent = _write_some(stream.socket.fileno(), response)
    if sent < len(response):
        await stream.send_all(response[sent:])
    # From here on frames only, parsed by our reader: websockets' protocol object
    # (~1 KB with its parser) is not kept for the connection's life.
    transport = Transport(stream, FrameReader(max_message_bytes))
    if rest:
        transport.feed(rest)
    return transport, chosen  # noqa: ASYNC910 (the caller read the head: see _read_head)


async def _read_head(fd: int) -> tuple[bytes, bool]:
    """What the client sent up to the blank line that ends its request head (and what
    came in the same reads), or up to ``_HEAD_BUFFER`` bytes if it is not over by
    then; and whether the client ended the stream. Read from the descriptor itself: a
    connection waiting here keeps three coroutine frames, not the nine of
    ``SocketStream.receive_some``.

    Not a checkpoint when the head was there at once (a crowd's clients send it before
    the server gets to them): the connection's task has just started, which was its
    reschedule, and what it does until its first read of frames is bounded (one head
    of at most ``_HEAD_BUFFER`` bytes, the 101): one reschedule less per connection."""
    head = b""
    ended = False
    while not ended and not _head_over(head):
        data = read_now(fd)
        if data is None:
            await trio.lowlevel.wait_readable(fd)
            continue
        ended = not data
        head += data
    return head, ended  # noqa: ASYNC910 (see above)


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
        data = await stream.receive_some(RECEIVE_BYTES)
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
