"""What one node caches and another node changes: two nodes on one store and one
redis-server. A change made on node A is told to node B before any push A makes after
it, so a client who heard of the change from A finds node B agreeing."""

from __future__ import annotations

from collections.abc import Awaitable, Iterator

import orjson
import pytest
import trio
from cluster_nodes import started, two_nodes, until_online
from helpers import fail_after, http_get
from hook_endpoint import HookCall, HookEndpoint, result
from pg_server import PgServer, pg_server
from redis_server import RedisServer, redis_server

from chatroom.core.ids import iso

__all__ = ["pg_server"]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


@fail_after(20)
async def test_a_member_added_on_one_node_gets_messages_sent_on_the_other(
    redis: RedisServer,
) -> None:
    async with (
        two_nodes(redis.url) as (a, b),
        a.user("alice") as alice,
        a.user("carol") as carol,
        b.user("bob") as bob,
    ):
        await until_online(bob, ["alice", "carol"])
        cid = await bob.start(["alice"])  # node B caches the conversation
        await alice.next_push("conv", "joined")
        await bob.say(cid, "before carol")
        reply = await alice.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["carol"]})
        assert "code" not in reply, reply
        # Bob's own start pushed members-joined too: wait for the one naming carol,
        # which node A sent after its change.
        while (await bob.next_push("conv", "members-joined"))["m"] != ["carol"]:
            pass
        await bob.say(cid, "welcome carol")
        got = await carol.next_push("direct")
        assert (got["msg"], got["fromPeerId"]) == ("welcome carol", "bob")


@fail_after(20)
async def test_attributes_updated_on_one_node_are_kept_by_an_update_on_the_other(
    redis: RedisServer,
) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("alice") as alice, b.user("bob") as bob:
        cid = await started(bob, alice, attr={"name": "before"})  # cached on node B
        update = {"cmd": "conv", "op": "update", "cid": cid}
        reply = await alice.request({**update, "attr": {"name": "after"}})
        assert "code" not in reply, reply
        await bob.next_push("conv", "updated")
        reply = await bob.request({**update, "attr": {"attr": {"topic": "cats"}}})
        assert "code" not in reply, reply
        # Alice asks once node B's push told her of the update: node A heard the change
        # before that push (asked sooner, her node may still hold its own copy).
        while (await alice.next_push("conv", "updated"))["initBy"] != "bob":
            pass
        for asker in (alice, bob):
            reply = await asker.request({"cmd": "conv", "op": "query", "tempConvIds": [cid]})
            assert reply["cmd"] == "conv", reply
            (found,) = [doc for doc in reply["results"] if doc["objectId"] == cid]
            assert (found["name"], found["attr"]) == ("after", {"topic": "cats"})


@fail_after(20)
async def test_a_member_muted_on_one_node_cannot_send_on_the_other(redis: RedisServer) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("owner") as owner, b.user("talker") as talker:
        cid = await started(owner, talker)
        await talker.say(cid, "I may speak")  # node B caches the moderation state
        reply = await owner.request(
            {"cmd": "conv", "op": "add_shutup", "cid": cid, "m": ["talker"]}
        )
        assert reply.get("allowedPids") == ["talker"], reply
        await talker.next_push("conv", "shutuped")
        sent = await talker.request({"cmd": "direct", "cid": cid, "msg": "still here?"})
        assert (sent["cmd"], sent.get("code")) == ("ack", 4308), sent
        texts = [p["msg"] for p in await owner.take_pushes() if p.get("cmd") == "direct"]
        assert texts == ["I may speak"]


@fail_after(20)
async def test_a_token_logged_out_on_one_node_is_refused_on_the_other(
    redis: RedisServer,
) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("alice") as alice, b.user("bob") as bob:
        cid = await started(alice, bob)
        resume = {"cmd": "session", "op": "open", "appId": "test", "peerId": "dana", "r": True}
        async with a.client() as phone:
            token = (await phone.login("dana"))["st"]
            store = a.server.store
            while await store.get_session(token) is None:  # noqa: ASYNC110 - written behind
                await trio.sleep(0.01)
            async with b.client() as other:  # node B now knows the token too
                reply = await other.request({**resume, "st": token})
                assert reply.get("op") == "opened", reply
            await phone.request({"cmd": "session", "op": "close"})  # revoked on node A
        await alice.say(cid, "after the logout")
        await bob.next_push("direct")  # node B heard node A's logout before this
        async with b.client() as phone:
            reply = await phone.request({**resume, "st": token})
            assert (reply["cmd"], reply.get("code")) == ("error", 4112), reply


