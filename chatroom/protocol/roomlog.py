"""A chatroom's frame log: each broadcast appended once, read by every viewer.

A viewer that keeps up (nothing of its own queued, its socket taking what it is given)
holds no copy of a chatroom push: only where it is in the room's log (``since``, an
index). Its flush writes the log from there to the end in one write, and the viewers
at the same index (all of them, in a room that keeps up) share one joined bytes
object per codec: a broadcast costs the server one append, one flag per viewer and
one write per viewer. The frames are the shared ones, without ``peerId``: a viewer
that needs its ``peerId`` in every push (SDK 3.x) is not served from the log.

A log holds at most ``CAPACITY`` frames; then the hub starts a new one, and a viewer
still behind in the old one has its unread part copied into its own outbox, where
priority shedding applies as to any queued frame. So has a viewer that missed a frame
in its range (it sent it: skipped), or got something else to send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chatroom.protocol.codec import Codec, Prepared

# Frames in one log. A flush that finds a viewer's range running into the next log
# copies it into the viewer's own outbox, which costs per viewer what the log saves;
# at 32 a busy room (1000 msg/s, flushes 20-40 ms apart) kept crossing logs and the
# server fell behind at 800 msg/s, N=1000 (bench/README.md, 2026-12-03 14:43).
CAPACITY = 256


class RoomLog:
    """The frames broadcast to one chatroom since this log was started."""

    __slots__ = ("_joined", "end", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[Prepared, int]] = []  # (push, priority)
        self.end = 0  # the index the next frame gets
        self._joined: dict[tuple[Codec, int, int], bytes] = {}  # (codec, since, upto)

    @property
    def full(self) -> bool:
        return self.end >= CAPACITY

    def append(self, prepared: Prepared, priority: int) -> int:
        """Add a frame; its index."""
        self.entries.append((prepared, priority))
        self.end += 1
        return self.end - 1

    def unread(self, codec: Codec, since: int, upto: int) -> bytes:
        """The frames from index ``since`` to ``upto``, joined: one bytes object for
        every viewer of this codec with that range."""
        key = (codec, since, upto)
        data = self._joined.get(key)
        if data is None:
            frames = [prepared.frame(codec, None) for prepared, _ in self.entries[since:upto]]
            data = self._joined[key] = b"".join(frames)
        return data
