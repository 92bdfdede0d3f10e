"""The retention task (chatroom/net/retention.py): when it sweeps, what it deletes,
that a store error does not end it, and that a commit never waits for a whole sweep."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing
from store_examples import make_conv, make_msg

from chatroom.core.clock import ManualClock
from chatroom.core.model import HistoryQuery
from chatroom.net.committer import Committer
from chatroom.net.retention import BATCH, Retention
from chatroom.store.memory import MemoryStore
from chatroom.store.sqlite import SqliteStore

DAY_MS = 86_400_000
HOUR = 3600.0


async def timestamps(store: MemoryStore, cid: str = "c1") -> list[int]:
    return [m.timestamp for m in await store.query_messages(HistoryQuery(cid, limit=1000))]


async def test_sweeps_at_start_and_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    clock = ManualClock(start_ms=100 * DAY_MS)
    store = MemoryStore()
    await store.create_conversation(make_conv("c1"))
    # one message per day, the last ten days
    await store.append_messages([make_msg("c1", (90 + d) * DAY_MS, f"m{d}") for d in range(10)])
    retention = Retention(store, clock, days=5, interval=HOUR)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(retention.run)
        await trio.sleep(1)  # the first sweep, at start
        assert await timestamps(store) == [(90 + d) * DAY_MS for d in range(5, 10)]
        clock.advance(2 * DAY_MS)
        await trio.sleep(HOUR - 2)
        assert len(await timestamps(store)) == 5  # not swept again yet
        await trio.sleep(2)
        assert await timestamps(store) == [(90 + d) * DAY_MS for d in range(7, 10)]
        assert (retention.deleted, retention.failures) == (7, 0)
        nursery.cancel_scope.cancel()


async def test_zero_days_keeps_messages(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    await store.create_conversation(make_conv("c1"))
    await store.append_messages([make_msg("c1", 1, "m1")])
    assert await Retention(store, ManualClock(), days=0, interval=HOUR).sweep() == 0
    assert await timestamps(store) == [1]


async def test_a_failing_sweep_is_counted_and_tried_again(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    store = SqliteStore(str(tmp_path / "chat.db"))
    await store.open()
    await store.aclose()  # every call now fails with StoreError
    retention = Retention(store, ManualClock(), days=1, interval=HOUR)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(retention.run)
        await trio.sleep(HOUR * 2.5)
        assert retention.failures == 3  # at start, then after one and two hours
        nursery.cancel_scope.cancel()


async def test_a_commit_waits_for_one_batch_not_the_whole_sweep(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "chat.db"))
    await store.open()
    try:
        await store.create_conversation(make_conv("c1"))
        old = [make_msg("c1", 1000 + i, f"old{i:06}") for i in range(BATCH * 20)]
        await store.append_messages(old)
        clock = ManualClock(start_ms=10 * DAY_MS)
        retention = Retention(store, clock, days=1, interval=HOUR)
        committer = Committer(store, max_batch=100, queue_size=100)
        committed = trio.Event()
        sweep_done = trio.Event()
        deleted_at_commit = -1

        def acked(error: BaseException | None) -> None:
            nonlocal deleted_at_commit
            assert error is None
            deleted_at_commit = retention.deleted
            committed.set()

        async def sweep() -> None:
            await retention.sweep()
            sweep_done.set()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(committer.run)
                nursery.start_soon(sweep)
                while retention.deleted == 0:  # the sweep has begun
                    await trio.lowlevel.checkpoint()
                await committer.submit(make_msg("c1", 10 * DAY_MS, "new"), acked)
                await committed.wait()
                await sweep_done.wait()
                committer.close()
        # acknowledged while most of the old messages were still there
        assert 0 < deleted_at_commit < len(old) // 2
        assert retention.deleted == len(old)
        assert [m.mid for m in await store.query_messages(HistoryQuery("c1"))] == ["new"]
    finally:
        await store.aclose()
