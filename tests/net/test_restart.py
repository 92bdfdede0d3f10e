"""State that outlives a restart: a real server on a SQLite file is shut down while its
clients are connected, and a new one is started on the same file.

After it: a resume with the session token is ``opened`` (not 4112), with login
signatures on too; a chatroom viewer who resumes is in its room again; a nonce used
before is refused; a pending delivery receipt is sent on the receiver's ack; a will
set before fires when the resumed session's connection drops; a resend with the same
``dt`` is acked with the first id; missed conversation events are replayed. A token
that cannot be read is 4112 (the SDK then logs in afresh), and another client's is not
loaded (those tests start on a MemoryStore filled as a stopped server leaves it).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio
from helpers import Client, Cmd, conversation, fail_after, running_server
from store_examples import make_conv

from chatroom.core.model import LastingChanges, SessionRecord, WillRecord
from chatroom.core.signature import login_text, sign
from chatroom.protocol import messages_pb2 as pb
from chatroom.store.base import StoreError
from chatroom.store.memory import MemoryStore

MASTER = "master-key"
SIGNED = {"master_key": MASTER, "signatures": "login", "app_id": "test"}


def on_file(tmp_path: Path, **overrides: object) -> dict[str, object]:
    return {"db": str(tmp_path / "chat.db"), **overrides}


async def stop(running: object, *clients: Client) -> None:
    """Shut the server down while ``clients`` are connected (they get goaway)."""
    running.server.shutdown.set()  # type: ignore[attr-defined]
    for client in clients:
        await client.closed()


async def open_session(client: Client, peer_id: str, **fields: object) -> Cmd:
    return await client.request(
        {"cmd": "session", "op": "open", "appId": "test", "peerId": peer_id, **fields}
    )


def signed_login(peer: str, nonce: str) -> Cmd:
    t = int(time.time())
    s = sign(MASTER, login_text("test", peer, t, nonce))
    return {
        "cmd": "session",
        "op": "open",
        "appId": "test",
        "peerId": peer,
        "t": t,
        "n": nonce,
        "s": s,
    }


async def count(client: Client, cid: str) -> object:
    reply = await client.request({"cmd": "conv", "op": "count", "cid": cid})
    assert reply.get("op") == "result", reply
    return reply["count"]


# session tokens


@pytest.mark.parametrize("overrides", [{}, SIGNED], ids=["unsigned", "signed"])
@fail_after(20)
async def test_resume_with_the_token_after_a_restart_is_opened(
    tmp_path: Path, overrides: dict[str, object]
) -> None:
    config = on_file(tmp_path, **overrides)
    async with running_server(config) as running, running.client() as phone:
        login = signed_login("alice", "n1") if overrides else {"cmd": "session", "op": "open"}
        opened = await phone.request({**login, "appId": "test", "peerId": "alice", "tag": "phone"})
        assert opened.get("op") == "opened", opened
        await stop(running, phone)
    async with (
        running_server(config) as running,
        running.client() as again,
        running.client() as rival,
    ):
        resumed = await open_session(again, "alice", r=True, st=opened["st"])
        assert resumed.get("op") == "opened", resumed
        # Still the "phone" device: a new phone login takes it over.
        await rival.request({**signed_login("alice", "n2"), "tag": "phone"})
        assert (await again.next_push("session", "closed"))["code"] == 4111


@fail_after(20)
async def test_revoked_and_taken_over_tokens_stay_so_after_a_restart(tmp_path: Path) -> None:
    async with running_server(on_file(tmp_path)) as running:
        async with running.client() as client:
            revoked = await client.login("alice")
            await client.request({"cmd": "session", "op": "close"})
        async with running.client() as first, running.client() as second:
            taken = await first.login("bob", tag="phone")
            await second.login("bob", tag="phone")
            await stop(running, first, second)
    async with running_server(on_file(tmp_path)) as running, running.client() as client:
        reply = await open_session(client, "alice", r=True, st=revoked["st"])
        assert (reply["cmd"], reply["code"]) == ("error", 4112)
        assert (await open_session(client, "bob", r=True, st=taken["st"]))["code"] == 4111


class UnreadableTokens(MemoryStore):
    """A store that fails to read session tokens."""

    async def get_session(self, token: str) -> SessionRecord | None:
        await trio.lowlevel.checkpoint()
        raise StoreError("database is locked")


async def left_by_a_server(store: MemoryStore, will_payload: bytes) -> MemoryStore:
    """``store`` as a server stopped while alice was logged in (token ``st-a``, a will
    for conversation c1) left it."""
    far = 2**42
    await store.create_conversation(make_conv("c1", ("alice", "bob")))
    changes = LastingChanges(
        sessions={"st-a": SessionRecord("st-a", "alice", None, None, far)},
        wills={"alice": WillRecord("alice", "st-a", will_payload, far)},
    )
    await store.save_lasting(changes)
    return store


@pytest.mark.parametrize("broken", ["store", "will"])
@fail_after()
async def test_a_token_that_cannot_be_read_after_a_restart_is_4112_not_4200(broken: str) -> None:
    # The SDK logs in afresh after 4112 only; after 4200 it would try the token again.
    will = pb.DirectCommand(cid="c1", msg="bye").SerializeToString()
    if broken == "store":
        store = await left_by_a_server(UnreadableTokens(), will)
    else:
        store = await left_by_a_server(MemoryStore(), b"\xff not protobuf")
    async with running_server(store=store) as running, running.client() as alice:
        reply = await open_session(alice, "alice", r=True, st="st-a")
        assert (reply["cmd"], reply.get("code")) == ("error", 4112), reply
        assert (await open_session(alice, "alice", r=True)).get("op") == "opened"


@fail_after()
async def test_someone_elses_token_from_before_a_restart_is_not_loaded() -> None:
    will = pb.DirectCommand(cid="c1", msg="bye").SerializeToString()
    store = await left_by_a_server(MemoryStore(), will)
    async with running_server(store=store) as running, running.client() as client:
        reply = await open_session(client, "mallory", r=True, st="st-a")
        assert (reply["cmd"], reply.get("code")) == ("error", 4112), reply
        ctx = running.server.context
        assert "st-a" not in ctx.caches.tickets
        assert ctx.caches.conversations.peek("c1") is None  # nor her will's conversation
        assert (await open_session(client, "alice", r=True, st="st-a")).get("op") == "opened"
        assert ctx.caches.conversations.peek("c1") is not None


# chatroom rejoin


@fail_after(20)
async def test_a_chatroom_viewer_who_resumes_after_a_restart_is_in_the_room(
    tmp_path: Path,
) -> None:
    async with (
        running_server(on_file(tmp_path)) as running,
        running.client() as host,
        running.client() as bob,
    ):
        host_opened = await host.login("host")
        bob_opened = await bob.login("bob")
        started = await host.request(
            {"cmd": "conv", "op": "start", "m": [], "transient": True, "attr": {"name": "live"}}
        )
        cid = started["cid"]
        await bob.request({"cmd": "conv", "op": "add", "cid": cid, "m": ["bob"]})
        assert await count(host, cid) == 2
        await stop(running, host, bob)
    async with (
        running_server(on_file(tmp_path)) as running,
        running.client() as host,
        running.client() as bob,
    ):
        await host.login("host", r=True, st=host_opened["st"])
        assert await count(host, cid) == 1
        await bob.login("bob", r=True, st=bob_opened["st"])
        assert await count(host, cid) == 2
        await host.say(cid, "welcome back")
        assert (await bob.next_push("direct"))["msg"] == "welcome back"


# signature nonces


@fail_after(20)
async def test_a_nonce_used_before_a_restart_is_refused_after_it(tmp_path: Path) -> None:
    config = on_file(tmp_path, **SIGNED)
    async with running_server(config) as running, running.client() as client:
        assert (await client.request(signed_login("alice", "once")))["op"] == "opened"
    async with running_server(config) as running, running.client() as client:
        replay = await client.request(signed_login("mallory", "once"))
        assert (replay["cmd"], replay["code"]) == ("error", 4102)
        assert "nonce" in replay["reason"]
        assert (await client.request(signed_login("alice", "fresh")))["op"] == "opened"


# receipts, wills, dedupe, missed events


@fail_after(20)
async def test_a_pending_delivery_receipt_is_sent_after_a_restart(tmp_path: Path) -> None:
    async with (
        running_server(on_file(tmp_path)) as running,
        running.user("tom") as tom,
        running.user("jerry") as jerry,
    ):
        cid = await conversation(tom, jerry)
        ack = await tom.say(cid, "did you get it?", r=True)
        await stop(running, tom, jerry)  # jerry never acked
    async with (
        running_server(on_file(tmp_path)) as running,
        running.user("tom") as tom,
        running.user("jerry") as jerry,
    ):
        await jerry.send({"cmd": "ack", "cid": cid, "fromts": ack["t"], "tots": ack["t"]})
        rcp = await tom.next_push("rcp")
        assert (rcp["id"], rcp["cid"], rcp["from"]) == (ack["uid"], cid, "jerry")


@fail_after(20)
async def test_a_will_set_before_a_restart_fires_when_the_resumed_session_drops(
    tmp_path: Path,
) -> None:
    async with (
        running_server(on_file(tmp_path)) as running,
        running.user("bob") as bob,
        running.user("alice") as alice,
    ):
        opened = alice.received[0]
        cid = await conversation(alice, bob)
        await alice.say(cid, "alice vanished", will=True)
        await stop(running, bob, alice)  # a shutdown sends no will
        assert [p for p in bob.pushes if p["cmd"] == "direct"] == []
    async with running_server(on_file(tmp_path)) as running, running.user("bob") as bob:
        async with running.client() as alice:
            await alice.login("alice", r=True, st=opened["st"])
            await alice.drop()
        will = await bob.next_push("direct")
        assert (will["cid"], will["msg"], will["fromPeerId"]) == (cid, "alice vanished", "alice")


@fail_after(20)
async def test_a_resend_after_a_restart_is_acked_with_the_first_id(tmp_path: Path) -> None:
    # Dedupe keys are rebuilt from the stored messages (Store.recent_dedupe_tokens).
    async with (
        running_server(on_file(tmp_path)) as running,
        running.user("alice") as alice,
        running.user("bob") as bob,
    ):
        cid = await conversation(alice, bob)
        first = await alice.say(cid, "once", dt="dt-1")
        await stop(running, alice, bob)
    async with running_server(on_file(tmp_path)) as running, running.user("alice") as alice:
        again = await alice.say(cid, "once", dt="dt-1")
        assert (again["uid"], again["t"]) == (first["uid"], first["t"])
        assert [item["data"] for item in await alice.logs(cid)] == ["once"]


@fail_after(20)
async def test_events_missed_before_a_restart_are_replayed_after_it(tmp_path: Path) -> None:
    async with running_server(on_file(tmp_path)) as running, running.user("a") as a:
        async with running.client() as b:
            opened = await b.login("b")
            await trio.sleep(0.005)  # events in a later millisecond than the login
            cid = await a.start(["b"])
            await b.take_pushes()
        await running.wait_connections(1)
        await a.request({"cmd": "conv", "op": "update", "cid": cid, "attr": {"name": "new"}})
        await stop(running, a)
    async with running_server(on_file(tmp_path)) as running, running.client() as b:
        fields = {"r": True, "lastPatchTime": opened["serverTs"], "st": opened["st"]}
        await b.login("b", **fields)
        conv = [(p["op"], p["cid"]) for p in await b.take_pushes() if p["cmd"] == "conv"]
        assert conv == [("updated", cid)]  # the creation was delivered live to that session
