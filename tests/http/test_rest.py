"""The REST API (chatroom/http/rest) over real HTTP, with clients online over real
WebSockets seeing what it does: the same events, store and rules as the WebSocket
commands (service/operator.py runs their handlers)."""

from __future__ import annotations

import hashlib
import json

from helpers import Client, conversation, fail_after, http_get, ops, running_server, users
from rest_support import MASTER, ok, rest

from chatroom.core.ids import thread_cid

CONFIG = {"master_key": MASTER}


async def _created(running: object, members: list[str], **fields: object) -> str:
    made = await ok(running, "POST", "/conversations", {"m": members, **fields})  # type: ignore[arg-type]
    return str(made["objectId"])


async def _settle(*clients: Client) -> None:
    for client in clients:
        await client.take_pushes()


@fail_after(20)
async def test_authentication_and_error_json() -> None:
    async with running_server(CONFIG) as running:
        for key in (None, "wrong"):
            status, body = await rest(running, "GET", "/conversations", key=key)
            assert (status, body["code"]) == (401, 401), body
            assert "master" in body["error"]
        stamp = "1700000000000"
        sign = hashlib.md5((stamp + MASTER).encode()).hexdigest()
        headers = {"X-LC-Sign": f"{sign},{stamp},master"}
        assert (await rest(running, "GET", "/conversations", key=None, headers=headers))[0] == 200
        bad = {"X-LC-Sign": f"{sign},1,master"}
        assert (await rest(running, "GET", "/conversations", key=None, headers=bad))[0] == 401
        status, body = await rest(running, "POST", "/conversations", raw=b"{not json")
        assert (status, body["code"]) == (400, 107)
        status, body = await rest(running, "POST", "/conversations", raw=b"[1]")
        assert (status, body["code"]) == (400, 107)
        status, body = await rest(running, "GET", "/conversations/nope/members")
        assert (status, body["code"]) == (404, 4303)
    async with running_server() as running:  # no master key: the API is off and says so
        status, body = await rest(running, "GET", "/conversations")
        assert status == 403
        assert "no master_key" in body["error"]


@fail_after(20)
async def test_app_id_must_match_when_configured() -> None:
    async with running_server({**CONFIG, "app_id": "app1"}) as running:
        assert (await rest(running, "GET", "/conversations"))[0] == 401
        headers = {"X-LC-Id": "app1"}
        assert (await rest(running, "GET", "/conversations", headers=headers))[0] == 200


@fail_after(30)
async def test_conversations_create_query_update_and_members() -> None:
    async with running_server(CONFIG) as running, users(running, "a", "b", "c") as (a, b, c):
        made = await ok(running, "POST", "/conversations", {"m": ["a", "b"], "name": "team"})
        cid = made["objectId"]
        assert (made["c"], made["m"], made["name"]) == ("a", ["a", "b"], "team")
        assert ("conv", "joined") in ops(await b.take_pushes())  # as over the WebSocket
        found = await ok(running, "GET", "/conversations", query={"where": '{"name":"team"}'})
        assert [d["objectId"] for d in found["results"]] == [cid]
        room = await ok(running, "POST", "/chatrooms", {"name": "team"})
        rooms = await ok(running, "GET", "/chatrooms", query={"where": '{"name":"team"}'})
        assert [d["objectId"] for d in rooms["results"]] == [room["objectId"]]
        every = await ok(running, "GET", "/all-conversations", query={"limit": "10"})
        assert {d["objectId"] for d in every["results"]} == {cid, room["objectId"]}
        updated = await ok(running, "PUT", f"/conversations/{cid}", {"name": "crew", "x": 1})
        assert updated["objectId"] == cid
        push = await b.next_push("conv", "updated")
        assert push["attr"] == {"name": "crew", "x": 1}
        status, body = await rest(running, "PUT", f"/conversations/{cid}", {"m": ["z"]})
        assert status == 400
        added = await ok(running, "POST", f"/conversations/{cid}/members", {"client_ids": ["c"]})
        assert "failed" not in added
        assert ("conv", "joined") in ops(await c.take_pushes())
        members = await ok(running, "GET", f"/conversations/{cid}/members")
        assert members == {"result": ["a", "b", "c"]}
        # The owner stays (the same rule as over the WebSocket): a per-id refusal.
        body = {"client_ids": ["a", "b"]}
        removed = await ok(running, "DELETE", f"/conversations/{cid}/members", body)
        assert removed["failed"] == [
            {"code": 4308, "error": "CONVERSATION_NEED_OWNER", "client_ids": ["a"]}
        ]
        assert ("conv", "left") in ops(await b.take_pushes())
        assert (await ok(running, "GET", f"/conversations/{cid}/members"))["result"] == ["a", "c"]
        # A conversation of another family is not found under this one.
        status, body = await rest(running, "GET", f"/chatrooms/{cid}")
        assert (status, body["code"]) == (404, 4303)
        bodies: list[dict[str, object]] = [{"client_ids": []}, {"client_ids": "c"}, {}]
        for bad in [*bodies, {"client_ids": [""]}]:
            status, _ = await rest(running, "POST", f"/conversations/{cid}/members", bad)
            assert status == 400, bad
        for count in (501, 10_000):  # over max_members
            many = {"client_ids": [f"u{i}" for i in range(count)]}
            status, _ = await rest(running, "POST", f"/conversations/{cid}/members", many)
            assert status == 400
        assert (await ok(running, "GET", f"/conversations/{cid}/members"))["result"] == ["a", "c"]
        await _settle(a)


