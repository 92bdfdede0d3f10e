"""The per-connection outbound queue, bounded in bytes and frames, with priorities. Pure.

Every frame is queued with a ``Priority``. ``offer`` answers at once:

- ``ACCEPTED``: queued;
- ``SHED``: dropped on purpose (the frame itself, or older sheddable frames made room);
- ``OVERFLOW``: a frame that must not be dropped does not fit: the caller closes the
  connection as a slow consumer, and the client catches up after reconnecting.

When a frame does not fit, queued LOW frames go first (oldest first), then queued
NORMAL chatroom frames. A LOW frame never evicts NORMAL ones. HIGH chatroom frames and
RELIABLE frames (replies, messages of normal conversations) are never shed.

Every outbox of a server also counts its backlog in one shared ``QueuedBytes``, in
slabs of ``QueuedBytes.slab`` bytes beyond its first one: what a viewer who keeps up
holds between two flushes is not counted, and queueing a frame only touches the
shared counter when the outbox crosses into a new slab. Once that server-wide budget
is spent, LOW and NORMAL frames that would need a new slab are shed, and the budget's
owner is told (``QueuedBytes.overrun``) so that it closes the connections holding the
most.

Offering costs O(1) whatever the outbox holds, shedding included (amortised): the
"would it fit without LOW" test reads per-class counters, and evicting the oldest LOW
(or NORMAL) frame resumes the search where the last eviction stopped and leaves a
tombstone in its slot, tombstones being squeezed out once they are half the queue.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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


class QueuedBytes:
    """Backlog of every outbox that shares this object, against a server-wide
    ``limit``: each outbox reserves what it holds beyond its first ``slab`` bytes, in
    whole slabs. ``on_overrun`` (set by whoever enforces the budget) is called, from
    ``offer``, each time a frame would need a slab that the budget no longer has."""

    __slots__ = ("closed", "limit", "on_overrun", "overruns", "slab", "used")

    def __init__(self, limit: int = 1 << 62, slab: int = 64 * 1024) -> None:
        self.limit = limit
        self.slab = slab
        self.used = 0  # bytes reserved, a multiple of ``slab``
        self.overruns = 0  # frames that met the spent budget
        self.closed = 0  # connections closed for it (by the budget's owner)
        self.on_overrun: Callable[[], None] | None = None

    def statistics(self) -> dict[str, int]:
        return {
            "bytes": self.used,
            "budget": self.limit,
            "overruns": self.overruns,
            "closed": self.closed,
        }

    def overrun(self) -> None:
        self.overruns += 1
        if self.on_overrun is not None:
            self.on_overrun()


@dataclass(frozen=True, slots=True)
class OutboxStatistics:
    queued_frames: int
    queued_bytes: int
    accepted: int
    shed_low: int
    shed_normal: int
    overflows: int


_ACCEPTED = Verdict.ACCEPTED
_SHED = Verdict.SHED
_LOW = int(Priority.LOW)
_NORMAL = int(Priority.NORMAL)
_SHEDDABLE = _NORMAL  # this class and LOW may be shed
_GONE = 255  # the priority byte of an evicted frame's slot (its frame is b"")
_EMPTY: tuple[()] = ()


class Outbox:
    """FIFO of frames with byte and frame bounds and priority shedding.

    Frames and their priorities are kept in two parallel sequences, so that queueing
    a frame allocates nothing in the common case and ``take`` hands the whole queue
    over without copying. An idle connection holds two shared empty placeholders.
    An evicted frame leaves a tombstone (``b""``, priority ``_GONE``) in its slot:
    removing it from the middle of the list would move every later one.
    ``queued_bytes`` and ``shed`` are plain attributes, not properties: the writer
    reads them on every write to every connection. Callers only read them.
    """

    __slots__ = (
        "_accepted",
        "_budget",
        "_dead",
        "_frames",
        "_low_at",
        "_low_bytes",
        "_low_frames",
        "_max_bytes",
        "_max_frames",
        "_next",
        "_normal_at",
        "_overflows",
        "_prios",
        "_reserved",
        "_shed_low",
        "_shed_normal",
        "_sheddable",
        "_slab",
        "_totals",
        "queued_bytes",
        "shed",
    )

    def __init__(
        self,
        max_bytes: int,
        max_frames: int,
        totals: ShedTotals | None = None,
        budget: QueuedBytes | None = None,
    ):
        self._totals = totals if totals is not None else ShedTotals()
        self._budget = budget if budget is not None else QueuedBytes()
        self._max_bytes = max_bytes
        self._max_frames = max_frames
        self._slab = self._budget.slab
        self._reserved = 0  # bytes reserved in the budget: whole slabs beyond the first
        self._next = min(max_bytes, self._slab)  # more bytes than this: see _make_room
        self._frames: list[bytes] | tuple[()] = _EMPTY
        self._prios: bytearray | tuple[()] = _EMPTY
        self.queued_bytes = 0  # bytes queued (tombstones hold none)
        self.shed = 0  # frames shed so far, LOW and NORMAL: read on every write
        self._sheddable = 0  # queued NORMAL + LOW frames
        self._low_frames = 0  # queued LOW frames and their bytes: "fits without LOW"
        self._low_bytes = 0
        self._dead = 0  # tombstones in the queue
        self._low_at = 0  # no LOW frame is queued before this index: eviction resumes here
        self._normal_at = 0  # the same for NORMAL
        self._accepted = 0
        self._shed_low = 0  # two counters, not a dict: every connection has them
        self._shed_normal = 0
        self._overflows = 0

    def __len__(self) -> int:
        return len(self._frames) - self._dead

    @property
    def reserved_bytes(self) -> int:
        """What this outbox holds of the server-wide budget."""
        return self._reserved

    def offer(self, frame: bytes, priority: Priority) -> Verdict:
        """Queue ``frame`` or say why not. Never blocks. Runs once per recipient of a
        broadcast, hence the plain code."""
        size = len(frame)
        frames = self._frames
        if frames and (
            self.queued_bytes + size > self._next  # the byte bound, or the next slab to reserve
            or len(frames) >= self._max_frames  # tombstones included: checked again
        ):
            verdict = self._make_room(size, priority)
            if verdict is not None:
                return verdict
        frames = self._frames  # shedding may have emptied it
        if frames:
            frames.append(frame)
            self._prios.append(priority)  # type: ignore[union-attr]
        else:
            self._frames, self._prios = [frame], bytearray((priority,))
        self.queued_bytes += size
        if priority >= _SHEDDABLE:
            self._sheddable += 1
            if priority == _LOW:
                self._low_frames += 1
                self._low_bytes += size
        self._accepted += 1
        return _ACCEPTED

    def take(self, max_bytes: int) -> list[bytes]:
        """Remove and return frames from the head, at least one if any, up to about
        ``max_bytes`` in total."""
        frames = self._frames
        if not frames:
            return []
        assert isinstance(frames, list)
        prios = self._prios
        assert isinstance(prios, bytearray)
        if self.queued_bytes <= max_bytes or len(frames) - self._dead == 1:
            dead = self._dead
            if dead or self._reserved or self._low_frames:
                self.clear()
                return [f for f in frames if f] if dead else frames
            # ``clear``, inlined: a connection that keeps up comes here on every flush.
            # (No tombstone means both eviction cursors are 0 already.)
            self._frames = self._prios = _EMPTY
            self.queued_bytes = self._sheddable = 0
            return frames
        count, total = self._head(max_bytes)
        out = frames[:count]
        del frames[:count]
        taken = prios[:count]
        del prios[:count]
        low = taken.count(_LOW)
        if low:
            self._low_frames -= low
            self._low_bytes -= sum(len(f) for f, p in zip(out, taken, strict=True) if p == _LOW)
        self._sheddable -= taken.count(_NORMAL) + low
        gone = taken.count(_GONE)
        if gone:
            self._dead -= gone
            out = [f for f in out if f]
        self._low_at = max(0, self._low_at - count)
        self._normal_at = max(0, self._normal_at - count)
        self.queued_bytes -= total
        if self._reserved:
            self._reserve(0)
        return out

    def clear(self) -> None:
        self._budget.used -= self._reserved
        self._reserved = 0
        self._next = min(self._max_bytes, self._slab)
        self._frames = _EMPTY
        self._prios = _EMPTY
        self.queued_bytes = 0
        self._sheddable = self._low_frames = self._low_bytes = self._dead = 0
        self._low_at = self._normal_at = 0

    def statistics(self) -> OutboxStatistics:
        return OutboxStatistics(
            queued_frames=len(self),
            queued_bytes=self.queued_bytes,
            accepted=self._accepted,
            shed_low=self._shed_low,
            shed_normal=self._shed_normal,
            overflows=self._overflows,
        )

    def _head(self, max_bytes: int) -> tuple[int, int]:
        """How many slots from the head (one live frame at least), and their bytes."""
        frames = self._frames
        count, end = 0, len(frames)
        while not frames[count]:  # leading tombstones: there is a live frame after them
            count += 1
        total = len(frames[count])
        count += 1
        while count < end and total + len(frames[count]) <= max_bytes:
            total += len(frames[count])
            count += 1
        return count, total

    def _fits(self, size: int) -> bool:
        # An empty queue takes any one frame: the bounds limit how far a client may
        # fall behind, not how big one reply (a long history page) may be.
        live = len(self._frames) - self._dead
        if not live:
            return True
        return self.queued_bytes + size <= self._max_bytes and live < self._max_frames

    def _make_room(self, size: int, priority: Priority) -> Verdict | None:
        """Shed what policy allows and reserve slabs; None when ``size`` now fits."""
        verdict = None if self._fits(size) else self._shed_for(size, priority)
        if verdict is not None:
            if self._reserved:
                self._reserve(0)  # frames evicted before the verdict: give their slabs back
            return verdict
        if not self._reserve(size, priority >= _SHEDDABLE):
            self._count_shed(priority)
            return _SHED
        return None

    def _reserve(self, size: int, sheddable: bool = False) -> bool:
        """Reserve (or give back) whole slabs for the bytes queued plus ``size``,
        beyond the first slab. When the budget lacks what a frame needs, its owner is
        told (it closes the biggest queues); a ``sheddable`` frame then gets False and
        nothing reserved, any other frame gets its slabs all the same."""
        slab, budget = self._slab, self._budget
        wanted = max(0, -(-(self.queued_bytes + size - slab) // slab) * slab)
        extra = wanted - self._reserved
        if extra > 0 and budget.used + extra > budget.limit and len(self):
            budget.overrun()
            if sheddable:
                return False
        budget.used += extra
        self._reserved = wanted
        self._next = min(self._max_bytes, wanted + slab)
        return True

    def _shed_for(self, size: int, priority: Priority) -> Verdict | None:
        """Shed queued frames for ``size`` bytes as policy allows (or the frame)."""
        if priority == _LOW or (priority == _NORMAL and not self._fits_without_low(size)):
            # A sheddable frame never evicts its own class or more important ones;
            # and when evicting every LOW frame would not make room, keep them.
            self._count_shed(priority)
            return _SHED
        self._evict(_LOW, size)
        if self._fits(size):
            return None  # always, for a NORMAL frame: it fits without LOW ones
        self._evict(_NORMAL, size)
        if self._fits(size):
            return None
        self._overflows += 1
        return Verdict.OVERFLOW

    def _fits_without_low(self, size: int) -> bool:
        """Would ``size`` bytes fit once every LOW frame was gone? O(1)."""
        live = len(self._frames) - self._dead - self._low_frames
        if not live:
            return True  # an empty outbox takes any one frame
        bytes_left = self.queued_bytes - self._low_bytes
        return bytes_left + size <= self._max_bytes and live < self._max_frames

    def _count_shed(self, priority: int) -> None:
        self.shed += 1
        if priority == _LOW:
            self._shed_low += 1
            self._totals.low += 1
        else:
            self._shed_normal += 1
            self._totals.normal += 1

    def _evict(self, victim: int, size: int) -> None:
        """Drop the oldest ``victim`` frames until ``size`` more bytes fit. Amortised
        O(1) per frame: the search resumes where the last one stopped."""
        frames, prios = self._frames, self._prios
        assert isinstance(frames, list)
        assert isinstance(prios, bytearray)
        at = self._low_at if victim == _LOW else self._normal_at
        while not self._fits(size):
            left = self._low_frames if victim == _LOW else self._sheddable - self._low_frames
            if not left:
                break
            at = prios.find(victim, at)
            frame = frames[at]
            frames[at] = b""
            prios[at] = _GONE
            self._dead += 1
            self.queued_bytes -= len(frame)
            self._sheddable -= 1
            if victim == _LOW:
                self._low_frames -= 1
                self._low_bytes -= len(frame)
            self._count_shed(victim)
            at += 1
        if victim == _LOW:
            self._low_at = at
        else:
            self._normal_at = at
        if self._dead * 2 > len(frames):
            self._compact()

    def _compact(self) -> None:
        """Squeeze the tombstones out: O(n), once they are half the queue."""
        frames = [f for f in self._frames if f]
        if frames:
            self._frames = frames
            self._prios = self._prios.replace(bytes((_GONE,)), b"")  # type: ignore[union-attr]
        else:
            self._frames = self._prios = _EMPTY
        self._dead = 0
        self._low_at = self._normal_at = 0
