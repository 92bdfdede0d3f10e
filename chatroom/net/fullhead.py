"""The WebSocket opening handshake through the sans-I/O core of the ``websockets``
package (``ServerProtocol``): every request head that quickhead.py leaves, refusals
included. The protocol object is released as soon as the handshake ends: an open
connection keeps none (transport.py). With handshake.py and transport.py, the
WebSocket layer of design.md section 3; nothing else imports ``websockets``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
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

from chatroom.net.listen import Stream
from chatroom.net.transport import RECEIVE_BYTES
from chatroom.protocol.codec import Subprotocol, shown

__all__ = ["Chooser", "RefusalLog", "Rejected", "parse_fully"]

# The refusal log keeps the name it had before the handshake had a module of its own:
# operators filter on it.
log = logging.getLogger("chatroom.net.transport")

_LOGGED_CHARS = 100  # of a refused request's detail in the log line
# websockets logs every connection at INFO; ours are counted in statistics() instead.
_PROTOCOL_LOG = logging.getLogger("chatroom.net.transport.websockets")
_PROTOCOL_LOG.setLevel(logging.WARNING)

# Picks the subprotocol: (offered names, request path) -> the choice (its ``name`` is
# echoed, None echoes nothing), or raise ``Rejected`` to refuse the handshake.
Chooser = Callable[[list[str], str], Subprotocol]
# The 101 to send, the bytes after the head (the first frames) and the subprotocol; or
# a refusal to send; or nothing (the client left).
Parsed = tuple[bytes, bytes, Subprotocol] | bytes | None


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


async def parse_fully(
    stream: Stream,
    head: bytes,
    ended: bool,
    choose: Chooser,
    max_message_bytes: int,
    refusals: RefusalLog,
    remote: str,
) -> Parsed:
    """Parse ``head`` (and, past its cap, the rest of it from ``stream``) and answer it.
    ``ended``: the client ended the stream after ``head``."""
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
        result: Parsed
        if request is None:
            result = _unparsed(protocol, remote, refusals)
        else:
            response = _respond(protocol, request, chosen, choose, remote, refusals)
            result = response if chosen[0] is None else (response, head_end.rest, chosen[0])
    finally:
        _release(protocol)
    return result  # noqa: ASYNC910 (its caller waited for the head, or its task just started)


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
    stream: Stream, protocol: ServerProtocol, head_end: _HeadEnd
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
