"""A chatroom's recent messages (``logs``) on a cluster: two nodes on one real
redis-server answer the same history, whichever node accepted each message, and a
viewer that joins on a node with no viewer yet finds what was said before."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_nodes import eventually, host_and_viewers, join, link, room_watched, two_nodes
from helpers import Client, fail_after
from redis_server import RedisServer, redis_server

from chatroom.core.model import Message
from chatroom.hub import redis_wire as wire
from chatroom.net import resp


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


async def heard(client: Client, text: str) -> None:
    """Until ``client`` got the push of message ``text`` (earlier ones are skipped)."""
    while (await client.next_push("direct"))["msg"] != text:
        pass


async def texts(client: Client, cid: str) -> list[str]:
    return [str(item["data"]) for item in await client.logs(cid)]


@fail_after(30)
async def test_a_chatrooms_history_is_the_same_on_both_nodes(redis: RedisServer) -> None:
    async with host_and_viewers(redis.url) as ((a, _), host, late, early):
        cid = await room_watched(host, [])
        await host.say(cid, "one")
        await host.say(cid, "two")
        # Node B has no viewer of the room yet: it heard none of this.
        await join(late, cid, "v1")
        await host.say(cid, "three")
        await heard(late, "three")  # node A's transaction with "three" ran
        assert await texts(late, cid) == ["one", "two", "three"]
        await late.say(cid, "four")
        await heard(host, "four")
        for asker in (host, late):
            assert await texts(asker, cid) == ["one", "two", "three", "four"]
        # Node B's own viewer joining later reads the same (its node now hears the room).
        await join(early, cid, "v2")
        assert await texts(early, cid) == ["one", "two", "three", "four"]
        assert link(a).statistics()["bad_records"] == 0


@fail_after(30)
async def test_history_is_capped_and_skips_what_it_cannot_read(redis: RedisServer) -> None:
    async with (
        two_nodes(redis.url, {"chatroom_buffer": 3}) as (a, b),
        a.user("host") as host,
        b.user("viewer") as viewer,
    ):
        cid = await room_watched(host, [viewer])
        key = link(a).hub.channel("kept", cid)
        sent = [f"m{i}" for i in range(5)]
        for text in sent:
            await host.say(cid, text)
        await heard(viewer, sent[-1])
        assert await texts(viewer, cid) == sent[-3:]  # the newest three
        listener = await resp.open_connection(redis.url)
        async with listener:
            ttl = await listener.call("TTL", key)
            assert isinstance(ttl, int)
            assert 0 < ttl <= 24 * 3600  # an abandoned room's list goes away
            await listener.call("RPUSH", key, b"not json", b'["a", 1]')
        assert await texts(viewer, cid) == sent[-3:]
        assert link(b).statistics()["bad_records"] == 2  # and logged
        await viewer.say(cid, "after")  # a good message still goes in, the list capped
        await heard(host, "after")
        assert await texts(host, cid) == ["after"]  # the newest three: two unreadable


def test_a_kept_message_reads_back_as_it_was_and_the_same_bytes() -> None:
    for message in (
        Message("c", "m1", "alice", 1700, data="hi", mention_pids=("bob",), lctype=-1),
        Message("c", "m2", "bob", 1701, binary=b"\x00\xff", mention_all=True, patch_timestamp=9),
    ):
        raw = wire.kept(message)
        assert wire.unkept(raw) == message
        assert wire.kept(wire.unkept(raw)) == raw  # LREM finds it by these bytes
    dedupe = Message("c", "m3", "carol", 1702, data="x", dedupe_token="dt")
    assert wire.unkept(wire.kept(dedupe)).dedupe_token is None
    for bad in (b"[]", b"{}", b'["c", "m", "p", "ts", null, null, false, [], null, null]', b"\xff"):
        with pytest.raises(wire.WireError):
            wire.unkept(bad)


@fail_after(30)
async def test_without_redis_a_node_answers_with_the_messages_sent_through_it() -> None:
    for server in redis_server():
        async with two_nodes(server.url) as (a, _), a.user("host") as host:
            cid = await room_watched(host, [])
            await host.say(cid, "before")
            server.stop()
            await eventually(lambda: not link(a).hub.connected)
            await host.say(cid, "alone")
            assert await texts(host, cid) == ["before", "alone"]