@fail_after(20)
async def test_a_receipt_asked_for_on_one_node_comes_from_the_ack_on_the_other(
    redis: RedisServer,
) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("tom") as tom, b.user("jerry") as jerry:
        cid = await started(tom, jerry)
        ack = await tom.say(cid, "did you get it?", r=True)
        await jerry.next_push("direct")
        await jerry.send({"cmd": "ack", "cid": cid, "fromts": ack["t"], "tots": ack["t"]})
        rcp = await tom.next_push("rcp")
        assert (rcp["id"], rcp["cid"], rcp["from"]) == (ack["uid"], cid, "jerry")


@fail_after(20)
async def test_a_message_resent_on_the_other_node_is_stored_once(redis: RedisServer) -> None:
    async with (
        two_nodes(redis.url) as (a, b),
        a.user("alice") as alice,
        b.user("alice") as again,  # her other device, or her connection after a failover
        b.user("bob") as bob,
    ):
        cid = await started(alice, bob)
        first = await alice.say(cid, "only once", dt="local-1")
        assert (await bob.next_push("direct"))["msg"] == "only once"
        resent = await again.say(cid, "only once", dt="local-1")
        assert (resent["uid"], resent["t"]) == (first["uid"], first["t"])
        assert [m["data"] for m in await bob.logs(cid)] == ["only once"]


@fail_after(30)
async def test_a_member_unblocked_on_one_node_may_rejoin_at_once_on_the_other(
    redis: RedisServer,
) -> None:
    """Issue 11: the owner's client hears of the unblock from node A (no push through
    node B), and the member it tells joins on node B at once: node B agrees."""
    async with (
        two_nodes(redis.url) as (a, b),
        a.user("owner") as owner,
        b.user("member") as member,
    ):
        cid = await started(owner, member)
        blacklist = {"cmd": "blacklist", "srcCid": cid, "toPids": ["member"]}
        rejoin = {"cmd": "conv", "op": "add", "cid": cid, "m": ["member"]}
        for _ in range(10):
            reply = await owner.request({**blacklist, "op": "block"})
            assert reply.get("allowedPids") == ["member"], reply
            await member.next_push("conv", "left")  # node B heard of the block before
            refused = await member.request(rejoin)
            assert [f["code"] for f in refused["failedPids"]] == [4315], refused
            reply = await owner.request({**blacklist, "op": "unblock"})
            assert reply.get("allowedPids") == ["member"], reply
            joined = await member.request(rejoin)
            assert joined.get("allowedPids") == ["member"], joined
            while (await owner.next_push("conv", "members-joined"))["m"] != ["member"]:
                pass


