"""Hooks on REST calls (chatroom/http/rest): LeanCloud leaves open whether they fire
(rest-and-hooks.md 3.3, a gap); here a REST send runs the ``direct`` handler, so
``_messageReceived`` sees it (and may rewrite or drop it) and ``_messageSent`` follows,
as for a WebSocket send; conversation hooks fire for REST member changes alike."""

from __future__ import annotations

import trio
from helpers import fail_after, users
from hook_endpoint import HookCall, hooked, result
from rest_support import MASTER, ok, rest


async def _judge(call: HookCall) -> tuple[int, bytes]:
    await trio.lowlevel.checkpoint()
    if call.name != "_messageReceived":
        return result({})
    if "spam" in call.params["content"]:
        return result({"drop": True, "code": 7, "detail": "no spam"})
    return result({"content": call.params["content"] + " (checked)"})


@fail_after(30)
async def test_rest_sends_and_member_changes_fire_the_hooks() -> None:
    hooks: dict[str, dict[str, object]] = {
        "messageReceived": {},
        "messageSent": {},
        "conversationAdded": {},
    }
    async with (
        hooked(_judge, hooks, master_key=MASTER) as (running, endpoint),
        users(running, "a", "b") as (_a, b),
    ):
        cid = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        await b.take_pushes()
        url = f"/conversations/{cid}/messages"
        sent = await ok(running, "POST", url, {"from_client": "a", "message": "hello"})
        push = await b.next_push("direct")
        assert (push["msg"], push["id"]) == ("hello (checked)", sent["msg-id"])
        [received] = endpoint.of("_messageReceived")
        assert (received.params["fromPeer"], received.params["convId"]) == ("a", cid)
        assert received.params["toPeers"] == ["b"]
        [after] = await endpoint.wait_for("_messageSent")
        assert after.params["content"] == "hello (checked)"
        status, body = await rest(running, "POST", url, {"from_client": "a", "message": "spam"})
        assert (status, body["code"]) == (400, 4402)
        history = await ok(running, "GET", url)
        assert [r["data"] for r in history] == ["hello (checked)"]
        await ok(running, "POST", f"/conversations/{cid}/members", {"client_ids": ["c"]})
        [added] = await endpoint.wait_for("_conversationAdded")
        assert (added.params["convId"], added.params["members"]) == (cid, ["c"])
