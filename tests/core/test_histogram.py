"""chatroom/core/histogram.py: what /metrics exports for commit batches."""

from __future__ import annotations

import pytest

from chatroom.core.histogram import Histogram


def test_values_count_in_the_first_bucket_that_holds_them() -> None:
    histogram = Histogram([1, 10, 100])
    for value in (0.5, 1, 2, 10, 11, 1000):
        histogram.observe(value)
    snap = histogram.snapshot()
    assert snap.bounds == (1, 10, 100)
    assert snap.cumulative == (2, 4, 5, 6)  # <=1, <=10, <=100, +Inf
    assert snap.total == pytest.approx(1024.5)


def test_an_empty_histogram_counts_nothing() -> None:
    snap = Histogram([0.5]).snapshot()
    assert snap.cumulative == (0, 0)
    assert snap.total == 0


@pytest.mark.parametrize("bounds", [[], [2, 1], [1, 1]])
def test_bounds_must_be_ascending(bounds: list[float]) -> None:
    with pytest.raises(ValueError, match="ascending"):
        Histogram(bounds)
