"""Wall-clock time, injected: services, the journal and the message ids read the time
from a ``Clock`` they are handed, so that a test can move time instead of sleeping.
Pure (``SystemClock`` reads the system time, nothing else).

Deadlines and rates (idle timeouts, budgets, shedding) use trio's clock instead, which
tests drive with ``autojump_clock``; the wall clock is for what a client or the store
sees: timestamps, expiries, token lifetimes, signature windows.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the epoch (UTC)."""


class SystemClock:
    """The system's wall clock."""

    __slots__ = ()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests, simulations)."""

    __slots__ = ("_now",)

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def wall_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> None:
        """Move forward by ``ms`` milliseconds (never backwards)."""
        self._now += max(0, ms)
