"""chatroom.core.outbox: the bounded priority outbox. Pure and synchronous.

Policy (design.md section 3.4): when a frame does not fit, queued LOW frames are shed
first, oldest first, then NORMAL ones; a LOW frame never evicts NORMAL ones; HIGH and
RELIABLE frames are never shed: when they do not fit, the verdict is OVERFLOW and the
connection is closed as a slow consumer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import SupportsIndex

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatroom.core.outbox import (
    Outbox,
    OutboxStatistics,
    Priority,
    QueuedBytes,
    ShedTotals,
    Verdict,
)

HIGH, LOW, NORMAL, RELIABLE = Priority.HIGH, Priority.LOW, Priority.NORMAL, Priority.RELIABLE


def frame(name: str, size: int = 10) -> bytes:
    """A frame of exactly ``size`` bytes that starts with ``name``."""
    raw = name.encode()
    assert len(raw) <= size
    return raw + b"." * (size - len(raw))


def drain(outbox: Outbox) -> list[str]:
    """Take everything; return the names of the frames in order."""
    out = outbox.take(10**9)
    return [f.rstrip(b".").decode() for f in out]


def fill(outbox: Outbox, *items: tuple[str, Priority]) -> None:
    for name, priority in items:
        assert outbox.offer(frame(name), priority) is Verdict.ACCEPTED


# accepting and taking


def test_frames_that_fit_are_accepted_and_taken_in_order() -> None:
    outbox = Outbox(max_bytes=100, max_frames=10)
    fill(outbox, ("a", LOW), ("b", RELIABLE), ("c", NORMAL), ("d", HIGH))
    assert len(outbox) == 4
    assert outbox.queued_bytes == 40
    assert drain(outbox) == ["a", "b", "c", "d"]
    assert len(outbox) == 0
    assert outbox.queued_bytes == 0


def test_take_stops_at_max_bytes_but_always_takes_one() -> None:
    outbox = Outbox(max_bytes=1000, max_frames=100)
    for name, size in (("a", 10), ("b", 20), ("c", 30), ("d", 5)):
        outbox.offer(frame(name, size), RELIABLE)
    assert outbox.take(30) == [frame("a", 10), frame("b", 20)]  # exactly 30 bytes
    assert outbox.take(1) == [frame("c", 30)]  # one frame even when bigger than asked
    assert outbox.queued_bytes == 5
    assert outbox.take(0) == [frame("d", 5)]
    assert outbox.take(100) == []


def test_a_frame_exactly_filling_the_bound_is_accepted() -> None:
    outbox = Outbox(max_bytes=30, max_frames=3)
    fill(outbox, ("a", RELIABLE), ("b", RELIABLE), ("c", RELIABLE))
    assert outbox.queued_bytes == 30
    assert outbox.offer(frame("d", 1), RELIABLE) is Verdict.OVERFLOW


def test_clear_empties_the_outbox() -> None:
    outbox = Outbox(max_bytes=100, max_frames=10)
    fill(outbox, ("a", LOW), ("b", RELIABLE))
    outbox.clear()
    assert len(outbox) == 0
    assert outbox.queued_bytes == 0
    assert outbox.take(100) == []
    fill(outbox, ("c", NORMAL))  # usable again, with the whole bound
    assert drain(outbox) == ["c"]


# shedding, by bytes


def test_reliable_frame_sheds_low_oldest_first() -> None:
    outbox = Outbox(max_bytes=40, max_frames=100)
    fill(outbox, ("low1", LOW), ("rel", RELIABLE), ("low2", LOW), ("low3", LOW))
    assert outbox.offer(frame("new", 20), RELIABLE) is Verdict.ACCEPTED
    # 20 bytes were needed: the two oldest LOW frames went, the newest stayed.
    assert drain(outbox) == ["rel", "low3", "new"]


def test_low_frames_go_before_normal_ones() -> None:
    outbox = Outbox(max_bytes=40, max_frames=100)
    fill(outbox, ("norm1", NORMAL), ("low1", LOW), ("norm2", NORMAL), ("low2", LOW))
    assert outbox.offer(frame("high"), HIGH) is Verdict.ACCEPTED
    assert drain(outbox) == ["norm1", "norm2", "low2", "high"]


def test_normal_frames_are_shed_oldest_first_once_low_ones_are_gone() -> None:
    outbox = Outbox(max_bytes=40, max_frames=100)
    fill(outbox, ("norm1", NORMAL), ("low", LOW), ("norm2", NORMAL), ("rel", RELIABLE))
    assert outbox.offer(frame("big", 20), RELIABLE) is Verdict.ACCEPTED
    assert drain(outbox) == ["norm2", "rel", "big"]
    stats = outbox.statistics()
    assert (stats.shed_low, stats.shed_normal) == (1, 1)


def test_normal_frame_sheds_low_ones() -> None:
    outbox = Outbox(max_bytes=30, max_frames=100)
    fill(outbox, ("low", LOW), ("rel", RELIABLE), ("norm", NORMAL))
    assert outbox.offer(frame("new"), NORMAL) is Verdict.ACCEPTED
    assert drain(outbox) == ["rel", "norm", "new"]


def test_normal_frame_never_evicts_normal_ones() -> None:
    outbox = Outbox(max_bytes=30, max_frames=100)
    fill(outbox, ("n1", NORMAL), ("n2", NORMAL), ("n3", NORMAL))
    assert outbox.offer(frame("n4"), NORMAL) is Verdict.SHED
    assert drain(outbox) == ["n1", "n2", "n3"]
    assert outbox.statistics().shed_normal == 1


def test_low_frame_never_evicts_anything() -> None:
    outbox = Outbox(max_bytes=30, max_frames=100)
    fill(outbox, ("low", LOW), ("norm", NORMAL), ("rel", RELIABLE))
    assert outbox.offer(frame("low2"), LOW) is Verdict.SHED
    assert drain(outbox) == ["low", "norm", "rel"]
    stats = outbox.statistics()
    assert (stats.shed_low, stats.shed_normal, stats.overflows) == (1, 0, 0)


def test_high_and_reliable_are_never_shed_they_overflow() -> None:
    for priority in (HIGH, RELIABLE):
        outbox = Outbox(max_bytes=30, max_frames=100)
        fill(outbox, ("a", RELIABLE), ("b", HIGH), ("c", RELIABLE))
        assert outbox.offer(frame("d"), priority) is Verdict.OVERFLOW
        assert drain(outbox) == ["a", "b", "c"]
        assert outbox.statistics().overflows == 1


def test_overflow_when_shedding_everything_sheddable_is_not_enough() -> None:
    outbox = Outbox(max_bytes=30, max_frames=100)
    fill(outbox, ("low", LOW), ("rel", RELIABLE), ("norm", NORMAL))
    assert outbox.offer(frame("big", 25), HIGH) is Verdict.OVERFLOW
    # The queued reliable frame is still there, in order.
    assert "rel" in drain(outbox)


def test_frame_larger_than_the_whole_bound() -> None:
    # An empty outbox takes any one frame (a long history page is one reply) ...
    outbox = Outbox(max_bytes=30, max_frames=100)
    assert outbox.offer(frame("huge", 31), RELIABLE) is Verdict.ACCEPTED
    # ... but nothing more while it is over the bound.
    assert outbox.offer(frame("low", 5), LOW) is Verdict.SHED
    assert outbox.offer(frame("norm", 5), NORMAL) is Verdict.SHED
    assert outbox.offer(frame("rel", 5), RELIABLE) is Verdict.OVERFLOW
    assert drain(outbox) == ["huge"]


# shedding, by frame count


def test_frame_bound_sheds_like_the_byte_bound() -> None:
    outbox = Outbox(max_bytes=10**6, max_frames=3)
    fill(outbox, ("low", LOW), ("norm", NORMAL), ("rel", RELIABLE))
    assert outbox.offer(frame("low2"), LOW) is Verdict.SHED
    assert outbox.offer(frame("high"), HIGH) is Verdict.ACCEPTED  # evicts "low"
    assert outbox.offer(frame("norm2"), NORMAL) is Verdict.SHED  # only NORMAL left to shed
    assert outbox.offer(frame("rel2"), RELIABLE) is Verdict.ACCEPTED  # evicts "norm"
    assert outbox.offer(frame("rel3"), RELIABLE) is Verdict.OVERFLOW
    assert drain(outbox) == ["rel", "high", "rel2"]


def test_frame_bound_sheds_only_as_many_as_needed() -> None:
    outbox = Outbox(max_bytes=10**6, max_frames=3)
    fill(outbox, ("l1", LOW), ("l2", LOW), ("l3", LOW))
    assert outbox.offer(frame("rel"), RELIABLE) is Verdict.ACCEPTED
    assert drain(outbox) == ["l2", "l3", "rel"]


# statistics


def test_statistics_count_every_verdict() -> None:
    outbox = Outbox(max_bytes=30, max_frames=100)
    assert outbox.statistics() == OutboxStatistics(0, 0, 0, 0, 0, 0)
    fill(outbox, ("low", LOW), ("norm", NORMAL), ("rel", RELIABLE))
    outbox.offer(frame("low2"), LOW)  # shed itself
    outbox.offer(frame("norm2"), NORMAL)  # evicts "low"
    outbox.offer(frame("norm3"), NORMAL)  # shed itself
    outbox.offer(frame("high"), HIGH)  # evicts "norm"
    outbox.offer(frame("rel2"), RELIABLE)  # evicts "norm2"
    outbox.offer(frame("rel3"), RELIABLE)  # overflow
    assert outbox.statistics() == OutboxStatistics(
        queued_frames=3, queued_bytes=30, accepted=6, shed_low=2, shed_normal=3, overflows=1
    )
    outbox.take(10)
    stats = outbox.statistics()
    assert (stats.queued_frames, stats.queued_bytes, stats.accepted) == (2, 20, 6)


def test_shed_totals_are_shared_by_every_outbox() -> None:
    totals = ShedTotals()
    first, second = Outbox(20, 100, totals), Outbox(20, 100, totals)
    for outbox in (first, second):
        fill(outbox, ("low", LOW), ("norm", NORMAL))
    first.offer(frame("low2"), LOW)  # sheds itself
    second.offer(frame("rel", 20), RELIABLE)  # evicts both
    assert (totals.low, totals.normal) == (2, 1)


def test_priority_from_wire() -> None:
    assert Priority.from_wire(1) is HIGH
    assert Priority.from_wire(2) is NORMAL
    assert Priority.from_wire(3) is LOW
    assert Priority.from_wire(0) is NORMAL  # absent
    assert Priority.from_wire(99) is NORMAL


# the property


offers = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(4, 60), st.sampled_from(list(Priority))),
        st.tuples(st.just("take"), st.integers(0, 120), st.just(RELIABLE)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(offers, st.integers(20, 200), st.integers(1, 12))
def test_bounds_hold_and_unsheddable_frames_are_never_lost(
    ops: list[tuple[str, int, Priority]], max_bytes: int, max_frames: int
) -> None:
    outbox = Outbox(max_bytes, max_frames)
    offered: dict[int, Priority] = {}
    accepted: list[int] = []
    verdicts = {v: 0 for v in Verdict}
    taken: list[int] = []
    for op, size, priority in ops:
        if op == "take":
            taken += [int.from_bytes(f[:4]) for f in outbox.take(size)]
            continue
        ident = len(offered)
        offered[ident] = priority
        verdict = outbox.offer(ident.to_bytes(4) + b"\0" * (size - 4), priority)
        verdicts[verdict] += 1
        if priority <= HIGH:
            assert verdict is not Verdict.SHED
        if verdict is Verdict.ACCEPTED:
            accepted.append(ident)
        # One frame may exceed the bound, when it arrived at an empty outbox.
        assert outbox.queued_bytes <= max_bytes or len(outbox) == 1
        assert len(outbox) <= max_frames
        assert outbox.statistics().queued_bytes == outbox.queued_bytes
    stats = outbox.statistics()
    taken += [int.from_bytes(f[:4]) for f in outbox.take(10**9)]
    # Frames come out in the order they were accepted; only LOW and NORMAL go missing.
    assert taken == [i for i in accepted if i in set(taken)]
    lost = [i for i in accepted if i not in set(taken)]
    assert all(offered[i] >= NORMAL for i in lost)
    assert stats.accepted == verdicts[Verdict.ACCEPTED]
    assert stats.overflows == verdicts[Verdict.OVERFLOW]
    assert stats.shed_low + stats.shed_normal == verdicts[Verdict.SHED] + len(lost)


# the reference policy: the same verdicts and frames as a plain list re-scanned on
# every offer (the implementation before shedding became O(1))


class Reference:
    def __init__(self, max_bytes: int, max_frames: int):
        self.max_bytes, self.max_frames = max_bytes, max_frames
        self.queue: list[tuple[bytes, Priority]] = []

    def fits(self, size: int, queue: list[tuple[bytes, Priority]]) -> bool:
        used = sum(len(f) for f, _ in queue)
        return not queue or (used + size <= self.max_bytes and len(queue) < self.max_frames)

    def offer(self, frame: bytes, priority: Priority) -> Verdict:
        size, queue = len(frame), self.queue
        if not self.fits(size, queue):
            if priority is LOW:
                return Verdict.SHED
            if priority is NORMAL and not self.fits(size, [x for x in queue if x[1] != LOW]):
                return Verdict.SHED
            for victim in (LOW, NORMAL):
                if priority is victim:
                    return Verdict.SHED
                while not self.fits(size, queue) and any(p == victim for _, p in queue):
                    queue.remove(next(x for x in queue if x[1] == victim))
                if self.fits(size, queue):
                    break
            else:
                return Verdict.OVERFLOW
        queue.append((frame, priority))
        return Verdict.ACCEPTED

    def take(self, max_bytes: int) -> list[bytes]:
        count, total = 0, 0
        while count < len(self.queue):
            size = len(self.queue[count][0])
            if count and total + size > max_bytes:
                break
            count, total = count + 1, total + size
        out = [f for f, _ in self.queue[:count]]
        del self.queue[:count]
        return out


long_runs = st.lists(
    st.one_of(
        st.tuples(st.just("offer"), st.integers(4, 40), st.sampled_from(list(Priority))),
        st.tuples(st.just("take"), st.integers(0, 200), st.just(RELIABLE)),
    ),
    max_size=400,
)


@settings(max_examples=300, deadline=None)
@given(long_runs, st.integers(20, 300), st.integers(1, 20))
# A NORMAL frame evicted for a frame that then overflows gives its slab back.
@example([("offer", 4, RELIABLE), ("offer", 13, Priority.NORMAL), ("offer", 17, RELIABLE)], 20, 2)
def test_shedding_order_is_the_reference_policy(
    ops: list[tuple[str, int, Priority]], max_bytes: int, max_frames: int
) -> None:
    budget = QueuedBytes(slab=16)
    outbox = Outbox(max_bytes, max_frames, budget=budget)
    reference = Reference(max_bytes, max_frames)
    for n, (op, size, priority) in enumerate(ops):
        if op == "take":
            assert outbox.take(size) == reference.take(size)
        else:
            frame = n.to_bytes(4) + b"\0" * (size - 4)
            assert outbox.offer(frame, priority) is reference.offer(frame, priority)
        assert len(outbox) == len(reference.queue)
        assert outbox.queued_bytes == sum(len(f) for f, _ in reference.queue)
        # The budget holds whole slabs for what is queued beyond the first one.
        assert budget.used % 16 == 0
        assert budget.used == outbox.reserved_bytes
        assert budget.used < max(outbox.queued_bytes, 1)
        assert len(outbox._frames) <= 2 * max_frames + 1  # tombstones are reclaimed
    assert outbox.take(10**9) == [f for f, _ in reference.queue]
    assert budget.used == 0


# shedding costs O(1) per frame, whatever the outbox holds


class WatchedFrames(list[bytes]):
    """The outbox's frame list, counting every slot read or written."""

    touched = 0
    scans = 0

    def __iter__(self) -> Iterator[bytes]:
        WatchedFrames.scans += 1
        return super().__iter__()

    def __getitem__(self, index: SupportsIndex) -> bytes:  # type: ignore[override]
        WatchedFrames.touched += 1
        return super().__getitem__(index)

    def __setitem__(self, index: SupportsIndex, value: bytes) -> None:  # type: ignore[override]
        WatchedFrames.touched += 1
        super().__setitem__(index, value)


