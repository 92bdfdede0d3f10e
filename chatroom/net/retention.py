"""The retention sweep: deletes messages older than ``message_retention_days`` and
expired temporary conversations, in the background.

Each ``Store.sweep`` call is one small transaction (``BATCH`` rows); between two the
task yields, so that a commit waiting for the store's writer goes first (trio's
capacity limiter is fair): the committer waits at most one batch.
"""

from __future__ import annotations

import logging

import trio
import trio.lowlevel

from chatroom.core.clock import Clock
from chatroom.store.base import Store

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction: 3-6 ms of SQLite writing (docs/operator.md)
_DAY_MS = 86_400_000


class Retention:
    def __init__(self, store: Store, clock: Clock, days: int, interval: float) -> None:
        self._store = store
        self._clock = clock
        self._days = days
        self._interval = interval
        self.deleted = 0  # rows, since start
        self.failures = 0  # sweeps ended by a store error
        self.sweeps = 0  # completed sweeps

    async def sweep(self) -> int:
        """Delete everything due now, batch by batch; the rows deleted."""
        now = self._clock.wall_ms()
        cutoff = now - self._days * _DAY_MS if self._days > 0 else 0
        total = 0
        while (deleted := await self._store.sweep(cutoff, now, BATCH)) > 0:
            total += deleted
            self.deleted += deleted
            # The capacity limiter hands the writer to a waiting commit first.
            await trio.lowlevel.checkpoint()
        self.sweeps += 1
        return total

    async def run(self) -> None:
        """Sweep at start and then every ``interval`` seconds; a store error is logged
        and counted, and the next sweep tries again."""
        while True:
            try:
                deleted = await self.sweep()
            except Exception:
                self.failures += 1
                log.exception("retention sweep failed")
            else:
                if deleted:
                    log.info("retention: deleted %d rows", deleted)
            await trio.sleep(self._interval)
