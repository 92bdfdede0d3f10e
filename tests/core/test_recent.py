"""chatroom.core.recent: the bounded memories of dedupe keys and chatroom messages. Pure."""

from __future__ import annotations

from chatroom.core.model import Message
from chatroom.core.recent import Dedupe, Pending, RoomBuffers


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
