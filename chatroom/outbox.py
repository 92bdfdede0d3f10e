"""The per-connection outbound queue, bounded in bytes and frames, with priorities. Pure.

Every frame is queued with a ``Priority``. ``offer`` answers at once:

- ``ACCEPTED``: queued;
- ``SHED``: dropped on purpose (the frame itself, or older sheddable frames made room);
- ``OVERFLOW``: a frame that must not be dropped does not fit: the caller closes the
  connection as a slow consumer, and the client catches up after reconnecting.

When a frame does not fit, queued LOW frames go first (oldest first), then queued
NORMAL chatroom frames. A LOW frame never evicts NORMAL ones. HIGH chatroom frames and
RELIABLE frames (replies, messages of normal conversations) are never shed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Priority(enum.IntEnum):
    """Shedding class of a frame; lower values are kept longer."""

    RELIABLE = 0  # replies and persisted messages: overflow closes the connection
    HIGH = 1  # chatroom HIGH: never shed either
    NORMAL = 2  # chatroom NORMAL: shed after LOW
    LOW = 3  # chatroom LOW, transient messages: shed first

    @classmethod
    def from_wire(cls, value: int) -> Priority:
        """``GenericCommand.priority`` (1 HIGH, 2 NORMAL, 3 LOW; else NORMAL)."""
        return {1: cls.HIGH, 3: cls.LOW}.get(value, cls.NORMAL)


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    SHED = "shed"
    OVERFLOW = "overflow"


@dataclass(slots=True)
class ShedTotals:
    """Frames shed by every outbox that shares this object (server-wide counters)."""

    low: int = 0
    normal: int = 0


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    queued_frames: int
    queued_bytes: int
    accepted: int
    shed_low: int
    shed_normal: int
    overflows: int


_ACCEPTED = Verdict.ACCEPTED
_SHEDDABLE = int(Priority.NORMAL)  # this class and LOW may be shed
_EMPTY: tuple[()] = ()


class Outbox:
    """FIFO of frames with byte and frame bounds and priority shedding.

    Frames and their priorities are kept in two parallel sequences, so that queueing
    a frame allocates nothing in the common case and ``take`` hands the whole queue
    over without copying. An idle connection holds two shared empty placeholders.
    """

    __slots__ = (
        "_accepted",
        "_bytes",
        "_frames",
        "_max_bytes",
        "_max_frames",
        "_overflows",
        "_prios",
        "_shed_low",
        "_shed_normal",
        "_sheddable",
        "_totals",
    )

    def __init__(self, max_bytes: int, max_frames: int, totals: ShedTotals | None = None):
        self._totals = totals if totals is not None else ShedTotals()
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._frames: list[bytes] | tuple[()] = _EMPTY
        self._prios: bytearray | tuple[()] = _EMPTY
        self._bytes = 0
        self._sheddable = 0  # queued NORMAL + LOW frames, to skip scans when there are none
        self._accepted = 0
        self._shed_low = 0  # two counters, not a dict: every connection has them
        self._shed_normal = 0
        self._overflows = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def offer(self, frame: bytes, priority: Priority) -> Verdict:
        """Queue ``frame`` or say why not. Never blocks. Runs once per recipient of a
        broadcast, hence the plain code."""
        size = len(frame)
        frames = self._frames
        if frames and (self._bytes + size > self._max_bytes or len(frames) >= self._max_frames):
            # Does not fit (``_fits``, inlined: this runs once per recipient).
            verdict = self._make_room(size, priority)
            if verdict is not None:
                return verdict
        frames = self._frames  # shedding may have emptied it
        if frames:
            frames.append(frame)
            self._prios.append(priority)  # type: ignore[union-attr]
        else:
            self._frames, self._prios = [frame], bytearray((priority,))
        self._bytes += size
        if priority >= _SHEDDABLE:
            self._sheddable += 1
        self._accepted += 1
        return _ACCEPTED

    def take(self, max_bytes: int) -> list[bytes]:
        """Remove and return frames from the head, at least one if any, up to about
        ``max_bytes`` in total."""
        frames = self._frames
        if not frames:
            return []
        assert isinstance(frames, list)
        assert isinstance(self._prios, bytearray)
        if self._bytes <= max_bytes or len(frames) == 1:
            self.clear()
            return frames
        count, total = 1, len(frames[0])
        while count < len(frames) and total + len(frames[count]) <= max_bytes:
            total += len(frames[count])
            count += 1
        out = frames[:count]
        del frames[:count]
        taken = self._prios[:count]
        del self._prios[:count]
        self._sheddable -= taken.count(Priority.NORMAL) + taken.count(Priority.LOW)
        self._bytes -= total
        return out

    def clear(self) -> None:
        self._frames = _EMPTY
        self._prios = _EMPTY
        self._bytes = 0
        self._sheddable = 0

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            queued_frames=len(self._frames),
            queued_bytes=self._bytes,
            accepted=self._accepted,
            shed_low=self._shed_low,
            shed_normal=self._shed_normal,
            overflows=self._overflows,
        )

    def _fits(self, size: int) -> bool:
        # An empty queue takes any one frame: the bounds limit how far a client may
        # fall behind, not how big one reply (a long history page) may be.
        if not self._frames:
            return True
        return self._bytes + size <= self._max_bytes and len(self._frames) < self._max_frames

    def _make_room(self, size: int, priority: Priority) -> Verdict | None:
        """Shed what policy allows; None when ``size`` now fits."""
        if priority is Priority.NORMAL and not self._fits_without(Priority.LOW, size):
            # Evicting every LOW frame would not make room: keep them, shed this one.
            self._count_shed(priority)
            return Verdict.SHED
        for victim in (Priority.LOW, Priority.NORMAL):
            if priority == victim:
                # A sheddable frame never evicts its own class or more important ones.
                self._count_shed(victim)
                return Verdict.SHED
            self._evict(victim, size)
            if self._fits(size):
                return None
        self._overflows += 1
        return Verdict.OVERFLOW

    def _fits_without(self, victim: Priority, size: int) -> bool:
        """Would ``size`` bytes fit once every ``victim`` frame was gone?"""
        gone = [len(f) for f, p in zip(self._frames, self._prios, strict=True) if p == victim]
        if len(gone) == len(self._frames):
            return True  # an empty outbox takes any one frame
        bytes_left = self._bytes - sum(gone)
        frames_left = len(self._frames) - len(gone)
        return bytes_left + size <= self._max_bytes and frames_left < self._max_frames

    def _count_shed(self, priority: Priority) -> None:
        if priority is Priority.LOW:
            self._shed_low += 1
            self._totals.low += 1
        else:
            self._shed_normal += 1
            self._totals.normal += 1

    def _evict(self, victim: Priority, size: int) -> None:
        """Drop the oldest ``victim`` frames until ``size`` more bytes fit."""
        if not self._sheddable:
            return
        count = len(self._frames)
        kept: list[bytes] = []
        kept_prios = bytearray()
        for frame, priority in zip(self._frames, self._prios, strict=True):
            full = self._bytes + size > self._max_bytes or count >= self._max_frames
            if priority == victim and full:
                self._bytes -= len(frame)
                self._sheddable -= 1
                self._count_shed(victim)
                count -= 1
            else:
                kept.append(frame)
                kept_prios.append(priority)
        if kept:
            self._frames, self._prios = kept, kept_prios
        else:
            self._frames, self._prios = _EMPTY, _EMPTY
