"""chatroom.net.flusher: coalesced writes. Connections marked dirty are flushed by one task,
once per tick, or once per ``write_delay`` so that several frames share one system
call. No sockets: fake connections record when they are flushed, under
``autojump_clock``.
"""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from chatroom.net.flusher import Flusher


class Recorder:
    def __init__(self, name: str, log: list[tuple[str, float]], frames: int = 1):
        self.name = name
        self.log = log
        self.frames = frames  # what each flush reports having written

    def flush_nowait(self) -> int:
        self.log.append((self.name, trio.current_time()))
        return self.frames


async def test_marks_in_one_tick_are_flushed_once_after_the_marker_yields(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    a, b = Recorder("a", log), Recorder("b", log)
    flusher = Flusher()
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        flusher.mark(a)
        flusher.mark(b)
        assert log == []  # marking never writes: the fan-out loop goes on
        await trio.testing.wait_all_tasks_blocked()
        assert [name for name, _ in log] == ["a", "b"]
        flusher.mark(a)
        await trio.testing.wait_all_tasks_blocked()
        assert [name for name, _ in log] == ["a", "b", "a"]
        nursery.cancel_scope.cancel()


async def test_write_delay_gathers_marks_into_one_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    conns = [Recorder(f"c{i}", log) for i in range(3)]
    flusher = Flusher(write_delay=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        start = trio.current_time()
        flusher.mark(conns[0])
        await trio.sleep(0.004)
        flusher.mark(conns[1])
        await trio.sleep(0.004)
        flusher.mark(conns[2])
        await trio.sleep(0.1)
        assert [name for name, _ in log] == ["c0", "c1", "c2"]
        times = {t for _, t in log}
        assert len(times) == 1  # one flush for all three
        assert times.pop() >= start + 0.01
        flusher.mark(conns[0])  # the next flush waits its own delay
        await trio.sleep(0.1)
        assert len(log) == 4
        nursery.cancel_scope.cancel()


async def test_write_delay_only_after_a_busy_flush(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    conns = [Recorder(f"c{i}", log) for i in range(3)]
    flusher = Flusher(write_delay=0.01, busy_threshold=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        start = trio.current_time()
        flusher.mark(conns[0])  # quiet: flushed at once
        await trio.testing.wait_all_tasks_blocked()
        assert log == [("c0", start)]
        flusher.mark(conns[0])
        flusher.mark(conns[1])  # two in one cycle: still at once, but now busy
        await trio.testing.wait_all_tasks_blocked()
        assert [t for _, t in log] == [start] * 3
        flusher.mark(conns[2])  # after a busy cycle: waits the delay
        await trio.sleep(0.1)
        assert log[-1] == ("c2", start + 0.01)
        flusher.mark(conns[2])  # that cycle was quiet again: at once
        await trio.testing.wait_all_tasks_blocked()
        assert log[-1][1] == trio.current_time()
        flusher.mark(conns[0])
        flusher.mark(conns[1])  # busy again
        await trio.sleep(0.05)  # longer than the delay: nothing left to gather
        marked = trio.current_time()
        flusher.mark(conns[2])
        await trio.testing.wait_all_tasks_blocked()
        assert log[-1] == ("c2", marked)  # at once
        nursery.cancel_scope.cancel()


class Slow(Recorder):
    """A connection whose write takes ``seconds`` of (mock) time."""

    def __init__(
        self, name: str, log: list[tuple[str, float]], clock: trio.testing.MockClock, frames: int
    ):
        super().__init__(name, log, frames)
        self.clock = clock

    def flush_nowait(self) -> int:
        written = super().flush_nowait()
        self.clock.jump(0.015)
        return written


@pytest.mark.parametrize(
    ("frames", "wait"),
    [(1, 0.03), (3, 0.06)],  # one frame per write: as long again; several: twice as long
)
async def test_after_a_long_flush_the_next_waits_as_long_again(
    autojump_clock: trio.testing.MockClock, frames: int, wait: float
) -> None:
    log: list[tuple[str, float]] = []
    conns = [Slow(f"c{i}", log, autojump_clock, frames) for i in range(2)]
    flusher = Flusher(write_delay=0.005, busy_threshold=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        start = trio.current_time()
        flusher.mark(conns[0])
        flusher.mark(conns[1])  # a busy cycle of 30 ms (two writes of 15 ms)
        await trio.testing.wait_all_tasks_blocked()
        assert [t - start for _, t in log] == pytest.approx([0, 0.015])
        flusher.mark(conns[0])
        await trio.sleep(0.1)
        # Not 5 ms after the busy cycle ended (at 30 ms), but 30 or 60 ms after.
        assert log[-1][1] - start == pytest.approx(0.03 + wait)
        nursery.cancel_scope.cancel()


async def test_a_long_flush_pauses_no_more_than_max_pause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    conns = [Slow(f"c{i}", log, autojump_clock, 3) for i in range(2)]
    flusher = Flusher(write_delay=0.005, busy_threshold=2, max_pause=0.02)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        start = trio.current_time()
        flusher.mark(conns[0])
        flusher.mark(conns[1])  # 30 ms of writes carrying 3 frames each: 60 ms uncapped
        await trio.testing.wait_all_tasks_blocked()
        flusher.mark(conns[0])
        await trio.sleep(0.1)
        assert log[-1][1] - start == pytest.approx(0.03 + 0.02)
        nursery.cancel_scope.cancel()


async def test_a_big_cycle_lets_other_tasks_run_between_slices(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """What another task does between two slices (fan out the next message) reaches
    the connections not written yet in this cycle, and the written ones in the next."""
    log: list[tuple[str, float]] = []
    conns = [Recorder(f"c{i}", log) for i in range(5)]
    flusher = Flusher(slice_size=2)
    seen: list[int] = []  # how many writes the other task saw done, at each of its turns

    async def other_task() -> None:
        marked = False
        while len(log) < 5:
            await trio.lowlevel.checkpoint()
            seen.append(len(log))
            if not marked and 2 <= len(log) < 5:
                flusher.mark(conns[0])  # written already: marked again
                marked = True

    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        for conn in conns:
            flusher.mark(conn)
        nursery.start_soon(other_task)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [name for name, _ in log] == ["c0", "c1", "c2", "c3", "c4", "c0"]
    # It ran in the middle of the cycle (after the first slice or the second), and
    # never inside a slice.
    assert {2, 4} & set(seen)
    assert not {1, 3} & set(seen)


async def test_a_long_flush_pauses_no_longer_than_the_latency_allows(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two cycles of 30 ms leave 10 ms of a 70 ms latency for the pause; a cycle twice
    as long leaves nothing, and the pause falls back to ``write_delay``."""
    log: list[tuple[str, float]] = []
    flusher = Flusher(write_delay=0.005, busy_threshold=2, max_pause=0.02, latency=0.07)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        for count, pause in ((2, 0.01), (4, 0.005)):
            conns = [Slow(f"c{i}", log, autojump_clock, 1) for i in range(count)]
            await trio.sleep(1)
            start = trio.current_time()
            for conn in conns:
                flusher.mark(conn)  # a busy cycle of 15 ms per connection
            await trio.testing.wait_all_tasks_blocked()
            flusher.mark(conns[0])
            await trio.sleep(0.5)
            assert log[-1][1] - start == pytest.approx(count * 0.015 + pause)
        nursery.cancel_scope.cancel()


class Steps(trio.abc.Instrument):
    """Counts the steps of the flusher's task (each is a wake-up and a scheduler pass)."""

    def __init__(self) -> None:
        self.flusher = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("Flusher.run"):
            self.flusher += 1


async def _started(nursery: trio.Nursery, flusher: Flusher, steps: Steps) -> None:
    trio.lowlevel.add_instrument(steps)
    await nursery.start(flusher.run)
    await trio.testing.wait_all_tasks_blocked()  # parked, waiting for a mark


async def test_an_idle_held_flusher_is_swept_by_the_releasing_task_without_waking(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    a, b = Recorder("a", log), Recorder("b", log)
    flusher, steps = Flusher(write_delay=0.01, busy_threshold=2), Steps()
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        before = steps.flusher
        flusher.hold()  # what one read brings is fanned out
        flusher.mark(a)
        flusher.mark(b)
        assert log == []  # marking never writes
        flusher.release()
        assert [name for name, _ in log] == ["a", "b"]  # at once, in this task
        await trio.testing.wait_all_tasks_blocked()
        assert steps.flusher == before  # the flusher's task did not wake
        assert len(log) == 2
        # That cycle was busy (two sockets): the next mark waits the delay, held or not.
        marked = trio.current_time()
        flusher.hold()
        flusher.mark(a)
        flusher.release()
        assert len(log) == 2
        await trio.sleep(0.1)
        assert log[-1] == ("a", marked + 0.01)
        # Past the pause, and a quiet cycle: swept by the releasing task again.
        flusher.hold()
        flusher.mark(b)
        flusher.release()
        assert log[-1] == ("b", trio.current_time())
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("marked", "written", "prompt"),
    [
        (0.01, 0.03, False),  # a third into the pause: at its end, by the flusher's task
        (0.025, 0.025, False),  # in its last quarter: at once, by the releasing task
        (0.01, 0.01, True),  # paced by the sending node: at once, wherever in the pause
    ],
)
async def test_what_a_release_brings_near_the_end_of_a_pause_is_written_at_once(
    autojump_clock: trio.testing.MockClock, marked: float, written: float, prompt: bool
) -> None:
    """Another node publishes a room's messages paced as this node's flushes are but
    not in step with them: a read that comes a little before this node's pause ends
    is written then, not a whole cycle behind the other node's viewers. What another
    node held until its own flush (``prompt``: net/redis_link.py) is written when it
    comes."""
    log: list[tuple[str, float]] = []
    flusher, steps = Flusher(write_delay=0.005, busy_threshold=2), Steps()
    room = Room(log, autojump_clock, flusher, 2, 0)  # a 30 ms cycle, a 30 ms pause
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        flusher.hold()
        flusher.mark(room)
        flusher.release()  # swept at once: a busy cycle
        end = trio.current_time()
        await trio.sleep(marked)
        flusher.hold()
        flusher.mark(room)
        flusher.release(prompt)
        await trio.sleep(1)
        assert log[1][1] - end == pytest.approx(written)
        nursery.cancel_scope.cancel()


async def test_a_prompt_release_while_the_task_waits_out_a_pause_writes_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The flusher's task waits for the end of a pause with a connection marked; a
    read paced by the sending node comes: both are written at once, by the releasing
    task; like any cycle written before its time, it ends as if it began on time."""
    log: list[tuple[str, float]] = []
    flusher, steps = Flusher(write_delay=0.005, busy_threshold=2), Steps()
    room = Room(log, autojump_clock, flusher, 2, 0)  # a 30 ms cycle, a 30 ms pause
    other = Recorder("other", log)
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        flusher.mark(room)
        await trio.testing.wait_all_tasks_blocked()  # a busy cycle by the task
        end = trio.current_time()
        flusher.mark(other)  # the task wakes and waits for the pause's end (0.03)
        await trio.sleep(0.01)
        flusher.hold()
        flusher.mark(room)
        flusher.release(prompt=True)
        assert [name for name, _ in log[1:]] == ["other", "room"]
        assert [t - end for _, t in log[1:]] == pytest.approx([0.01, 0.01])
        flusher.mark(room)
        await trio.sleep(1)
        # It counts as the cycle due at 0.03 (ending at 0.06), then its 30 ms pause.
        assert [(name, round(t - end, 6)) for name, t in log[3:]] == [("room", 0.09)]
        nursery.cancel_scope.cancel()


async def test_a_prompt_release_during_a_cycle_has_the_next_start_when_it_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A paced read that comes between two slices of a busy cycle goes to the next
    cycle, which starts when this one ends: no pause of this node's before it."""
    log: list[tuple[str, float]] = []
    conns = [Room(log, autojump_clock, Flusher(), 1, 0) for _ in range(3)]
    flusher, steps = Flusher(write_delay=0.005, busy_threshold=2, slice_size=1), Steps()
    for conn in conns:
        conn.flusher = flusher
    late = Recorder("late", log)
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)

        async def reader() -> None:  # fans out between two slices
            while len(log) < 1:
                await trio.lowlevel.checkpoint()
            flusher.hold()
            flusher.mark(late)
            flusher.release(prompt=True)

        start = trio.current_time()
        for conn in conns:
            flusher.mark(conn)
        nursery.start_soon(reader)
        await trio.sleep(1)
        # three slices of 15 ms, then the late one at once (else 45 ms later)
        assert [name for name, _ in log] == ["room", "room", "room", "late"]
        assert [t - start for _, t in log] == pytest.approx([0.0, 0.015, 0.03, 0.045])
        nursery.cancel_scope.cancel()


async def test_a_cycle_written_early_by_a_release_keeps_the_cadence(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The next pause counts from when the early cycle was due: cycles written a little
    early, one after another, do not come ever sooner (more writes per message)."""
    log: list[tuple[str, float]] = []
    flusher, steps = Flusher(write_delay=0.005, busy_threshold=2), Steps()
    room = Room(log, autojump_clock, flusher, 2, 0)  # a 30 ms cycle, a 30 ms pause
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        for _ in range(3):
            flusher.hold()
            flusher.mark(room)
            flusher.release()
            if len(log) == 1:
                end = trio.current_time()
            await trio.sleep(0.025)  # into the last quarter of the pause: at once
        await trio.sleep(1)
        starts = [t - end for _, t in log]
        # The second was due at 0.03 and written at 0.025; the third is due a cycle and
        # a pause after 0.03 (0.09), and 0.08 is not in its last quarter: at 0.09.
        assert starts[1:] == pytest.approx([0.025, 0.09])
        nursery.cancel_scope.cancel()


async def test_a_held_flusher_that_waits_write_delay_after_every_mark_is_not_swept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    flusher, steps = Flusher(write_delay=0.01), Steps()
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        start = trio.current_time()
        flusher.hold()
        flusher.mark(Recorder("a", log))
        flusher.release()
        assert log == []
        await trio.sleep(0.1)
        assert log == [("a", start + 0.01)]  # gathered for write_delay, as ever
        nursery.cancel_scope.cancel()


async def test_a_held_flusher_already_woken_or_mid_cycle_writes_in_its_own_task_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A mark from before the hold has woken the flusher: what is marked while held
    follows it in the flusher's cycle. Between two slices of a cycle, what is marked
    while held goes to the next cycle, after the connections of this one."""
    log: list[tuple[str, float]] = []
    conns = [Recorder(f"c{i}", log) for i in range(5)]
    late = Recorder("late", log)
    flusher, steps = Flusher(slice_size=2), Steps()
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        flusher.mark(conns[0])
        flusher.hold()
        flusher.mark(conns[1])
        flusher.release()
        assert log == []  # the flusher's task writes both
        await trio.testing.wait_all_tasks_blocked()
        assert [name for name, _ in log] == ["c0", "c1"]

        held_at: list[tuple[int, int]] = []  # writes before the release, and by it

        async def reader() -> None:  # fans out between two slices
            while len(log) < 4:
                await trio.lowlevel.checkpoint()
            before = len(log)
            flusher.hold()
            flusher.mark(late)
            flusher.release()
            held_at.append((before, len(log) - before))

        for conn in conns:
            flusher.mark(conn)
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert held_at in ([(4, 0)], [(6, 0)])  # mid-cycle: nothing written by the release
        names = [name for name, _ in log[2:]]
        assert names == ["c0", "c1", "c2", "c3", "c4", "late"]
        nursery.cancel_scope.cancel()


async def test_a_held_flusher_sweeps_one_slice_and_leaves_the_rest_to_its_task_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    conns = [Recorder(f"c{i}", log) for i in range(5)]
    flusher, steps = Flusher(slice_size=2), Steps()
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        flusher.hold()
        for conn in conns:
            flusher.mark(conn)
        flusher.release()
        assert [name for name, _ in log] == ["c0", "c1"]  # one slice, in this task
        flusher.mark(conns[0])  # after the rest of that cycle
        await trio.testing.wait_all_tasks_blocked()
        assert [name for name, _ in log] == ["c0", "c1", "c2", "c3", "c4", "c0"]
        nursery.cancel_scope.cancel()


class Room(Recorder):
    """A chatroom's writer (net/roomwriter.py) on a cluster node: ``here`` of its
    viewers on this node, each write taking 15 ms, and ``there`` on other nodes.
    ``shared``: the node shares its core, and each write takes 15 ms more of the
    clock while the other nodes write (not this node's CPU time)."""

    def __init__(
        self,
        log: list[tuple[str, float]],
        clock: trio.testing.MockClock,
        flusher: Flusher,
        here: int,
        there: int,
        shared: bool = False,
    ):
        super().__init__("room", log)
        self.clock, self.flusher, self.here, self.there = clock, flusher, here, there
        self.shared = shared
        self.cpu = 0.0  # this node's CPU seconds
        flusher.cpu_clock = lambda: self.cpu

    def flush_nowait(self) -> int:
        super().flush_nowait()
        self.cpu += 0.015 * self.here
        self.clock.jump(0.015 * self.here * (2 if self.shared else 1))
        self.flusher.wrote(self.here, self.there)
        return self.here


async def _next_cycle(flusher: Flusher, room: Room, log: list[tuple[str, float]]) -> float:
    """A busy cycle of ``room`` (a message for its viewers), then another message
    marked at once: when the cycle that writes it starts, from the first's start."""
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        start = trio.current_time()
        flusher.mark(room)
        await trio.testing.wait_all_tasks_blocked()
        flusher.mark(room)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert len(log) == 2
    return log[1][1] - start


@pytest.mark.parametrize(
    ("here", "there", "shared", "wait"),
    [
        (4, 0, False, 0.12),  # one node with 4 viewers: a 60 ms cycle, as long again
        (2, 2, False, 0.12),  # half of them here: when one node's next cycle would start
        (2, 2, True, 0.12),  # the same, the two nodes on one core
        (2, 0, False, 0.06),  # a room of 2 alone: its own 30 ms, as long again
    ],
)
async def test_a_node_with_part_of_a_rooms_viewers_gathers_as_one_node_with_all(
    autojump_clock: trio.testing.MockClock, here: int, there: int, shared: bool, wait: float
) -> None:
    """``shared``: the nodes share one core, and this node's cycle takes as long as
    one node's with every viewer (the other node writes meanwhile): it is not taken
    twice as long again."""
    log: list[tuple[str, float]] = []
    flusher = Flusher(write_delay=0.005, busy_threshold=2)
    room = Room(log, autojump_clock, flusher, here, there, shared)
    assert await _next_cycle(flusher, room, log) == pytest.approx(wait)


@pytest.mark.parametrize("pause", [0.02, 0.2])  # shorter, longer than the cycle
@pytest.mark.parametrize(("here", "there"), [(4, 0), (2, 2), (1, 3)])
async def test_with_a_fixed_pause_a_rooms_cycles_keep_one_cadence_on_any_nodes(
    autojump_clock: trio.testing.MockClock, here: int, there: int, pause: float
) -> None:
    """``write_delay`` = ``max_pause``: each cycle of a room of four starts one node's
    60 ms cycle and the pause after the last, however its viewers are spread."""
    log: list[tuple[str, float]] = []
    flusher = Flusher(write_delay=pause, busy_threshold=2, max_pause=pause)
    room = Room(log, autojump_clock, flusher, here, there)
    assert await _next_cycle(flusher, room, log) == pytest.approx(0.06 + pause)


async def test_a_room_busy_with_its_viewers_elsewhere_waits_write_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two viewers here are below the threshold of three; with two more on another
    node the room is busy, as on one node with all four."""
    for there, wait in ((0, 0.03), (2, 0.03 + 0.03 + 0.06)):
        log: list[tuple[str, float]] = []
        flusher = Flusher(write_delay=0.005, busy_threshold=3)
        room = Room(log, autojump_clock, flusher, 2, there)
        assert await _next_cycle(flusher, room, log) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("max_pause", "latency", "wait"),
    [
        # one node's 60 ms cycle (30 ms of it elsewhere), then at most max_pause
        (0.05, math.inf, 0.06 + 0.05),
        (math.inf, 0.1, 0.03 + 0.1 - 2 * 0.03),  # two of this node's own cycles
    ],
)
async def test_the_pause_for_viewers_elsewhere_keeps_the_bounds(
    autojump_clock: trio.testing.MockClock, max_pause: float, latency: float, wait: float
) -> None:
    log: list[tuple[str, float]] = []
    flusher = Flusher(write_delay=0.005, busy_threshold=2, max_pause=max_pause, latency=latency)
    room = Room(log, autojump_clock, flusher, 2, 2)
    assert await _next_cycle(flusher, room, log) == pytest.approx(wait)


async def test_a_cycle_swept_by_the_releasing_task_counts_the_viewers_elsewhere(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    flusher, steps = Flusher(write_delay=0.005, busy_threshold=2), Steps()
    room = Room(log, autojump_clock, flusher, 2, 2)
    async with trio.open_nursery() as nursery:
        await _started(nursery, flusher, steps)
        start = trio.current_time()
        flusher.hold()
        flusher.mark(room)
        flusher.release()
        assert log == [("room", start)]  # written by the releasing task
        flusher.hold()
        flusher.mark(room)
        flusher.release()
        await trio.sleep(1)
        assert log[1][1] - start == pytest.approx(0.12)  # as one node with all four
        nursery.cancel_scope.cancel()