class WatchedPriorities(bytearray):
    """The outbox's priorities, counting the bytes every search examines."""

    examined = 0

    def find(self, sub: int, start: SupportsIndex | None = None, *_: object) -> int:  # type: ignore[override]
        at = super().find(sub, start)
        WatchedPriorities.examined += (at + 1 if at >= 0 else len(self)) - int(start or 0)
        return at


def test_offering_to_a_full_outbox_of_8192_frames_does_not_scan_it() -> None:
    outbox = Outbox(max_bytes=10**9, max_frames=8192)
    for n in range(8192):
        fill(outbox, (f"n{n}", NORMAL))
    # A stalled viewer: every new frame meets a full outbox.
    outbox._frames = WatchedFrames(outbox._frames)
    outbox._prios = WatchedPriorities(outbox._prios)
    WatchedFrames.touched = WatchedFrames.scans = WatchedPriorities.examined = 0
    for n in range(1000):
        assert outbox.offer(frame(f"low{n}"), LOW) is Verdict.SHED
        assert outbox.offer(frame(f"norm{n}"), NORMAL) is Verdict.SHED
        assert outbox.offer(frame(f"high{n}"), HIGH) is Verdict.ACCEPTED  # evicts one
    assert WatchedFrames.scans == 0
    assert WatchedFrames.touched <= 2 * 1000  # read and tombstone the evicted frame
    assert WatchedPriorities.examined == 1000  # the evicted ones, oldest first, each once
    names = drain(outbox)
    assert names[:2] == ["n1000", "n1001"]
    assert names[-1000:] == [f"high{n}" for n in range(1000)]
    stats = outbox.statistics()
    assert (stats.shed_low, stats.shed_normal) == (1000, 2000)


