"""A fixed-bucket histogram: counts per upper bound, a sum and a count.

Observed where something already happens once per batch (the committer), read at
scrape time by ``/metrics``. Observing costs one bisection and two additions.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    bounds: tuple[float, ...]
    """Upper bounds of the buckets (ascending); values above the last count in ``+Inf``."""
    cumulative: tuple[int, ...]
    """Observations at or below each bound, then the total (``+Inf``)."""
    total: float
    """Sum of every observed value."""


class Histogram:
    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("bounds must be ascending and distinct")
        self._bounds = tuple(bounds)
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def snapshot(self) -> HistogramSnapshot:
        running, cumulative = 0, []
        for count in self._counts:
            running += count
            cumulative.append(running)
        return HistogramSnapshot(self._bounds, tuple(cumulative), self._sum)