@fail_after(30)
async def test_send_history_modify_and_recall() -> None:
    async with running_server(CONFIG) as running, users(running, "a", "b", "x") as (a, b, x):
        cid = await conversation(a, b)
        path = f"/conversations/{cid}/messages"
        sent = []
        for n in range(3):
            sent.append(await ok(running, "POST", path, {"from_client": "a", "message": f"m{n}"}))
        pushes = [p for p in await b.take_pushes() if p["cmd"] == "direct"]
        assert [(p["msg"], p["fromPeerId"], p["id"]) for p in pushes] == [
            (f"m{n}", "a", s["msg-id"]) for n, s in enumerate(sent)
        ]
        assert [p["msg"] for p in await a.take_pushes()] == ["m0", "m1", "m2"]  # no_sync off
        assert await x.take_pushes() == []  # not a member
        # Stored, as the WebSocket history shows.
        assert [m["data"] for m in await b.logs(cid)] == ["m0", "m1", "m2"]
        history = await ok(running, "GET", path)
        assert [m["data"] for m in history] == ["m2", "m1", "m0"]  # newest first
        assert history[0]["msg-id"] == sent[2]["msg-id"]
        assert history[0]["from"] == "a"
        start = {"msgid": sent[2]["msg-id"], "timestamp": str(sent[2]["timestamp"])}
        page = await ok(running, "GET", path, query={**start, "limit": "1"})
        assert [m["data"] for m in page] == ["m1"]
        page = await ok(running, "GET", path, query={"reversed": "true", "limit": "2"})
        assert [m["data"] for m in page] == ["m0", "m1"]
        status, _ = await rest(running, "GET", path, query={"msgid": sent[0]["msg-id"]})
        assert status == 400  # msgid needs its timestamp
        # Modify and recall as the sender; others are refused.
        target = f"{path}/{sent[0]['msg-id']}"
        change = {"from_client": "a", "timestamp": sent[0]["timestamp"], "message": "edited"}
        assert await ok(running, "PUT", target, change) == {}
        patch = await b.next_push("patch", "modify")
        assert patch["patches"][0]["data"] == "edited"
        status, body = await rest(running, "PUT", target, {**change, "from_client": "b"})
        assert (status, body["code"]) == (403, 4403)
        recall = {"from_client": "a", "timestamp": sent[1]["timestamp"]}
        assert await ok(running, "PUT", f"{path}/{sent[1]['msg-id']}/recall", recall) == {}
        patch = await b.next_push("patch", "modify")
        assert patch["patches"][0]["recall"] is True
        # Bad input changes nothing.
        for bad in (
            {"message": "x"},
            {"from_client": "a"},
            {"from_client": "a", "message": 5},
            {"from_client": "a", "message": "x", "priority": "urgent"},
            {"from_client": "a", "message": "x" * (64 * 1024 + 1)},
        ):
            status, body = await rest(running, "POST", path, bad)
            assert status in (400, 413), bad
            assert set(body) == {"code", "error"}, bad
        assert len(await ok(running, "GET", path)) == 3
        await _settle(a, b)


