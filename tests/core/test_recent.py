"""chatroom.core.recent: the bounded memories of dedupe keys and chatroom messages. Pure."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TypeVar, cast

from chatroom.core.model import Message
from chatroom.core.recent import Dedupe, Pending, RecentlyUsed, RoomBuffers

V = TypeVar("V")


def test_dedupe_remembers_keys_until_pushed_out() -> None:
    dedupe = Dedupe(size=2)
    first, second, third = Pending("m1", 1), Pending("m2", 2), Pending("m3", 3)
    dedupe.add(("alice", "c1", "dt1"), first)
    dedupe.add(("alice", "c1", "dt2"), second)
    assert dedupe.get(("alice", "c1", "dt1")) is first
    assert dedupe.get(("bob", "c1", "dt1")) is None  # per sender
    assert dedupe.get(("alice", "c2", "dt1")) is None  # and per conversation
    dedupe.add(("alice", "c1", "dt3"), third)
    assert dedupe.get(("alice", "c1", "dt1")) is None  # the oldest is forgotten
    assert dedupe.get(("alice", "c1", "dt2")) is second
    assert dedupe.get(("alice", "c1", "dt3")) is third


def test_dedupe_discard() -> None:
    dedupe = Dedupe(size=10)
    dedupe.add(("alice", "c1", "dt"), Pending("m1", 1))
    dedupe.discard(("alice", "c1", "dt"))
    dedupe.discard(("alice", "c1", "dt"))  # idempotent
    assert dedupe.get(("alice", "c1", "dt")) is None


def test_pending_starts_with_nobody_waiting() -> None:
    assert Pending("m1", 1).waiting == []
    assert Pending("m1", 1).waiting is not Pending("m2", 2).waiting


def message(cid: str, n: int) -> Message:
    return Message(cid=cid, mid=f"m{n}", from_peer="alice", timestamp=n, data=str(n))


def test_room_buffers_keep_the_last_messages_of_each_room() -> None:
    rooms = RoomBuffers(size=3)
    for n in range(5):
        rooms.add(message("live", n))
    rooms.add(message("other", 9))
    assert [m.mid for m in rooms.messages("live")] == ["m2", "m3", "m4"]
    assert [m.mid for m in rooms.messages("other")] == ["m9"]
    assert rooms.messages("empty") == []


def test_room_buffer_copies_are_independent() -> None:
    rooms = RoomBuffers(size=3)
    rooms.add(message("live", 1))
    seen = rooms.messages("live")
    seen.clear()
    assert len(rooms.messages("live")) == 1


def _run(coroutine: Coroutine[object, object, V]) -> V:
    """A coroutine that never suspends, run to its end."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return cast(V, done.value)
    raise AssertionError("it suspended")


def test_a_load_is_kept_unless_a_drop_raced_it_and_the_first_load_wins() -> None:
    items: RecentlyUsed[str] = RecentlyUsed(10)

    async def read(value: str | None, during: Callable[[], object] = lambda: None) -> str | None:
        during()  # what other tasks did while the store was read
        return value

    assert _run(items.load("k", lambda: read(None))) is None  # nothing stored
    assert items.peek("k") is None
    # Dropped while it was read (another node changed it): used once, not kept.
    assert _run(items.load("k", lambda: read("stale", lambda: items.drop("k")))) == "stale"
    assert items.peek("k") is None
    assert _run(items.load("k", lambda: read("fresh"))) == "fresh"
    assert items.peek("k") == "fresh"
    # Another task loaded it first: that copy is the one every caller uses.
    assert _run(items.load("j", lambda: read("second", lambda: items.put("j", "first")))) == "first"
    assert items.peek("j") == "first"
