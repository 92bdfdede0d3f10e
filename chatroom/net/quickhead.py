"""A fast path for the common WebSocket opening handshake, without a general HTTP parser.

``quick_request`` reads a request head that is plainly a valid WebSocket upgrade: a
``GET ... HTTP/1.1`` line, at most ``_MAX_LINES`` header lines of plain ASCII, no
header given twice, no body, the upgrade headers as RFC 6455 asks. Anything else (a
refusal to send, an odd but legal header, a long or unusual head) returns None and
goes to the full parser of ``websockets`` in handshake.py, which then decides exactly
as before. So the fast path never refuses anything and accepts only what the full
parser accepts; ``tests/net/test_quickhead.py`` checks it gives the same 101 byte for
byte. Pure: no I/O, no trio.
"""

from __future__ import annotations

import binascii
import email.utils
import hashlib
import re
import time
from dataclasses import dataclass

__all__ = ["Upgrade", "quick_request", "switching"]

_MAX_HEAD = 4096  # bytes of head taken here; longer ones go to the full parser
_MAX_LINES = 32
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_REQUEST_LINE = re.compile(rb"GET ([\x21-\x7e]+) HTTP/1\.1\r\n")
# Header lines of a token, a colon and printable ASCII (the parser takes more: tabs,
# Latin-1), each ended by CRLF; and the name and value (spaces around it cut) of one.
_LINES = re.compile(rb"(?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\x20-\x7e]*\r\n)*")
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_NEEDED = frozenset({b"connection", b"upgrade", b"sec-websocket-key", b"sec-websocket-version"})
_BODY = frozenset({b"transfer-encoding", b"content-length"})


@dataclass(slots=True)
class Upgrade:
    """A valid upgrade request: what the chooser and the 101 need, and the bytes the
    client sent after its head (its first frames)."""

    path: str
    offered: list[str]
    key: bytes
    rest: bytes


def _tokens(value: bytes) -> list[bytes] | None:
    """The items of a comma-separated list of tokens; None if it is anything else."""
    if _TOKEN.fullmatch(value):
        return [value]  # one token (as nearly always): no split
    items = [item.strip(b" \t") for item in value.split(b",")]
    return items if all(_TOKEN.fullmatch(item) for item in items) else None


def _fields(lines: bytes) -> dict[bytes, bytes] | None:
    """The header lines by lower-case name; None for anything unusual."""
    if lines.count(b"\n") > _MAX_LINES or not _LINES.fullmatch(lines):
        return None
    # Each line is a token (no colon in it), a colon and printable ASCII, ended by CRLF
    # (``_LINES`` said so): its name is before the first colon, and its value the rest
    # without the spaces around it.
    fields = {}
    count = 0
    for line in lines.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            fields[name.lower()] = value.strip(b" ")
            count += 1
    if len(fields) < count or not _BODY.isdisjoint(fields):
        return None  # a header twice, or a body
    return fields


def _is_upgrade(fields: dict[bytes, bytes]) -> bool:
    if not fields.keys() >= _NEEDED:
        return False
    connection = _tokens(fields[b"connection"])
    if connection is None or not any(item.lower() == b"upgrade" for item in connection):
        return False
    if fields[b"upgrade"].lower() != b"websocket" or fields[b"sec-websocket-version"] != b"13":
        return False
    return _valid_key(fields[b"sec-websocket-key"])


def _valid_key(key: bytes) -> bool:
    try:
        # Strict: only the base64 alphabet, padding at the end (b64decode's validate).
        return len(binascii.a2b_base64(key, strict_mode=True)) == 16
    except binascii.Error:
        return False


# Heads seen valid, without their key line: a crowd of one app's clients sends the same
# head but for its key, which is then all there is to check (and the head is not
# parsed again). Bounded: emptied when full.
_SEEN_MAX = 64
_seen: dict[bytes, tuple[str, tuple[str, ...]]] = {}
_KEY_LINE = b"\r\nSec-WebSocket-Key: "


def quick_request(data: bytes) -> Upgrade | None:
    """The upgrade request at the start of ``data``, or None: leave it to the parser."""
    end = data.find(b"\r\n\r\n", 0, _MAX_HEAD)
    if end < 0:
        return None
    key_at = data.find(_KEY_LINE, 0, end)
    if key_at < 0:
        return _parsed(data, end)
    value_at = key_at + len(_KEY_LINE)
    value_end = data.find(b"\r\n", value_at, end + 2)
    key = data[value_at:value_end]
    rest = data[:key_at] + data[value_end:end]
    seen = _seen.get(rest)
    if seen is not None:
        # The same head as one found valid, but for the key: the parse would give the
        # same answer, the key's own checks aside.
        return Upgrade(seen[0], list(seen[1]), key, data[end + 4 :]) if _valid_key(key) else None
    upgrade = _parsed(data, end)
    if upgrade is not None and upgrade.key == key:  # the parse took the key line so too
        if len(_seen) >= _SEEN_MAX:
            _seen.clear()
        _seen[rest] = (upgrade.path, tuple(upgrade.offered))
    return upgrade


def _parsed(data: bytes, end: int) -> Upgrade | None:
    """``quick_request`` of a head (ending at ``end``) not seen before."""
    request = _REQUEST_LINE.match(data, 0, end + 2)
    if request is None:
        return None
    fields = _fields(data[request.end() : end + 2])
    if fields is None or not _is_upgrade(fields):
        return None
    offered: list[bytes] = []
    if b"sec-websocket-protocol" in fields:
        listed = _tokens(fields[b"sec-websocket-protocol"])
        if listed is None:
            return None
        offered = listed
    names = [name.decode() for name in offered]
    path = request.group(1).decode()
    return Upgrade(path, names, fields[b"sec-websocket-key"], data[end + 4 :])


class _Date:
    """The HTTP ``Date`` of the current second, formatted once a second."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = b""

    def now(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._text = email.utils.formatdate(second, usegmt=True).encode()
            self._second = second
        return self._text


_date = _Date()


def switching(key: bytes, subprotocol: str | None) -> bytes:
    """The 101 answering ``key``, with the headers (and their order) of websockets'."""
    accept = binascii.b2a_base64(hashlib.sha1(key + _GUID).digest(), newline=False)
    protocol = (
        b"" if subprotocol is None else b"Sec-WebSocket-Protocol: %s\r\n" % (subprotocol.encode())
    )
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nDate: %s\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
        % (_date.now(), accept, protocol)
    )