@fail_after(30)
async def test_chatroom_send_online_count_and_moderation() -> None:
    async with running_server(CONFIG) as running, users(running, "v", "w") as (v, w):
        room = (await ok(running, "POST", "/chatrooms", {"name": "live"}))["objectId"]
        count = f"/chatrooms/{room}/members/online-count"
        assert await ok(running, "GET", count) == {"result": 0}
        for viewer, name in ((v, "v"), (w, "w")):
            joined = await viewer.request({"cmd": "conv", "op": "add", "cid": room, "m": [name]})
            assert joined.get("op") == "added", joined
        assert await ok(running, "GET", count) == {"result": 2}
        body = {"from_client": "host", "message": "welcome", "priority": "HIGH"}
        await ok(running, "POST", f"/chatrooms/{room}/messages", body)
        assert (await v.next_push("direct"))["msg"] == "welcome"
        mute = {"client_ids": ["w"]}
        assert await ok(running, "POST", f"/chatrooms/{room}/permanent-silenceds", mute) == {}
        assert (await w.next_push("conv", "shutuped"))["initBy"] == "system"
        silenced = await ok(running, "GET", f"/chatrooms/{room}/permanent-silenceds")
        assert silenced == {"client_ids": ["w"]}
        refused = await w.request({"cmd": "direct", "cid": room, "msg": "boo"})
        assert refused.get("code") == 4308, refused
        assert await ok(running, "POST", f"/chatrooms/{room}/blacklists", mute) == {}
        assert await ok(running, "GET", count) == {"result": 1}  # w stopped watching
        again = await w.request({"cmd": "conv", "op": "add", "cid": room, "m": ["w"]})
        assert again["failedPids"][0]["code"] == 4315, again
        assert await ok(running, "GET", f"/chatrooms/{room}/blacklists") == {"client_ids": ["w"]}
        assert await ok(running, "DELETE", f"/chatrooms/{room}/blacklists", mute) == {}
        assert await ok(running, "GET", f"/chatrooms/{room}/blacklists") == {"client_ids": []}


@fail_after(30)
async def test_conversation_moderation_roles_and_push_mutes() -> None:
    async with running_server(CONFIG) as running, users(running, "a", "b", "c") as (a, b, c):
        cid = await conversation(a, b, c)
        conv = f"/conversations/{cid}"
        role = {"clientId": "b", "role": "Manager"}
        assert (await ok(running, "POST", f"{conv}/member-infos", role))["objectId"] == "b"
        changed = await c.next_push("conv", "member-info-changed")
        assert (changed["info"]["pid"], changed["info"]["role"]) == ("b", "Manager")
        infos = await ok(running, "GET", f"{conv}/member-infos")
        assert [(r["clientId"], r["role"]) for r in infos["results"]] == [
            ("a", "Owner"),
            ("b", "Manager"),
        ]
        status, body = await rest(
            running, "POST", f"{conv}/member-infos", {**role, "role": "Owner"}
        )
        assert status == 400
        status, body = await rest(running, "POST", f"{conv}/member-infos", {**role, "role": "Boss"})
        assert (status, body["code"]) == (400, 4321)
        mute = {"client_ids": ["c", "a"]}
        muted = await ok(running, "POST", f"{conv}/permanent-silenceds", mute)
        assert muted["failed"][0]["client_ids"] == ["a"]  # nobody mutes the owner
        assert (await c.next_push("conv", "shutuped"))["initBy"] == "a"
        refused = await c.request({"cmd": "direct", "cid": cid, "msg": "hi"})
        assert refused.get("code") == 4308
        assert await ok(running, "DELETE", f"{conv}/permanent-silenceds", mute) != {"x": 1}
        await c.say(cid, "free again")
        blocked = await ok(running, "POST", f"{conv}/blacklists", {"client_ids": ["c"]})
        assert blocked == {}
        assert ("conv", "left") in ops(await c.take_pushes())
        assert (await ok(running, "GET", f"{conv}/members"))["result"] == ["a", "b"]
        again = await ok(running, "POST", f"{conv}/members", {"client_ids": ["c"]})
        assert again["failed"][0]["code"] == 4315
        pushmute = {"client_ids": ["b"]}
        assert (await ok(running, "POST", f"{conv}/mutes", pushmute))["objectId"] == cid
        assert await ok(running, "GET", f"{conv}/mutes") == {"result": ["b"]}
        await ok(running, "DELETE", f"{conv}/mutes", pushmute)
        assert await ok(running, "GET", f"{conv}/mutes") == {"result": []}
        body = {"client_ids": ["b", "zed"]}
        status, body = await rest(running, "POST", f"{conv}/mutes", body)
        assert (status, body["code"]) == (403, 4317)  # not a member: nothing changes
        assert await ok(running, "GET", f"{conv}/mutes") == {"result": []}
        await _settle(a, b)


