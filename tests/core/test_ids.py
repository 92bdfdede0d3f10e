"""chatroom.core.ids: message ids and timestamps, conversation ids, ISO times. Pure.

Message ids and timestamps must give ``(timestamp, id)`` in the order the server
accepted the messages, strictly increasing, whatever the wall clock does: stores and
history order messages by that pair (ids compared as strings).
"""

from __future__ import annotations

import base64
import itertools
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.core import ids
from chatroom.core.clock import ManualClock, SystemClock
from chatroom.core.ids import Ids, MessageClock, ObjectIds, iso, session_token


def wall(*readings: int) -> Callable[[], int]:
    """A wall clock that returns ``readings`` in turn, then keeps the last one."""
    values: Iterator[int] = iter(readings)
    last = [readings[0]]

    def now() -> int:
        last[0] = next(values, last[0])
        return last[0]

    return now


def issue(clock: MessageClock, count: int) -> list[tuple[int, str]]:
    return [clock.next() for _ in range(count)]


def assert_strictly_increasing(pairs: list[tuple[int, str]]) -> None:
    for before, after in itertools.pairwise(pairs):
        assert before < after, (before, after)
        # Ids alone sort in issue order too, as strings, across milliseconds.
        assert before[1] < after[1], (before, after)


def test_timestamps_follow_the_wall_clock() -> None:
    clock = MessageClock(now=wall(1000, 1005, 2000))
    assert [ts for ts, _ in issue(clock, 3)] == [1000, 1005, 2000]


def test_ids_are_fixed_width_lowercase_base32() -> None:
    clock = MessageClock(now=wall(1, 1_795_292_551_522, 2**41))
    for _, mid in issue(clock, 3):
        assert re.fullmatch(r"[0-9a-v]{13}", mid), mid


def test_two_nodes_in_one_millisecond_issue_different_ids_in_order() -> None:
    a, b = MessageClock(wall(1000), suffix="0a1f"), MessageClock(wall(1000), suffix="77c0")
    first, second = issue(a, 3), issue(b, 3)
    assert {mid for _, mid in first}.isdisjoint(mid for _, mid in second)
    assert all(mid.endswith("0a1f") and len(mid) == 17 for _, mid in first)
    assert_strictly_increasing(first)


def test_same_millisecond_gives_increasing_ids() -> None:
    clock = MessageClock(now=wall(1000))
    pairs = issue(clock, 100)
    assert {ts for ts, _ in pairs} == {1000}
    assert_strictly_increasing(pairs)


def test_wall_clock_going_backwards_holds_the_timestamp() -> None:
    clock = MessageClock(now=wall(5000, 4000, 3000, 5000, 5001, 4999))
    pairs = issue(clock, 6)
    assert [ts for ts, _ in pairs] == [5000, 5000, 5000, 5000, 5001, 5001]
    assert_strictly_increasing(pairs)


def test_more_than_65536_ids_in_one_millisecond_borrow_the_next() -> None:
    clock = MessageClock(now=wall(1000))
    pairs = issue(clock, 65536 * 2 + 10)
    assert_strictly_increasing(pairs)
    assert pairs[65535][0] == 1000
    assert pairs[65536][0] == 1001
    assert pairs[-1][0] == 1002
    assert len({mid for _, mid in pairs}) == len(pairs)


def test_borrowed_milliseconds_are_not_reissued_when_the_wall_catches_up() -> None:
    readings = [1000] * 65537 + [1001, 1001, 1002]
    clock = MessageClock(now=wall(*readings))
    pairs = issue(clock, len(readings))
    assert_strictly_increasing(pairs)
    assert [ts for ts, _ in pairs[-3:]] == [1001, 1001, 1002]


def test_a_restarted_clock_issues_ids_after_every_stored_one() -> None:
    # The server restarts with not_before = the newest stored timestamp; the wall
    # clock may be behind it (a restart within the millisecond, or NTP stepping back).
    before_restart = issue(MessageClock(now=wall(1000)), 5)
    stored_max = max(ts for ts, _ in before_restart)
    for reading in (999, 1000):
        restarted = MessageClock(now=wall(reading), not_before=stored_max)
        first = restarted.next()
        assert first > before_restart[-1], (reading, first, before_restart[-1])
        assert first[1] > before_restart[-1][1]


