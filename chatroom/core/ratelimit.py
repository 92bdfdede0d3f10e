"""Token buckets: a request budget per connection, a message budget per client id
(shared by its connections) and per chatroom, and when to give up on a flooder. Pure:
the caller passes the current time."""

from __future__ import annotations

import math
from collections import OrderedDict


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
            saved = self._tokens + elapsed * self._rate
            self._tokens = saved if saved < self._burst else self._burst  # (no min call)
            self._last = now
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    @property
    def last_used(self) -> float:
        """When ``take`` last ran (its ``now``)."""
        return self._last


class UserBudgets:
    """A message budget per client id, one token bucket shared by all the connections
    of that client: several connections get no more than one.

    Memory stays bounded: a bucket unused for ``burst / rate`` seconds is full again,
    no different from a new one, so it is forgotten; beyond ``max_users`` the least
    recently used are forgotten early (they start again with a full budget). Buckets
    are kept in order of use, so forgetting looks at the oldest only.
    """

    __slots__ = ("_buckets", "_burst", "_max_users", "_rate", "_refill")

    def __init__(self, rate: float, burst: float, max_users: int):
        self._rate = rate
        self._burst = burst
        self._max_users = max_users
        self._refill = burst / rate if rate > 0 else 0.0  # seconds from empty to full
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, user: str, now: float) -> bool:
        """Spend one token of ``user``'s budget if it allows (always, when off)."""
        if self._rate <= 0:
            return True
        buckets = self._buckets
        bucket = buckets.get(user)
        if bucket is None:
            bucket = buckets[user] = TokenBucket(self._rate, self._burst, now)
        else:
            buckets.move_to_end(user)
        allowed = bucket.take(now)
        while buckets:
            oldest = next(iter(buckets.values()))
            if len(buckets) <= self._max_users and now - oldest.last_used < self._refill:
                break
            buckets.popitem(last=False)
        return allowed


class FloodGuard:
    """When to give up on a client that keeps exceeding its budget: once it has been
    refused for ``after`` seconds, with no pause of ``after`` seconds between two
    refusals. A client that went over once and slowed down is never closed; one that
    keeps flooding is, ``after`` seconds into it. ``after`` 0: never."""

    __slots__ = ("_after", "_last", "_since")

    def __init__(self, after: float):
        self._after = after
        self._since = -math.inf  # first refusal of the current streak
        self._last = -math.inf  # latest refusal

    def refused(self, now: float) -> bool:
        """Record a refusal; True when the client should now be closed."""
        if now - self._last >= self._after:
            self._since = now  # a pause long enough: a new streak
        self._last = now
        return self._after > 0 and now - self._since >= self._after


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


class IntakeBacklog:
    """Chatroom messages waiting to be read, across every sender the server is behind.

    A sender's backlog is sampled when one of its sheddable chatroom messages is
    processed, and the total is what the shedding limits are compared with: the
    readers take turns, so a message waits behind the other senders' backlogs too
    (ten publishers 80 messages behind each is 800, not 80). A sample counts for
    ``ttl`` seconds: a sender that went quiet, or left, stops counting.

    ``earlier`` is the total as it was between ``window`` and twice that ago (when
    samples come steadily): a backlog that is still as big as then is one the server
    does not drain, whereas one that shrinks is the trace of a pause (a stall, another
    process on the core) that the server is already making up for.
    """

    __slots__ = (
        "_next_mark",
        "_next_sweep",
        "_recent",
        "_senders",
        "_total",
        "_ttl",
        "_window",
        "earlier",
    )

    def __init__(self, ttl: float = 0.5, window: float = 0.1):
        self._ttl = ttl
        self._window = window
        self._senders: dict[object, tuple[int, float]] = {}
        self._total = 0
        self._next_sweep = 0.0
        self._next_mark = 0.0
        self._recent = 0  # the total at the last mark
        self.earlier = 0  # the total at the mark before it

    def sample(self, sender: object, backlog: int, now: float) -> int:
        """Record ``sender``'s backlog; return the total, this sample included."""
        old = self._senders.pop(sender, None)
        if old is not None:
            self._total -= old[0]
        if backlog > 0:
            self._senders[sender] = (backlog, now)
            self._total += backlog
        if now >= self._next_sweep:
            stale = [s for s, (_, at) in self._senders.items() if now - at > self._ttl]
            for s in stale:
                self._total -= self._senders.pop(s)[0]
            self._next_sweep = now + self._ttl / 4
        if now >= self._next_mark:
            self.earlier, self._recent = self._recent, self._total
            self._next_mark = now + self._window
        return self._total


def shed_at_intake(
    priority: int,
    backlog: int,
    earlier: int,
    lag: float,
    limits: tuple[int, int, float, float],
) -> str | None:
    """Why a chatroom message of ``priority`` (outbox.Priority: 1 HIGH, 2 NORMAL,
    3 LOW) is dropped as it is read, the server being behind: ``"backlog"`` or
    ``"lag"``; None when it is not.

    ``backlog`` is how many chatroom messages the server has received and not yet
    processed (``IntakeBacklog``), ``earlier`` what it was a moment ago
    (``IntakeBacklog.earlier``); ``lag`` how late (seconds) the event loop runs.
    ``limits`` are ``(backlog_low, backlog_normal, lag_low, lag_normal)``. LOW is shed
    past the first backlog limit or the first lag limit; NORMAL past the second lag
    limit, or past the second backlog limit when the backlog was past it a moment ago
    already and has not come down since: a server that keeps up on average drains
    the backlog a pause left (another process on its core, a long flush) and loses
    no NORMAL message to it, while one that is overloaded does not drain it. Past
    one and a half times that limit NORMAL is shed at once whatever the trend, so
    that HIGH never waits behind more than that many messages being processed. HIGH is
    never shed. Shedding at intake costs almost nothing, so the backlog drains and
    the HIGH messages behind it get through.
    """
    backlog_low, backlog_normal, lag_low, lag_normal = limits
    if priority >= 3:
        if backlog > backlog_low:
            return "backlog"
        return "lag" if lag > lag_low else None
    if priority == 2:
        if backlog > backlog_normal and earlier > backlog_normal and backlog >= earlier:
            return "backlog"
        if 2 * backlog > 3 * backlog_normal:  # too far behind to wait and see
            return "backlog"
        return "lag" if lag > lag_normal else None
    return None
