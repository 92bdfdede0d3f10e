"""System conversations and the operator endpoints (chatroom/http/admin.py, service/system.py),
signatures (chatroom/core/signature.py, service/signing.py) and the replay of missed
conversation events after an automatic re-login (service/conv_events.py), over real
WebSockets and HTTP.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import trio
from helpers import Client, Cmd, Running, fail_after, running_server, users

from chatroom.core.convlog import ConvEventLog
from chatroom.core.signature import Verifier, login_text, members_text, sign, start_text
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared

MASTER = "master-secret"


def _post(url: str, body: object, key: str | None) -> tuple[int, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-LC-Key"] = f"{key},master"
    request = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def admin(
    running: Running, path: str, body: object, key: str | None = MASTER
) -> tuple[int, dict[str, object]]:
    url = f"http://127.0.0.1:{running.http_port}/admin/system-conversations{path}"
    return await trio.to_thread.run_sync(_post, url, body, key)


async def failure(client: Client, cmd: Cmd) -> object:
    reply = await client.request(cmd)
    assert reply["cmd"] == "error", reply
    return reply["code"]


# ---------------------------------------------------------------------------
# system conversations


@fail_after(20)
async def test_system_conversation_subscribe_broadcast_and_refusals() -> None:
    async with (
        running_server({"master_key": MASTER}) as running,
        users(running, "a", "b") as (a, b),
    ):
        status, made = await admin(running, "", {"name": "News", "attrs": {"lang": "en"}})
        assert status == 201
        cid = made["objectId"]
        assert isinstance(cid, str)
        found = await a.request({"cmd": "conv", "op": "query", "where": {"sys": True}})
        (doc,) = found["results"]
        assert (doc["objectId"], doc["sys"], doc["name"], doc["lang"]) == (cid, True, "News", "en")
        assert "m" not in doc  # no member list
        added = await a.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["a", "b"]})
        assert added["allowedPids"] == ["a"]  # only oneself
        assert added["failedPids"][0]["code"] == 4308
        assert added["failedPids"][0]["pids"] == ["b"]
        assert await a.take_pushes() == []  # no member events
        status, sent = await admin(running, f"/{cid}/messages", {"text": "hello"})
        assert status == 200
        push = await a.next_push("direct")
        assert json.loads(push["msg"]) == {"_lctype": -1, "_lctext": "hello"}
        assert (push["cid"], push["fromPeerId"], push["id"]) == (cid, "system", sent["id"])
        assert await b.take_pushes() == []  # not subscribed
        # A subscriber writes to the operator only (seed 002; tests/http/test_rest.py),
        # a non-subscriber not at all.
        assert (await a.say(cid, "mine"))["uid"]
        direct = await b.request({"cmd": "direct", "cid": cid, "msg": "mine"})
        assert direct.get("code") == 4307, direct
        upd = {"cmd": "conv", "op": "update", "cid": cid, "attr": {"name": "x"}}
        assert await failure(a, upd) == 4308
        removed = await a.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["a"]})
        assert removed["allowedPids"] == ["a"]
        await admin(running, f"/{cid}/messages", {"data": "raw", "from": "bot"})
        await a.sync()
        assert [p for p in await a.take_pushes() if p["cmd"] == "direct"] == []


@fail_after(20)
async def test_admin_endpoints_need_the_master_key_and_good_input() -> None:
    async with running_server({"master_key": MASTER}) as running, users(running, "a") as (a,):
        assert (await admin(running, "", {"name": "x"}, key=None))[0] == 403
        assert (await admin(running, "", {"name": "x"}, key="wrong"))[0] == 403
        assert (await admin(running, "", {"nom": "x"}))[0] == 400
        assert (await admin(running, "/nope/messages", {"text": "x"}))[0] == 404
        normal = await a.start(["b"])
        status, body = await admin(running, f"/{normal}/messages", {"text": "x"})
        assert (status, body["code"]) == (400, 4313)
        assert (await admin(running, f"/{normal}/messages", {"text": 5}))[0] == 400
    async with running_server() as running:  # no master key: no admin API
        assert (await admin(running, "", {"name": "x"}, key=""))[0] == 403


# ---------------------------------------------------------------------------
# signatures


def _signed_login(peer: str, ts: int | None = None, nonce: str = "n1") -> Cmd:
    t = int(time.time()) if ts is None else ts
    s = sign(MASTER, login_text("test", peer, t, nonce))
    login = {"cmd": "session", "op": "open", "appId": "test", "peerId": peer}
    return {**login, "t": t, "n": nonce, "s": s}


SIGNED = {"master_key": MASTER, "signatures": "login,conversation", "app_id": "test"}


@fail_after(20)
async def test_login_signatures() -> None:
    async with running_server(SIGNED) as running:
        async with running.client() as c:
            unsigned = {"cmd": "session", "op": "open", "appId": "test", "peerId": "a"}
            assert await failure(c, unsigned) == 4102
            assert (await c.request(_signed_login("a")))["op"] == "opened"
        async with running.client() as c:
            assert await failure(c, _signed_login("b", nonce="n1")) == 4102  # nonce reused
            assert await failure(c, _signed_login("b", ts=int(time.time()) - 1000)) == 4102
            bad = {**_signed_login("b", nonce="n2"), "s": "0" * 40}
            assert await failure(c, bad) == 4102
            ms = int(time.time() * 1000)  # milliseconds are accepted too
            assert (await c.request(_signed_login("b", ts=ms, nonce="n3")))["op"] == "opened"


@fail_after(20)
async def test_conversation_signatures() -> None:
    async with running_server(SIGNED) as running, running.client() as a:
        await a.request(_signed_login("a"))
        now = int(time.time())
        start: Cmd = {"cmd": "conv", "op": "start", "m": ["b"], "t": now, "n": "s1"}
        assert await failure(a, {**start, "s": "f" * 40}) == 4302
        start["s"] = sign(MASTER, start_text("test", "a", ["a", "b"], now, "s1"))
        cid = (await a.request(start))["cid"]
        assert await failure(a, start) == 4302  # replayed nonce

        def members(op: str, action: str, nonce: str) -> Cmd:
            text = members_text("test", "a", cid, ["c"], now, nonce, action)
            signed = {"t": now, "n": nonce, "s": sign(MASTER, text)}
            return {"cmd": "conv", "op": op, "cid": cid, "m": ["c"], **signed}

        assert await failure(a, members("add", "kick", "m1")) == 4302  # wrong action
        assert (await a.request(members("add", "invite", "m2")))["allowedPids"] == ["c"]
        assert (await a.request(members("remove", "remove", "m3")))["allowedPids"] == ["c"]
        assert (await a.request(members("add", "add", "m4")))["allowedPids"] == ["c"]
        assert await failure(a, {"cmd": "conv", "op": "remove", "cid": cid, "m": ["c"]}) == 4302


def test_verifier_forgets_nonces_beyond_its_bound() -> None:
    v = Verifier("k", window=300, nonces=2)
    now = 1_000_000
    text = "x"
    sig = sign("k", text)
    for nonce in ("a", "b", "c"):
        assert v.check([text], sig, now, nonce, now * 1000) is None
    assert v.check([text], sig, now, "c", now * 1000) == "nonce already used"
    assert v.check([text], sig, now, "a", now * 1000) is None  # forgotten (bounded)
    assert v.check([text], sig, now, "", now * 1000) is not None


# ---------------------------------------------------------------------------
# missed conversation events


def test_event_log_is_bounded() -> None:
    log = ConvEventLog(per_client=2, clients=2)
    events = [Prepared(pb.GenericCommand(cmd=pb.conv, serverTs=t)) for t in range(4)]
    for t, prepared in enumerate(events):
        log.record(["a"], t, prepared, ["tok"] if t == 3 else [])
    assert log.missed("a", 0, None) == [events[2], events[3]]
    assert log.missed("a", 0, "tok") == [events[2]]
    assert log.missed("a", 2, None) == [events[3]]
    log.record(["b"], 5, events[0], [])
    log.record(["c"], 5, events[0], [])
    assert log.missed("a", 0, None) == []  # the least recent client was forgotten


@pytest.mark.parametrize("with_token", [True, False])
@fail_after(20)
async def test_missed_events_are_pushed_after_an_automatic_relogin(with_token: bool) -> None:
    async with running_server() as running, users(running, "a") as (a,):
        async with running.client() as b_conn:
            opened = await b_conn.login("b")
            await trio.sleep(0.005)  # events in a later millisecond than the login
            cid = await a.start(["b"])
            await b_conn.take_pushes()
        await running.wait_connections(1)
        await a.take_pushes()
        await a.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["c"]})
        await a.request({"cmd": "conv", "op": "update", "cid": cid, "attr": {"name": "n"}})
        async with running.client() as again:
            fields: dict[str, object] = {"r": True, "lastPatchTime": opened["serverTs"]}
            if with_token:
                fields["st"] = opened["st"]
            reply = await again.login("b", **fields)
            assert reply["op"] == "opened"
            conv = [p for p in await again.take_pushes() if p["cmd"] == "conv"]
            pushes = [(p["op"], p.get("m")) for p in conv]
            # the create events were delivered live to that session: not again with st
            create = [("joined", None), ("members-joined", ["a", "b"])]
            missed = [("members-joined", ["c"]), ("updated", None)]
            assert pushes == (missed if with_token else [*create, *missed])
        async with running.client() as fresh:  # r false: a fresh login gets none
            await fresh.login("b")
            assert [p for p in await fresh.take_pushes() if p["cmd"] == "conv"] == []


# ---------------------------------------------------------------------------
# the CLI


def test_cli_sign_prints_a_verifiable_signature(capsys: pytest.CaptureFixture[str]) -> None:
    from chatroom.cli.main import main

    argv = ["sign", "add", "--client-id", "tom", "--cid", "c1", "--members", "b,a"]
    assert main([*argv, "--master-key", "k", "--app-id", "app"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["signed"] == f"app:tom:c1:a:b:{out['timestamp']}:{out['nonce']}:invite"
    verifier = Verifier("k")
    now_ms = out["timestamp"] * 1000
    check = verifier.check(
        [out["signed"]], out["signature"], out["timestamp"], out["nonce"], now_ms
    )
    assert check is None
    assert main(["sign", "login", "--client-id", "tom", "--master-key", ""]) == 2


def test_cli_sys_create_into_a_stopped_servers_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from chatroom.cli.main import main
    from chatroom.core.model import ConvType
    from chatroom.store.sqlite import SqliteStore

    db = str(tmp_path / "chat.db")
    assert main(["sys", "create", "--name", "News", "--db", db]) == 0
    cid = json.loads(capsys.readouterr().out)["objectId"]

    async def read() -> None:
        store = SqliteStore(db)
        await store.open()
        conv = await store.get_conversation(cid)
        await store.aclose()
        assert conv is not None
        assert (conv.kind, conv.attrs, conv.creator) == (
            ConvType.SYSTEM,
            {"name": "News"},
            "system",
        )

    trio.run(read)
