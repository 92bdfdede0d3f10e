"""Moderation over real WebSockets: roles (member_info_update), muting members
(add/remove/query/check_shutup), blacklists (block/unblock/query/check_block), the
permission holes of issue 12, and everything surviving a restart on a SQLite file
(chatroom/service/moderation.py, chatroom/core/roles.py).

Who gets which event is checked exhaustively with ``take_pushes`` (everything received
up to an echo round trip), so a missing or extra event fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import ALL_SUBS, Client, Cmd, fail_after, ops, running_server, users

UNAUTHORIZED = "CONVERSATION_OPERATION_UNAUTHORIZED"
NEED_OWNER = "CONVERSATION_NEED_OWNER"
SHUTUP = "CONVERSATION_MEMBER_SHUTUP"


def refused(reply: Cmd) -> tuple[Any, Any]:
    assert reply["cmd"] == "error", reply
    return reply["code"], reply["reason"]


def failures(reply: Cmd) -> dict[tuple[int, str], list[str]]:
    return {(f["code"], f["reason"]): f["pids"] for f in reply.get("failedPids", [])}


async def set_role(client: Client, cid: str, pid: str, role: str) -> Cmd:
    info = {"pid": pid, "role": role}
    cmd = {"cmd": "conv", "op": "member_info_update", "cid": cid, "targetClientId": pid}
    return await client.request({**cmd, "info": info})


async def shutup(client: Client, op: str, cid: str, m: list[str]) -> Cmd:
    return await client.request({"cmd": "conv", "op": op, "cid": cid, "m": m})


async def muted(client: Client, cid: str, **fields: object) -> Cmd:
    return await client.request({"cmd": "conv", "op": "query_shutup", "cid": cid, **fields})


async def blacklist(client: Client, op: str, cid: str, pids: list[str] | None = None) -> Cmd:
    cmd: Cmd = {"cmd": "blacklist", "op": op, "srcCid": cid}
    return await client.request({**cmd, "toPids": pids} if pids is not None else cmd)


async def members(client: Client, op: str, cid: str, m: list[str]) -> Cmd:
    return await client.request({"cmd": "conv", "op": op, "cid": cid, "m": m})


async def member_list(client: Client, cid: str) -> list[str]:
    reply = await client.request({"cmd": "conv", "op": "query", "where": {"objectId": cid}})
    (doc,) = reply["results"]
    return list(doc["m"])


async def group(creator: Client, peers: list[str], *others: Client) -> str:
    cid = await creator.start(peers)
    for client in (creator, *others):
        await client.take_pushes()
    return cid


async def chatroom(host: Client, *viewers: Client) -> str:
    reply = await host.request({"cmd": "conv", "op": "start", "transient": True, "m": []})
    cid = str(reply["cid"])
    for viewer in viewers:
        peer = str(viewer.received[0]["peerId"])
        assert (await members(viewer, "add", cid, [peer]))["allowedPids"] == [peer]
    return cid


# roles


@fail_after()
async def test_owner_makes_a_manager_and_a_member_again_and_members_are_told() -> None:
    async with running_server() as running, users(running, "a", "b", "c", "x") as clients:
        a, b, c, x = clients
        cid = await group(a, ["b", "c"], b, c)
        reply = await set_role(a, cid, "b", "Manager")
        assert (reply["cmd"], reply["op"]) == ("conv", "member-info-updated")
        for client in (a, b, c):
            (push,) = await client.take_pushes()
            assert ops([push]) == [("conv", "member-info-changed")]
            assert (push["cid"], push["initBy"]) == (cid, "a")
            assert push["info"] == {"pid": "b", "role": "Manager"}
        assert await x.take_pushes() == []
        # b is a manager now: it mutes c; made a member again, it may not.
        assert (await shutup(b, "add_shutup", cid, ["c"]))["allowedPids"] == ["c"]
        assert ops(await a.take_pushes()) == [("conv", "members-shutuped")]
        await b.take_pushes()
        await set_role(a, cid, "b", "Member")
        (push,) = await b.take_pushes()
        assert push["info"] == {"pid": "b", "role": "Member"}
        assert refused(await shutup(b, "remove_shutup", cid, ["c"])) == (4308, UNAUTHORIZED)


@fail_after()
async def test_role_changes_that_are_refused_change_nothing() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["b", "c"], b, c)
        assert refused(await set_role(b, cid, "b", "Manager")) == (4308, UNAUTHORIZED)
        assert refused(await set_role(a, cid, "b", "Owner"))[0] == 5130
        assert refused(await set_role(a, cid, "a", "Member")) == (4308, NEED_OWNER)
        assert refused(await set_role(a, cid, "b", "Admin"))[0] == 4301
        assert refused(await set_role(a, cid, "zed", "Manager"))[0] == 4317
        assert refused(await set_role(a, cid, "", "Manager"))[0] == 4301
        mismatch: Cmd = {"cmd": "conv", "op": "member_info_update", "cid": cid}
        mismatch |= {"targetClientId": "b", "info": {"pid": "c", "role": "Manager"}}
        assert refused(await a.request(mismatch))[0] == 4301
        for client in (a, b, c):
            assert await client.take_pushes() == []
        # b is still a plain member
        assert refused(await shutup(b, "add_shutup", cid, ["c"])) == (4308, UNAUTHORIZED)


@fail_after()
async def test_roles_exist_only_where_there_is_an_owner() -> None:
    async with running_server() as running, users(running, "a", "b") as (a, b):
        temp = await a.start(["b"], tempConv=True)
        assert refused(await set_role(a, temp, "b", "Manager"))[0] == 4314
        room = await chatroom(a, b)
        assert (await set_role(a, room, "b", "Manager"))["op"] == "member-info-updated"
        # a chatroom manager kicks viewers
        async with running.user("v") as v:
            await members(v, "add", room, ["v"])
            assert (await members(b, "remove", room, ["v"]))["allowedPids"] == ["v"]
            await a.say(room, "after the kick")
            assert [p for p in await v.take_pushes() if p["cmd"] == "direct"] == []


# the permission holes of issue 12


@fail_after()
async def test_a_member_cannot_remove_the_owner_and_the_owner_cannot_quit() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["b", "c"], b, c)
        reply = await members(b, "remove", cid, ["a", "c"])
        assert reply["allowedPids"] == ["c"]
        assert failures(reply) == {(4308, NEED_OWNER): ["a"]}
        quit_ = await members(a, "remove", cid, ["a"])
        assert quit_.get("allowedPids", []) == []
        assert failures(quit_) == {(4308, NEED_OWNER): ["a"]}
        assert await member_list(a, cid) == ["a", "b"]


@fail_after()
async def test_a_chatroom_viewer_cannot_kick_other_viewers_or_the_creator() -> None:
    async with running_server() as running, users(running, "host", "bob", "carol") as clients:
        host, bob, carol = clients
        cid = await chatroom(host, bob, carol)
        reply = await members(bob, "remove", cid, ["carol", "host"])
        assert reply.get("allowedPids", []) == []
        assert failures(reply) == {(4308, UNAUTHORIZED): ["carol", "host"]}
        await host.say(cid, "still here")
        for viewer in (bob, carol):
            assert (await viewer.next_push("direct"))["msg"] == "still here"
        assert (await members(bob, "remove", cid, ["bob"]))["allowedPids"] == ["bob"]
        # the host kicks; the creator may stop watching its own room too
        assert (await members(host, "remove", cid, ["carol"]))["allowedPids"] == ["carol"]
        assert (await members(host, "remove", cid, ["host"]))["allowedPids"] == ["host"]


@fail_after()
async def test_only_viewers_and_staff_change_a_chatroom() -> None:
    async with running_server() as running, users(running, "host", "bob", "z") as clients:
        host, bob, z = clients
        cid = await chatroom(host, bob)
        update = {"cmd": "conv", "op": "update", "cid": cid, "attr": {"name": "spam"}}
        assert refused(await z.request(update))[0] == 4309  # not watching
        assert refused(await bob.request(update)) == (4308, UNAUTHORIZED)  # a viewer
        assert (await host.request({**update, "attr": {"name": "live"}}))["op"] == "updated"
        assert refused(await z.request({"cmd": "conv", "op": "mute", "cid": cid}))[0] == 4317


@fail_after()
async def test_with_member_changes_by_managers_plain_members_add_and_remove_nobody() -> None:
    config = {"member_changes_by": "managers"}
    async with running_server(config) as running, users(running, "a", "b", "c", "d") as clients:
        a, b, c, d = clients
        cid = await group(a, ["b", "c", "d"], b, c, d)
        reply = await members(c, "remove", cid, ["d"])
        assert failures(reply) == {(4308, UNAUTHORIZED): ["d"]}
        assert failures(await members(c, "add", cid, ["e"])) == {(4308, UNAUTHORIZED): ["e"]}
        await set_role(a, cid, "b", "Manager")
        await set_role(a, cid, "c", "Manager")
        reply = await members(b, "remove", cid, ["c", "d"])  # a manager: not another one
        assert (reply["allowedPids"], failures(reply)) == (["d"], {(4308, UNAUTHORIZED): ["c"]})
        assert (await members(b, "add", cid, ["e"]))["allowedPids"] == ["e"]
        assert (await members(a, "remove", cid, ["c"]))["allowedPids"] == ["c"]
        assert (await members(c, "add", cid, ["c"])).get("allowedPids") == ["c"]  # rejoining
        assert await member_list(a, cid) == ["a", "b", "c", "e"]


@fail_after()
async def test_with_the_open_default_members_remove_members_but_not_managers() -> None:
    async with running_server() as running, users(running, "a", "b", "c", "d") as clients:
        a, b, c, d = clients
        cid = await group(a, ["b", "c", "d"], b, c, d)
        await set_role(a, cid, "b", "Manager")
        reply = await members(c, "remove", cid, ["b", "d"])
        assert (reply["allowedPids"], failures(reply)) == (["d"], {(4308, UNAUTHORIZED): ["b"]})


# muting members


@pytest.mark.parametrize("subprotocol", ALL_SUBS)
@fail_after()
async def test_mute_flow(subprotocol: str) -> None:
    async with (
        running_server() as running,
        users(running, "a", "b", "c", "x", subprotocol=subprotocol) as clients,
    ):
        a, b, c, x = clients
        cid = await group(a, ["b", "c"], b, c)
        reply = await shutup(a, "add_shutup", cid, ["b"])
        assert (reply["op"], reply["allowedPids"]) == ("shutup-added", ["b"])
        assert ops(await b.take_pushes()) == [("conv", "shutuped"), ("conv", "members-shutuped")]
        for client in (a, c):
            (push,) = await client.take_pushes()
            assert (push["op"], push["m"], push["initBy"]) == ("members-shutuped", ["b"], "a")
        assert await x.take_pushes() == []
        sent = await b.request({"cmd": "direct", "cid": cid, "msg": "let me speak"})
        assert (sent.get("code"), sent.get("reason")) == (4308, SHUTUP), sent
        assert await c.take_pushes() == []
        assert (await muted(c, cid))["m"] == ["b"]
        assert refused(await muted(x, cid))[0] == 4317
        assert refused(await shutup(b, "remove_shutup", cid, ["b"])) == (4308, UNAUTHORIZED)
        reply = await shutup(a, "remove_shutup", cid, ["b"])
        assert (reply["op"], reply["allowedPids"]) == ("shutup-removed", ["b"])
        expected = [("conv", "unshutuped"), ("conv", "members-unshutuped")]
        assert ops(await b.take_pushes()) == expected
        assert ops(await c.take_pushes()) == [("conv", "members-unshutuped")]
        await b.say(cid, "thanks")
        assert "m" not in await muted(c, cid)


@fail_after()
async def test_mute_refusals_are_per_id_and_bad_requests_change_nothing() -> None:
    async with running_server() as running, users(running, "a", "b", "c", "d") as clients:
        a, b, c, d = clients
        cid = await group(a, ["b", "c", "d"], b, c, d)
        await set_role(a, cid, "b", "Manager")
        await set_role(a, cid, "c", "Manager")
        for client in clients:
            await client.take_pushes()
        reply = await shutup(b, "add_shutup", cid, ["a", "c", "d", "zed"])
        assert reply["allowedPids"] == ["d"]
        assert failures(reply) == {
            (4308, NEED_OWNER): ["a"],
            (4308, UNAUTHORIZED): ["c"],
            (4317, "CONVERSATION_MEMBERSHIP_REQUIRED"): ["zed"],
        }
        for bad in ([], ["ok", ""], ["x" * 65], [f"u{i}" for i in range(10_000)]):
            assert refused(await shutup(a, "add_shutup", cid, bad))[0] == 4301
        assert (await muted(a, cid))["m"] == ["d"]
        check = await a.request({"cmd": "conv", "op": "check_shutup", "cid": cid, "m": ["b", "d"]})
        assert (check["op"], check["m"]) == ("check-result", ["d"])
        mine = await d.request({"cmd": "conv", "op": "check_shutup", "cid": cid})
        assert mine["m"] == ["d"]


@fail_after()
async def test_muted_members_page_by_page() -> None:
    async with running_server() as running, running.user("host") as host:
        cid = await chatroom(host)  # no member list: anyone may be muted
        ids = sorted(f"viewer{i:02}" for i in range(25))
        assert (await shutup(host, "add_shutup", cid, ids))["allowedPids"] == ids
        seen: list[str] = []
        after: dict[str, object] = {}
        while True:
            page = await muted(host, cid, limit=10, **after)
            seen += page["m"]
            if "next" not in page:
                break
            after = {"next": page["next"]}
        assert seen == ids
        assert len((await muted(host, cid))["m"]) == 10  # the default page


@fail_after()
async def test_a_muted_chatroom_viewer_is_heard_by_no_one() -> None:
    async with running_server() as running, users(running, "host", "bob", "carol") as clients:
        host, bob, carol = clients
        cid = await chatroom(host, bob, carol)
        await shutup(host, "add_shutup", cid, ["bob"])
        assert ops(await bob.take_pushes()) == [("conv", "shutuped"), ("conv", "members-shutuped")]
        assert ops(await carol.take_pushes()) == [("conv", "members-shutuped")]
        sent = await bob.request({"cmd": "direct", "cid": cid, "msg": "spam"})
        assert (sent.get("code"), sent.get("reason")) == (4308, SHUTUP)
        assert await carol.take_pushes() == []
        assert refused(await shutup(carol, "add_shutup", cid, ["host"])) == (4308, UNAUTHORIZED)


# blacklists


@fail_after()
async def test_blocked_member_is_removed_and_cannot_come_back_until_unblocked() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["b", "c"], b, c)
        reply = await blacklist(a, "block", cid, ["b"])
        assert (reply["cmd"], reply["op"], reply["allowedPids"]) == ("blacklist", "blocked", ["b"])
        assert ops(await b.take_pushes()) == [("conv", "blocked"), ("conv", "left")]
        for client in (a, c):
            pushes = await client.take_pushes()
            assert ops(pushes) == [("conv", "members-blocked"), ("conv", "members-left")]
            assert [p["m"] for p in pushes] == [["b"], ["b"]]
        assert await member_list(a, cid) == ["a", "c"]
        assert failures(await members(b, "add", cid, ["b"])) == {
            (4315, "CONVERSATION_BLACKLISTED"): ["b"]
        }
        readd = await members(c, "add", cid, ["b", "d"])
        assert readd["allowedPids"] == ["d"]
        assert failures(readd) == {(4315, "CONVERSATION_BLACKLISTED"): ["b"]}
        assert (await b.request({"cmd": "direct", "cid": cid, "msg": "hi"}))["code"] == 4401
        assert (await blacklist(c, "query", cid))["blockedPids"] == ["b"]
        checked = await blacklist(b, "check_block", cid)
        assert (checked["op"], checked["blockedPids"]) == ("check-result", ["b"])
        assert refused(await blacklist(c, "unblock", cid, ["b"])) == (4308, UNAUTHORIZED)
        for client in (a, b, c):
            await client.take_pushes()
        assert (await blacklist(a, "unblock", cid, ["b"]))["allowedPids"] == ["b"]
        assert ops(await b.take_pushes()) == [("conv", "unblocked")]
        assert ops(await c.take_pushes()) == [("conv", "members-unblocked")]
        assert (await members(c, "add", cid, ["b"]))["allowedPids"] == ["b"]
        assert "blockedPids" not in await blacklist(a, "query", cid)


@fail_after()
async def test_blocked_chatroom_viewer_stops_watching_and_cannot_rejoin() -> None:
    async with running_server() as running, users(running, "host", "bob", "carol") as clients:
        host, bob, carol = clients
        cid = await chatroom(host, bob, carol)
        await blacklist(host, "block", cid, ["bob"])
        assert ops(await bob.take_pushes()) == [("conv", "blocked")]
        assert ops(await carol.take_pushes()) == [("conv", "members-blocked")]
        await host.say(cid, "bob is out")
        assert (await carol.next_push("direct"))["msg"] == "bob is out"
        assert await bob.take_pushes() == []
        assert failures(await members(bob, "add", cid, ["bob"])) == {
            (4315, "CONVERSATION_BLACKLISTED"): ["bob"]
        }
        assert (await bob.request({"cmd": "direct", "cid": cid, "msg": "hi"}))["code"] == 4401


@fail_after()
async def test_block_refusals_and_bad_input() -> None:
    async with running_server() as running, users(running, "a", "b") as (a, b):
        cid = await group(a, ["b"], b)
        assert refused(await blacklist(b, "block", cid, ["a"])) == (4308, UNAUTHORIZED)
        assert failures(await blacklist(a, "block", cid, ["a"])) == {(4308, NEED_OWNER): ["a"]}
        for bad in ([], [f"u{i}" for i in range(10_000)]):
            assert refused(await blacklist(a, "block", cid, bad))[0] == 4301
        assert refused(await blacklist(a, "block", "f" * 24, ["b"]))[0] == 4303
        assert refused(await blacklist(b, "query", "f" * 24))[0] == 4303
        assert "blockedPids" not in await blacklist(a, "query", cid)
        assert await member_list(a, cid) == ["a", "b"]


@fail_after()
async def test_list_limit_refuses_per_id() -> None:
    async with running_server({"moderation_list_limit": 2}) as running, running.user("h") as h:
        cid = await chatroom(h)
        reply = await blacklist(h, "block", cid, ["u1", "u2", "u3"])
        assert reply["allowedPids"] == ["u1", "u2"]
        assert failures(reply) == {(4304, "blacklist is full"): ["u3"]}


# restart


@fail_after(20)
async def test_roles_mutes_and_blocks_survive_a_restart(tmp_path: Path) -> None:
    on_file = {"db": str(tmp_path / "chat.db")}
    async with running_server(on_file) as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await group(a, ["b", "c", "d"], b, c)
        await set_role(a, cid, "c", "Manager")
        await shutup(c, "add_shutup", cid, ["b"])
        await blacklist(c, "block", cid, ["d"])
    async with running_server(on_file) as running, users(running, "a", "b", "c") as (a, b, c):
        sent = await b.request({"cmd": "direct", "cid": cid, "msg": "still muted?"})
        assert (sent.get("code"), sent.get("reason")) == (4308, SHUTUP)
        assert (await muted(a, cid))["m"] == ["b"]
        assert (await blacklist(a, "query", cid))["blockedPids"] == ["d"]
        assert failures(await members(a, "add", cid, ["d"])) == {
            (4315, "CONVERSATION_BLACKLISTED"): ["d"]
        }
        assert (await shutup(c, "remove_shutup", cid, ["b"]))["allowedPids"] == ["b"]  # manager
        await b.say(cid, "free again")
