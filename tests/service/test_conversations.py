"""Conversations over real WebSockets: create, members (add, join, remove, quit) with the
events of protocol.md 4.5-4.6, unique conversations, the member limit, chatrooms, count,
attributes, mute and queries (chatroom/service/conversations.py).

Who gets which event is checked exhaustively: ``take_pushes`` returns everything a
connection received up to an echo round trip, so a missing or extra event fails.
"""

from __future__ import annotations

import re

import pytest
import trio
from client_support import clients
from helpers import Client, Cmd, fail_after, ops, running_server, users

JOINED = ("conv", "joined")
MEMBERS_JOINED = ("conv", "members-joined")
LEFT = ("conv", "left")
MEMBERS_LEFT = ("conv", "members-left")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def error_code(reply: Cmd) -> object:
    assert reply["cmd"] == "error", reply
    return reply["code"]


def check_event(push: Cmd, cid: str, init_by: str, members: list[str] | None = None) -> None:
    assert push["cid"] == cid
    assert push["initBy"] == init_by
    assert ISO.fullmatch(push["udate"])
    assert isinstance(push["serverTs"], int)
    assert push.get("m") == members


async def members_op(client: Client, op: str, cid: str, members: list[str]) -> Cmd:
    """add/remove; asserts the reply came before any push it caused."""
    assert not client.pushes
    reply = await client.request({"cmd": "conv", "op": op, "cid": cid, "m": members})
    assert not client.pushes, "the reply comes first, then the events"
    return reply


async def count(client: Client, cid: str) -> object:
    reply = await client.request({"cmd": "conv", "op": "count", "cid": cid})
    assert reply.get("op") == "result", reply
    return reply["count"]


async def query(client: Client, **fields: object) -> list[Cmd]:
    reply = await client.request({"cmd": "conv", "op": "query", **fields})
    assert reply.get("op") == "results", reply
    results = reply["results"]
    assert isinstance(results, list)
    return results


async def group(creator: Client, members: list[str], *others: Client) -> str:
    """A conversation with every event consumed."""
    cid = await creator.start(members)
    for client in (creator, *others):
        await client.take_pushes()
    return cid


# create


@fail_after()
async def test_create_one_to_one_events() -> None:
    async with running_server() as running, users(running, "alice", "bob", "dave") as clients:
        alice, bob, dave = clients
        reply = await alice.request({"cmd": "conv", "op": "start", "m": ["bob"]})
        assert reply.get("op") == "started"
        assert not alice.pushes, "the reply comes first"
        cid = reply["cid"]
        assert re.fullmatch(r"[0-9a-f]{24}", cid)
        assert ISO.fullmatch(reply["cdate"])
        for member in (alice, bob):  # the creator too
            joined, members_joined = await member.take_pushes()
            assert (joined["op"], members_joined["op"]) == ("joined", "members-joined")
            check_event(joined, cid, "alice")
            check_event(members_joined, cid, "alice", ["alice", "bob"])
        assert await dave.take_pushes() == []


@fail_after()
async def test_create_group_events_and_member_list() -> None:
    async with running_server() as running, users(running, "alice", "bob", "carol") as clients:
        alice, bob, carol = clients
        # The creator is added when missing, duplicates count once, the list is sorted.
        cid = await alice.start(["carol", "bob", "carol"])
        for member in (alice, bob, carol):
            pushes = await member.take_pushes()
            assert ops(pushes) == [JOINED, MEMBERS_JOINED]
            check_event(pushes[1], cid, "alice", ["alice", "bob", "carol"])
            assert pushes[1]["peerId"] == pushes[0]["peerId"]
        assert await count(bob, cid) == 3


@fail_after()
async def test_offline_members_are_members_too() -> None:
    async with running_server() as running:
        async with running.user("alice") as alice:
            cid = await alice.start(["bob"])
        async with running.user("bob") as bob:
            assert [c["objectId"] for c in await query(bob)] == [cid]
            await bob.say(cid, "I was added while away")


@fail_after()
async def test_unique_conversation_twice_is_the_same_without_new_events() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        first = await alice.request({"cmd": "conv", "op": "start", "m": ["bob"], "unique": True})
        await alice.take_pushes()
        assert len(await bob.take_pushes()) == 2
        again = await bob.request(
            {"cmd": "conv", "op": "start", "m": ["alice", "bob"], "unique": True}
        )
        assert again["cid"] == first["cid"]
        assert again["uniqueId"] == first["uniqueId"]
        assert again["cdate"] == first["cdate"]
        assert await alice.take_pushes() == []
        assert await bob.take_pushes() == []
        plain = await alice.start(["bob"])
        assert plain != first["cid"]  # without unique: a new conversation


