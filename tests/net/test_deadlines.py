"""The read deadlines kept by one task per server (chatroom/net/deadlines.py): a
connection is closed when it is due, never before, at most a grain later; a frame that
came meanwhile (a later ``due``) keeps it open until its new deadline."""

from __future__ import annotations

import math

import trio
import trio.testing
from helpers import fail_after

from chatroom.net import deadlines

LOGIN = 10.0
IDLE = 64.0
GRAIN = LOGIN / 64  # a sixty-fourth of the shorter timeout


class Conn:
    """A watched connection: ``at`` is when it is due; ``closed`` when it was closed."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.closed: float | None = None
        self.deadline_slot: deadlines.Slot | None = None

    def due(self) -> float:
        return self.at

    def expired(self) -> None:
        assert self.closed is None, "closed twice"
        self.closed = trio.current_time()


def watched(nursery: trio.Nursery, after: float) -> Conn:
    conn = Conn(trio.current_time() + after)
    deadlines.watch(conn, nursery, LOGIN, IDLE)
    return conn


def closed_in_time(conn: Conn) -> bool:
    return conn.closed is not None and conn.at <= conn.closed <= conn.at + GRAIN


@fail_after(1000)
async def test_each_connection_is_closed_when_it_is_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        conns = [watched(nursery, after) for after in (LOGIN, 0.01, 3.3, IDLE, 3.3)]
        await trio.sleep(2 * IDLE)
    assert all(closed_in_time(conn) for conn in conns)


@fail_after(1000)
async def test_a_connection_due_later_meanwhile_is_closed_at_its_new_time_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        talking = watched(nursery, LOGIN)
        for _ in range(5):  # a frame every few seconds: never idle long enough
            await trio.sleep(LOGIN * 0.7)
            talking.at = trio.current_time() + LOGIN
        await trio.sleep(LOGIN * 0.7)
        assert talking.closed is None
    assert closed_in_time(talking)


@fail_after(1000)
async def test_a_connection_due_sooner_is_closed_by_then(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Its last session ended (logout): the login deadline, nearer than the idle one
    # it was watched for, holds again.
    async with trio.open_nursery() as nursery:
        conn = watched(nursery, IDLE)
        await trio.sleep(1)
        conn.at = trio.current_time() + LOGIN
        deadlines.sooner(conn)
    assert closed_in_time(conn)


@fail_after(1000)
async def test_a_new_connection_due_before_the_others_is_closed_in_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The task sleeps until the first connection's deadline; a later one due before it
    # wakes it earlier.
    async with trio.open_nursery() as nursery:
        late = watched(nursery, IDLE)
        await trio.sleep(1)
        early = watched(nursery, LOGIN)
    assert closed_in_time(early)
    assert closed_in_time(late)


@fail_after(1000)
async def test_a_forgotten_connection_is_never_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with trio.open_nursery() as nursery:
        gone, kept = watched(nursery, LOGIN), watched(nursery, LOGIN)
        deadlines.forget(gone)
        deadlines.forget(gone)  # (twice: nothing)
        await trio.sleep(2 * IDLE)
        assert gone.closed is None
        assert gone.deadline_slot is None
        # Nothing is watched and the task has ended: a new connection starts it again.
        again = watched(nursery, LOGIN)
    assert closed_in_time(kept)
    assert closed_in_time(again)


@fail_after(1000)
async def test_servers_keep_their_own_connections(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Two servers in one run (a cluster's nodes in the tests), with their own timeouts.
    async with trio.open_nursery() as first, trio.open_nursery() as second:
        a = watched(first, LOGIN)
        b = Conn(trio.current_time() + 2.0)
        deadlines.watch(b, second, 2.0, 2.0)
        await trio.sleep(2 * LOGIN)
    assert closed_in_time(a)
    assert b.closed is not None
    assert b.at <= b.closed <= b.at + 2.0 / 64


@fail_after(1000)
async def test_a_connection_due_never_is_never_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Both timeouts infinite (they may be set so).
    async with trio.open_nursery() as nursery:
        never = Conn(math.inf)
        deadlines.watch(never, nursery, math.inf, math.inf)
        deadlines.sooner(never)
        await trio.sleep(900)
        deadlines.forget(never)
    assert never.closed is None


@fail_after(1000)
async def test_a_crowd_in_one_slot_is_looked_at_in_turns_with_the_other_tasks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 15,000 viewers that joined within one grain share a slot: the task gives way
    # while it moves them, so that no request waits behind all of them.
    looked: list[int] = []
    seen_by_others: list[int] = []

    class Counted(Conn):
        moved = False

        def due(self) -> float:
            looked.append(1)
            if self.moved:  # each had a frame since it was watched: it moves on
                return self.at + IDLE
            self.moved = True
            return self.at

    due = trio.current_time() + 1.0
    slot_at = (int(due / GRAIN) + 1) * GRAIN  # the slot at or after it

    async def other() -> None:
        await trio.sleep_until(slot_at)  # wakes in the watch task's pass
        for _ in range(100):
            seen_by_others.append(len(looked))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        crowd = [Counted(due) for _ in range(3000)]
        for conn in crowd:
            deadlines.watch(conn, nursery, LOGIN, IDLE)
        looked.clear()  # (watch asks each once)
        nursery.start_soon(other)
        await trio.sleep(1.0 + 2 * GRAIN)
        nursery.cancel_scope.cancel()
    assert len(looked) == 3000
    assert any(0 < n < 3000 for n in seen_by_others)
    assert all(conn.closed is None for conn in crowd)
