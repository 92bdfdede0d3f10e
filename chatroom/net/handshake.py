"""The WebSocket opening handshake: accepting connections, reading a request head,
answering it (101 or an HTTP refusal), and handing the open socket to a ``Transport``.

A plain upgrade request is read and answered by quickhead.py, with no await and no
cancel scope when the head is there at once (as in a crowd); any other head goes to
fullhead.py, the sans-I/O core of the ``websockets`` package. These modules and
transport.py are the WebSocket layer of design.md section 3.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import trio

from chatroom.net import listen
from chatroom.net.fullhead import Chooser, RefusalLog, Rejected, parse_fully
from chatroom.net.listen import Stream, accept_all, close_now, fileno_of
from chatroom.net.quickhead import Upgrade, quick_request, switching
from chatroom.net.transport import CLOSE_WAIT, RECEIVE_BYTES, Transport, read_now
from chatroom.protocol.codec import Subprotocol
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
    "serve_websocket",
]

# Bytes of a request head buffered before the protocol object is made. Browsers send
# well under 2 KiB; a longer head goes on to the parser, which enforces its limits.
_HEAD_BUFFER = 16384

# A connection handler: (transport, the chooser's choice, remote address) -> None.
Handler = Callable[[Transport, Subprotocol, str], Awaitable[None]]
# Serves one accepted stream, given it and the client's address (host:port).
Serve = Callable[[Stream, str], Awaitable[None]]
# Serves one accepted stream (TLS), given the plain server and the client's address.
Wrapper = Callable[[Serve, trio.SocketStream, str], Awaitable[None]]
# What a handshake ends with: the open WebSocket, a refusal to send, or nothing (the
# client left).
_Outcome = tuple[Transport, Subprotocol] | bytes | None


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
    accept = _Acceptor(
        handler, choose, max_message_bytes, handshake_timeout, RefusalLog(), on_unserved
    ).serve  # one bound method for every connection
    # Behind TLS the accept loop hands out trio.SocketStreams only (``raw`` False).
    serve = accept if wrap is None else cast(listen.Serve, partial(wrap, accept))
    async with trio.open_nursery() as nursery:
        for listener in listeners:
            nursery.start_soon(accept_all, listener.socket, serve, nursery, wrap is None)
        task_status.started(bound)


class _Acceptor:
    """What every connection of one listener is served with.

    ``serve`` is each connection's task for as long as it lives, so its coroutine and
    frame are kept small (trio makes the frame object of every task's coroutine):
    the settings are here, not its arguments, and the handshake runs in ``_open``,
    whose frame is gone once the connection is served (~0.3 KB per connection less)."""

    __slots__ = (
        "choose",
        "handler",
        "handshake_timeout",
        "max_message_bytes",
        "on_unserved",
        "refusals",
    )

    def __init__(
        self,
        handler: Handler,
        choose: Chooser,
        max_message_bytes: int,
        handshake_timeout: float,
        refusals: RefusalLog,
        on_unserved: Callable[[], None] | None,
    ) -> None:
        self.handler = handler
        self.choose = choose
        self.max_message_bytes = max_message_bytes
        self.handshake_timeout = handshake_timeout
        self.refusals = refusals
        self.on_unserved = on_unserved

    async def serve(self, stream: Stream, remote: str) -> None:
        """The opening handshake, then the handler. Every failure closes this socket
        only. ``remote`` names the client (the accept loop has it from ``accept``;
        behind TLS termination the socket does not)."""
        served = False
        try:
            opened = await self._open(stream, remote)
            if opened is None:
                return
            served = True
            transport, subprotocol = opened
            del opened
            try:
                await self.handler(transport, subprotocol, remote)
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
            close_now(stream)  # a no-op if closed above; not if cancelled before that
            if not served and self.on_unserved is not None:
                self.on_unserved()

    async def _open(self, stream: Stream, remote: str) -> tuple[Transport, Subprotocol] | None:
        """The handshake: the open WebSocket, or None once it was refused (and told
        so), timed out or abandoned, and the stream closed."""
        start = _at_once(stream, self.choose, self.max_message_bytes)
        if isinstance(start, tuple):
            return start  # noqa: ASYNC910 (no wait, so no deadline needed: no cancel scope)
        with trio.move_on_after(self.handshake_timeout) as scope:
            outcome = await _handshake(
                stream, start, self.choose, self.max_message_bytes, self.refusals, remote
            )
        if scope.cancelled_caught:
            timeout = self.handshake_timeout
            self.refusals.note("timeout", remote, f"none within {timeout:g} s")
            outcome = None
        if isinstance(outcome, tuple):
            return outcome  # its headers are not kept for the connection's life
        if outcome is not None:
            await _refuse(stream, outcome)
        await stream.aclose()
        return None


async def _refuse(stream: Stream, response: bytes) -> None:
    """Send an HTTP refusal and end the stream, then read and drop what the client
    still sends for a moment before the socket is closed: closing with unread input
    resets the connection, and the client would lose the reply (it may be sending a
    1 MB header line). Bounded by ``CLOSE_WAIT``."""
    with trio.move_on_after(CLOSE_WAIT):
        await stream.send_all(response)
        await stream.send_eof()
        while await stream.receive_some(RECEIVE_BYTES):
            pass


@dataclass(slots=True)
class _Start:
    """What ``_at_once`` leaves to ``_handshake``: the bytes of the head read so far;
    or an open WebSocket whose 101 the kernel took only in part (``unsent``)."""

    head: bytes = b""
    unsent: bytes = b""
    opened: tuple[Transport, Subprotocol] | None = None


def _quick(head: bytes, choose: Chooser) -> tuple[Upgrade, Subprotocol] | None:
    """A plain upgrade request and its subprotocol, or None: the full path decides
    (and says why it refuses)."""
    quick = quick_request(head)
    if quick is None:
        return None
    try:
        return quick, choose(quick.offered, quick.path)
    except Rejected:
        return None


def _at_once(
    stream: Stream, choose: Chooser, max_message_bytes: int
) -> tuple[Transport, Subprotocol] | _Start:
    """The open WebSocket, when the client's head is there already (as in a crowd),
    plainly valid, and the kernel takes the 101 whole: with no await, the handshake
    needs no deadline. Otherwise what ``_handshake`` goes on from."""
    fd = fileno_of(stream)
    head, ended, complete = _read_ready(fd, b"")
    found = _quick(head, choose) if complete and not ended else None
    if found is None:
        return _Start(head)
    quick, choice = found
    response = switching(quick.key, choice.name)
    sent = _write_some(fd, response)
    if sent == 0:
        return _Start(head)  # nothing went: the full path writes it, or finds it broken
    opened = _transport(stream, quick.rest, choice, max_message_bytes)
    if sent < len(response):
        return _Start(unsent=response[sent:], opened=opened)
    return opened


async def _handshake(
    stream: Stream,
    start: _Start,
    choose: Chooser,
    max_message_bytes: int,
    refusals: RefusalLog,
    remote: str,
) -> _Outcome:
    if start.opened is not None:  # the rest of a 101 the kernel took in part
        await stream.send_all(start.unsent)
        return start.opened
    # Until the head is complete a connection holds its bytes only: no protocol object,
    # no parsed headers. A flood of half-open handshakes then costs little and leaves
    # little behind to fragment the heap.
    head, ended = await _read_head(fileno_of(stream), start.head)
    if not head:
        return None  # the client left without a word
    found = _quick(head, choose)
    if found is not None:
        quick, choice = found
        response = switching(quick.key, choice.name)
        return await _opened(stream, response, quick.rest, choice, max_message_bytes)
    parsed = await parse_fully(stream, head, ended, choose, max_message_bytes, refusals, remote)
    if not isinstance(parsed, tuple):
        return parsed  # a refusal to send, or nothing (the client left)
    response, rest, chosen = parsed
    return await _opened(stream, response, rest, chosen, max_message_bytes)


async def _opened(
    stream: Stream,
    response: bytes,
    rest: bytes,
    chosen: Subprotocol,
    max_message_bytes: int,
) -> tuple[Transport, Subprotocol]:
    """Send the 101; the open WebSocket, given ``rest``, the bytes the client sent
    after its head (its first frames)."""
    # Nearly always the kernel takes the 101 at once: no reschedule for it.
    sent = _write_some(fileno_of(stream), response)
    if sent < len(response):
        await stream.send_all(response[sent:])
    return _transport(stream, rest, chosen, max_message_bytes)  # noqa: ASYNC910 (see _read_head)


def _transport(
    stream: Stream, rest: bytes, chosen: Subprotocol, max_message_bytes: int
) -> tuple[Transport, Subprotocol]:
    # From here on frames only, parsed by our reader: websockets' protocol object
    # (~1 KB with its parser) is not kept for the connection's life.
    transport = Transport(stream, FrameReader(max_message_bytes))
    if rest:
        transport.feed(rest)
    return transport, chosen


async def _read_head(fd: int, head: bytes) -> tuple[bytes, bool]:
    """``head`` and what the client sends after it, up to the blank line that ends its
    request head (and what came in the same reads), or up to ``_HEAD_BUFFER`` bytes if
    it is not over by then; and whether the client ended the stream. Read from the
    descriptor itself: a connection waiting here keeps three coroutine frames, not the
    nine of ``SocketStream.receive_some``.

    Not a checkpoint when the head was there at once: the connection's task has just
    started, which was its reschedule, and what it does until its first read of frames
    is bounded (one head of at most ``_HEAD_BUFFER`` bytes, the 101)."""
    while True:
        head, ended, complete = _read_ready(fd, head)
        if complete:
            return head, ended  # noqa: ASYNC910 (see above)
        await trio.lowlevel.wait_readable(fd)


def _read_ready(fd: int, head: bytes) -> tuple[bytes, bool, bool]:
    """``head`` and what the client sent since, read until the head is over or nothing
    more is there now; whether the client ended the stream; whether the head is
    complete (over, or ended)."""
    while not head or not _head_over(head):  # (none yet, as nearly always: read)
        data = read_now(fd)
        if data is None:
            return head, False, False
        if not data:
            return head, True, True
        head += data
    return head, False, True


def _write_some(fd: int, data: bytes) -> int:
    """The bytes of ``data`` the socket takes now (0: none, or it is broken: the
    waiting write that follows finds out)."""
    try:
        return os.write(fd, data)
    except OSError:
        return 0


def _head_over(head: bytes) -> bool:
    # A blank line ends the head: CRLF CRLF, or bare LFs (which the parser refuses).
    # ``find``, not ``in``: ``bytes in bytes`` first tries its operand as an integer,
    # and makes and drops a TypeError each time.
    return head.find(b"\n\r\n") >= 0 or head.find(b"\n\n") >= 0 or len(head) > _HEAD_BUFFER