@fail_after(30)
async def test_clients_kick_online_unread_and_conversations() -> None:
    async with (
        running_server(CONFIG) as running,
        users(running, "a", "b") as (a, b),
        running.user("b") as b2,
    ):
        cid = await conversation(a, b)
        await a.say(cid, "one")
        await a.say(cid, "two")
        online = await ok(running, "POST", "/clients/check-online", {"client_ids": ["a", "z"]})
        assert online == {"results": ["a"]}
        asked = {"client_ids": [f"u{i}" for i in range(21)]}
        assert (await rest(running, "POST", "/clients/online-check", asked))[0] == 400
        unread = await ok(running, "GET", "/clients/b/unread-count")
        assert unread == {"count": 2}
        assert await ok(running, "GET", "/clients/b/unread-count", query={"conv_id": "x"}) == {
            "count": 0
        }
        mine = await ok(running, "GET", "/clients/b/conversations")
        assert [d["objectId"] for d in mine["results"]] == [cid]
        status, _ = await rest(running, "POST", "/clients/b/kick", {"reason": "x" * 21})
        assert status == 400
        assert await ok(running, "POST", "/clients/b/kick", {"reason": "spam"}) == {"sessions": 2}
        for session in (b, b2):
            closed = await session.next_push("session", "closed")
            assert (closed["code"], closed["reason"]) == (4115, "spam")
        online = await ok(running, "POST", "/clients/check-online", {"client_ids": ["a", "b"]})
        assert online == {"results": ["a"]}
        await _settle(a)


@fail_after(30)
async def test_sdk_member_info_call_with_the_im_session_token() -> None:
    async with running_server(CONFIG) as running, users(running, "a", "b", "x") as (a, b, x):
        cid = await conversation(a, b)
        await ok(
            running,
            "POST",
            f"/conversations/{cid}/member-infos",
            {"clientId": "b", "role": "Manager"},
        )
        token = str(b.received[0]["st"])
        path = "/1.1/classes/_ConversationMemberInfo"
        # Exactly what leancloud-realtime 4.3.1 sends (src/im-client.js
        # _requestWithSessionToken, src/realtime.js _request): client_id first, the
        # where as JSON, X-LC-Id/X-LC-Key (the app key), the IM token, and a JSON body
        # "{}" on the GET.
        headers = {
            "X-LC-Id": "test",
            "X-LC-Key": "app-key",
            "X-LC-IM-Session-Token": token,
            "Content-Type": "application/json;charset=utf-8",
        }
        query = {"client_id": "b", "where": json.dumps({"cid": cid}, separators=(",", ":"))}
        found = await ok(running, "GET", path, key=None, headers=headers, query=query, raw=b"{}")
        assert found == {
            "results": [
                {"clientId": "a", "role": "Owner", "cid": cid, "objectId": "a"},
                {"clientId": "b", "role": "Manager", "cid": cid, "objectId": "b"},
            ]
        }
        wrong = {**headers, "X-LC-IM-Session-Token": "nope"}
        status, body = await rest(running, "GET", path, key=None, headers=wrong, query=query)
        assert status == 401
        assert set(body) == {"code", "error"}
        other = {**query, "client_id": "a"}  # b's token for a: refused
        assert (await rest(running, "GET", path, key=None, headers=headers, query=other))[0] == 401
        outsider = {**headers, "X-LC-IM-Session-Token": str(x.received[0]["st"])}
        status, body = await rest(
            running, "GET", path, key=None, headers=outsider, query={**query, "client_id": "x"}
        )
        assert (status, body["code"]) == (403, 4317)
        for where in ("nope", "[]", "{}"):
            bad = {**query, "where": where}
            assert (await rest(running, "GET", path, key=None, headers=headers, query=bad))[
                0
            ] == 400
        await _settle(a, b)


