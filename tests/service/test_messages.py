"""Messages over real WebSockets: send, ack after commit, delivery in every codec, dedupe,
refusals, transient and will messages, chatroom intake budget (protocol.md 4.11;
chatroom/service/messages.py).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable
from pathlib import Path
from typing import cast

import orjson
import pytest
import trio
from client_support import clients, conversation_of, messages_so_far, next_message
from helpers import (
    BASE64_SUB,
    JSON_SUB,
    PROTOBUF_SUB,
    Cmd,
    conversation,
    fail_after,
    running_server,
    users,
)

from chatroom.client import RequestError, Sent, connect
from chatroom.client.trio_client import Client
from chatroom.store.sqlite import SqliteStore


def directs(pushes: list[Cmd]) -> list[Cmd]:
    return [p for p in pushes if p["cmd"] == "direct"]


@pytest.mark.parametrize("sender_sub", [PROTOBUF_SUB, BASE64_SUB, JSON_SUB])
@fail_after()
async def test_text_and_binary_reach_every_codec_with_the_same_id(sender_sub: str) -> None:
    async with (
        running_server() as running,
        running.user("alice", sender_sub) as alice,
        running.user("pb", PROTOBUF_SUB) as pb_client,
        running.user("b64", BASE64_SUB) as b64_client,
        running.user("js", JSON_SUB) as json_client,
    ):
        receivers = [pb_client, b64_client, json_client]
        cid = await conversation(alice, *receivers)
        text = '{"_lctype":-1,"_lctext":"héllo 👋"}'
        ack = await alice.say(cid, text, mentionPids=["js"], mentionAll=False)
        assert isinstance(ack["uid"], str)
        assert isinstance(ack["t"], int)
        raw = bytes(range(256))
        binary = await alice.request(
            {"cmd": "direct", "cid": cid, "binaryMsg": base64.b64encode(raw).decode()}
        )
        assert "code" not in binary
        for receiver in receivers:
            got_text, got_binary = directs(await receiver.take_pushes())
            assert got_text["id"] == ack["uid"]
            assert got_text["timestamp"] == ack["t"]
            assert got_text["msg"] == text
            assert (got_text["cid"], got_text["fromPeerId"]) == (cid, "alice")
            assert got_text["convType"] == 1
            assert got_text["mentionPids"] == ["js"]
            assert got_text["peerId"] == receiver.received[0]["peerId"]
            assert got_binary["id"] == binary["uid"]
            assert base64.b64decode(got_binary["binaryMsg"]) == raw
            assert "msg" not in got_binary
        assert directs(await alice.take_pushes()) == []  # not echoed to the sender
        logs = await json_client.logs(cid)
        assert [item["msgId"] for item in logs] == [ack["uid"], binary["uid"]]
        assert logs[0]["data"] == text
        assert logs[1]["bin"] is True
        assert base64.b64decode(logs[1]["data"]) == raw


@fail_after()
async def test_the_senders_other_devices_get_the_message() -> None:
    async with running_server() as running, clients(running.url, "alice", "alice", "bob") as c:
        phone, laptop, bob = c
        cid = await conversation_of(phone, bob)
        await messages_so_far(laptop)
        sent = await phone.send(cid, "from my phone")
        (mine,) = await messages_so_far(laptop)
        assert (mine.mid, mine.sender) == (sent.mid, "alice")
        assert await messages_so_far(phone) == []
        assert (await next_message(bob)).mid == sent.mid


async def send_all(client: Client, cid: str, texts: list[str]) -> None:
    for text in texts:
        await client.send(cid, text)


@fail_after()
async def test_every_member_sees_the_order_the_server_accepted() -> None:
    async with running_server() as running, clients(running.url, "a", "b", "c") as (a, b, c):
        cid = await conversation_of(a, b, c)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all, a, cid, [f"a{i}" for i in range(50)])
            nursery.start_soon(send_all, b, cid, [f"b{i}" for i in range(50)])
        logs = await c.history(cid, 100)
        order = [(item.timestamp, item.mid) for item in logs]
        assert order == sorted(order)
        assert len(set(order)) == 100
        assert [m.mid for m in await messages_so_far(c)] == [item.mid for item in logs]
        from_b = [item.mid for item in logs if item.sender == "b"]
        assert [m.mid for m in await messages_so_far(a)] == from_b


async def assert_stored(db: Path, cid: str, acks: list[Cmd], texts: list[str]) -> None:
    """A fresh store opened on ``db`` holds every acked message."""
    store = SqliteStore(str(db))
    await store.open()
    try:
        for ack, text in zip(acks, texts, strict=True):
            stored = await store.get_message(cid, ack["uid"])
            assert stored is not None, text
            assert (stored.data, stored.timestamp, stored.from_peer) == (text, ack["t"], "alice")
        conv = await store.get_conversation(cid)
        assert conv is not None
        assert conv.members == ["alice", "bob"]
    finally:
        await store.aclose()


@fail_after()
async def test_ack_means_stored(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    texts = ["first", "second", "third"]
    async with running_server({"db": str(db)}) as running, running.user("alice") as alice:
        cid = await alice.start(["bob"])
        acks = [await alice.say(cid, texts[0]), *await alice.say_many(cid, texts[1:])]
        # Committed when acked: another reader of the file sees them at once ...
        await assert_stored(db, cid, acks, texts)
    # ... and they are there after the server has stopped.
    await assert_stored(db, cid, acks, texts)


@fail_after()
async def test_history_and_new_ids_survive_a_restart(tmp_path: Path) -> None:
    overrides = {"db": str(tmp_path / "chat.db")}
    async with running_server(overrides) as running, running.user("alice") as alice:
        cid = await alice.start(["bob"])
        before = await alice.say(cid, "before the restart")
    async with running_server(overrides) as running, running.user("bob") as bob:
        after = await bob.say(cid, "after the restart")
        logs = await bob.logs(cid)
        assert [item["msgId"] for item in logs] == [before["uid"], after["uid"]]
        assert (before["t"], before["uid"]) < (after["t"], after["uid"])


# dedupe


@fail_after()
async def test_same_dt_twice_is_one_message() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid = await conversation(alice, bob)
        first = await alice.say(cid, "once", dt="token-1")
        again = await alice.say(cid, "once", dt="token-1")
        assert (again["uid"], again["t"]) == (first["uid"], first["t"])
        other = await alice.say(cid, "twice", dt="token-2")
        assert other["uid"] != first["uid"]
        assert [p["msg"] for p in directs(await bob.take_pushes())] == ["once", "twice"]
        assert [item["data"] for item in await bob.logs(cid)] == ["once", "twice"]


@fail_after()
async def test_a_resend_while_the_first_is_being_stored_gets_the_same_ack() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        cid = await conversation(alice, bob)
        send = {"cmd": "direct", "cid": cid, "msg": "hurry", "dt": "same"}
        acks = await alice.pipeline([send, send, send])
        assert len({(ack["uid"], ack["t"]) for ack in acks}) == 1
        assert [p["msg"] for p in directs(await bob.take_pushes())] == ["hurry"]
        assert len(await bob.logs(cid)) == 1


@fail_after()
async def test_dt_is_per_sender_and_conversation() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        one = await conversation(alice, bob)
        two = await conversation(alice, bob)
        a1 = await alice.say(one, "a", dt="t")
        a2 = await alice.say(two, "a", dt="t")
        b1 = await bob.say(one, "b", dt="t")
        assert len({a1["uid"], a2["uid"], b1["uid"]}) == 3
        assert [item["data"] for item in await bob.logs(one)] == ["a", "b"]


@fail_after()
async def test_same_dt_after_a_restart_is_still_one_message(tmp_path: Path) -> None:
    overrides = {"db": str(tmp_path / "chat.db")}
    async with running_server(overrides) as running, running.user("alice") as alice:
        cid = await alice.start(["bob"])
        first = await alice.say(cid, "once", dt="token-1")
    async with running_server(overrides) as running, running.user("alice") as alice:
        again = await alice.say(cid, "once", dt="token-1")
        assert [item["data"] for item in await alice.logs(cid)] == ["once"]
        assert (again["uid"], again["t"]) == (first["uid"], first["t"])


# refusals


@fail_after()
async def test_unknown_conversation_or_non_member_gets_ack_4401() -> None:
    async with running_server() as running, users(running, "alice", "bob", "x") as (a, b, x):
        cid = await conversation(a, b)
        for client, target in ((a, "f" * 24), (x, cid), (a, "")):
            reply = await client.request({"cmd": "direct", "cid": target, "msg": "hi"})
            assert reply["cmd"] == "ack"
            assert reply["code"] == 4401
            assert reply["reason"]
            assert "uid" not in reply
        assert directs(await b.take_pushes()) == []
        assert await b.logs(cid) == []


@fail_after()
async def test_content_rules() -> None:
    async with (
        running_server({"max_message_bytes": 10}) as running,
        users(running, "alice", "bob") as (alice, bob),
    ):
        cid = await conversation(alice, bob)
        too_big = await alice.request({"cmd": "direct", "cid": cid, "msg": "é" * 6})
        assert too_big["code"] == 4109
        big_binary = base64.b64encode(b"x" * 11).decode()
        reply = await alice.request({"cmd": "direct", "cid": cid, "binaryMsg": big_binary})
        assert reply["code"] == 4109
        both = {"cmd": "direct", "cid": cid, "msg": "a", "binaryMsg": "YQ=="}
        assert "code" in await alice.request(both)
        assert "code" in await alice.request({"cmd": "direct", "cid": cid})
        await alice.say(cid, "x" * 10)  # exactly the limit
        assert [item["data"] for item in await bob.logs(cid)] == ["x" * 10]
        assert [p["msg"] for p in directs(await bob.take_pushes())] == ["x" * 10]


# transient and will messages


@fail_after()
async def test_transient_message_is_delivered_live_and_never_stored() -> None:
    async with running_server() as running, clients(running.url, "alice", "bob") as (alice, bob):
        cid = await conversation_of(alice, bob)
        sent = await alice.send(cid, "typing…", transient=True)
        assert sent.mid
        push = await next_message(bob)
        assert (push.text, push.transient) == ("typing…", True)
        assert await bob.history(cid) == []
        await alice.send(cid, "stored")
        assert [item.text for item in await bob.history(cid)] == ["stored"]


@fail_after()
async def test_will_message_is_sent_when_the_connection_drops() -> None:
    async with running_server() as running, running.user("bob") as bob:
        async with running.user("alice") as alice:
            cid = await conversation(alice, bob)
            first = await alice.say(cid, "first will", will=True)
            assert first["uid"]
            await alice.say(cid, "alice left unexpectedly", will=True)  # the last one counts
            assert directs(await bob.take_pushes()) == []  # held back
            await alice.drop()
        push = await bob.next_push("direct")
        assert (push["msg"], push["fromPeerId"], push["cid"]) == (
            "alice left unexpectedly",
            "alice",
            cid,
        )
        assert directs(await bob.take_pushes()) == []
        assert await bob.logs(cid) == []  # never stored


@fail_after()
async def test_will_message_is_not_sent_after_logout() -> None:
    async with running_server() as running, running.user("bob") as bob:
        async with running.user("alice") as alice:
            cid = await conversation(alice, bob)
            await alice.say(cid, "should not be seen", will=True)
            await alice.request({"cmd": "session", "op": "close"})
        await running.wait_connections(1)  # alice's connection is gone, and handled
        assert directs(await bob.take_pushes()) == []


@fail_after()
async def test_will_message_is_not_sent_on_graceful_shutdown() -> None:
    async with running_server() as running, running.user("bob") as bob:
        async with running.user("alice") as alice:
            cid = await conversation(alice, bob)
            await alice.say(cid, "not on shutdown", will=True)
            running.server.shutdown.set()
            assert (await alice.next_push("goaway"))["cmd"] == "goaway"
            await alice.closed()
        assert (await bob.next_push("goaway"))["cmd"] == "goaway"
        await bob.closed()
        assert directs(list(bob.pushes)) == []


# chatroom intake budget


async def refused(send: Awaitable[Sent]) -> int:
    """The code ``send`` was refused with."""
    with pytest.raises(RequestError) as refusal:
        await send
    return refusal.value.code


@fail_after()
async def test_chatroom_budget_refuses_with_4116_and_keeps_a_share_for_high() -> None:
    # A rate so low that no token comes back during the test: the burst is all there is.
    overrides = {"room_messages_per_second": 0.002, "room_high_share": 0.5}
    async with running_server(overrides) as running, clients(running.url, "host", "v") as c:
        host, v = c
        cid = await host.create_chatroom("live")
        await v.join(cid)
        assert (await host.send(cid, "normal")).mid
        assert await refused(host.send(cid, "normal")) == 4116
        assert (await host.send(cid, "high", priority="high")).mid  # from the HIGH reserve
        # reserve and shared part both used up
        assert await refused(host.send(cid, "high", priority="high")) == 4116
        assert [m.text for m in await messages_so_far(v)] == ["normal", "high"]
        # A normal conversation is not limited by chatroom budgets.
        cid2 = await conversation_of(host, v)
        for text in ("a", "b", "c"):
            await host.send(cid2, text)


def _masked_text(payload: bytes) -> bytes:
    """A client-to-server text frame (masked with a zero key: still a valid mask)."""
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


@fail_after()
async def test_an_overloaded_room_sheds_low_at_intake_and_high_gets_through() -> None:
    # The publisher is 20 messages ahead of the server (one write, one read): the LOW
    # ones read while more than 5 wait behind them are dropped, acked all the same; the
    # HIGH one behind them arrives.
    async with (
        running_server({"shed_backlog_low": 5}) as running,
        users(running, "host", "v") as (host, v),
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        await v.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["v"]})
        burst = [
            host.number({"cmd": "direct", "cid": cid, "msg": f"low{n}", "priority": 3})
            for n in range(20)
        ]
        burst.append(host.number({"cmd": "direct", "cid": cid, "msg": "high", "priority": 1}))
        await host.ws._stream.send_all(b"".join(_masked_text(orjson.dumps(c)) for c in burst))
        acks = [await host.reply_to(cast(int, c["i"])) for c in burst]
        assert all("uid" in ack and "code" not in ack for ack in acks)
        got = [p["msg"] for p in directs(await v.take_pushes())]
        assert got == [f"low{n}" for n in range(15, 20)] + ["high"]
        health = running.server.statistics()
        assert cast(dict[str, int], health)["shed_at_intake"] == 15
        assert cast(dict[str, int], health)["shed_at_intake_lag"] == 0  # for the backlog


@fail_after()
async def test_a_burst_the_server_drains_loses_no_normal_message() -> None:
    # A burst of 7 NORMAL messages past a NORMAL limit of 5 (within one and a half
    # times it): the backlog only comes down as the server reads it, so nothing is shed.
    async with (
        running_server({"shed_backlog_low": 5, "shed_backlog_normal": 5}) as running,
        users(running, "host", "v") as (host, v),
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        await v.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["v"]})
        burst = [
            host.number({"cmd": "direct", "cid": cid, "msg": f"n{n}", "priority": 2})
            for n in range(7)
        ]
        await host.ws._stream.send_all(b"".join(_masked_text(orjson.dumps(c)) for c in burst))
        acks = [await host.reply_to(cast(int, c["i"])) for c in burst]
        assert all("uid" in ack and "code" not in ack for ack in acks)
        got = [p["msg"] for p in directs(await v.take_pushes())]
        assert got == [f"n{n}" for n in range(7)]
        assert cast(dict[str, int], running.server.statistics())["shed_at_intake"] == 0


@fail_after()
async def test_mentions_are_delivered_and_kept_in_history() -> None:
    async with (
        running_server() as running,
        clients(running.url, "alice", "bob", "carol") as (alice, bob, carol),
    ):
        cid = await conversation_of(alice, bob, carol)
        await alice.send(cid, "@bob", mentions=["bob", "bob"], mention_all=False)
        await alice.send(cid, "@all", mention_all=True)
        for receiver in (bob, carol):
            one, everyone = await messages_so_far(receiver)
            assert (one.mentions, one.mention_all) == (("bob",), False)
            assert (everyone.mentions, everyone.mention_all) == ((), True)
        logs = await carol.history(cid)
        assert [(i.mentions, i.mention_all) for i in logs] == [(("bob",), False), ((), True)]


@fail_after()
async def test_json_viewers_are_told_the_priority_a_chatroom_message_was_sent_with() -> None:
    # Sent as plain text with only the wire priority: what a JSON viewer learns of it
    # comes from the push itself. The protobuf push is the SDK's, without it.
    async with (
        running_server() as running,
        running.user("host") as host,
        running.user("pb", PROTOBUF_SUB) as pb_viewer,
        connect(running.url, "viewer") as viewer,
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        await viewer.join(cid)
        await pb_viewer.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["pb"]})
        for text, priority in [("loud", 1), ("quiet", 3), ("plain", None)]:
            await host.say(cid, text, **({} if priority is None else {"priority": priority}))
        got = [await next_message(viewer) for _ in range(3)]
        assert [(m.text, m.priority) for m in got] == [
            ("loud", "high"),
            ("quiet", "low"),
            ("plain", None),
        ]
        assert [m.mid for m in got] == [m["msgId"] for m in await host.logs(cid)]
        pushed = directs(await pb_viewer.take_pushes())
        assert [p["msg"] for p in pushed] == ["loud", "quiet", "plain"]
        assert all("priority" not in p for p in pushed)
