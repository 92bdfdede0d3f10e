"""The server shell: listeners, subprotocol negotiation, the HTTP side port and graceful
shutdown (chatroom/net/server.py, protocol.md 2.1 and 4.17).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
import trio
import trio.testing
from helpers import (
    ALL_SUBS,
    BASE64_SUB,
    JSON_SUB,
    PROTOBUF_SUB,
    Client,
    assert_serving,
    codec_of,
    fail_after,
    http_get,
    make_config,
    running_server,
)
from trio_websocket import ConnectionRejected, HandshakeError, open_websocket_url

from chatroom.core.model import HistoryQuery, Message
from chatroom.net.server import Listening, Server
from chatroom.store.memory import MemoryStore
from chatroom.store.sqlite import SqliteStore

# subprotocols


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [
        (["lc.protobuf2.3"], "lc.protobuf2.3"),
        (["lc.protobuf2.1"], "lc.protobuf2.1"),
        (["lc.proto2base64.3"], "lc.proto2base64.3"),
        (["lc.json.3"], "lc.json.3"),
        (["chat.v9", "lc.proto2base64.1"], "lc.proto2base64.1"),
        (None, None),
    ],
)
@fail_after()
async def test_subprotocol_is_echoed_and_picks_the_codec(
    offered: list[str] | None, echoed: str | None
) -> None:
    async with (
        running_server() as running,
        open_websocket_url(running.url, subprotocols=offered) as ws,
    ):
        assert ws.subprotocol == echoed
        client = Client(ws, codec_of(echoed))
        await client.login("alice")  # frames of the right type (checked by receive)


@fail_after()
async def test_subprotocol_from_the_query_string() -> None:
    # WeChat mini-programs cannot set the header: ?subprotocol= picks the codec, and
    # nothing is echoed (echoing a protocol the client did not offer fails it).
    async with running_server() as running:
        url = f"{running.url}?subprotocol={BASE64_SUB}"
        async with open_websocket_url(url) as ws:
            assert ws.subprotocol is None
            await Client(ws, codec_of(BASE64_SUB)).login("alice")


@fail_after()
async def test_unknown_subprotocols_are_rejected() -> None:
    async with running_server() as running:
        with pytest.raises(ConnectionRejected) as info:
            async with open_websocket_url(running.url, subprotocols=["chat.v9", "lc.xml.3"]):
                pass  # pragma: no cover - the handshake fails
        assert info.value.status_code == 400
        await assert_serving(running)


@fail_after()
async def test_junk_on_the_websocket_port_does_not_disturb_the_server() -> None:
    async with running_server() as running:
        quiet = await trio.open_tcp_stream("127.0.0.1", running.ws_port)
        await quiet.aclose()  # connects and leaves without a handshake
        async with await trio.open_tcp_stream("127.0.0.1", running.ws_port) as junk:
            await junk.send_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            while await junk.receive_some(1024):
                pass  # the server answers (or not) and hangs up
        with pytest.raises(HandshakeError):
            async with open_websocket_url(f"ws://127.0.0.1:{running.http_port}/"):
                pass  # pragma: no cover - the HTTP port does not speak WebSocket
        await assert_serving(running)


# HTTP side port


@fail_after()
async def test_healthz_reports_status_and_statistics() -> None:
    async with running_server() as running, running.user("alice") as alice:
        await alice.start(["bob"])
        await alice.say(await alice.start(["bob"]), "hi")
        status, _, body = await http_get(running.http_port, "/healthz")
        assert status == 200
        health = orjson.loads(body)
        assert health["status"] == "ok"
        assert health["connections"] == 1
        assert health["sessions"] == 1
        assert health["messages_accepted"] == 1
        status, _, _ = await http_get(running.http_port, "/nowhere")
        assert status == 404


# shutdown


@fail_after()
async def test_shutdown_sends_goaway_closes_1001_and_run_returns() -> None:
    server = Server(make_config())
    returned = trio.Event()

    async def run(task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED) -> None:
        await server.run(task_status=task_status)
        returned.set()

    async with trio.open_nursery() as nursery:
        listening = await nursery.start(run)
        url = f"ws://127.0.0.1:{listening.ws_port}/"
        async with (
            open_websocket_url(url, subprotocols=[JSON_SUB]) as ws_json,
            open_websocket_url(url, subprotocols=[PROTOBUF_SUB]) as ws_pb,
            open_websocket_url(url, subprotocols=[BASE64_SUB]) as ws_b64,
        ):
            alice = Client(ws_json, codec_of(JSON_SUB))
            bob = Client(ws_pb, codec_of(PROTOBUF_SUB))
            anonymous = Client(ws_b64, codec_of(BASE64_SUB))
            await alice.login("alice")
            await bob.login("bob")
            await anonymous.sync()  # connected, not logged in
            server.shutdown.set()
            for client in (alice, bob, anonymous):
                goaway = await client.next_push("goaway")
                assert goaway == {"cmd": "goaway"}  # no i, no peerId
                reason = await client.closed()
                assert reason.code == 1001
        await returned.wait()
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", listening.ws_port)


@fail_after()
async def test_shutdown_with_nobody_connected() -> None:
    async with running_server() as running:
        await assert_serving(running)
    # running_server has shut the server down and waited for run to return


@fail_after()
async def test_every_ack_sent_before_shutdown_is_stored(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    async with running_server({"db": str(db)}) as running, running.user("alice") as alice:
        cid = await alice.start(["bob"])
        await alice.say(cid, "before")
        for i in range(200):
            await alice.send({"cmd": "direct", "cid": cid, "msg": f"m{i}", "i": 1000 + i})
        running.server.shutdown.set()
        await alice.closed()
    acked = [p["uid"] for p in alice.pushes if p["cmd"] == "ack" and "uid" in p]
    store = SqliteStore(str(db))
    await store.open()
    try:
        for uid in acked:
            assert await store.get_message(cid, uid) is not None
        assert await store.last_message(cid) is not None
    finally:
        await store.aclose()


class GatedStore(MemoryStore):
    """A store whose commits wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = trio.Event()

    async def append_messages(self, batch: Sequence[Message]) -> None:
        await self.gate.wait()
        await super().append_messages(batch)


