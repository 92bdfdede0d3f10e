"""The server-wide budget of queued bytes: who is closed when it is spent.

Every outbox counts its backlog (beyond its first 64 KiB, in 64 KiB slabs) in one
``QueuedBytes`` (chatroom/core/outbox.py). When a frame needs a slab the spent budget does
not have, the outbox sheds it if it may (LOW, NORMAL) and tells the budget, which
wakes this keeper: it closes the connections holding the most queued
bytes, the slowest readers, with 4120 until the total is back under seven eighths of
the budget, so that shedding stops and the viewers who keep up are left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Protocol

import trio

from chatroom.core.outbox import Outbox, QueuedBytes

log = logging.getLogger(__name__)


class Queueing(Protocol):
    outbox: Outbox
    remote: str

    def close_over_budget(self) -> None:
        """Drop the backlog now and close with 4120."""


def _queued(conn: Queueing) -> int:
    return conn.outbox.queued_bytes


class BudgetKeeper:
    """Closes the slowest connections once ``budget`` is spent. ``connections`` is
    the server's live set, read only when the budget is spent."""

    def __init__(self, budget: QueuedBytes, connections: Collection[Queueing]):
        self._budget = budget
        self._connections = connections
        self._wake = trio.Event()
        budget.on_overrun = self._overrun

    def _overrun(self) -> None:
        self._wake.set()

    def enforce(self) -> int:
        """Close the connections with the most queued bytes until the total is under
        seven eighths of the budget; how many were closed. One sort of the connections,
        however many are closed."""
        budget = self._budget
        low_water = budget.limit - budget.limit // 8
        closed = 0
        for victim in sorted(self._connections, key=_queued, reverse=True):
            if budget.used <= low_water or not victim.outbox.reserved_bytes:
                break  # under again, or what is left is the first slab of viewers who keep up
            log.info(
                "closing %s: %d bytes queued, %d in all outboxes over a budget of %d",
                victim.remote,
                victim.outbox.queued_bytes,
                budget.used,
                budget.limit,
            )
            victim.close_over_budget()
            closed += 1
        budget.closed += closed
        return closed

    async def run(self) -> None:
        """Wait for the budget to be spent, then enforce it; until cancelled."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            self.enforce()