@fail_after(30)
async def test_a_member_added_while_the_other_node_updates_attributes_is_kept(
    redis: RedisServer, pg_server: PgServer
) -> None:
    """Node B reads the conversation, then waits on the update hook while node A adds
    a member and stores it: B's save (from its copy without carol) loses the compare
    and swap, so B applies its change again to what A stored. Each node has its own
    PostgreSQL store on one database."""
    reached, release = trio.Event(), trio.Event()

    async def hold_update(call: HookCall) -> tuple[int, bytes]:
        reached.set()
        await release.wait()
        return result({})

    endpoint = HookEndpoint(hold_update)
    db = pg_server.url(pg_server.create_database())
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        settings = endpoint.config({"conversationUpdate": {"timeout_ms": 20_000}})
        async with (
            two_nodes(redis.url, settings, db) as (a, b),
            a.user("alice") as alice,
            a.user("carol") as carol,
            b.user("bob") as bob,
        ):
            await until_online(bob, ["carol"])
            cid = await started(bob, alice, attr={"name": "before"})
            update = {
                "cmd": "conv",
                "op": "update",
                "cid": cid,
                "attr": {"attr": {"topic": "cats"}},
            }
            updated: list[dict[str, object]] = []
            async with trio.open_nursery() as updating:
                updating.start_soon(_into, updated, bob.request(update))
                await reached.wait()  # node B holds its copy, without carol
                add = {"cmd": "conv", "op": "add", "cid": cid, "m": ["carol"]}
                reply = await alice.request(add)
                assert "code" not in reply, reply  # stored by node A
                release.set()
            assert "code" not in updated[0], updated
            # Carol is a member when node B pushes the update, so she hears it.
            assert (await carol.next_push("conv", "updated"))["initBy"] == "bob"
            for asker in (alice, bob):
                reply = await asker.request({"cmd": "conv", "op": "query", "tempConvIds": [cid]})
                (found,) = [doc for doc in reply["results"] if doc["objectId"] == cid]
                assert sorted(found["m"]) == ["alice", "bob", "carol"], found
                assert (found["name"], found["attr"]) == ("before", {"topic": "cats"}), found
        nursery.cancel_scope.cancel()


@fail_after(30)
async def test_members_added_on_both_nodes_at_once_stay_within_the_limit(
    redis: RedisServer,
) -> None:
    """Node B holds its copy of a conversation of two (limit three) on the add hook
    while node A adds carol: B's add of dave, which fitted its copy, finds the
    conversation full when it applies its change again to what A stored."""
    reached, release = trio.Event(), trio.Event()

    async def hold_dave(call: HookCall) -> tuple[int, bytes]:
        if call.params.get("members") == ["dave"]:
            reached.set()
            await release.wait()
        return result({})

    endpoint = HookEndpoint(hold_dave)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        settings = endpoint.config({"conversationAdd": {"timeout_ms": 20_000}}, max_members=3)
        async with (
            two_nodes(redis.url, settings) as (a, b),
            a.user("alice") as alice,
            b.user("bob") as bob,
        ):
            cid = await started(bob, alice)  # cached on node B
            added: list[dict[str, object]] = []
            async with trio.open_nursery() as adding:
                add = {"cmd": "conv", "op": "add", "cid": cid}
                adding.start_soon(_into, added, bob.request({**add, "m": ["dave"]}))
                await reached.wait()  # node B holds its copy: two members, room for one
                reply = await alice.request({**add, "m": ["carol"]})
                assert reply.get("allowedPids") == ["carol"], reply  # stored by node A
                release.set()
            assert "allowedPids" not in added[0], added
            assert added[0]["failedPids"] == [
                {"code": 4304, "reason": "CONVERSATION_FULL", "pids": ["dave"]}
            ], added
            stored = await a.server.store.get_conversation(cid)
            assert stored is not None
            assert stored.members == ["alice", "bob", "carol"]
        nursery.cancel_scope.cancel()


async def _into(out: list[dict[str, object]], reply: Awaitable[dict[str, object]]) -> None:
    out.append(await reply)


@fail_after(20)
async def test_last_message_at_of_a_message_sent_on_the_other_node_is_shown_and_queried(
    redis: RedisServer,
) -> None:
    master: dict[str, object] = {"master_key": "m"}
    async with (
        two_nodes(redis.url, master) as (a, b),
        a.user("alice") as alice,
        b.user("bob") as bob,
    ):
        cid = await started(bob, alice)  # cached on node B, without a last message
        ack = await alice.say(cid, "on node A")
        assert (await bob.next_push("direct"))["msg"] == "on node A"
        lm = {"__type": "Date", "iso": iso(int(ack["t"]))}
        key = "X-LC-Key: m,master\r\n"
        status, _, body = await http_get(b.http_port, f"/1.2/rtm/conversations/{cid}", key)
        assert (status, orjson.loads(body).get("lm")) == (200, lm), body
        for where in ({"objectId": cid}, {"objectId": cid, "lm": {"$gte": lm}}):
            reply = await bob.request({"cmd": "conv", "op": "query", "where": where})
            assert [doc.get("lm") for doc in reply["results"]] == [lm], (where, reply)
