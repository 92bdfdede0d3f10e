"""chatroom.net.redis_kept: a chatroom's kept messages read once per drain however many
ask, decoded once per node, and nothing when Redis does not answer."""

from __future__ import annotations

import trio
from helpers import TIMEOUT

from chatroom.core.model import Message
from chatroom.hub import redis_wire as wire
from chatroom.net import redis_kept
from chatroom.net.redis_kept import KeptReader, kept_commands


def _said(n: int) -> Message:
    return Message("room", f"m{n}", "host", 1000 + n, data=f"text {n}")


async def test_askers_of_one_room_share_a_read_and_each_entry_is_decoded_once() -> None:
    reader = KeptReader()
    first, again, other = reader.ask("k:room"), reader.ask("k:room"), reader.ask("k:other")
    assert first is again
    reads = reader.take()
    assert [read.key for read in reads] == ["k:room", "k:other"]  # one LRANGE each
    assert reader.take() == []
    entries = [wire.kept(_said(n)) for n in range(250)]
    KeptReader.answer(reads, [[*entries, b"garbage"], None])
    assert first is not None
    with trio.fail_after(TIMEOUT):
        found = await reader.messages(first)
        assert found == [_said(n) for n in range(250)]
        assert reader.bad == 1  # logged once
        assert await reader.messages(first) == found  # from what was decoded
        assert reader.bad == 1
        assert other is not None
        assert await reader.messages(other) is None  # not a list: no answer


async def test_without_an_answer_askers_go_on_with_none() -> None:
    reader = KeptReader()
    read = reader.ask("k:room")
    assert read is not None
    reader.abandon()  # the connection failed
    assert read.done.is_set()
    with trio.fail_after(TIMEOUT):
        assert await reader.messages(read) is None


def test_too_many_rooms_waiting_are_answered_from_this_node() -> None:
    reader = KeptReader()
    for n in range(redis_kept.WAITING):
        assert reader.ask(f"k:{n}") is not None
    assert reader.ask("k:one-more") is None
    assert reader.ask("k:0") is not None  # already asked for: shares that read


def test_the_commands_that_change_a_list() -> None:
    keep = kept_commands("keep", "k", [b"a", b"b"], 3)
    assert keep == [("RPUSH", "k", b"a", b"b"), ("LTRIM", "k", -3, -1), ("EXPIRE", "k", 86400)]
    assert kept_commands("unkeep", "k", [b"a"], 3) == [("LREM", "k", 0, b"a")]
    assert kept_commands("forget", "k", [b""], 3) == [("DEL", "k")]