@fail_after()
async def test_member_limit_on_create_and_add() -> None:
    async with (
        running_server({"max_members": 3}) as running,
        users(running, "alice", "bob", "carol", "dave") as clients,
    ):
        alice, bob, carol, dave = clients
        full = await alice.request({"cmd": "conv", "op": "start", "m": ["bob", "carol", "dave"]})
        assert error_code(full) == 4304
        for client in clients:
            assert await client.take_pushes() == []
        cid = await group(alice, ["bob"], bob)
        added = await members_op(alice, "add", cid, ["carol", "dave"])
        assert added["op"] == "added"
        assert added["allowedPids"] == ["carol"]
        assert added["failedPids"] == [
            {"code": 4304, "reason": "CONVERSATION_FULL", "pids": ["dave"]}
        ]
        assert ops(await carol.take_pushes()) == [JOINED, MEMBERS_JOINED]
        assert ops(await alice.take_pushes()) == [MEMBERS_JOINED]
        assert await dave.take_pushes() == []
        refused = await members_op(alice, "add", cid, ["dave"])
        assert refused.get("allowedPids", []) == []  # empty lists are left out in JSON
        assert refused["failedPids"][0]["pids"] == ["dave"]
        assert await alice.take_pushes() == []
        assert await dave.take_pushes() == []
        assert await count(alice, cid) == 3


# members: protocol.md 4.6


@fail_after()
async def test_a_adds_b() -> None:
    async with running_server() as running, users(running, "a", "b", "c", "x") as clients:
        a, b, c, x = clients
        cid = await group(a, ["c"], c)
        reply = await members_op(a, "add", cid, ["b"])
        assert reply["op"] == "added"
        assert reply["allowedPids"] == ["b"]
        assert "failedPids" not in reply
        (actor,) = await a.take_pushes()
        assert ops([actor]) == [MEMBERS_JOINED]
        check_event(actor, cid, "a", ["b"])
        joined, members_joined = await b.take_pushes()
        assert ops([joined, members_joined]) == [JOINED, MEMBERS_JOINED]
        check_event(joined, cid, "a")
        check_event(members_joined, cid, "a", ["b"])
        (other,) = await c.take_pushes()
        check_event(other, cid, "a", ["b"])
        assert ops([other]) == [MEMBERS_JOINED]
        assert await x.take_pushes() == []


@fail_after()
async def test_b_joins() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["c"], c)
        reply = await members_op(b, "add", cid, ["b"])
        assert reply["allowedPids"] == ["b"]
        joined, members_joined = await b.take_pushes()
        assert ops([joined, members_joined]) == [JOINED, MEMBERS_JOINED]
        check_event(joined, cid, "b")
        check_event(members_joined, cid, "b", ["b"])
        for other in (a, c):
            (push,) = await other.take_pushes()
            assert ops([push]) == [MEMBERS_JOINED]
            check_event(push, cid, "b", ["b"])
        await b.say(cid, "hi, I joined")


@fail_after()
async def test_a_removes_b() -> None:
    async with running_server() as running, users(running, "a", "b", "c", "x") as clients:
        a, b, c, x = clients
        cid = await group(a, ["b", "c"], b, c)
        reply = await members_op(a, "remove", cid, ["b"])
        assert reply["op"] == "removed"
        assert reply["allowedPids"] == ["b"]
        (actor,) = await a.take_pushes()
        assert ops([actor]) == [MEMBERS_LEFT]
        check_event(actor, cid, "a", ["b"])
        (left,) = await b.take_pushes()  # no members-left for the removed one
        assert ops([left]) == [LEFT]
        check_event(left, cid, "a")
        (other,) = await c.take_pushes()
        assert ops([other]) == [MEMBERS_LEFT]
        check_event(other, cid, "a", ["b"])
        assert await x.take_pushes() == []
        # b is no member any more.
        assert (await b.request({"cmd": "direct", "cid": cid, "msg": "hey"}))["code"] == 4401
        await a.say(cid, "without b")
        assert await b.take_pushes() == []