# the server-wide budget


def test_the_budget_counts_whole_slabs_beyond_the_first() -> None:
    budget = QueuedBytes(slab=20)
    outbox = Outbox(1000, 100, budget=budget)
    fill(outbox, ("a", NORMAL), ("b", NORMAL))  # 20 bytes: within the first slab
    assert budget.used == 0
    fill(outbox, ("c", NORMAL))  # 30 bytes: one slab more
    assert budget.used == 20
    fill(outbox, ("d", NORMAL), ("e", NORMAL))  # 50 bytes
    assert budget.used == 40
    outbox.take(30)  # 20 bytes left
    assert budget.used == 0
    fill(outbox, ("f", NORMAL))
    outbox.clear()
    assert budget.used == 0


def test_over_the_server_budget_sheddable_frames_are_shed_and_the_owner_told() -> None:
    budget = QueuedBytes(limit=40, slab=10)
    told: list[int] = []
    budget.on_overrun = lambda: told.append(budget.used)
    first, second = Outbox(100, 100, budget=budget), Outbox(100, 100, budget=budget)
    fill(first, ("a", NORMAL), ("b", NORMAL), ("c", RELIABLE))  # 20 reserved
    fill(second, ("d", NORMAL), ("e", NORMAL), ("f", NORMAL))  # 20 reserved
    assert budget.used == 40
    assert second.offer(frame("low"), LOW) is Verdict.SHED
    assert second.offer(frame("norm"), NORMAL) is Verdict.SHED
    # Frames that must not be lost are still queued, past the budget.
    assert second.offer(frame("high"), HIGH) is Verdict.ACCEPTED
    assert told == [40, 40, 40]
    assert (budget.overruns, budget.used) == (3, 50)
    # A viewer who keeps up (within its first slab) is not concerned.
    third = Outbox(100, 100, budget=budget)
    assert third.offer(frame("g", 4), NORMAL) is Verdict.ACCEPTED
    assert third.offer(frame("h", 6), NORMAL) is Verdict.ACCEPTED
    assert third.offer(frame("i", 1), NORMAL) is Verdict.SHED  # it would need a slab
    assert budget.overruns == 4
    # Taking and clearing give the slabs back.
    first.take(10)
    assert budget.used == 40
    second.clear()
    assert budget.used == 10
    assert drain(first) == ["b", "c"]
    assert budget.used == 0
