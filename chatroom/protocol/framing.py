"""Server-to-client WebSocket frames, built once and sent as they are (servers do not
mask, so the same bytes suit every recipient)."""

from __future__ import annotations

import struct

_OP_TEXT = 0x81  # FIN + text
_OP_BINARY = 0x82  # FIN + binary


def frame_header(length: int, binary: bool) -> bytes:
    """The header of one unfragmented frame carrying ``length`` payload bytes."""
    first = _OP_BINARY if binary else _OP_TEXT
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked server-to-client frame around ``payload``."""
    return frame_header(len(payload), binary) + payload
