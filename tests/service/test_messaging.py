"""Receipts, read marks, unread sync, recall/edit, filtering, offline push and wills over
real WebSockets (protocol.md 4.1, 4.12-4.15; features.md F37-F50; chatroom/service/
receipts.py, unread.py, patches.py; chatroom/filter.py, push.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import (
    JSON_SUB,
    Client,
    Cmd,
    conversation,
    fail_after,
    running_server,
    users,
    webhook,
)

from chatroom.core.push_payload import payload_for
from chatroom.core.receipt_book import ReceiptBook
from chatroom.core.wordfilter import WordFilter, compile_words, filter_content, parse_word_file

RECALLED = '{"_lctype":-127}'


def only(pushes: list[Cmd], cmd: str, op: str | None = None) -> list[Cmd]:
    return [p for p in pushes if p["cmd"] == cmd and (op is None or p.get("op") == op)]


async def relogin(client: Client, peer: str, **fields: object) -> list[Cmd]:
    """Log in on a fresh connection; every push that followed ``opened``."""
    await client.login(peer, **fields)
    return await client.take_pushes()


# receipts and read marks


@fail_after()
async def test_delivery_receipt_after_ack_and_read_receipt_after_read() -> None:
    async with running_server() as running, users(running, "tom", "jerry") as (tom, jerry):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "hello", r=True)
        plain = await tom.say(cid, "no receipt wanted")
        await jerry.take_pushes()
        await jerry.send({"cmd": "ack", "cid": cid, "fromts": ack["t"], "tots": plain["t"]})
        rcp = await tom.next_push("rcp")
        assert (rcp["id"], rcp["cid"], rcp["from"]) == (ack["uid"], cid, "jerry")
        assert "read" not in rcp
        await jerry.send(
            {"cmd": "read", "convs": [{"cid": cid, "timestamp": plain["t"], "mid": plain["uid"]}]}
        )
        read = await tom.next_push("rcp")
        assert (read["id"], read["t"], read["read"], read["from"]) == (
            plain["uid"],
            plain["t"],
            True,
            "jerry",
        )
        assert only(await tom.take_pushes(), "rcp") == []  # one receipt per r:true message
        reply = await tom.request({"cmd": "conv", "op": "max_read", "cid": cid})
        assert (reply["maxAckTimestamp"], reply["maxReadTimestamp"]) == (plain["t"], plain["t"])
        everyone = await tom.request(
            {"cmd": "conv", "op": "max_read", "cid": cid, "queryAllMembers": True}
        )
        assert everyone["maxReadTuples"] == [
            {"pid": "jerry", "maxAckTimestamp": plain["t"], "maxReadTimestamp": plain["t"]}
        ]
        logs = await tom.logs(cid)
        assert [(i["ackAt"], i["readAt"]) for i in logs] == [(plain["t"], plain["t"])] * 2


@fail_after()
async def test_ack_by_mid_gives_the_receipt() -> None:
    async with running_server() as running, users(running, "tom", "jerry") as (tom, jerry):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "hello", r=True)
        await jerry.send({"cmd": "ack", "cid": cid, "mid": ack["uid"]})
        assert (await tom.next_push("rcp"))["id"] == ack["uid"]


@fail_after()
async def test_no_receipts_in_groups_of_three() -> None:
    async with (
        running_server() as running,
        users(running, "tom", "jerry", "spike") as (tom, jerry, spike),
    ):
        cid = await conversation(tom, jerry, spike)
        ack = await tom.say(cid, "hello all", r=True)
        await jerry.send({"cmd": "ack", "cid": cid, "tots": ack["t"]})
        await jerry.send({"cmd": "read", "cid": cid})
        await jerry.sync()
        assert only(await tom.take_pushes(), "rcp") == []
        assert "ackAt" not in (await tom.logs(cid))[0]
        reply = await tom.request({"cmd": "conv", "op": "max_read", "cid": cid})
        assert reply["maxAckTimestamp"] >= ack["t"]  # still answered (group receipts plugin)


@fail_after()
async def test_read_or_max_read_of_a_foreign_conversation_is_refused() -> None:
    async with (
        running_server() as running,
        users(running, "tom", "jerry", "eve") as (tom, jerry, eve),
    ):
        cid = await conversation(tom, jerry)
        reply = await eve.request({"cmd": "conv", "op": "max_read", "cid": cid})
        assert (reply["cmd"], reply["code"]) == ("error", 4317)
        missing = await eve.request({"cmd": "conv", "op": "max_read", "cid": "nope"})
        assert missing["code"] == 4303
        await eve.send({"cmd": "read", "cid": cid})  # no i: an error push (JSON only)
        error = await eve.next_push("error")
        assert error["code"] == 4317
        await eve.send({"cmd": "ack", "cid": cid, "tots": 1})
        assert (await eve.next_push("error"))["code"] == 4317
        assert only(await tom.take_pushes(), "rcp") == []


# unread counts (protocol v3)


@fail_after()
async def test_unread_counts_after_login_and_after_read() -> None:
    async with running_server() as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cid = await conversation(tom, jerry)
            await tom.say(cid, "one")
            await tom.say(cid, "two @jerry", mentionPids=["jerry"])
            last = await tom.say(cid, "three")
            await jerry.send({"cmd": "ack", "cid": cid, "tots": last["t"]})  # delivered
            await jerry.say(cid, "mine, not counted")
        async with running.client() as jerry:
            pushes = await relogin(jerry, "jerry")
        (unread,) = only(pushes, "unread")
        (entry,) = unread["convs"]
        assert (entry["cid"], entry["unread"], entry["mentioned"]) == (cid, 3, True)
        assert (entry["from"], entry["data"]) == ("jerry", "mine, not counted")
        assert entry["convType"] == 1
        notif = unread["notifTime"]
        async with running.client() as jerry, running.client() as phone:
            # nothing changed since notifTime: nothing to say
            assert only(await relogin(jerry, "jerry", lastUnreadNotifTime=notif), "unread") == []
            await phone.login("jerry")
            await phone.take_pushes()
            await jerry.send({"cmd": "read", "convs": [{"cid": cid, "timestamp": last["t"]}]})
            synced = await phone.next_push("unread")  # the other device is told
            assert [(c["cid"], c["unread"], c["mentioned"]) for c in synced["convs"]] == [
                (cid, 0, False)
            ]
            await jerry.sync()
            assert only(await jerry.take_pushes(), "unread") == []  # not the reader itself
        async with running.client() as jerry:
            assert only(await relogin(jerry, "jerry"), "unread") == []  # first login: none > 0


@fail_after()
async def test_unread_counts_grow_while_online_and_at_most_50_are_sent() -> None:
    async with running_server({"unread_conversations": 3}) as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cids = [await conversation(tom, jerry) for _ in range(5)]
            for n, cid in enumerate(cids):
                await tom.say(cid, f"m{n}")
                await trio.sleep(0.002)  # distinct milliseconds: a clear order
            await jerry.take_pushes()  # delivered live and even acked: still unread
            await jerry.send({"cmd": "ack", "cid": cids[0], "tots": 2**62})
        async with running.client() as jerry:
            (unread,) = only(await relogin(jerry, "jerry"), "unread")
        assert [c["cid"] for c in unread["convs"]] == cids[:1:-1]  # most recent first
        assert all(c["unread"] == 1 for c in unread["convs"])


@fail_after()
async def test_unacked_messages_are_told_again_at_the_next_login() -> None:
    async with running_server() as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cid = await conversation(tom, jerry)
            await tom.say(cid, "never acked")
            first = await relogin(jerry, "jerry")  # same connection: a second session
        notif = only(first, "unread")[0]["notifTime"]
        async with running.client() as jerry:
            again = only(await relogin(jerry, "jerry", lastUnreadNotifTime=notif), "unread")
        assert [c["unread"] for c in again[0]["convs"]] == [1]


# protocol v1: stored messages pushed after login


@fail_after()
async def test_protocol_v1_pushes_the_newest_20_unacked_messages() -> None:
    async with running_server() as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cid = await conversation(tom, jerry)
            acks = await tom.say_many(cid, [f"m{n}" for n in range(22)])
            await trio.sleep(0.002)
            acks += await tom.say_many(cid, [f"m{n}" for n in range(22, 25)])
            await jerry.say(cid, "own message: not pushed back")
        async with running.client("lc.json.1") as jerry:
            pushes = await relogin(jerry, "jerry")
        assert only(pushes, "unread") == []
        directs = only(pushes, "direct")
        assert [d["msg"] for d in directs] == [f"m{n}" for n in range(5, 25)]
        assert all(d["offline"] for d in directs)
        assert all(d["hasMore"] for d in directs)  # five older ones were left out
        async with running.client("lc.json.1") as jerry:
            await jerry.login("jerry")
            await jerry.send({"cmd": "ack", "cid": cid, "tots": acks[21]["t"]})
            await jerry.sync()
        async with running.client("lc.json.1") as jerry:
            directs = only(await relogin(jerry, "jerry"), "direct")
        # delivered-up-to is a time: messages of the same millisecond count as acked
        later = [f"m{n}" for n in range(25) if acks[n]["t"] > acks[21]["t"]]
        assert [d["msg"] for d in directs] == later
        assert [d.get("hasMore", False) for d in directs] == [True] * (len(later) - 1) + [False]


# recall and edit


@fail_after()
async def test_edit_and_recall_reach_others_and_history() -> None:
    async with (
        running_server() as running,
        users(running, "tom", "jerry") as (tom, jerry),
        running.user("tom") as tom_phone,
    ):
        cid = await conversation(tom, jerry)
        await tom_phone.take_pushes()
        ack = await tom.say(cid, "hello", mentionPids=["jerry"])
        edit = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], "data": "hello (edited)"}
        reply = await tom.request({"cmd": "patch", "op": "modify", "patches": [edit]})
        assert (reply["cmd"], reply["op"]) == ("patch", "modified")
        edited_at = reply["lastPatchTime"]
        for device in (jerry, tom_phone):
            push = await device.next_push("patch", "modify")
            (item,) = push["patches"]
            assert (item["mid"], item["data"], item["from"], item["patchTimestamp"]) == (
                ack["uid"],
                "hello (edited)",
                "tom",
                edited_at,
            )
            assert "recall" not in item
            assert push["lastPatchTime"] == edited_at
        assert only(await tom.take_pushes(), "patch") == []  # not the patching session
        (logged,) = await jerry.logs(cid)
        assert (logged["msgId"], logged["data"], logged["patchTimestamp"]) == (
            ack["uid"],
            "hello (edited)",
            edited_at,
        )
        recall = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], "recall": True}
        reply = await tom.request({"cmd": "patch", "op": "modify", "patches": [recall]})
        assert reply["lastPatchTime"] > edited_at
        (item,) = (await jerry.next_push("patch", "modify"))["patches"]
        assert (item["recall"], item["data"]) == (True, RECALLED)
        (logged,) = await jerry.logs(cid)
        assert (logged["data"], logged["msgId"]) == (RECALLED, ack["uid"])
        assert (await jerry.logs(cid, lctype=-127))[0]["msgId"] == ack["uid"]


@fail_after()
async def test_missed_patches_are_pushed_at_login() -> None:
    async with running_server() as running:
        async with users(running, "tom", "jerry") as (tom, jerry):
            cid = await conversation(tom, jerry)
            first = await tom.say(cid, "first")
            second = await tom.say(cid, "second")
            before = (await jerry.take_pushes())[-1]["serverTs"]
            for ack, extra in ((first, {"data": "first!"}), (second, {"recall": True})):
                patch = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], **extra}
                await tom.request({"cmd": "patch", "op": "modify", "patches": [patch]})
        async with running.client() as jerry:
            pushes = await relogin(jerry, "jerry", lastPatchTime=before - 1, configBitmap=59)
        (push,) = only(pushes, "patch", "modify")
        assert [(i["mid"], i["data"], i.get("recall", False)) for i in push["patches"]] == [
            (first["uid"], "first!", False),
            (second["uid"], RECALLED, True),
        ]
        assert push["lastPatchTime"] == push["patches"][-1]["patchTimestamp"]
        async with running.client() as jerry:
            later = await relogin(jerry, "jerry", lastPatchTime=push["lastPatchTime"])
        assert only(later, "patch") == []


@fail_after()
async def test_patch_refusals() -> None:
    async with running_server() as running, users(running, "tom", "jerry") as (tom, jerry):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "mine")

        async def patch(client: Client, **item: object) -> int | None:
            body = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], **item}
            reply = await client.request({"cmd": "patch", "op": "modify", "patches": [body]})
            return reply.get("code") if reply["cmd"] == "error" else None

        assert await patch(jerry, data="not yours") == 4403
        assert await patch(jerry, recall=True) == 4403
        assert await patch(tom, mid="no-such-id", data="x") == 4404
        assert await patch(tom, cid="no-such-conv", data="x") == 4303
        assert await patch(tom) == 4201  # an edit without content
        assert await patch(tom, data="x" * (64 * 1024 + 1)) == 4109
        assert (await tom.request({"cmd": "patch", "op": "modify"}))["code"] == 4201
        assert [i["data"] for i in await tom.logs(cid)] == ["mine"]  # untouched
    async with (
        running_server({"allow_edit": False, "allow_recall": False}) as running,
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "mine")
        assert await patch(tom, data="edit") == 4406
        assert await patch(tom, recall=True) == 4407


# will messages


@fail_after()
async def test_only_the_last_will_of_a_user_is_kept_across_conversations_and_devices() -> None:
    async with running_server() as running, running.user("bob") as bob:
        async with running.user("alice") as alice, running.user("alice") as phone:
            first = await conversation(alice, bob)
            second = await conversation(alice, bob)
            await phone.take_pushes()
            await alice.say(first, "will in the first", will=True)
            await phone.say(second, "will in the second, from the phone", will=True)
            await alice.drop()  # its will was replaced by the phone's: nothing
            await running.wait_connections(2)
            assert only(await bob.take_pushes(), "direct") == []
            await phone.drop()
        push = await bob.next_push("direct")
        assert (push["cid"], push["msg"]) == (second, "will in the second, from the phone")
        assert await bob.logs(second) == []


@fail_after(10)
async def test_will_is_sent_on_keepalive_timeout() -> None:
    async with (
        running_server({"idle_timeout": 0.3}) as running,
        running.user("bob") as bob,
        running.user("alice") as alice,
    ):
        cid = await conversation(alice, bob)
        await alice.say(cid, "alice timed out", will=True)
        with trio.fail_after(5):
            while True:  # bob keeps talking; alice falls silent
                await bob.sync()
                found = [p for p in bob.pushes if p["cmd"] == "direct"]
                if found:
                    break
                await trio.sleep(0.1)
        assert found[0]["msg"] == "alice timed out"


# sensitive words


@fail_after()
async def test_sensitive_words_are_masked_in_groups_only(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# operator list\nbadword\n\nVeryBad\n")
    overrides = {"sensitive_words_file": str(words), "sensitive_words_check_interval": 0.0}
    async with (
        running_server(overrides) as running,
        users(running, "tom", "jerry", "spike") as (tom, jerry, spike),
    ):
        group = await conversation(tom, jerry, spike)
        pair = await conversation(tom, jerry)
        text = '{"_lctype":-1,"_lctext":"a badword and verybad one"}'
        ack = await tom.say(group, text)
        got = (await jerry.next_push("direct"))["msg"]
        assert json.loads(got) == {"_lctype": -1, "_lctext": "a *** and *** one"}
        notice = await tom.next_push("patch", "modify")
        (item,) = notice["patches"]
        assert (item["mid"], item["patchCode"], item["data"]) == (ack["uid"], 4408, got)
        assert item["patchReason"]
        assert (await spike.logs(group))[0]["data"] == got
        await tom.say(pair, "badword in private")
        assert (await jerry.next_push("direct"))["msg"] == "badword in private"
        assert only(await tom.take_pushes(), "patch") == []
        words.write_text("private\n")  # reloaded on change
        await tom.say(group, "badword private")
        assert (await jerry.next_push("direct"))["msg"] == "badword ***"


def test_word_filter_units(tmp_path: Path) -> None:
    pattern = compile_words(["ab", "abc", ""])
    assert filter_content(pattern, "xabcx ABx") == "x***x ***x"
    assert filter_content(None, "abc") == "abc"
    same = '{"_lctype":-1,"_lctext":"fine"}'
    assert filter_content(pattern, same) is same
    assert filter_content(pattern, '{"_lctype":-2,"_lcfile":{"url":"ab"}}').endswith("}")
    assert parse_word_file(" a \n#c\n\nb") == ["a", "b"]
    now = [0.0]
    path = tmp_path / "w.txt"
    f = WordFilter(str(path), 5.0, clock=lambda: now[0])
    assert f.apply("missing file") == "missing file"
    path.write_text("file")
    assert f.apply("file") == "file"  # not checked again before 5 s
    now[0] = 5.0
    assert f.apply("file") == "***"
    path.unlink()
    now[0] = 10.0
    assert f.apply("file") == "***"  # an unreadable file keeps the old list


# offline push


async def wait_for(received: list[Any], count: int) -> None:
    while len(received) < count:  # noqa: ASYNC110 (another thread fills it)
        await trio.sleep(0.01)


@fail_after()
async def test_offline_members_get_a_push_through_the_webhook() -> None:
    with webhook() as (url, received):
        template = '{"alert":"new in ${convId} from ${fromClientId}","_profile":"dev"}'
        overrides = {"push_webhook": url, "push_template": template}
        async with running_server(overrides) as running, running.user("tom") as tom:
            cid = await tom.start(["jerry", "spike", "muted"])
            async with running.user("muted") as muted:
                await muted.request({"cmd": "conv", "op": "mute", "cid": cid})
            async with running.user("spike"):
                await tom.say(cid, "hi", pushData='{"alert":"custom","badge":1}')
                await tom.say(cid, "templated")
                await wait_for(received, 2)
            # The webhook's answers are counted once the server has read them.
            while running.server.pusher.stats.sent < 2:  # noqa: ASYNC110 - a counter
                await trio.sleep(0.01)
            await tom.say(cid, "transient", transient=True)
            stats = running.server.statistics()["push"]
        assert [r["recipients"] for r in received] == [["jerry"], ["jerry"]]
        assert received[0]["payload"] == {"alert": "custom", "badge": 1}
        assert received[1]["payload"] == {"alert": f"new in {cid} from tom"}
        assert (received[0]["conversation"], received[0]["from"]) == (cid, "tom")
        assert isinstance(stats, dict)
        assert stats["sent"] == 2


@fail_after()
async def test_no_webhook_no_push_and_a_full_queue_drops() -> None:
    async with running_server() as running, running.user("tom") as tom:
        cid = await tom.start(["jerry"])
        await tom.say(cid, "nobody to tell", pushData='{"alert":"x"}')
        assert running.server.pusher.stats.dropped == 0
    # A webhook that never answers (a listening socket nobody accepts from: an address
    # outside the machine may well answer here, through a proxy), and a queue of one.
    (silent,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = silent.socket.getsockname()[1]
    overrides = {
        "push_webhook": f"http://127.0.0.1:{port}/",
        "push_template": '{"alert":"new message"}',
        "push_queue": 1,
        "push_timeout": 5.0,  # longer than the test: the first post holds the worker
    }
    async with silent, running_server(overrides) as running, running.user("tom") as tom:
        cid = await tom.start(["jerry"])
        await tom.say_many(cid, ["a", "b", "c", "d"])
        await tom.say(cid, "e", pushData="plain string")
        assert running.server.pusher.stats.dropped >= 2


def test_push_payload_rules() -> None:
    assert payload_for('{"alert":"a"}', "", "c", "f", 1) == {"alert": "a"}
    assert payload_for("just text", "", "c", "f", 1) == {"alert": "just text"}
    assert payload_for(None, "", "c", "f", 1) is None
    assert payload_for(None, '{"t":"${timestamp}"}', "c", "f", 5000) == {"t": "5"}
    assert payload_for(None, "not json ${convId}", "c", "f", 1) == {"alert": "not json c"}


def test_receipt_book_is_bounded_and_forgets_acked() -> None:
    book = ReceiptBook(2)
    book.want("c", "m1", 1, "tom")
    book.want("c", "m2", 2, "jerry")
    book.want("c", "m3", 3, "tom")  # m1 forgotten
    assert len(book) == 2
    assert book.timestamp_of("c", "m1") is None
    assert [w.mid for w in book.delivered("c", "jerry", 10)] == ["m3"]
    assert [w.mid for w in book.delivered("c", "tom", 10)] == ["m2"]
    assert len(book) == 0
    for n in range(20):
        book.want("d", f"x{n}", n, "tom")
        book.delivered("d", "jerry", n)
    assert len(book) == 0


@pytest.mark.parametrize("sub", [JSON_SUB])
@fail_after()
async def test_custom_types_and_attributes_pass_through(sub: str) -> None:
    async with (
        running_server() as running,
        users(running, "tom", "jerry", subprotocol=sub) as (
            tom,
            jerry,
        ),
    ):
        cid = await conversation(tom, jerry)
        text = '{"_lctype":123,"_lctext":"x","_lcattrs":{"k":[1,{"z":null}]},"op":"typing"}'
        await tom.say(cid, text)
        assert (await jerry.next_push("direct"))["msg"] == text
        assert (await jerry.logs(cid))[0]["data"] == text


@fail_after()
async def test_chatroom_messages_are_filtered_and_cannot_be_patched(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("spoiler\n")
    overrides = {"sensitive_words_file": str(words)}
    async with (
        running_server(overrides) as running,
        users(running, "host", "viewer") as (
            host,
            viewer,
        ),
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        await viewer.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["viewer"]})
        await host.take_pushes()
        ack = await host.say(cid, "big SPOILER ahead")
        assert (await viewer.next_push("direct"))["msg"] == "big *** ahead"
        notice = await host.next_push("patch", "modify")
        assert notice["patches"][0]["patchCode"] == 4408
        assert [i["data"] for i in await viewer.logs(cid)] == ["big *** ahead"]
        patch = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"], "data": "edited"}
        reply = await host.request({"cmd": "patch", "op": "modify", "patches": [patch]})
        assert reply["code"] == 4404  # chatroom messages are not stored