@fail_after()
async def test_b_quits() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["b", "c"], b, c)
        reply = await members_op(b, "remove", cid, ["b"])
        assert reply["allowedPids"] == ["b"]
        (left,) = await b.take_pushes()
        assert ops([left]) == [LEFT]
        check_event(left, cid, "b")
        for other in (a, c):
            (push,) = await other.take_pushes()
            assert ops([push]) == [MEMBERS_LEFT]
            check_event(push, cid, "b", ["b"])
        assert await count(a, cid) == 2


@fail_after()
async def test_events_reach_every_device_of_a_member() -> None:
    async with running_server() as running, users(running, "a", "b", "b") as (a, b1, b2):
        cid = await a.start(["b"])
        for device in (b1, b2):
            pushes = await device.take_pushes()
            assert ops(pushes) == [JOINED, MEMBERS_JOINED]
            assert pushes[0]["cid"] == cid


@fail_after()
async def test_adding_members_already_in_and_removing_strangers_sends_nothing() -> None:
    async with running_server() as running, users(running, "a", "b") as (a, b):
        cid = await group(a, ["b"], b)
        added = await members_op(a, "add", cid, ["b"])
        assert added["allowedPids"] == ["b"]
        removed = await members_op(a, "remove", cid, ["zed"])
        assert removed["allowedPids"] == ["zed"]
        assert await a.take_pushes() == []
        assert await b.take_pushes() == []
        assert await count(a, cid) == 2


@fail_after()
async def test_only_members_change_members() -> None:
    async with running_server() as running, users(running, "a", "b", "x") as (a, b, x):
        cid = await group(a, ["b"], b)
        assert (
            error_code(await x.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["y"]}))
            == 4309
        )
        remove = {"cmd": "conv", "op": "remove", "cid": cid, "m": ["b"]}
        assert error_code(await x.request(remove)) == 4309
        assert await a.take_pushes() == []
        assert await count(a, cid) == 2


@pytest.mark.parametrize("op", ["add", "remove", "count", "update"])
@fail_after()
async def test_unknown_conversation_is_4303(op: str) -> None:
    async with running_server() as running, running.user("a") as a:
        reply = await a.request({"cmd": "conv", "op": op, "cid": "f" * 24, "m": ["b"]})
        assert error_code(reply) == 4303


@fail_after()
async def test_empty_member_list_is_refused() -> None:
    async with running_server() as running, running.user("a") as a:
        cid = await a.start(["b"])
        assert (
            error_code(await a.request({"cmd": "conv", "op": "add", "cid": cid, "m": []})) == 4301
        )
        long_id = "x" * 65
        assert error_code(await a.request({"cmd": "conv", "op": "start", "m": [long_id]})) == 4301


# chatrooms


async def start_chatroom(client: Client) -> str:
    reply = await client.request(
        {"cmd": "conv", "op": "start", "m": [], "transient": True, "attr": {"name": "live"}}
    )
    assert reply.get("op") == "started", reply
    return str(reply["cid"])


@fail_after()
async def test_chatroom_viewers_count_and_messages_without_member_events() -> None:
    async with running_server() as running, users(running, "host", "bob", "bob", "carol") as c:
        host, bob1, bob2, carol = c
        cid = await start_chatroom(host)
        assert await count(host, cid) == 1  # the creator watches while connected
        joined = await members_op(bob1, "add", cid, ["bob"])
        assert joined["allowedPids"] == ["bob"]
        await members_op(bob2, "add", cid, ["bob"])
        assert await count(carol, cid) == 2  # distinct clients: bob's two devices count once
        # No member list and no member events in a chatroom.
        for client in c:
            assert await client.take_pushes() == []
        ack = await host.say(cid, "welcome")
        for viewer in (bob1, bob2):
            push = await viewer.next_push("direct")
            assert (push["msg"], push["id"], push["convType"]) == ("welcome", ack["uid"], 2)
        assert await host.take_pushes() == []  # not back to the sender
        assert await carol.take_pushes() == []  # not a viewer
        refused = await carol.request({"cmd": "direct", "cid": cid, "msg": "let me in"})
        assert refused["code"] == 4401
        await bob1.say(cid, "hi host")
        assert (await host.next_push("direct"))["msg"] == "hi host"
        assert (await bob2.next_push("direct"))["fromPeerId"] == "bob"  # bob's other device


