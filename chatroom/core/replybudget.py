"""Byte bounds for replies whose size grows with stored content. Pure.

A history page, the missed patches or the unread tuples of a login can each be made of
large stored messages; their count is bounded, but a count times the largest message is
still megabytes that one request makes the server build and queue. These helpers cut
such a list by encoded size, always keeping at least one item so that a client paging on
from the last item it got always moves forward.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.message import Message as PbMessage


def item_size(item: PbMessage) -> int:
    """Bytes ``item`` takes as a field of its reply, at most: itself plus its tag (2
    bytes cover field numbers up to 2047) and length prefix (3 bytes up to 2 MiB)."""
    return item.ByteSize() + 5


def fitting(sizes: Sequence[int], limit: int) -> int:
    """How many of the leading ``sizes`` fit in ``limit`` bytes together: at least one
    when there is any."""
    total = 0
    for count, size in enumerate(sizes):
        total += size
        if total > limit and count:
            return count
    return len(sizes)


class Budget:
    """Bytes left for several pushes that share one bound (those of a login).

    ``take`` grants the first item whatever its size, so that something always goes
    out and the client's position (``lastPatchTime``, acks) moves on.
    """

    __slots__ = ("_granted", "left")

    def __init__(self, limit: int):
        self.left = limit
        self._granted = False

    def take(self, size: int) -> bool:
        """Spend ``size`` bytes if they fit (or if nothing was granted yet)."""
        if size > self.left and self._granted:
            return False
        self.left -= size
        self._granted = True
        return True
