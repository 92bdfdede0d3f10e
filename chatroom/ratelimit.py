"""Token buckets: a request budget per connection (and, later, per chatroom). Pure:
the caller passes the current time."""

from __future__ import annotations


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: float, now: float):
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = now

    def take(self, now: float, tokens: float = 1.0) -> bool:
        """Spend ``tokens`` if the budget allows; False (and nothing spent) if not."""
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
            self._last = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False
