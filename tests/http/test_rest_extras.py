"""REST calls beyond the first set (chatroom/http/rest): deleting one message,
``no_sync`` sends, temporary silences; over real HTTP, with clients online over real
WebSockets seeing what they do."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import pytest
from cluster_nodes import count, two_nodes, until
from helpers import Client, Running, fail_after, ops, running_server, users
from redis_server import RedisServer, redis_server
from rest_support import MASTER, ok, rest

from chatroom.core.clock import ManualClock


@fail_after(30)
async def test_deleting_a_message_takes_the_server_copy_and_tells_nobody(tmp_path: Path) -> None:
    config = {"master_key": MASTER, "db": str(tmp_path / "chat.db")}
    async with running_server(config) as running, users(running, "b", "v") as (b, v):
        cid = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        sent = [
            await ok(running, "POST", f"/conversations/{cid}/messages", {"from_client": "a",
                     "message": text})
            for text in ("one", "two")
        ]  # fmt: skip
        await b.take_pushes()
        mid, ts = sent[0]["msg-id"], sent[0]["timestamp"]
        path = f"/conversations/{cid}/messages/{mid}"
        for query, status, code in (
            ({"timestamp": str(ts)}, 400, 400),  # from_client is required
            ({"from_client": "a"}, 400, 400),  # so is timestamp
            ({"from_client": "b", "timestamp": str(ts)}, 403, 4403),  # not the sender
            ({"from_client": "a", "timestamp": str(ts + 1)}, 404, 4404),  # not its time
        ):
            found = await rest(running, "DELETE", path, query=query)
            assert (found[0], found[1]["code"]) == (status, code), (query, found)
        assert (
            await ok(running, "DELETE", path, query={"from_client": "a", "timestamp": str(ts)})
            == {}
        )
        history = await ok(running, "GET", f"/conversations/{cid}/messages")
        assert [r["msg-id"] for r in history] == [sent[1]["msg-id"]]
        assert [m["msgId"] for m in await b.logs(cid)] == [sent[1]["msg-id"]]
        assert await b.take_pushes() == []  # nobody is told
        found = await rest(
            running, "DELETE", path, query={"from_client": "a", "timestamp": str(ts)}
        )
        assert (found[0], found[1]["code"]) == (404, 4404)
        # A chatroom's history (its buffer) loses the message too.
        room = (await ok(running, "POST", "/chatrooms", {"name": "live"}))["objectId"]
        joined = await v.request({"cmd": "conv", "op": "add", "cid": room, "m": ["v"]})
        assert joined.get("op") == "added", joined
        said = await ok(running, "POST", f"/chatrooms/{room}/messages",
                        {"from_client": "host", "message": "hello"})  # fmt: skip
        assert len(await ok(running, "GET", f"/chatrooms/{room}/messages")) == 1
        query = {"from_client": "host", "timestamp": str(said["timestamp"])}
        assert await ok(running, "DELETE", f"/chatrooms/{room}/messages/{said['msg-id']}",
                        query=query) == {}  # fmt: skip
        assert await ok(running, "GET", f"/chatrooms/{room}/messages") == []


@fail_after(30)
async def test_no_sync_keeps_a_send_from_the_senders_own_sessions() -> None:
    async with (
        running_server({"master_key": MASTER}) as running,
        users(running, "a", "b") as (
            a,
            b,
        ),
    ):
        cid = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        for client in (a, b):
            await client.take_pushes()
        url = f"/conversations/{cid}/messages"
        await ok(running, "POST", url, {"from_client": "a", "message": "quiet", "no_sync": True})
        assert ops(await b.take_pushes()) == [("direct", None)]
        assert await a.take_pushes() == []
        await ok(running, "POST", url, {"from_client": "a", "message": "loud"})
        assert ops(await b.take_pushes()) == [("direct", None)]
        assert ops(await a.take_pushes()) == [("direct", None)]  # LeanCloud's default: synced
        status, body = await rest(running, "POST", url, {"from_client": "a", "message": "x",
                                                          "no_sync": "yes"})  # fmt: skip
        assert status == 400
        assert "no_sync" in body["error"]


@fail_after(30)
async def test_a_temporary_silence_ends_by_itself_or_when_lifted() -> None:
    clock = ManualClock()
    async with (
        running_server({"master_key": MASTER}, clock=clock) as running,
        users(running, "a", "b") as (a, b),
    ):
        cid = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        path = f"/conversations/{cid}/temporary-silenceds"
        for bad in ({"client_id": "b"}, {"client_id": "b", "ttl": 0},
                    {"client_id": "b", "ttl": 86_401}, {"ttl": 60}):  # fmt: skip
            assert (await rest(running, "POST", path, bad))[0] == 400, bad
        await b.take_pushes()
        assert await ok(running, "POST", path, {"client_id": "b", "ttl": 60}) == {}
        assert ("conv", "shutuped") in ops(await b.take_pushes())
        refused = await b.request({"cmd": "direct", "cid": cid, "msg": "hush"})
        assert refused.get("code") == 4315, refused
        clock.advance(61_000)  # the silence ends by itself
        await b.say(cid, "free")
        assert await ok(running, "POST", path, {"client_id": "b", "ttl": 600}) == {}
        assert (await b.request({"cmd": "direct", "cid": cid, "msg": "x"})).get("code") == 4315
        assert await ok(running, "DELETE", path, query={"client_id": "b"}) == {}
        await b.say(cid, "lifted")
        # The owner cannot be silenced: refused per id, as for permanent mutes.
        made = await ok(running, "POST", path, {"client_id": "a", "ttl": 60})
        assert made["failed"][0]["client_ids"] == ["a"]
        await a.say(cid, "owner speaks")


@fail_after(30)
async def test_history_of_every_conversation_pages_like_one(tmp_path: Path) -> None:
    config = {"master_key": MASTER, "db": str(tmp_path / "chat.db")}
    async with running_server(config) as running, users(running, "a") as (a,):
        cids = [(await ok(running, "POST", "/conversations", {"m": ["a", n]}))["objectId"]
                for n in ("b", "c")]  # fmt: skip
        sent = []
        for i in range(6):
            body = {"from_client": "a", "message": f"m{i}"}
            sent.append(await ok(running, "POST", f"/conversations/{cids[i % 2]}/messages", body))
        await a.say(cids[0], "over the WebSocket")
        every = await ok(running, "GET", "/messages", query={"limit": "4"})
        assert [r["data"] for r in every] == ["over the WebSocket", "m5", "m4", "m3"]
        assert [r["conv-id"] for r in every[1:]] == [cids[1], cids[0], cids[1]]
        last = every[-1]
        query = {"limit": "10", "msgid": last["msg-id"], "timestamp": str(last["timestamp"])}
        older = await ok(running, "GET", "/messages", query=query)
        assert [r["data"] for r in older] == ["m2", "m1", "m0"]
        oldest = await ok(running, "GET", "/messages", query={"reversed": "true", "limit": "2"})
        assert [r["msg-id"] for r in oldest] == [s["msg-id"] for s in sent[:2]]
        for bad in ({"limit": "0"}, {"limit": "1001"}, {"msgid": "x"}, {"reversed": "maybe"}):
            status, body = await rest(running, "GET", "/messages", query=bad)
            assert (status, body["code"]) == (400, 400), bad
        assert (await rest(running, "GET", "/messages", key=None))[0] == 401


@fail_after(30)
async def test_purging_inactive_conversations_keeps_the_active_ones(tmp_path: Path) -> None:
    clock = ManualClock()
    config = {"master_key": MASTER, "db": str(tmp_path / "chat.db")}
    async with (
        running_server(config, clock=clock) as running,
        users(running, "a", "b") as (a, b),
    ):
        cids = [(await ok(running, "POST", "/conversations", {"m": ["a", "b"], "n": i}))
                ["objectId"] for i in range(4)]  # fmt: skip
        old_message = {"from_client": "a", "message": "long ago"}
        await ok(running, "POST", f"/conversations/{cids[1]}/messages", old_message)
        clock.advance(10 * 86_400_000)
        await a.say(cids[2], "lately")  # active: a recent message
        await ok(running, "PUT", f"/conversations/{cids[3]}", {"name": "renamed"})  # updated
        await b.take_pushes()
        for bad in ({}, {"days": 0}, {"days": 1, "limit": 0}, {"days": True}):
            status, body = await rest(running, "POST", "/purge-inactive-conversations", bad)
            assert (status, body["code"]) == (400, 400), bad
        first = await ok(running, "POST", "/purge-inactive-conversations", {"days": 5, "limit": 1})
        assert first == {"deleted": 1, "more": True}
        rest_of = await ok(running, "POST", "/purge-inactive-conversations", {"days": 5})
        assert rest_of == {"deleted": 1, "more": False}
        gone = {(await b.next_push("conv", "left"))["cid"] for _ in range(2)}
        assert gone == {cids[0], cids[1]}
        for cid in cids:
            status, _ = await rest(running, "GET", f"/conversations/{cid}")
            assert status == (404 if cid in gone else 200), cid
        again = await ok(running, "POST", "/purge-inactive-conversations", {"days": 5})
        assert again == {"deleted": 0, "more": False}


@fail_after(30)
async def test_deleting_from_one_subscribers_thread_leaves_the_broadcasts() -> None:
    async with running_server({"master_key": MASTER}) as running, users(running, "s1") as (s1,):
        cid = (await ok(running, "POST", "/service-conversations", {"name": "News"}))["objectId"]
        base = f"/service-conversations/{cid}"
        await ok(running, "POST", f"{base}/subscribers", {"client_id": "s1"})
        everyone = await ok(running, "POST", f"{base}/broadcasts", {"message": "to all"})
        one = {"message": "just you", "to_clients": ["s1"], "from_client": "bot"}
        only = await ok(running, "POST", f"{base}/messages", one)
        written = await s1.say(cid, "hello operator")
        thread = f"{base}/subscribers/s1/messages"
        mine = {"from_client": "s1", "timestamp": str(written["t"])}
        assert await ok(running, "DELETE", f"{thread}/{written['uid']}", query=mine) == {}
        bot = {"from_client": "bot", "timestamp": str(only["timestamp"])}
        assert await ok(running, "DELETE", f"{thread}/{only['msg-id']}", query=bot) == {}
        # A broadcast is every subscriber's: not deleted from one thread.
        shared = {"from_client": "system", "timestamp": str(everyone["timestamp"])}
        status, body = await rest(running, "DELETE", f"{thread}/{everyone['msg-id']}", query=shared)
        assert (status, body["code"]) == (404, 4404)
        assert [m["data"] for m in await ok(running, "GET", thread)] == ["to all"]


@fail_after(30)
async def test_a_chatroom_send_never_reaches_the_senders_own_sessions() -> None:
    # R1, the chatroom send: "聊天室目前不支持将消息同步发送给在线的 from_client" (no
    # sync to from_client's online clients), and its table has no no_sync; R4 listed
    # no_sync there, so it is accepted, and changes nothing.
    async with (
        running_server({"master_key": MASTER}) as running,
        users(running, "v", "w") as (
            v,
            w,
        ),
    ):
        room = (await ok(running, "POST", "/chatrooms", {"name": "live"}))["objectId"]
        for name, viewer in (("v", v), ("w", w)):
            joined = await viewer.request({"cmd": "conv", "op": "add", "cid": room, "m": [name]})
            assert joined.get("op") == "added", joined
            await viewer.take_pushes()
        url = f"/chatrooms/{room}/messages"
        for n, extra in enumerate(({}, {"no_sync": True}, {"no_sync": False})):
            await ok(running, "POST", url, {"from_client": "v", "message": f"m{n}", **extra})
            assert (await w.next_push("direct"))["msg"] == f"m{n}"
        assert [p for p in await v.take_pushes() if p["cmd"] == "direct"] == []


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


async def _room_watched(node: Running, viewers: Iterable[tuple[str, Client]]) -> str:
    """A chatroom created through ``node``'s REST API, joined by ``viewers`` (each a
    client id and its client, on either node): its id."""
    room = (await ok(node, "POST", "/chatrooms", {"name": "live"}))["objectId"]
    for peer, viewer in viewers:
        joined = await viewer.request({"cmd": "conv", "op": "add", "cid": room, "m": [peer]})
        assert joined.get("op") == "added", joined
    return str(room)


@fail_after(30)
async def test_a_chatroom_send_on_one_node_skips_the_senders_sessions_on_every_node(
    redis: RedisServer,
) -> None:
    async with (
        two_nodes(redis.url, {"master_key": MASTER}) as (a, b),
        a.user("v") as v_here,
        b.user("v") as v_there,
        a.user("w") as w_here,
        b.user("z") as z_there,
    ):
        viewers = (("v", v_here), ("v", v_there), ("w", w_here), ("z", z_there))
        room = await _room_watched(a, viewers)
        for asker in (w_here, z_there):  # each node counts the other's viewers
            await until(partial(count, asker, room), 3)
        await ok(a, "POST", f"/chatrooms/{room}/messages", {"from_client": "v", "message": "hi"})
        for other in (w_here, z_there):
            assert (await other.next_push("direct"))["msg"] == "hi"
        for v in (v_here, v_there):
            assert [p for p in await v.take_pushes() if p["cmd"] == "direct"] == []


@fail_after(30)
async def test_a_chatroom_message_deleted_on_one_node_leaves_the_history_of_both(
    redis: RedisServer,
) -> None:
    async with (
        two_nodes(redis.url, {"master_key": MASTER}) as (a, b),
        a.user("w") as w_here,
        b.user("z") as z_there,
    ):
        room = await _room_watched(a, (("w", w_here), ("z", z_there)))
        await until(partial(count, w_here, room), 2)
        said = [
            await ok(a, "POST", f"/chatrooms/{room}/messages", {"from_client": "host",
                     "message": text})
            for text in ("one", "two")
        ]  # fmt: skip
        while (await z_there.next_push("direct"))["msg"] != "two":
            pass
        query = {"from_client": "host", "timestamp": str(said[0]["timestamp"])}
        path = f"/chatrooms/{room}/messages/{said[0]['msg-id']}"
        assert await ok(b, "DELETE", path, query=query) == {}  # accepted on node A
        assert [m["data"] for m in await z_there.logs(room)] == ["two"]
        await z_there.say(room, "after")  # node A hears it after the deletion
        while (await w_here.next_push("direct"))["msg"] != "after":
            pass
        history = await ok(a, "GET", f"/chatrooms/{room}/messages")
        ids = [m["msg-id"] for m in history]
        assert len(ids) == 2, history
        assert said[1]["msg-id"] in ids, history
        assert [m["data"] for m in await w_here.logs(room)] == ["two", "after"]
