"""The WebSocket layer, kept behind one small class so that it can be swapped.

trio-websocket does the opening handshake, parses inbound frames and runs the closing
handshake. Outbound *data* frames bypass it: its ``send_message`` makes one system
call per message and blocks on a slow peer, while the server wants to write many
pre-encoded frames with one non-blocking ``send`` (design.md section 3). Two private
attributes make that possible, ``_stream`` (the ``trio.SocketStream``) and
``_stream_lock`` (held by trio-websocket while it writes control frames); the version
is pinned exactly and ``tests/test_transport.py`` fails loudly if they change.
"""

from __future__ import annotations

import os
import struct

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

__all__ = ["ConnectionClosed", "Transport", "TransportBroken", "ws_frame"]

_OP_TEXT = 0x81  # FIN + text
_OP_BINARY = 0x82  # FIN + binary


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked server-to-client WebSocket frame. The same bytes suit every
    recipient, since servers do not mask."""
    n = len(payload)
    first = _OP_BINARY if binary else _OP_TEXT
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + payload
    return struct.pack("!BBQ", first, 127, n) + payload


class TransportBroken(Exception):
    """The socket can no longer be written (reset, closed)."""


class Transport:
    """Inbound messages and outbound pre-encoded frames of one WebSocket."""

    __slots__ = ("_lock", "_stream", "_ws")

    def __init__(self, ws: WebSocketConnection):
        self._ws = ws
        stream = ws._stream
        if not isinstance(stream, trio.SocketStream):  # pragma: no cover - TLS is not served
            raise TypeError("only plain TCP streams are supported")
        self._stream = stream
        self._lock = ws._stream_lock

    async def receive(self) -> str | bytes:
        """The next inbound message. Raises ``ConnectionClosed`` at the end."""
        return await self._ws.get_message()

    def write_nowait(self, data: bytes) -> int:
        """Write what the kernel takes right now; return the number of bytes written
        (0 when the socket buffer is full or trio-websocket is writing)."""
        if self._lock.locked():
            return 0
        # Read the descriptor each time: after close it is -1, never a reused number.
        fd = self._stream.socket.fileno()
        if fd < 0:
            raise TransportBroken("socket closed")
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise TransportBroken(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        """Write all of ``data``, waiting for the socket. The caller sets a deadline."""
        async with self._lock:
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise TransportBroken(str(exc)) from exc

    async def aclose(self, code: int, reason: str) -> None:
        """Closing handshake; the caller bounds it with a deadline."""
        await self._ws.aclose(code, reason[:120])

    @property
    def closed(self) -> bool:
        return self._ws.closed is not None