@fail_after()
async def test_chatroom_leaving_and_dropping_stop_counting() -> None:
    async with running_server() as running, users(running, "host", "bob") as (host, bob):
        cid = await start_chatroom(host)
        async with running.user("carol") as carol:
            await members_op(carol, "add", cid, ["carol"])
            await members_op(bob, "add", cid, ["bob"])
            assert await count(host, cid) == 3
            left = await members_op(bob, "remove", cid, ["bob"])
            assert left["allowedPids"] == ["bob"]
            assert await count(host, cid) == 2
            await host.say(cid, "bob is gone")
            assert (await carol.next_push("direct"))["msg"] == "bob is gone"
            assert await bob.take_pushes() == []
            await carol.drop()
        await running.wait_connections(2)
        assert await count(host, cid) == 1
        for client in (host, bob):
            assert await client.take_pushes() == []


@fail_after()
async def test_resuming_after_the_window_does_not_rejoin() -> None:
    async with (
        running_server({"chatroom_rejoin_window": 0}) as running,
        running.user("host") as host,
    ):
        cid = await start_chatroom(host)
        async with running.user("bob") as bob:
            opened = bob.received[0]
            await members_op(bob, "add", cid, ["bob"])
            await bob.drop()
        await running.wait_connections(1)
        async with running.client() as again:
            await again.login("bob", r=True, st=opened["st"])
            assert await count(host, cid) == 1


@fail_after()
async def test_resuming_within_the_window_rejoins_the_chatroom() -> None:
    async with running_server() as running, running.user("host") as host:
        cid = await start_chatroom(host)
        async with running.user("bob") as bob:
            opened = bob.received[0]
            await members_op(bob, "add", cid, ["bob"])
            await bob.drop()
        await running.wait_connections(1)
        assert await count(host, cid) == 1
        async with running.client() as again, running.user("carol") as carol:
            await again.login("bob", r=True, st=opened["st"])
            assert await count(host, cid) == 2
            await host.say(cid, "welcome back")
            assert (await again.next_push("direct"))["msg"] == "welcome back"
            # A fresh login (no token) is a new session: it watches nothing.
            await members_op(carol, "add", cid, ["carol"])
            await carol.request({"cmd": "session", "op": "close"})
            await carol.login("carol")
            assert await count(host, cid) == 2


@fail_after()
async def test_joining_another_chatroom_leaves_the_first() -> None:
    async with running_server() as running, clients(running.url, "host", "bob") as (host, bob):
        bob.pending()  # its connection's "live": nothing from the rooms yet
        first, second = await host.create_chatroom("live"), await host.create_chatroom("live")
        assert await bob.count(first) == 0  # the host moved on to the second room
        await bob.join(first)
        await bob.join(second)
        assert (await bob.count(first), await bob.count(second)) == (0, 2)
        await host.join(first)
        await host.send(first, "anyone?")
        await bob.echo()
        assert bob.pending() == []  # no message, and no member event either


@fail_after()
async def test_chatroom_cannot_put_others_in() -> None:
    async with running_server() as running, users(running, "host", "bob") as (host, bob):
        cid = await start_chatroom(host)
        reply = await members_op(host, "add", cid, ["bob", "carol"])
        assert reply.get("allowedPids", []) == []
        assert reply["failedPids"] == [
            {"code": 4308, "reason": "CONVERSATION_NOT_ALLOWED", "pids": ["bob", "carol"]}
        ]
        assert await count(host, cid) == 1
        assert await bob.take_pushes() == []


# attributes, mute, queries


@fail_after()
async def test_update_attributes_pushes_to_the_other_members() -> None:
    async with running_server() as running, users(running, "a", "b", "x") as (a, b, x):
        cid = await group(a, ["b"], b)
        update = {"name": "renamed", "color.text": "red"}
        reply = await a.request({"cmd": "conv", "op": "update", "cid": cid, "attr": update})
        assert reply.get("op") == "updated"
        assert ISO.fullmatch(reply["udate"])
        assert reply["attrModified"] == update
        (push,) = await b.take_pushes()
        assert ops([push]) == [("conv", "updated")]
        assert (push["cid"], push["initBy"]) == (cid, "a")
        assert push["attr"] == update
        assert push["attrModified"] == update
        assert await a.take_pushes() == []
        (doc,) = await query(b, where={"objectId": cid})
        assert doc["name"] == "renamed"
        assert doc["color"] == {"text": "red"}
        refused = await x.request({"cmd": "conv", "op": "update", "cid": cid, "attr": {"n": 1}})
        assert error_code(refused) == 4309
        system = await a.request({"cmd": "conv", "op": "update", "cid": cid, "attr": {"m": []}})
        assert error_code(system) == 4306
        assert await count(a, cid) == 2


