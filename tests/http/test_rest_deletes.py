"""Deleting over REST (chatroom/http/rest): conversations with their messages, over real
HTTP on a SQLite file, with members online over real WebSockets seeing the events."""

from __future__ import annotations

from pathlib import Path

from helpers import fail_after, running_server, users
from rest_support import MASTER, ok, rest


@fail_after(30)
async def test_deleting_a_conversation_removes_it_and_tells_its_members(tmp_path: Path) -> None:
    config = {"master_key": MASTER, "db": str(tmp_path / "chat.db")}
    async with running_server(config) as running, users(running, "a", "b", "v") as (a, b, v):
        cid = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        keep = (await ok(running, "POST", "/conversations", {"m": ["a", "b"]}))["objectId"]
        for target in (cid, keep):
            sent = {"from_client": "a", "message": "hi"}
            await ok(running, "POST", f"/conversations/{target}/messages", sent)
        room = (await ok(running, "POST", "/chatrooms", {"name": "live"}))["objectId"]
        joined = await v.request({"cmd": "conv", "op": "add", "cid": room, "m": ["v"]})
        assert joined.get("op") == "added", joined
        for client in (a, b, v):
            await client.take_pushes()
        # Without the master key nothing goes.
        status, body = await rest(running, "DELETE", f"/conversations/{cid}", key=None)
        assert (status, body["code"]) == (401, 401)
        # A conversation is not deleted under another family.
        status, body = await rest(running, "DELETE", f"/chatrooms/{cid}")
        assert (status, body["code"]) == (404, 4303)
        assert await ok(running, "DELETE", f"/conversations/{cid}") == {}
        for member in (a, b):
            left = await member.next_push("conv", "left")
            assert (left["cid"], left["initBy"]) == (cid, "a")
        # Gone for REST and for the WebSocket, and its history with it.
        for path in (f"/conversations/{cid}", f"/conversations/{cid}/messages"):
            status, body = await rest(running, "GET", path)
            assert (status, body["code"]) == (404, 4303), path
        refused = await b.request({"cmd": "direct", "cid": cid, "msg": "late"})
        assert refused.get("code") == 4401, refused  # as for any unknown conversation
        logs = await b.request({"cmd": "logs", "cid": cid})
        assert logs.get("code") == 4303, logs
        assert len(await ok(running, "GET", f"/conversations/{keep}/messages")) == 1
        status, body = await rest(running, "DELETE", f"/conversations/{cid}")
        assert (status, body["code"]) == (404, 4303)
        # A chatroom's viewers get the same event.
        assert await ok(running, "DELETE", f"/chatrooms/{room}") == {}
        left = await v.next_push("conv", "left")
        assert left["cid"] == room
        status, body = await rest(running, "GET", f"/chatrooms/{room}")
        assert (status, body["code"]) == (404, 4303)


@fail_after(30)
async def test_deleting_a_service_conversation_takes_its_subscribers_threads(
    tmp_path: Path,
) -> None:
    config = {"master_key": MASTER, "db": str(tmp_path / "chat.db")}
    async with running_server(config) as running, users(running, "s1", "s2") as (s1, s2):
        made = [await ok(running, "POST", "/service-conversations", {"name": n}) for n in "AB"]
        gone, kept = (f"/service-conversations/{m['objectId']}" for m in made)
        for base in (gone, kept):
            for client in ("s1", "s2"):
                await ok(running, "POST", f"{base}/subscribers", {"client_id": client})
        to_one = {"message": "just you", "to_clients": ["s1"], "from_client": "bot"}
        await ok(running, "POST", f"{gone}/messages", to_one)
        await s2.say(made[0]["objectId"], "hello operator")
        await s1.say(made[1]["objectId"], "to the other operator")
        stored = {m["data"] for m in await ok(running, "GET", "/messages")}
        assert stored == {"just you", "hello operator", "to the other operator"}
        assert await ok(running, "DELETE", gone) == {}
        # What the operator and each subscriber wrote to the other went with it; the
        # other service conversation's thread stays.
        left = await ok(running, "GET", "/messages")
        assert [m["data"] for m in left] == ["to the other operator"]
        thread = await ok(running, "GET", f"{kept}/subscribers/s1/messages")
        assert [m["data"] for m in thread] == ["to the other operator"]
