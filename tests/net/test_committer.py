"""chatroom.net.committer: group commit. Messages that queue up while a transaction runs go
into the next one; callbacks (the ack and the fan-out) run after the store has the
message, in acceptance order. No sockets: a MemoryStore whose commits take (virtual)
time, under ``autojump_clock``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio
import trio.testing

from chatroom.core.model import Message
from chatroom.net.committer import Callback, Committer, CommitterStatistics
from chatroom.store.base import IntegrityError, StoreError
from chatroom.store.memory import MemoryStore

COMMIT_SECONDS = 1.0


class SlowStore(MemoryStore):
    """Each commit takes ``COMMIT_SECONDS``; records the batches; may fail them all."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []
        self.committing = trio.Event()
        self.fail_with: Exception | None = None

    async def append_messages(self, batch: Sequence[Message]) -> None:
        self.committing.set()
        await trio.sleep(COMMIT_SECONDS)
        if self.fail_with is not None:
            raise self.fail_with
        await super().append_messages(batch)
        self.batches.append([m.mid for m in batch])


def message(mid: str, cid: str = "c1") -> Message:
    return Message(cid=cid, mid=mid, from_peer="alice", timestamp=1000, data=f"text {mid}")


class Outcomes:
    """Callbacks that record (mid, error, stored-at-callback-time) in call order."""

    def __init__(self, store: SlowStore):
        self.store = store
        self.calls: list[tuple[str, BaseException | None]] = []
        self.stored_when_called: list[bool] = []

    def callback(self, mid: str) -> Callback:
        def done(error: BaseException | None) -> None:
            self.calls.append((mid, error))
            self.stored_when_called.append(any(mid in batch for batch in self.store.batches))

        return done


async def open_store() -> SlowStore:
    store = SlowStore()
    await store.open()
    return store


async def test_messages_queued_during_a_commit_share_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.submit(message("m1"), outcomes.callback("m1"))
        await store.committing.wait()
        for mid in ("m2", "m3", "m4"):
            await committer.submit(message(mid), outcomes.callback(mid))
        committer.close()
    assert store.batches == [["m1"], ["m2", "m3", "m4"]]
    assert outcomes.calls == [("m1", None), ("m2", None), ("m3", None), ("m4", None)]
    assert all(outcomes.stored_when_called)
    assert committer.statistics() == CommitterStatistics(committed=4, batches=2, failed=0, queued=0)


async def test_batches_are_at_most_max_batch(autojump_clock: trio.testing.MockClock) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=2, queue_size=100)
    outcomes = Outcomes(store)
    for i in range(5):
        assert committer.submit_nowait(message(f"m{i}"), outcomes.callback(f"m{i}"))
    assert committer.statistics().queued == 5
    committer.close()
    await committer.run()  # drains what was queued before close, then returns
    assert store.batches == [["m0", "m1"], ["m2", "m3"], ["m4"]]
    assert [mid for mid, _ in outcomes.calls] == ["m0", "m1", "m2", "m3", "m4"]


async def test_a_full_queue_refuses_nowait_and_makes_submit_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=100, queue_size=1)
    outcomes = Outcomes(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await committer.submit(message("m1"), outcomes.callback("m1"))
        await store.committing.wait()  # m1 is being written; the queue is empty again
        assert committer.submit_nowait(message("m2"), outcomes.callback("m2"))
        assert not committer.submit_nowait(message("m3"), outcomes.callback("m3"))
        before = trio.current_time()
        await committer.submit(message("m3"), outcomes.callback("m3"))
        assert trio.current_time() > before  # it waited for room
        committer.close()
    assert [mid for mid, _ in outcomes.calls] == ["m1", "m2", "m3"]


async def test_one_bad_message_fails_alone(autojump_clock: trio.testing.MockClock) -> None:
    store = await open_store()
    await MemoryStore.append_messages(store, [message("taken")])
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)
    for mid in ("m1", "taken", "m2"):
        committer.submit_nowait(message(mid), outcomes.callback(mid))
    committer.close()
    await committer.run()
    assert [mid for mid, _ in outcomes.calls] == ["m1", "taken", "m2"]
    errors = dict(outcomes.calls)
    assert errors["m1"] is None
    assert errors["m2"] is None
    assert isinstance(errors["taken"], IntegrityError)
    stats = committer.statistics()
    assert (stats.committed, stats.failed) == (2, 1)


async def test_a_failing_store_fails_every_message_of_the_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = await open_store()
    store.fail_with = StoreError("disk full")
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)
    for mid in ("m1", "m2"):
        committer.submit_nowait(message(mid), outcomes.callback(mid))
    committer.close()
    await committer.run()
    assert [(mid, str(error)) for mid, error in outcomes.calls] == [
        ("m1", "disk full"),
        ("m2", "disk full"),
    ]
    assert not any(outcomes.stored_when_called)
    assert committer.statistics().failed == 2


async def test_a_failing_callback_does_not_stop_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)

    def broken(error: BaseException | None) -> None:
        raise RuntimeError("a bug in a callback")

    committer.submit_nowait(message("m1"), broken)
    committer.submit_nowait(message("m2"), outcomes.callback("m2"))
    committer.close()
    await committer.run()
    assert outcomes.calls == [("m2", None)]
    assert store.batches == [["m1", "m2"]]


async def test_a_commit_in_progress_survives_cancellation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.submit_nowait(message("m1"), outcomes.callback("m1"))
        await store.committing.wait()
        nursery.cancel_scope.cancel()  # e.g. a shutdown
    # What reached the store is stored and acknowledged.
    assert store.batches == [["m1"]]
    assert outcomes.calls == [("m1", None)]


@pytest.mark.parametrize("queued", [0, 3])
async def test_run_returns_after_close(autojump_clock: trio.testing.MockClock, queued: int) -> None:
    store = await open_store()
    committer = Committer(store, max_batch=100, queue_size=100)
    outcomes = Outcomes(store)
    for i in range(queued):
        committer.submit_nowait(message(f"m{i}"), outcomes.callback(f"m{i}"))
    committer.close()
    with trio.fail_after(60):
        await committer.run()
    assert len(outcomes.calls) == queued