@fail_after()
async def test_attributes_over_max_attr_bytes_are_refused_and_nothing_changes() -> None:
    limits = {"max_attr_bytes": 1000, "max_name_bytes": 20}
    async with running_server(limits) as running, users(running, "a", "b") as (a, b):
        blob = "x" * 1000
        for fields in ({"m": ["b"]}, {"m": [], "transient": True}):
            refused = await a.request({"cmd": "conv", "op": "start", **fields, "attr": {"k": blob}})
            assert error_code(refused) == 4306
            assert refused["reason"] == "attributes over 1000 bytes (max_attr_bytes)"
        long_name = await a.request({"cmd": "conv", "op": "start", "attr": {"name": "n" * 21}})
        assert error_code(long_name) == 4306
        assert "max_name_bytes" in long_name["reason"]
        assert await query(a) == []
        assert await b.take_pushes() == []  # no conversation, no event
        cid = await group(a, ["b"], b)

        async def update(attr: dict[str, object]) -> Cmd:
            return await a.request({"cmd": "conv", "op": "update", "cid": cid, "attr": attr})

        assert (await update({"name": "n" * 20, "k1": "x" * 400})).get("op") == "updated"
        assert (await update({"k2": "x" * 400})).get("op") == "updated"
        (before,) = await query(a, where={"objectId": cid})
        await b.take_pushes()
        assert error_code(await update({"k3": "x" * 400})) == 4306  # the sum is over
        assert error_code(await update({"k0.deep": "x" * 400})) == 4306
        assert error_code(await update({"name": "n" * 21})) == 4306
        assert error_code(await update({"name.first": "n"})) == 4306  # names are strings
        assert (await query(a, where={"objectId": cid})) == [before]
        assert await b.take_pushes() == []
        assert (await update({"k1": "short", "k3": "x" * 400})).get("op") == "updated"


@fail_after()
async def test_mute_and_unmute() -> None:
    async with running_server() as running, users(running, "a", "b") as (a, b):
        cid = await group(a, ["b"], b)
        muted = await b.request({"cmd": "conv", "op": "mute", "cid": cid})
        assert muted.get("op") == "updated"
        assert (await query(a, where={"objectId": cid}))[0]["mu"] == ["b"]
        await b.request({"cmd": "conv", "op": "unmute", "cid": cid})
        assert (await query(a, where={"objectId": cid}))[0]["mu"] == []


@fail_after()
async def test_query_documents_and_conditions() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, _, c):
        ab = await a.start(["b"], attr={"name": "ab", "level": 1})
        abc = await a.start(["b", "c"], attr={"name": "abc", "level": 2})
        await trio.sleep(0.005)  # a later millisecond: equal activity would tie
        await a.say(ab, "most recent")  # lm: ab is the most recently active
        mine = await query(a)  # no condition: the caller's own, most recent first
        assert [d["objectId"] for d in mine] == [ab, abc]
        doc = mine[0]
        assert (doc["c"], doc["m"], doc["tr"], doc["name"], doc["level"]) == (
            "a",
            ["a", "b"],
            False,
            "ab",
            1,
        )
        assert ISO.fullmatch(doc["lm"]["iso"])
        assert ISO.fullmatch(doc["createdAt"])
        assert [d["objectId"] for d in await query(c)] == [abc]
        found = await query(c, where={"m": {"$all": ["a", "b"]}, "level": {"$gte": 2}})
        assert [d["objectId"] for d in found] == [abc]
        compact = await query(a, where={"objectId": ab}, flag=1)
        assert "m" not in compact[0]
        last = await query(a, where={"objectId": ab}, flag=2)
        assert (last[0]["msg"], last[0]["msg_from"]) == ("most recent", "a")
        by_level = await query(a, sort="-level", limit=1)
        assert [d["objectId"] for d in by_level] == [abc]
        assert [d["objectId"] for d in await query(a, sort="level", skip=1)] == [abc]
        bad = await a.request({"cmd": "conv", "op": "query", "where": {"m": {"$size": "x"}}})
        assert error_code(bad) == 4310
        assert await query(a, where={"objectId": "f" * 24}) == []