@fail_after()
async def test_messages_in_flight_at_shutdown_are_acknowledged() -> None:
    store = GatedStore()
    async with running_server(store=store) as running, running.user("alice") as alice:
        cid = await alice.start(["bob"])
        sends = [{"cmd": "direct", "cid": cid, "msg": f"m{i}", "dt": f"d{i}"} for i in range(5)]
        numbered = [alice.number(cmd) for cmd in sends]
        for cmd in numbered:
            await alice.send(cmd)
        await alice.sync()  # all five read and waiting for their commit
        running.server.shutdown.set()
        await trio.testing.wait_all_tasks_blocked()
        store.gate.set()  # the commit completes during the shutdown
        await alice.next_push("goaway")
        # every ack came before goaway, so the client knows its messages were sent
        acked_first = {p["i"] for p in alice.pushes if p["cmd"] == "ack" and "uid" in p}
        await alice.closed()
    # Everything was committed (run returned after the committer drained) ...
    assert len(await store.query_messages(HistoryQuery(cid))) == 5
    # ... and each of them was acknowledged before the connection closed.
    acks = {p["i"] for p in alice.pushes if p["cmd"] == "ack" and "uid" in p}
    assert acks == {cmd["i"] for cmd in numbered}
    assert acked_first == acks


@pytest.mark.parametrize("subprotocol", ALL_SUBS)
@fail_after()
async def test_many_connections_at_once(subprotocol: str) -> None:
    async with running_server() as running:
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(_login_and_echo, running.url, subprotocol, f"user{n}")
        await assert_serving(running)


async def _login_and_echo(url: str, subprotocol: str, peer_id: str) -> None:
    async with open_websocket_url(url, subprotocols=[subprotocol]) as ws:
        client = Client(ws, codec_of(subprotocol))
        await client.login(peer_id)
        await client.sync()
