"""Conversation and client hooks through a running server and a real endpoint
(chatroom/service/hooks.py): before-hooks that refuse (4305 with the app's code) or
change the request, failure policies, and the notifications that follow.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from helpers import conversation, fail_after, users
from hook_endpoint import HookCall, carry_on, hooked, result


def rejecting(name: str, **extra: Any) -> Any:
    async def respond(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        if call.name == name:
            return result({"reject": True, "code": 7, "detail": "not today", **extra})
        return result({})

    return respond


def rejected(reply: dict[str, Any]) -> tuple[object, ...]:
    return (reply["cmd"], reply["code"], reply.get("appCode"), reply.get("detail"))


REFUSAL = ("error", 4305, 7, "not today")


@fail_after()
async def test_conversation_start_may_be_rejected() -> None:
    async with (
        hooked(rejecting("_conversationStart"), {"conversationStart": {}}) as (running, hook),
        users(running, "tom") as (tom,),
    ):
        reply = await tom.request(
            {"cmd": "conv", "op": "start", "m": ["jerry"], "attr": {"name": "x"}}
        )
        assert rejected(reply) == REFUSAL
        [call] = hook.of("_conversationStart")
        assert call.params == {"initBy": "tom", "members": ["jerry", "tom"], "attr": {"name": "x"}}
        found = await tom.request({"cmd": "conv", "op": "query", "where": {"m": "tom"}})
        assert found.get("results", []) == []


@fail_after()
async def test_start_and_add_and_remove_tell_the_hooks_before_and_after() -> None:
    hooks: dict[str, dict[str, object]] = {
        name: {}
        for name in (
            "conversationStart",
            "conversationStarted",
            "conversationAdd",
            "conversationAdded",
            "conversationRemove",
            "conversationRemoved",
        )
    }
    async with (
        hooked(carry_on, hooks) as (running, hook),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        await hook.wait_for("_conversationStarted")
        reply = await tom.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["spike"]})
        assert reply["op"] == "added"
        [added] = await hook.wait_for("_conversationAdded")
        assert added.params == {"initBy": "tom", "convId": cid, "members": ["spike"]}
        [add] = hook.of("_conversationAdd")
        assert add.params == {"initBy": "tom", "convId": cid, "members": ["spike"]}
        await tom.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["spike"]})
        await jerry.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["jerry"]})
        removed = await hook.wait_for("_conversationRemoved", 2)
        assert [c.params["members"] for c in removed] == [["spike"], ["jerry"]]
        # quitting by oneself asks nobody; removing another does
        assert [c.params["members"] for c in hook.of("_conversationRemove")] == [["spike"]]
        assert hook.of("_conversationStarted")[0].params == {"convId": cid}
        assert all(c.signed() for c in hook.calls)


@fail_after()
async def test_adding_and_removing_may_be_rejected() -> None:
    respond = rejecting("_conversationAdd")
    hooks: dict[str, dict[str, object]] = {"conversationAdd": {}, "conversationRemove": {}}
    async with (
        hooked(respond, hooks) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        reply = await tom.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["spike"]})
        assert rejected(reply) == REFUSAL
        count = await tom.request({"cmd": "conv", "op": "count", "cid": cid})
        assert count["count"] == 2
    async with (
        hooked(rejecting("_conversationRemove"), hooks) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        reply = await tom.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["jerry"]})
        assert rejected(reply) == REFUSAL
        count = await tom.request({"cmd": "conv", "op": "count", "cid": cid})
        assert count["count"] == 2


@fail_after()
async def test_update_may_be_rejected_or_its_attributes_replaced() -> None:
    async def respond(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        if call.params.get("attr") == {"name": "bad"}:
            return result({"reject": True, "code": 7, "detail": "not today"})
        if "attr" in call.params:
            return result({"attr": {"name": "renamed by the app"}})
        return result({"mute": False})  # a mute is turned into an unmute

    async with (
        hooked(respond, {"conversationUpdate": {}}) as (running, hook),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        update = {"cmd": "conv", "op": "update", "cid": cid}
        assert rejected(await tom.request({**update, "attr": {"name": "bad"}})) == REFUSAL
        reply = await tom.request({**update, "attr": {"name": "mine"}})
        assert reply["op"] == "updated"
        event = await jerry.next_push("conv", "updated")
        assert event["attr"] == {"name": "renamed by the app"}
        await tom.request({"cmd": "conv", "op": "mute", "cid": cid})
        assert hook.calls[-1].params == {"initBy": "tom", "convId": cid, "mute": True}
        found = await tom.request({"cmd": "conv", "op": "query", "where": {"objectId": cid}})
        [conv] = found["results"]
        assert conv["name"] == "renamed by the app"
        assert "tom" not in conv.get("mu", [])


@fail_after()
async def test_a_failing_conversation_hook_passes_or_refuses() -> None:
    async def down(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return 500, b""

    async with (
        hooked(down, {"conversationStart": {}}) as (running, _),
        users(running, "tom") as (tom,),
    ):
        assert await tom.start(["jerry"])  # passes
    refuse: dict[str, dict[str, object]] = {"conversationStart": {"on_failure": "refuse"}}
    async with hooked(down, refuse) as (running, _), users(running, "tom") as (tom,):
        reply = await tom.request({"cmd": "conv", "op": "start", "m": ["jerry"]})
        assert (reply["code"], reply["detail"]) == (4305, "HTTP 500")


@fail_after()
async def test_clients_online_and_offline_are_told() -> None:
    hooks: dict[str, dict[str, object]] = {"clientOnline": {}, "clientOffline": {}}
    async with hooked(carry_on, hooks) as (running, hook):
        async with running.client() as first:
            await first.login("tom", tag="mobile")
            [online] = await hook.wait_for("_clientOnline")
            assert online.params == {
                "peerId": "tom",
                "sourceIP": "127.0.0.1",
                "tag": "mobile",
                "reconnect": 0,
            }
            async with running.client() as second:
                await second.login("tom", tag="mobile")  # kicks the first device
                [kicked] = await hook.wait_for("_clientOffline")
                assert (kicked.params["closeCode"], kicked.params["tag"]) == (3, "mobile")
                await second.request({"cmd": "session", "op": "close"})
                logout = (await hook.wait_for("_clientOffline", 2))[1]
                assert (logout.params["closeCode"], logout.params["sourceIP"]) == (1, "127.0.0.1")
            async with running.client() as third:
                await third.login("jerry")
        lost = (await hook.wait_for("_clientOffline", 3))[2]
        assert (lost.params["peerId"], lost.params["closeCode"]) == ("jerry", 2)
        assert "sourceIP" not in lost.params


async def sleepy(call: HookCall) -> tuple[int, bytes]:
    await trio.sleep(30)  # past every timeout
    return result({})


# Each conversation before-hook, with the request that calls it (``cid`` filled in).
BEFORE: dict[str, dict[str, Any]] = {
    "conversationAdd": {"cmd": "conv", "op": "add", "m": ["spike"]},
    "conversationRemove": {"cmd": "conv", "op": "remove", "m": ["jerry"]},
    "conversationUpdate": {"cmd": "conv", "op": "update", "attr": {"name": "n"}},
}


@pytest.mark.parametrize("hook", sorted(BEFORE))
@pytest.mark.parametrize("policy", ["pass", "refuse"])
@fail_after(100)  # virtual seconds
async def test_a_slow_conversation_hook_times_out_under_its_policy(
    hook: str, policy: str, autojump_clock: trio.testing.MockClock
) -> None:
    hooks: dict[str, dict[str, object]] = {hook: {"on_failure": policy, "timeout_ms": 200}}
    async with (
        hooked(sleepy, hooks) as (running, endpoint),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        start = trio.current_time()
        reply = await tom.request({**BEFORE[hook], "cid": cid})
        assert trio.current_time() - start >= 0.2  # it waited for the hook's timeout
        assert len(endpoint.of("_" + hook)) == 1
        if policy == "refuse":
            assert (reply["cmd"], reply["code"]) == ("error", 4305)
            assert reply["detail"] == "no reply within 200 ms"
        else:
            assert reply["cmd"] == "conv", reply
        await jerry.sync()
        stats = running.server.statistics()["hooks"]["_" + hook]  # type: ignore[index]
        assert stats["timeouts"] == 1
