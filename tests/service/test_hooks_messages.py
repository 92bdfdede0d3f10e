"""``_messageReceived``, ``_messageSent`` and ``_receiversOffline`` through a running
server and a real hook endpoint (chatroom/service/hooks.py, docs/hooks.md): rewriting,
dropping, re-routing, both failure policies, a slow endpoint that holds up nothing else,
and the offline push the hook chooses.
"""

from __future__ import annotations

import json
from typing import Any

import trio
import trio.testing
from helpers import Cmd, conversation, fail_after, users, webhook
from hook_endpoint import HookCall, carry_on, hooked, result

RECEIVED = "_messageReceived"


def only(pushes: list[Cmd], cmd: str) -> list[Cmd]:
    return [p for p in pushes if p["cmd"] == cmd]


def answering(**replies: Any) -> Any:
    """A responder giving each hook name its fixed result (``{}`` for the others)."""

    async def respond(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return result(replies.get(call.name, {}))

    return respond


@fail_after()
async def test_the_hook_sees_the_message_and_may_rewrite_its_content() -> None:
    async def rewrite(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return result({"content": call.params["content"] + " (checked)"})

    async with (
        hooked(rewrite, {"messageReceived": {}}) as (running, endpoint),
        users(running, "tom", "jerry", "spike") as (tom, jerry, spike),
    ):
        cid = await conversation(tom, jerry, spike)
        ack = await tom.say(cid, "hi")
        assert (await jerry.next_push("direct"))["msg"] == "hi (checked)"
        assert (await spike.next_push("direct"))["msg"] == "hi (checked)"
        notice = await tom.next_push("patch", "modify")  # the sender learns the new text
        [item] = notice["patches"]
        assert (item["mid"], item["data"]) == (ack["uid"], "hi (checked)")
        assert "patchCode" not in item  # changed by the app, not by the word filter
        assert [m["data"] for m in await spike.logs(cid)] == ["hi (checked)"]
        [call] = endpoint.of(RECEIVED)
        assert call.signed()
        params = call.params
        assert (params["fromPeer"], params["convId"], params["content"]) == ("tom", cid, "hi")
        assert sorted(params["toPeers"]) == ["jerry", "spike"]
        assert (params["bin"], params["transient"], params["receipt"]) == (False, False, False)
        assert params["timestamp"] == ack["t"]
        assert params["sourceIP"] == "127.0.0.1"
        stats = running.server.statistics()["hooks"]
        assert stats[RECEIVED]["calls"] == 1  # type: ignore[index]


@fail_after()
async def test_the_hook_may_change_who_receives_the_message() -> None:
    respond = answering(_messageReceived={"toPeers": ["spike", "not-a-member"]})
    async with (
        hooked(respond, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry", "spike", "outsider") as (tom, jerry, spike, outsider),
    ):
        cid = await conversation(tom, jerry, spike)
        await tom.say(cid, "for spike only")
        assert (await spike.next_push("direct"))["msg"] == "for spike only"
        assert only(await jerry.take_pushes(), "direct") == []
        assert only(await outsider.take_pushes(), "direct") == []  # members only
        assert [m["data"] for m in await jerry.logs(cid)] == ["for spike only"]  # stored


@fail_after()
async def test_a_dropped_message_fails_with_4402_and_the_app_s_code() -> None:
    respond = answering(_messageReceived={"drop": True, "code": 42, "detail": "no ads"})
    async with (
        hooked(respond, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        ack = await tom.request({"cmd": "direct", "cid": cid, "msg": "buy now"})
        assert (ack["cmd"], ack["code"], ack["appCode"], ack["appMsg"]) == (
            "ack",
            4402,
            42,
            "no ads",
        )
        assert only(await jerry.take_pushes(), "direct") == []
        assert await jerry.logs(cid) == []


@fail_after()
async def test_binary_content_goes_as_base64_and_may_come_back_as_text() -> None:
    respond = answering(_messageReceived={"content": "now text", "bin": False})
    async with (
        hooked(respond, {"messageReceived": {}}) as (running, endpoint),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        await tom.request({"cmd": "direct", "cid": cid, "binaryMsg": "AAEC"})
        assert (await jerry.next_push("direct"))["msg"] == "now text"
        [call] = endpoint.of(RECEIVED)
        assert (call.params["bin"], call.params["content"]) == (True, "AAEC")


async def broken(call: HookCall) -> tuple[int, bytes]:
    await trio.lowlevel.checkpoint()
    return 503, b'{"code": 1, "error": "down"}'


@fail_after()
async def test_a_failing_hook_passes_the_message_unchanged_by_default() -> None:
    async with (
        hooked(broken, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        await tom.say(cid, "still here")
        assert (await jerry.next_push("direct"))["msg"] == "still here"
        assert running.server.statistics()["hooks"][RECEIVED]["failures"] == 1  # type: ignore[index]


@fail_after()
async def test_a_failing_hook_refuses_the_message_under_the_refuse_policy() -> None:
    async with (
        hooked(broken, {"messageReceived": {"on_failure": "refuse"}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        ack = await tom.request({"cmd": "direct", "cid": cid, "msg": "lost"})
        assert (ack["code"], ack["appMsg"]) == (4402, "HTTP 503")
        assert await jerry.logs(cid) == []


@fail_after(100)  # virtual seconds
async def test_a_slow_hook_holds_up_neither_other_conversations_nor_the_sender(
    autojump_clock: trio.testing.MockClock,
) -> None:
    slow_cid = ""

    async def slow_for_one(call: HookCall) -> tuple[int, bytes]:
        if call.params.get("convId") == slow_cid:
            await trio.sleep(30)  # past the 500 ms timeout
        await trio.lowlevel.checkpoint()
        return result({})

    async with (
        hooked(slow_for_one, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry", "spike") as (tom, jerry, spike),
    ):
        slow_cid = await conversation(tom, jerry)
        fast_cid = await conversation(tom, spike)
        start = trio.current_time()
        await tom.send({"cmd": "direct", "cid": slow_cid, "msg": "waits", "i": 101})
        await tom.send({"cmd": "direct", "cid": fast_cid, "msg": "goes", "i": 102})
        fast = await tom.reply_to(102)  # answered first, on the same connection
        assert "code" not in fast
        assert all(c.get("i") != 101 for c in tom.received)
        assert (await spike.next_push("direct"))["msg"] == "goes"
        assert trio.current_time() - start < 0.5  # virtual time: before the slow timeout
        slow = await tom.reply_to(101)  # the slow hook timed out: the message passes
        assert "code" not in slow
        assert (await jerry.next_push("direct"))["msg"] == "waits"
        assert trio.current_time() - start >= 0.5


@fail_after(100)
async def test_one_sender_s_messages_keep_their_order_whatever_their_hooks_take(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def first_is_slow(call: HookCall) -> tuple[int, bytes]:
        await trio.sleep(0.3 if call.params["content"] == "first" else 0)
        return result({})

    async with (
        hooked(first_is_slow, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        acks = await tom.pipeline(
            [{"cmd": "direct", "cid": cid, "msg": m} for m in ("first", "second", "third")]
        )
        assert all("code" not in a for a in acks)
        got = [(await jerry.next_push("direct"))["msg"] for _ in range(3)]
        assert got == ["first", "second", "third"]
        assert [m["data"] for m in await jerry.all_logs(cid)] == got


@fail_after()
async def test_chatroom_messages_call_no_message_hook() -> None:
    async with (
        hooked(carry_on, {"messageReceived": {}}) as (running, endpoint),
        users(running, "host", "viewer") as (host, viewer),
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        await viewer.request({"cmd": "conv", "op": "add", "cid": reply["cid"], "m": ["viewer"]})
        await host.say(reply["cid"], "live")
        assert (await viewer.next_push("direct"))["msg"] == "live"
        assert endpoint.of(RECEIVED) == []


@fail_after()
async def test_message_sent_tells_who_was_online() -> None:
    async with (
        hooked(carry_on, {"messageSent": {}}) as (running, endpoint),
        users(running, "tom", "jerry") as (tom, _),
    ):
        group = await tom.start(["jerry", "away"])  # "away" never logged in
        ack = await tom.say(group, "hello")
        [call] = await endpoint.wait_for("_messageSent")
        params = call.params
        assert (params["convId"], params["msgId"], params["content"]) == (
            group,
            ack["uid"],
            "hello",
        )
        assert (params["onlinePeers"], params["offlinePeers"]) == (["jerry"], ["away"])
        assert params["fromPeer"] == "tom"


@fail_after()
async def test_receivers_offline_chooses_the_push() -> None:
    reply = {"offlinePeers": ["away"], "pushMessage": json.dumps({"alert": "from the hook"})}
    respond = answering(_receiversOffline=reply)
    with webhook() as (url, pushed):
        async with (
            hooked(respond, {"receiversOffline": {}}, push_webhook=url) as (running, endpoint),
            users(running, "tom") as (tom,),
        ):
            cid = await tom.start(["away", "gone"])
            await tom.say(cid, "wake up")
            [call] = await endpoint.wait_for("_receiversOffline")
            assert sorted(call.params["offlinePeers"]) == ["away", "gone"]
            assert (call.params["content"], call.params["mentionAll"]) == ("wake up", False)
            # The push goes out (from a thread) after the hook's reply: a short poll.
            while not pushed:  # noqa: ASYNC110
                await trio.sleep(0.01)
        [push] = pushed
        assert (push["recipients"], push["payload"]) == (["away"], {"alert": "from the hook"})


@fail_after()
async def test_receivers_offline_may_skip_the_push() -> None:
    respond = answering(_receiversOffline={"skip": True})
    template = '{"alert": "new message"}'
    with webhook() as (url, pushed):
        async with (
            hooked(respond, {"receiversOffline": {}}, push_webhook=url, push_template=template) as (
                running,
                endpoint,
            ),
            users(running, "tom") as (tom,),
        ):
            cid = await tom.start(["away"])
            await tom.say(cid, "one")
            await tom.say(cid, "two")
            await endpoint.wait_for("_receiversOffline", 2)
            await tom.sync()
        assert pushed == []


@fail_after(100)
async def test_a_sender_s_messages_waiting_on_the_hook_are_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def sleepy(call: HookCall) -> tuple[int, bytes]:
        await trio.sleep(30)  # every call times out
        return result({})

    async with (
        hooked(sleepy, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        texts = [str(n) for n in range(101)]
        acks = await tom.pipeline([{"cmd": "direct", "cid": cid, "msg": t} for t in texts])
        assert all("code" not in a for a in acks[:100])  # passed once their hooks timed out
        assert (acks[100]["code"], acks[100]["reason"]) == (4116, "too many messages waiting")
        got = [(await jerry.next_push("direct"))["msg"] for _ in range(100)]
        assert got == texts[:100]  # in order, those beyond the concurrency (32) too
        stats = running.server.statistics()["hooks"]["_messageReceived"]  # type: ignore[index]
        assert (stats["timeouts"], stats["busy"]) == (32, 68)
        await tom.say(cid, "and later more")  # the bound is free again


@fail_after()
async def test_message_update_may_rewrite_an_edit_and_drop_a_recall() -> None:
    async def respond(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        if call.params["recall"]:
            return result({"drop": True, "code": 9, "detail": "kept for the record"})
        return result({"content": call.params["content"] + " (reviewed)"})

    async with (
        hooked(respond, {"messageUpdate": {}}) as (running, endpoint),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "hello")
        patch = {"cid": cid, "mid": ack["uid"], "timestamp": ack["t"]}
        reply = await tom.request(
            {"cmd": "patch", "op": "modify", "patches": [{**patch, "data": "hello again"}]}
        )
        assert (reply["cmd"], reply["op"]) == ("patch", "modified")
        (item,) = (await jerry.next_push("patch", "modify"))["patches"]
        assert item["data"] == "hello again (reviewed)"
        refused = await tom.request(
            {"cmd": "patch", "op": "modify", "patches": [{**patch, "recall": True}]}
        )
        assert (refused["code"], refused["appCode"], refused["detail"]) == (
            4405,
            9,
            "kept for the record",
        )
        assert [m["data"] for m in await jerry.logs(cid)] == ["hello again (reviewed)"]
        edit, recall = endpoint.of("_messageUpdate")
        assert (edit.params["content"], edit.params["recall"]) == ("hello again", False)
        assert (edit.params["msgId"], edit.params["timestamp"]) == (ack["uid"], ack["t"])
        assert (recall.params["content"], recall.params["recall"]) == (
            "hello again (reviewed)",
            True,
        )
        assert recall.params["toPeers"] == ["jerry"]
