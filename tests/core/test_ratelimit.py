"""chatroom.core.ratelimit: token buckets for per-connection request budgets and chatroom
intake budgets. Pure: time is passed in, so nothing here sleeps."""

from __future__ import annotations

import pytest

from chatroom.core.ratelimit import (
    FloodGuard,
    IntakeBacklog,
    RoomBudget,
    TokenBucket,
    UserBudgets,
    shed_at_intake,
)


def takes(bucket: TokenBucket, now: float, count: int) -> list[bool]:
    return [bucket.take(now) for _ in range(count)]


def test_starts_full_and_refuses_beyond_the_burst() -> None:
    bucket = TokenBucket(rate=1, burst=5, now=0)
    assert takes(bucket, 0, 7) == [True] * 5 + [False] * 2


def test_refills_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5, now=0)
    takes(bucket, 0, 5)
    assert not bucket.take(0.05)  # half a token
    assert bucket.take(0.1)
    assert not bucket.take(0.1)
    assert takes(bucket, 0.4, 4) == [True, True, True, False]


def test_never_saves_more_than_the_burst() -> None:
    bucket = TokenBucket(rate=100, burst=3, now=0)
    assert takes(bucket, 1000, 5) == [True, True, True, False, False]


def test_refusal_spends_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=0)
    takes(bucket, 0, 2)
    for _ in range(100):
        assert not bucket.take(0)
    assert bucket.take(1)  # one second later exactly one token is there


def test_time_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=2, now=10)
    takes(bucket, 10, 2)
    assert not bucket.take(5)
    assert not bucket.take(10.5)
    assert bucket.take(11)


def test_several_tokens_at_once() -> None:
    bucket = TokenBucket(rate=1, burst=10, now=0)
    assert bucket.take(0, tokens=7)
    assert not bucket.take(0, tokens=4)  # all or nothing
    assert bucket.take(0, tokens=3)
    assert not bucket.take(0, tokens=0.5)


@pytest.mark.parametrize(("rate", "seconds"), [(5, 10), (1000, 2), (0.5, 40)])
def test_long_run_average_is_the_rate(rate: float, seconds: int) -> None:
    bucket = TokenBucket(rate=rate, burst=1, now=0)
    steps = 1000
    granted = sum(bucket.take(seconds * k / steps) for k in range(1, steps + 1))
    assert granted == pytest.approx(min(rate * seconds, steps), abs=1)


# the chatroom intake budget


def test_room_budget_reserves_a_share_for_high() -> None:
    budget = RoomBudget(rate=10, high_share=0.2, now=0)  # 8/s shared, 2/s HIGH only
    assert [budget.admit(high=False, now=0) for _ in range(10)] == [True] * 8 + [False] * 2
    # Everything but HIGH is refused now; HIGH still has its reserve.
    assert [budget.admit(high=True, now=0) for _ in range(3)] == [True, True, False]


def test_room_budget_high_falls_back_on_the_shared_part() -> None:
    budget = RoomBudget(rate=10, high_share=0.2, now=0)
    assert [budget.admit(high=True, now=0) for _ in range(11)] == [True] * 10 + [False]
    assert not budget.admit(high=False, now=0)


def test_room_budget_refills() -> None:
    budget = RoomBudget(rate=10, high_share=0.2, now=0)
    for _ in range(10):
        budget.admit(high=True, now=0)
    assert not budget.admit(high=False, now=0)
    assert [budget.admit(high=False, now=0.5) for _ in range(5)] == [True] * 4 + [False]


def test_room_budget_always_lets_one_message_through_a_tiny_rate() -> None:
    # Bursts are at least one message, so a budget below 1/s still admits one.
    budget = RoomBudget(rate=0.5, high_share=0.5, now=0)
    assert budget.admit(high=False, now=0)
    assert not budget.admit(high=False, now=0)
    assert budget.admit(high=True, now=0)
    assert not budget.admit(high=True, now=0)


@pytest.mark.parametrize(
    ("priority", "backlog", "earlier", "lag", "shed"),
    [
        (3, 0, 0, 0.0, None),
        (3, 65, 0, 0.0, "backlog"),  # LOW: past the first backlog limit, at once
        (3, 0, 0, 0.11, "lag"),  # LOW: past the first lag limit
        (3, 65, 0, 0.11, "backlog"),  # both: the backlog is named
        (2, 65, 65, 0.11, None),  # NORMAL keeps going until the second pair
        (2, 257, 0, 0.0, None),  # NORMAL: a backlog that was not there a moment ago
        (2, 257, 300, 0.0, None),  # NORMAL: a backlog that comes down
        (2, 257, 257, 0.0, "backlog"),  # NORMAL: past the limit and not coming down
        (2, 300, 257, 0.0, "backlog"),  # growing
        (2, 384, 384, 0.0, "backlog"),
        (2, 384, 500, 0.0, None),  # coming down, at one and a half times the limit
        (2, 385, 500, 0.0, "backlog"),  # past that: at once, whatever the trend
        (2, 385, 0, 0.0, "backlog"),
        (2, 0, 0, 0.21, "lag"),
        (1, 10**6, 10**6, 10.0, None),  # HIGH is never shed at intake
    ],
)
def test_shed_at_intake(
    priority: int, backlog: int, earlier: int, lag: float, shed: str | None
) -> None:
    assert shed_at_intake(priority, backlog, earlier, lag, (64, 256, 0.1, 0.2)) == shed


