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


class RoomBudget:
    """Intake budget of one chatroom: ``rate`` messages per second, of which
    ``high_share`` only HIGH messages may use. HIGH messages draw on their reserve
    first and then on the shared part, so they are refused last. One second of
    budget may be saved up."""

    __slots__ = ("_high", "_shared")

    def __init__(self, rate: float, high_share: float, now: float):
        high = rate * high_share
        shared = rate - high
        self._high = TokenBucket(high, max(high, 1.0), now)
        self._shared = TokenBucket(shared, max(shared, 1.0), now)

    def admit(self, high: bool, now: float) -> bool:
        if high and self._high.take(now):
            return True
        return self._shared.take(now)