@fail_after(30)
async def test_service_conversation_broadcasts_threads_and_subscriber_writes() -> None:
    async with running_server(CONFIG) as running, users(running, "s1", "s2") as (s1, s2):
        made = await ok(running, "POST", "/service-conversations", {"name": "News"})
        cid = made["objectId"]
        assert made["sys"] is True
        base = f"/service-conversations/{cid}"
        for name in ("s1", "s2"):
            assert await ok(running, "POST", f"{base}/subscribers", {"client_id": name}) == {}
        assert await ok(running, "GET", f"{base}/subscribers/count") == {"count": 2}
        page = await ok(running, "GET", f"{base}/subscribers", query={"limit": "1"})
        assert [s["subscriber"] for s in page] == ["s1"]
        after = await ok(running, "GET", f"{base}/subscribers", query={"client_id": "s1"})
        assert [s["subscriber"] for s in after] == ["s2"]
        everyone = await ok(running, "POST", f"{base}/broadcasts", {"message": "to all"})
        for client in (s1, s2):
            push = await client.next_push("direct")
            assert (push["msg"], push["id"]) == ("to all", everyone["msg-id"])
        one = {"message": "just you", "to_clients": ["s1"], "from_client": "bot"}
        only = await ok(running, "POST", f"{base}/messages", one)
        push = await s1.next_push("direct")
        assert (push["msg"], push["cid"], push["fromPeerId"]) == ("just you", cid, "bot")
        # A subscriber writes to the service account: acked once stored, seen by nobody.
        written = await s1.say(cid, "hello operator")
        assert [p for p in await s2.take_pushes() if p["cmd"] == "direct"] == []
        assert [p for p in await s1.take_pushes() if p["cmd"] == "direct"] == []
        thread = await ok(running, "GET", f"{base}/subscribers/s1/messages")
        assert [(m["data"], m["from"]) for m in thread] == [
            ("hello operator", "s1"),
            ("just you", "bot"),
            ("to all", "system"),
        ]
        assert thread[0]["msg-id"] == written["uid"]
        other = await ok(running, "GET", f"{base}/subscribers/s2/messages")
        assert [m["data"] for m in other] == ["to all"]  # nothing of s1's thread
        assert [m["data"] for m in await s2.logs(cid)] == ["to all"]
        assert only["msg-id"] not in {m["msgId"] for m in await s1.logs(cid)}
        assert len(thread_cid(cid, "s1")) == 32
        not_subscribed = {"message": "x", "to_clients": ["zed"]}
        status, body = await rest(running, "POST", f"{base}/messages", not_subscribed)
        assert (status, body["code"]) == (400, 4401)
        async with running.user("outsider") as outsider:
            refused = await outsider.request({"cmd": "direct", "cid": cid, "msg": "hi"})
            assert refused.get("code") == 4307, refused
        assert await ok(running, "DELETE", f"{base}/subscribers/s2") == {}
        assert await ok(running, "GET", f"{base}/subscribers/count") == {"count": 1}


@fail_after(20)
async def test_openapi_document_lists_every_route() -> None:
    async with running_server(CONFIG) as running:
        status, _, raw = await http_get(running.http_port, "/openapi.json")
        doc = json.loads(raw)
        assert status == 200
        assert doc["openapi"].startswith("3.")
        paths = doc["paths"]
        assert "post" in paths["/1.2/rtm/conversations/{cid}/messages"]
        assert "get" in paths["/1.1/classes/_ConversationMemberInfo"]
        assert "post" in paths["/1.2/rtm/clients/{client_id}/kick"]


@fail_after(20)
async def test_the_operator_needs_no_signature_its_clients_do() -> None:
    config = {**CONFIG, "signatures": "conversation,blacklist", "app_id": "test"}
    headers = {"X-LC-Id": "test"}
    async with running_server(config) as running, users(running, "a", "b") as (a, b):
        made = await ok(running, "POST", "/conversations", {"m": ["a", "b"]}, headers=headers)
        conv = f"/conversations/{made['objectId']}"
        ids = {"client_ids": ["b"]}
        assert await ok(running, "POST", f"{conv}/blacklists", ids, headers=headers) == {}
        await ok(running, "DELETE", f"{conv}/blacklists", ids, headers=headers)
        await ok(running, "POST", f"{conv}/members", ids, headers=headers)
        unsigned = {"cmd": "blacklist", "op": "block", "srcCid": made["objectId"], "toPids": ["b"]}
        refused = await a.request(unsigned)
        assert refused.get("code") == 4546, refused
        assert (await ok(running, "GET", f"{conv}/members", headers=headers))["result"] == [
            "a",
            "b",
        ]
        await _settle(a, b)
