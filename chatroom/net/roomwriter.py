"""The flush of one chatroom's followers (protocol/roomlog.py): the frames appended
since the last flush, joined once per group, written to every follower's socket.

This loop is the fan-out's hot path: per follower it is one non-blocking ``write``
and a comparison, nothing else (no per-connection object is touched). A follower
whose socket took less than everything (or failed) is handed the rest after the loop,
and becomes a straggler with a writer task of its own (``Connection.fell_behind``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from chatroom.protocol.roomlog import Follower, RoomLog

if TYPE_CHECKING:
    from chatroom.net.flusher import Flusher
    from chatroom.protocol.codec import Codec

_write = os.write


class RoomWriter:
    """Flushes one room's followers; the flusher holds it among its dirty connections."""

    __slots__ = ("_flusher", "_log")

    def __init__(self, log: RoomLog[Any], flusher: Flusher) -> None:
        self._log = log
        self._flusher = flusher
        log.wake = self.mark

    def mark(self) -> None:
        self._flusher.mark(self)

    def flush_nowait(self) -> int:
        """Write every follower the frames it was not written; the number of frames
        written (one per follower and frame). Counts its sockets with the flusher."""
        log = self._log
        frames = log.frames
        end = len(frames)
        merged: dict[Codec, dict[Follower, int]] = {}
        behind: list[tuple[Follower, bytes, int]] = []
        sockets = count = 0
        for (codec, start), group in log.groups.items():
            if start < end:
                data = b"".join([prepared.frame(codec, None) for prepared, _ in frames[start:]])
                size = len(data)
                for follower, fd in group.items():
                    try:
                        written = _write(fd, data)
                    except BlockingIOError:
                        written = 0
                    except OSError:
                        written = -1
                    if written != size:
                        behind.append((follower, data, written))
                sockets += len(group)
                count += len(group) * (end - start)
            same = merged.get(codec)
            if same is None:
                merged[codec] = group
            else:
                same.update(group)
        log.written({(codec, 0): group for codec, group in merged.items()})
        for follower, data, written in behind:
            follower.fell_behind(data, written)
        self._flusher.wrote(sockets)
        return count
