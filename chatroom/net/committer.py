"""Group commit: persist messages in batches, then run their callbacks in order.

Senders do not wait for their own transaction. A message goes into a bounded queue with
a callback; one task takes whatever has queued up (at most ``commit_batch``), writes it
in one transaction, then calls the callbacks in acceptance order. The callbacks send
the sender's ack and fan the message out, so nobody sees a message that could still
be lost, and delivery order is acceptance order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import trio

from chatroom.core.histogram import Histogram
from chatroom.core.model import Message
from chatroom.store.base import IntegrityError, Store, StoreError

log = logging.getLogger(__name__)

# Called with None once the message is durable, or with the error that lost it.
Callback = Callable[[BaseException | None], None]

# Buckets of the histograms /metrics exports: messages per transaction, and seconds
# one transaction took (the store's write, in its worker thread).
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class CommitterStatistics:
    committed: int
    batches: int
    failed: int
    queued: int


class Committer:
    def __init__(self, store: Store, max_batch: int, queue_size: int):
        self._store = store
        self._max_batch = max_batch
        self._send, self._receive = trio.open_memory_channel[tuple[Message, Callback]](queue_size)
        self.finished = trio.Event()  # set once run() has returned
        self._committed = 0
        self._batches = 0
        self._failed = 0
        self.batch_sizes = Histogram(BATCH_BUCKETS)  # per committed transaction
        self.latency = Histogram(LATENCY_BUCKETS)  # seconds per committed transaction

    async def submit(self, message: Message, callback: Callback) -> None:
        """Queue a message; waits only while the queue is full."""
        await self._send.send((message, callback))

    def submit_nowait(self, message: Message, callback: Callback) -> bool:
        """Queue a message unless the queue is full."""
        try:
            self._send.send_nowait((message, callback))
        except trio.WouldBlock:
            return False
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Commit until ``close`` has been called and the queue is empty."""
        task_status.started()
        try:
            await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._commit(batch)
        await trio.lowlevel.checkpoint()  # also when closed before the first message

    async def _commit(self, batch: list[tuple[Message, Callback]]) -> None:
        error: BaseException | None = None
        try:
            # Shielded: a message that reached the store is acknowledged, even when
            # shutdown cancels everything around it.
            with trio.CancelScope(shield=True):
                started = trio.current_time()
                await self._store.append_messages([message for message, _ in batch])
                self.latency.observe(trio.current_time() - started)
        except IntegrityError as exc:
            if len(batch) > 1:
                # One bad message must not fail its neighbours: commit them one by one.
                log.warning("batch of %d refused (%s); committing singly", len(batch), exc)
                for item in batch:
                    await self._commit([item])
                await trio.lowlevel.checkpoint()
                return
            log.error("message refused by the store: %s", exc)
            self._failed += 1
            error = exc
        except StoreError as exc:  # the store is away (PostgreSQL down): said once a batch
            log.error("commit of %d messages failed: %s", len(batch), exc)
            self._failed += len(batch)
            error = exc
        except Exception as exc:
            log.exception("commit of %d messages failed", len(batch))
            self._failed += len(batch)
            error = exc
        else:
            self._committed += len(batch)
            self._batches += 1
            self.batch_sizes.observe(len(batch))
        for _, callback in batch:
            try:
                callback(error)
            except Exception:
                log.exception("commit callback failed")
        await trio.lowlevel.checkpoint()  # the shielded write above was not one

    def close(self) -> None:
        """No more messages: ``run`` returns once the queue is drained."""
        self._send.close()

    def statistics(self) -> CommitterStatistics:
        return CommitterStatistics(
            committed=self._committed,
            batches=self._batches,
            failed=self._failed,
            queued=self._receive.statistics().current_buffer_used,
        )
