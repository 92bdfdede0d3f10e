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
    length = len(payload)
    if length < 126:  # (``frame_header``'s first case, without the call: most frames)
        return bytes((_OP_BINARY if binary else _OP_TEXT, length)) + payload
    return frame_header(length, binary) + payload


# -- client-to-server frames ------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_CONTROL = frozenset({OP_CLOSE, OP_PING, OP_PONG})
_DATA = frozenset({OP_CONT, OP_TEXT, OP_BINARY})
# Close codes a peer may send (RFC 6455 section 7.4, and IANA's 1012-1014).
_PEER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015)})
NO_STATUS = 1005  # a close frame without a code (never sent on the wire)


class FrameError(Exception):
    """The client broke the protocol: close with ``code`` (1002, 1007 or 1009)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def unmask(data: bytes | bytearray, key: bytes | bytearray) -> bytes:
    """``data`` XOR the repeated 4-byte ``key``, as one big-integer operation."""
    n = len(data)
    if n == 0:
        return b""
    stream = key * (n // 4 + 1)
    word = int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
    return word.to_bytes(n, "little")


def close_payload(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received close frame (FrameError if malformed)."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(1002, "close frame too short")
    code = int.from_bytes(payload[:2], "big")
    if code not in _PEER_CLOSE_CODES and not 3000 <= code < 5000:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "invalid UTF-8 in a close reason") from None


def control_frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server control frame (payload at most 125 bytes)."""
    return bytes((0x80 | opcode, len(payload))) + payload


def close_frame(code: int, reason: str) -> bytes:
    """A server close frame; the reason is cut to fit (123 bytes, whole characters)."""
    if code == NO_STATUS:
        return control_frame(OP_CLOSE, b"")
    text = reason.encode()[:123].decode(errors="ignore").encode()
    return control_frame(OP_CLOSE, code.to_bytes(2, "big") + text)


class FrameReader:
    """Parses masked client frames from the bytes a socket delivers, checking what
    RFC 6455 requires of them: no reserved bits (no extension is negotiated), masked,
    control frames short and unfragmented, continuations only inside a fragmented
    message, no message over ``max_size`` bytes. Holds no bytes between frames.

    After a violation it only looks for the client's close frame: past a frame
    refused for its size (its header was sound) it skips the payload and parses on;
    after any other violation the frame boundaries are lost and it reads nothing."""

    __slots__ = ("_buffer", "_in_message", "_max_size", "_message_size", "_skip")

    def __init__(self, max_size: int):
        self._max_size = max_size
        # An incomplete frame's bytes: a bytearray grown in place, so that a frame
        # that comes a few bytes at a time is not copied whole at every read.
        self._buffer: bytearray | bytes = b""
        self._in_message = False  # inside a fragmented message
        self._message_size = 0  # its bytes so far
        self._skip = 0  # bytes of a refused frame still to discard; -1: discard all

    def feed(self, data: bytes) -> tuple[list[tuple[int, bool, bytes]], FrameError | None]:
        """The whole frames (opcode, fin, unmasked payload) now complete, and the
        protocol error that ended parsing, if any (nothing is parsed after it)."""
        # Nearly every read of a client waiting for its replies holds one whole short
        # frame (a request): decided from its two header bytes here, as the loop below
        # would (FIN, no reserved bit, text or binary, masked, exactly the read's
        # length, within max_size, outside a fragmented message, nothing held).
        if not (self._buffer or self._skip or self._in_message) and len(data) > 6:
            first = data[0]
            length = data[1] - 0x80  # negative: not masked, or a 16/64-bit length
            if (
                (first == 0x82 or first == 0x81)
                and 0 <= length < 126
                and len(data) == 6 + length
                and length <= self._max_size
            ):
                return [(first & 0x0F, True, unmask(data[6:], data[2:6]))], None
        if self._skip:
            if self._skip < 0:
                return [], None
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
        buffer: bytearray | bytes = data
        if self._buffer:
            self._buffer += data
            buffer = self._buffer
        frames: list[tuple[int, bool, bytes]] = []
        at = start = length = 0
        end = len(buffer)
        try:
            while end - at >= 2:
                first, second = buffer[at], buffer[at + 1]
                length = second & 0x7F
                start = at + 2
                if length == 126:
                    start += 2
                    if end < start:
                        break
                    length = int.from_bytes(buffer[at + 2 : start], "big")
                elif length == 127:
                    start += 8
                    if end < start:
                        break
                    length = int.from_bytes(buffer[at + 2 : start], "big")
                opcode, fin = first & 0x0F, bool(first & 0x80)
                self._check(first, second, opcode, fin, length)
                if end < start + 4 + length:
                    break
                key = buffer[start : start + 4]
                frames.append((opcode, fin, unmask(buffer[start + 4 : start + 4 + length], key)))
                at = start + 4 + length
                if opcode not in _CONTROL:  # only whole frames move the message state
                    size = length + (self._message_size if opcode == OP_CONT else 0)
                    self._in_message = not fin
                    self._message_size = 0 if fin else size
        except FrameError as exc:
            self._after_error(exc, buffer, start + 4 + length, end)
            return frames, exc
        if at >= end:
            self._buffer = b""
        elif buffer is data:
            self._buffer = bytearray(memoryview(data)[at:])
        elif at and isinstance(self._buffer, bytearray):
            del self._buffer[:at]
        return frames, None

    def _after_error(self, exc: FrameError, buffer: bytes | bytearray, ends: int, end: int) -> None:
        """Where to go on after a violation (the refused frame ends at ``ends``)."""
        self._buffer = b""
        self._in_message = False
        self._message_size = 0
        if exc.code != 1009:
            self._skip = -1
        elif ends >= end:
            self._skip = ends - end
        else:  # the refused frame is all in: parse what follows it at the next read
            self._buffer = bytearray(memoryview(buffer)[ends:])

    def _check(self, first: int, second: int, opcode: int, fin: bool, length: int) -> None:
        """Refuse a frame from its header alone (before its payload is in)."""
        if first & 0x70:
            raise FrameError(1002, "reserved bits must be 0")
        if not second & 0x80:
            raise FrameError(1002, "incorrect masking")
        if opcode in _CONTROL:
            if not fin:
                raise FrameError(1002, "fragmented control frame")
            if length > 125:
                raise FrameError(1002, "control frame too long")
            return
        if opcode not in _DATA:
            raise FrameError(1002, f"invalid opcode {opcode:#x}")
        if (opcode == OP_CONT) != self._in_message:
            what = "unexpected continuation" if opcode == OP_CONT else "expected continuation"
            raise FrameError(1002, f"{what} frame")
        size = length + (self._message_size if opcode == OP_CONT else 0)
        if size > self._max_size:
            raise FrameError(1009, f"message over {self._max_size} bytes")