def _normal_sheds(intake: IntakeBacklog, backlogs: list[int]) -> list[bool]:
    """One sender's backlog at each of its NORMAL messages, one every 10 ms: which
    of them are shed (limit 100)."""
    sender = object()
    return [
        shed_at_intake(2, intake.sample(sender, b, i / 100), intake.earlier, 0.0, (50, 100, 1, 1))
        is not None
        for i, b in enumerate(backlogs)
    ]


def test_a_pause_the_server_makes_up_for_sheds_no_normal_message() -> None:
    # 150 messages arrive during a pause, then drain by one per message processed
    # (the server is faster than the sender): none of them is shed.
    backlogs = [2] * 20 + list(range(150, 0, -1))
    assert not any(_normal_sheds(IntakeBacklog(window=0.1), backlogs))


def test_a_backlog_that_keeps_growing_sheds_normal_messages() -> None:
    # The sender gets further ahead with every message: NORMAL is shed once the
    # backlog was past the limit a window ago and is still higher, and from then on.
    backlogs = [2] * 20 + list(range(90, 190))
    sheds = _normal_sheds(IntakeBacklog(window=0.1), backlogs)
    first = sheds.index(True)
    assert backlogs[first] > 100
    assert all(sheds[first:])
    assert first - backlogs.index(101) <= 20  # within two windows of passing the limit


def test_intake_backlog_adds_up_the_senders() -> None:
    intake = IntakeBacklog(ttl=0.5)
    a, b = object(), object()
    assert intake.sample(a, 80, now=0.0) == 80
    assert intake.sample(b, 70, now=0.1) == 150  # each waits behind the other too
    assert intake.sample(a, 10, now=0.2) == 80  # a's new sample replaces its old one
    assert intake.sample(b, 0, now=0.3) == 10  # b caught up


def test_intake_backlog_forgets_a_sender_that_went_quiet() -> None:
    intake = IntakeBacklog(ttl=0.5)
    quiet, busy = object(), object()
    intake.sample(quiet, 200, now=0.0)
    assert intake.sample(busy, 5, now=0.4) == 205
    assert intake.sample(busy, 5, now=0.7) == 5  # quiet's sample is older than ttl


# per-user budgets


def test_user_budget_is_one_bucket_per_client() -> None:
    budgets = UserBudgets(rate=1.0, burst=3, max_users=100)
    assert [budgets.take("mallory", 0.0) for _ in range(4)] == [True, True, True, False]
    assert budgets.take("bob", 0.0)  # another client has its own
    assert budgets.take("mallory", 1.0)  # refilled at the rate
    assert not budgets.take("mallory", 1.0)


def test_user_budget_off_at_rate_zero() -> None:
    budgets = UserBudgets(rate=0.0, burst=0, max_users=100)
    assert all(budgets.take("mallory", 0.0) for _ in range(1000))
    assert len(budgets) == 0


def test_user_budget_forgets_clients_whose_bucket_is_full_again() -> None:
    budgets = UserBudgets(rate=1.0, burst=2, max_users=100)
    for i in range(50):
        budgets.take(f"user{i}", 0.0)
    assert len(budgets) == 50
    budgets.take("late", 1.0)  # the others are not full yet (2 s from empty)
    assert len(budgets) == 51
    budgets.take("later", 2.0)  # now they are: forgotten, as if never seen
    assert len(budgets) == 2


def test_user_budget_keeps_at_most_max_users() -> None:
    budgets = UserBudgets(rate=0.001, burst=1, max_users=10)
    for i in range(1000):
        assert budgets.take(f"user{i}", float(i) / 1000)
    assert len(budgets) == 10
    assert not budgets.take("user999", 1.0)  # the most recent ones are remembered


# giving up on a flooder


def test_flood_guard_closes_after_refusals_going_on_for_the_period() -> None:
    guard = FloodGuard(after=10.0)
    assert [guard.refused(t / 2) for t in range(20)] == [False] * 20  # 0 .. 9.5 s
    assert guard.refused(10.0)


def test_flood_guard_starts_again_after_a_pause() -> None:
    guard = FloodGuard(after=10.0)
    for t in range(9):
        assert not guard.refused(float(t))
    for t in range(19, 28):  # 11 s without a refusal first: a new streak
        assert not guard.refused(float(t))
    assert guard.refused(29.0)


def test_flood_guard_off_at_zero() -> None:
    guard = FloodGuard(after=0.0)
    assert not any(guard.refused(float(t)) for t in range(100))