def test_a_restarted_clock_follows_a_wall_clock_that_is_ahead() -> None:
    clock = MessageClock(now=wall(5000), not_before=1000)
    assert clock.next()[0] == 5000


@given(st.lists(st.integers(0, 2**42), min_size=1, max_size=200))
def test_any_wall_clock_gives_strictly_increasing_pairs(readings: list[int]) -> None:
    clock = MessageClock(now=wall(*readings))
    pairs = issue(clock, len(readings))
    assert_strictly_increasing(pairs)
    assert all(ts >= reading for (ts, _), reading in zip(pairs, readings, strict=True))


def test_default_clock_reads_the_real_wall_clock() -> None:
    ts, _ = MessageClock().next()
    now = datetime.now(UTC).timestamp() * 1000
    assert abs(ts - now) < 60_000  # same minute: it is epoch milliseconds


# ISO times


def test_iso_format() -> None:
    assert iso(1_795_292_551_522) == "2026-11-21T20:22:31.522Z"
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(5) == "1970-01-01T00:00:00.005Z"
    assert iso(1_795_292_551_999) == "2026-11-21T20:22:31.999Z"


@given(st.integers(0, 253_402_300_799_999))  # up to the end of year 9999
def test_iso_round_trips_every_millisecond(ms: int) -> None:
    text = iso(ms)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text
    parsed = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert round(parsed.timestamp() * 1000) == ms


# other ids


def test_object_ids_are_unique_24_hex_digits() -> None:
    ids = ObjectIds()
    issued = [ids.next() for _ in range(10_000)]
    assert all(re.fullmatch(r"[0-9a-f]{24}", cid) for cid in issued)
    assert len(set(issued)) == len(issued)
    assert ObjectIds().next() not in issued  # another process part


def test_session_tokens_are_unique_url_safe_text() -> None:
    tokens = {session_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{20,}", t) for t in tokens)


def test_session_tokens_take_the_kernels_random_bytes_a_few_kb_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[bytes] = []

    def urandom(n: int) -> bytes:
        reads.append(bytes(len(reads) * 7 + k & 0xFF for k in range(n)))
        return reads[-1]

    monkeypatch.setattr(os, "urandom", urandom)
    ids._ENTROPY.clear()
    tokens = [session_token() for _ in range(1000)]
    assert 1 <= len(reads) <= 10  # not one system call per login
    # Every token is 24 of those bytes, none used twice, in the format of
    # secrets.token_urlsafe(24).
    used = b"".join(base64.urlsafe_b64decode(t) for t in tokens)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{32}", t) for t in tokens)
    assert used == b"".join(reads)[: len(used)]
    assert len(used) == 24 * 1000
    ids._ENTROPY.clear()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_process_issues_other_tokens_than_its_parent() -> None:
    session_token()  # the pool holds unused bytes now
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next token, then gone
        os.write(write_end, session_token().encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != session_token()


def test_ids_follow_the_injected_clock() -> None:
    clock = ManualClock(5_000)
    ids = Ids(clock.wall_ms)
    assert ids.message()[0] == 5_000
    clock.advance(2_000)
    assert ids.message()[0] == 7_000
    assert int(ids.conversation()[:8], 16) == 7  # ObjectId seconds
    clock.advance(-1_000)  # a manual clock never goes back
    assert clock.wall_ms() == 7_000


def test_patch_times_strictly_increase_on_a_stopped_clock() -> None:
    clock = ManualClock(1_000)
    ids = Ids(clock.wall_ms)
    assert [ids.patch_time() for _ in range(3)] == [1_000, 1_001, 1_002]
    clock.advance(10)
    assert ids.patch_time() == 1_010


def test_system_clock_reads_the_wall_clock() -> None:
    before = int(datetime.now(tz=UTC).timestamp() * 1000)
    assert before - 1 <= SystemClock().wall_ms() <= before + 60_000
