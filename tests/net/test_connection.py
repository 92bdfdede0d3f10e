"""One connection under bad input and bad behaviour (chatroom/net/connection.py,
inbound.py and writer.py).

Malformed frames, unknown commands, wrong types, oversized frames, request floods, slow
consumers, idle clients and clients that never log in: each gets a clear error or a
documented close code (design.md section 4, errors.py), and never disturbs the server.
After each, ``assert_serving`` checks that a new client is served and that stored
history is intact.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import trio
import trio.testing
from helpers import (
    ALL_SUBS,
    BASE64_SUB,
    JSON_SUB,
    PROTOBUF_SUB,
    Client,
    Cmd,
    Running,
    assert_serving,
    fail_after,
    running_server,
    users,
)
from trio_websocket import ConnectionClosed

from chatroom.core.model import SessionRecord
from chatroom.net.connection import Connection
from chatroom.protocol import messages_pb2 as pb
from chatroom.service import dispatch
from chatroom.service.context import Context, Link
from chatroom.store.memory import MemoryStore

HISTORY = ("m0", "m1")


async def seed(running: Running) -> str:
    """A conversation of alice and bob holding ``HISTORY``."""
    async with users(running, "alice", "bob") as (alice, _):
        cid = await alice.start(["bob"])
        await alice.say_many(cid, list(HISTORY))
    return cid


def is_error(cmd: Cmd, code: int) -> bool:
    return bool(cmd["cmd"] == "error" and cmd["code"] == code)


# malformed frames


@pytest.mark.parametrize(
    ("subprotocol", "frame"),
    [
        (JSON_SUB, "not json"),
        (JSON_SUB, "[1, 2, 3]"),
        (JSON_SUB, '"a string"'),
        (JSON_SUB, "{}"),
        (JSON_SUB, b"\xff\xfe garbage"),
        (JSON_SUB, '{"cmd": "direct", "i": 4, oops'),
        (PROTOBUF_SUB, b"\xff\xff\xff\xff"),
        (PROTOBUF_SUB, "text on a binary codec"),
        (BASE64_SUB, "%%% not base64 %%%"),
        (BASE64_SUB, "////"),
    ],
)
@fail_after()
async def test_garbage_frames_get_an_error_and_the_connection_goes_on(
    subprotocol: str, frame: str | bytes
) -> None:
    async with running_server() as running:
        cid = await seed(running)
        async with running.user("alice", subprotocol) as client:
            await client.send_raw(frame)
            error = await client.next_push("error")
            assert error["code"] == 4201
            assert error["reason"]
            await client.say(cid, "still here")
        await assert_serving(running, cid, (*HISTORY, "still here"))


@pytest.mark.parametrize(
    "cmd",
    [
        {"cmd": "nonsense", "i": 7},
        {"cmd": "conv", "op": "nonsense", "i": 7},
        {"cmd": 999, "i": 7},
        {"cmd": "direct", "i": 7, "cid": 123, "msg": "x"},
        {"cmd": "direct", "i": 7, "cid": "c", "msg": ["x"]},
        {"cmd": "conv", "op": "start", "i": 7, "m": "bob"},
        {"cmd": "logs", "i": 7, "cid": "c", "l": "ten"},
        {"cmd": "logs", "i": 7, "cid": "c", "l": 2**40},
        {"cmd": "direct", "i": 7, "cid": "c", "binaryMsg": "not base64!"},
        {"cmd": "direct", "i": 7, "unknownField": 1},
        {"cmd": "echo", "i": 7, "peerId": None},
    ],
)
@fail_after()
async def test_json_commands_with_wrong_names_or_types_get_4201_with_their_i(
    cmd: Cmd,
) -> None:
    async with running_server() as running:
        cid = await seed(running)
        async with running.user("alice") as client:
            await client.send(cmd)
            reply = await client.reply_to(7)
            assert is_error(reply, 4201), reply
            await client.say(cid, "still here")
        await assert_serving(running, cid, (*HISTORY, "still here"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"i":7}', "missing cmd"),
        ('{"cmd":"logs","i":7,"l":2147483648}', "l out of range (int32)"),
        ('{"cmd":"direct","i":7,"' + "k" * 100_000 + '":1}', None),
    ],
)
@fail_after()
async def test_a_bad_json_command_is_answered_by_its_i_with_a_short_clear_reason(
    raw: str, reason: str | None
) -> None:
    async with running_server() as running, running.user("alice") as client:
        await client.send_raw(raw)
        reply = await client.reply_to(7)
        assert is_error(reply, 4201), reply
        assert len(reply["reason"]) < 200
        if reason is not None:
            assert reply["reason"] == reason


@pytest.mark.parametrize("subprotocol", ALL_SUBS)
@fail_after()
async def test_a_huge_peer_id_is_not_echoed_back(subprotocol: str) -> None:
    huge = "y" * 100_000
    async with running_server() as running, running.client(subprotocol) as client:
        reply = await client.request({"cmd": "session", "op": "open", "appId": "a", "peerId": huge})
        assert is_error(reply, 4103), {k: str(v)[:80] for k, v in reply.items()}
        assert "peerId" not in reply
        assert len(reply["reason"]) < 200
        await client.login("alice")  # and the connection goes on


@fail_after()
async def test_a_binary_frame_on_a_json_connection_is_named_as_such() -> None:
    async with running_server() as running, running.user("alice") as client:
        await client.send_raw(b"\x08\x0e\x28\x07")  # a protobuf echo
        error = await client.next_push("error")
        assert (error["code"], error["reason"]) == (4201, "binary frame on a JSON connection")


@pytest.mark.parametrize("subprotocol", ALL_SUBS)
@fail_after()
async def test_commands_the_server_does_not_serve_get_4201(subprotocol: str) -> None:
    async with running_server() as running, running.user("alice", subprotocol) as client:
        for cmd in (
            {"cmd": "conv", "op": "joined"},  # a push, not a request
            {"cmd": "blacklist", "op": "blocked"},  # a reply, not a request
            {"cmd": "goaway"},
        ):
            assert is_error(await client.request(cmd), 4201)
        await client.sync()


@fail_after()
async def test_unknown_command_number_in_protobuf_gets_4201() -> None:
    async with running_server() as running, running.user("alice", PROTOBUF_SUB) as client:
        await client.send_raw(bytes([0x08, 99, 0x28, 7]))  # cmd = 99, i = 7
        assert is_error(await client.reply_to(7), 4201)
        await client.send_raw(bytes([0x08, 7, 0x10, 120, 0x28, 8]))  # conv, op = 120, i = 8
        assert is_error(await client.reply_to(8), 4201)


@fail_after()
async def test_a_handler_that_fails_answers_4200_and_only_that_request() -> None:
    def broken(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
        raise RuntimeError("a bug")

    async with running_server() as running:
        cid = await seed(running)
        async with running.user("alice") as client:
            key = (pb.session, pb.refresh)
            original = dispatch.ROUTES[key]
            dispatch.ROUTES[key] = (broken, None)
            try:
                reply = await client.request({"cmd": "session", "op": "refresh"})
            finally:
                dispatch.ROUTES[key] = original
            assert is_error(reply, 4200)
            await client.say(cid, "after the bug")
        await assert_serving(running, cid, (*HISTORY, "after the bug"))


@fail_after()
async def test_oversized_frame_closes_with_1009() -> None:
    async with running_server({"max_frame_bytes": 4096}) as running:
        cid = await seed(running)
        async with running.user("alice") as client:
            await client.say(cid, "x" * 3000)  # under the limit, with the JSON around it
            await client.send({"cmd": "direct", "i": 99, "cid": cid, "msg": "x" * 5000})
            reason = await client.closed()
            assert reason.code == 1009
        await assert_serving(running, cid, (*HISTORY, "x" * 3000))


# floods


@fail_after()
async def test_request_flood_gets_4113_replies_and_everyone_keeps_chatting() -> None:
    # So slow a refill that the burst is all the flooder gets during the test.
    overrides = {"requests_per_second": 0.001, "request_burst": 5}
    async with running_server(overrides) as running:
        async with running.client() as flooder, running.client() as bob:
            await flooder.login("mallory")
            await bob.login("bob")
            cid = await bob.start(["mallory"])  # bob's 2nd request of 5
            replies = await flooder.pipeline([{"cmd": "echo"} for _ in range(10)])
            assert [r["cmd"] for r in replies[:4]] == ["echo"] * 4
            assert all(is_error(r, 4113) for r in replies[4:]), replies
            refused = await flooder.request({"cmd": "direct", "cid": cid, "msg": "spam"})
            assert (refused["cmd"], refused["code"]) == ("ack", 4113)
            # bob has budget left, the flooder's connection is still open
            await bob.say(cid, "hello mallory")
            assert (await flooder.next_push("direct"))["msg"] == "hello mallory"
        await assert_serving(running, cid, ("hello mallory",), reader="bob")


async def flood(client: Client, seconds: float, replies: list[Cmd]) -> None:
    """Ten echo requests a second for ``seconds`` (or until the server closes)."""
    end = trio.current_time() + seconds
    with contextlib.suppress(ConnectionClosed):
        while trio.current_time() < end:
            replies.append(await client.request({"cmd": "echo"}))
            await trio.sleep(0.1)


@fail_after(100)
async def test_a_client_that_keeps_flooding_is_closed_with_4113(
    autojump_clock: trio.testing.MockClock,
) -> None:
    overrides = {"requests_per_second": 1, "request_burst": 5, "flood_close_after": 10}
    async with running_server(overrides) as running:
        async with running.user("mallory") as flooder, running.user("bob") as bob:
            replies: list[Cmd] = []
            await flood(flooder, math.inf, replies)  # until the server closes
            reason = flooder.ws.closed
            assert reason is not None
            assert reason.code == 4113
            assert any(is_error(r, 4113) for r in replies)
            await bob.sync()  # nobody else noticed
        await assert_serving(running)


@fail_after(100)
async def test_a_client_that_floods_now_and_then_is_not_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    overrides = {"requests_per_second": 1, "request_burst": 5, "flood_close_after": 10}
    async with running_server(overrides) as running, running.user("alice") as client:
        replies: list[Cmd] = []
        for _ in range(3):
            await flood(client, 6, replies)  # refused for about 5 s
            await trio.sleep(11)  # then quiet for longer than flood_close_after
        assert sum(is_error(r, 4113) for r in replies) > 30
        await client.sync()
        assert len(running.server.connections) == 1


@fail_after()
async def test_one_client_cannot_send_more_through_several_connections() -> None:
    overrides = {"user_messages_per_second": 0.001, "user_message_burst": 5}
    async with (
        running_server(overrides) as running,
        users(running, "mallory", "mallory", "bob") as (first, second, bob),
    ):
        cid = await bob.start(["mallory"])
        for client in (first, second, first, second, first):
            await client.say(cid, "spam")
        refused = await second.request({"cmd": "direct", "cid": cid, "msg": "spam"})
        assert (refused["cmd"], refused["code"]) == ("ack", 4116)
        await bob.say(cid, "bob has his own budget")
        await first.request({"cmd": "echo"})  # other requests are not limited by it


async def overwhelm(
    running: Running, alice: Client, cid: str, delivered: trio.MemoryReceiveChannel[str] | None
) -> list[str]:
    """Send big messages until the server closes a member as a slow consumer. With
    ``delivered``, each batch waits until a reading member got it: that member keeps
    up by construction, whatever the scheduling."""
    sent: list[str] = []
    counters = running.server.context.counters
    while counters.closed_slow == 0:
        batch = [f"{len(sent) + i:05d}" + "x" * 30_000 for i in range(10)]
        await alice.say_many(cid, batch)
        sent += batch
        if delivered is not None:
            for text in batch:
                assert await delivered.receive() == text
    return sent


@fail_after(30)
async def test_slow_consumer_is_closed_and_nobody_else_notices() -> None:
    # A slow consumer that never reads again: the server gives up on the closing
    # handshake after handshake_timeout.
    async with (
        running_server({"handshake_timeout": 0.5}) as running,
        users(running, "alice", "bob") as (alice, bob),
        running.user("slow") as slow,
    ):
        cid = await alice.start(["bob", "slow"])
        await slow.take_pushes()
        await bob.take_pushes()
        send, delivered = trio.open_memory_channel[str](1000)

        async def keep_reading() -> None:
            while True:
                push = await bob.receive()
                if push["cmd"] == "direct":
                    await send.send(push["msg"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_reading)  # bob keeps up; slow reads nothing from here
            sent = await overwhelm(running, alice, cid, delivered)
            await running.wait_connections(2)  # slow's, and only slow's, is gone
            await slow.drop()
            await alice.say(cid, "after")
            assert await delivered.receive() == "after"
            nursery.cancel_scope.cancel()
        # The sender was acked throughout, the other member got everything in order.
        await assert_serving(running, cid, (*sent, "after"))


@fail_after(30)
async def test_slow_consumer_sees_close_code_4120_when_it_reads_again() -> None:
    async with (
        running_server({"handshake_timeout": 1}) as running,
        running.user("alice") as alice,
        running.user("slow") as slow,
    ):
        cid = await alice.start(["slow"])
        await slow.take_pushes()
        sent = await overwhelm(running, alice, cid, None)
        reason = await slow.closed()  # reading now: what was queued, then the close
        got = [p["msg"] for p in slow.pushes if p["cmd"] == "direct"]
        assert got == sent[: len(got)]  # a prefix, in order, no gap
        assert reason.code == 4120


async def fill_socket(alice: Client, cid: str, conn: Connection) -> list[str]:
    """Send big messages until ``conn``'s socket is full (its writer task waits) and
    its outbox holds more."""
    sent: list[str] = []
    while conn._writer_done is None or not conn.outbox:
        batch = [f"{len(sent) + i:05d}" + "x" * 30_000 for i in range(10)]
        await alice.say_many(cid, batch)
        sent += batch
    return sent


def connection_of(running: Running, peer_id: str) -> Connection:
    return next(c for c in running.server.connections if c.session_for(peer_id))


@fail_after(30)
async def test_a_viewer_that_does_not_read_for_write_timeout_is_closed_with_4120() -> None:
    overrides = {"write_timeout": 0.5, "handshake_timeout": 10, "outbox_max_bytes": 64 << 20}
    async with (
        running_server(overrides) as running,
        running.user("alice") as alice,
        running.user("slow") as slow,
    ):
        cid = await alice.start(["slow"])
        await slow.take_pushes()
        sent = await fill_socket(alice, cid, connection_of(running, "slow"))
        while running.server.context.counters.closed_slow == 0:  # noqa: ASYNC110 (no event)
            await trio.sleep(0.05)
        reason = await slow.closed()  # the frame in flight is finished, then the close
        got = [p["msg"] for p in slow.pushes if p["cmd"] == "direct"]
        assert got == sent[: len(got)]
        assert reason.code == 4120
        await alice.say(cid, "alice is still served")


@fail_after(30)
async def test_a_close_while_the_writer_waits_comes_after_whole_frames() -> None:
    # The viewer stops reading until its socket is full and the server's writer task
    # waits for it; then the server closes it (the last step of a shutdown). The
    # writer is cancelled, and the close frame goes out only once it has ended: the
    # viewer, reading again, gets a prefix of the messages, in order and whole, the
    # goaway, then close code 1001.
    async with (
        running_server({"handshake_timeout": 10, "outbox_max_bytes": 64 << 20}) as running,
        running.user("alice") as alice,
        running.user("slow") as slow,
    ):
        cid = await alice.start(["slow"])
        await slow.take_pushes()
        conn = connection_of(running, "slow")
        sent = await fill_socket(alice, cid, conn)
        conn.goaway()
        reason = await slow.closed()
        got = [p["msg"] for p in slow.pushes if p["cmd"] == "direct"]
        assert got == sent[: len(got)]
        assert slow.pushes[-1]["cmd"] == "goaway"
        assert reason.code == 1001
        assert running.server.context.counters.closed_slow == 0


NO_INTAKE_SHEDDING = {
    "shed_backlog_low": 1_000_000,
    "shed_backlog_normal": 1_000_000,
    "shed_lag_low": 3600.0,
    "shed_lag_normal": 3600.0,
}


@fail_after(30)
async def test_a_viewer_that_fell_behind_is_told_how_many_messages_it_missed() -> None:
    # Two viewers stop reading while a room gets big messages; their outboxes shed.
    # Reading again, the JSON viewer gets every message kept, in order, and "shed"
    # notices whose last count is exactly what it did not get; the protobuf viewer
    # gets the SDK's frames only.
    async with (
        running_server({"outbox_max_frames": 16, **NO_INTAKE_SHEDDING}) as running,
        users(running, "host", "slow") as (host, slow),
        running.user("pb", PROTOBUF_SUB) as pb_viewer,
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        for viewer, name in ((slow, "slow"), (pb_viewer, "pb")):
            await viewer.request({"cmd": "conv", "op": "add", "cid": cid, "m": [name]})
        shed = running.server.context.counters.shed
        sent: list[str] = []
        while shed.normal < 200:  # both shed, and again after the first notice
            batch = [f"{len(sent) + i:05d}" + "x" * 30_000 for i in range(10)]
            await host.say_many(cid, batch)
            sent += batch
        got, told = await slow.until_shed_told(len(sent))
        assert told == len(sent) - len(got) > 0
        kept = set(got)
        assert got == [text for text in sent if text in kept]
        pushes = await pb_viewer.take_pushes()
        assert {p["cmd"] for p in pushes} == {"direct"}
        assert told + len(sent) - len(pushes) == shed.normal  # each shed for one of them


@fail_after()
async def test_a_history_page_bigger_than_the_outbox_bound_is_delivered() -> None:
    async with (
        running_server({"outbox_max_bytes": 64 * 1024}) as running,
        running.user("alice") as alice,
    ):
        cid = await alice.start(["bob"])
        texts = [f"{i}" + "x" * 20_000 for i in range(5)]
        await alice.say_many(cid, texts)
        # Cut to half the outbox (the reply bound), delivered, and paged on.
        assert [item["data"] for item in await alice.logs(cid)] == texts[-1:]
        assert [item["data"] for item in await alice.all_logs(cid)] == texts


# timeouts


@fail_after()
async def test_replies_do_not_wait_for_the_flushers_cycle() -> None:
    # Each flush cycle waits a minute after its first mark (far beyond fail_after): a
    # reply with nothing queued before it is written by the connection itself.
    slow_flushes = {"write_delay": 60.0, "write_delay_threshold": 0}
    async with running_server(slow_flushes) as running, running.user("alice") as alice:
        await alice.sync()
        cid = await alice.start([], transient=True)
        reply = await alice.request({"cmd": "conv", "op": "count", "cid": cid})
        assert reply["count"] == 1


@fail_after()
async def test_idle_connection_is_closed_with_4107() -> None:
    async with running_server({"idle_timeout": 0.5}) as running:
        cid = await seed(running)  # users who leave in time are not affected
        async with running.user("alice") as client:
            reason = await client.closed()
            assert reason.code == 4107
        await assert_serving(running, cid, HISTORY)


@fail_after()
async def test_connection_without_login_is_closed_with_4108() -> None:
    async with running_server({"login_timeout": 0.5}) as running:
        async with running.client() as client:
            await client.sync()  # echo needs no login, and does not count as one
            reason = await client.closed()
            assert reason.code == 4108
        await assert_serving(running)


@fail_after()
async def test_logging_out_starts_the_login_timeout_again() -> None:
    async with (
        running_server({"login_timeout": 0.5}) as running,
        running.user("alice") as client,
    ):
        await client.request({"cmd": "session", "op": "close"})
        reason = await client.closed()
        assert reason.code == 4108


@fail_after()
async def test_timeouts_leave_other_connections_alone() -> None:
    async with (
        running_server({"login_timeout": 0.3}) as running,
        running.user("alice") as alice,
        running.client() as idle,
    ):
        assert (await idle.closed()).code == 4108
        assert await alice.take_pushes() == []  # still open, and nothing happened


@fail_after(100)
async def test_each_connection_without_a_login_is_closed_at_its_own_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Connections opened apart, some logging in on the way: only those still without
    # a session at their deadline are closed, and one opened after every earlier one
    # was settled is closed all the same (the deadlines' task starts again).
    async with (
        running_server({"login_timeout": 10}) as running,
        running.user("alice") as alice,
    ):
        await trio.sleep(3)
        async with running.client() as bob, running.client() as idle:
            await trio.sleep(3)
            await bob.login("bob")
            assert (await idle.closed()).code == 4108
            await trio.sleep(30)
            async with running.client() as late:
                assert (await late.closed()).code == 4108
            await bob.sync()
        await alice.sync()


async def ping_every_second(client: Client, seconds: float = math.inf) -> None:
    count = 0
    with contextlib.suppress(ConnectionClosed):  # the server may close meanwhile
        while count < seconds:
            await trio.sleep(1)
            await client.ws.ping()  # returns once the pong is back
            count += 1


@fail_after(100)
async def test_a_client_that_only_pings_stays_connected(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A generic client keeps its connection alive with WebSocket pings, not echo.
    async with (
        running_server({"idle_timeout": 5, "login_timeout": 5}) as running,
        running.user("alice") as client,
    ):
        await ping_every_second(client, 30)  # six times idle_timeout
        await client.sync()  # still open
        assert len(running.server.connections) == 1
        reason = await client.closed()  # and once it stops, it is closed
        assert reason.code == 4107


@fail_after(100)
async def test_the_idle_timeout_counts_from_the_last_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A frame early in the idle period does not move the server's read deadline at
    # once (that costs every frame): the connection must still last idle_timeout
    # after that frame, neither closed at the first deadline nor kept longer.
    async with (
        running_server({"idle_timeout": 10, "login_timeout": 10}) as running,
        running.user("alice") as client,
    ):
        await trio.sleep(3)
        await client.sync()  # the last frame the server gets
        last = trio.current_time()
        await trio.sleep(9)  # past the deadline the login set
        assert len(running.server.connections) == 1
        reason = await client.closed()
        assert reason.code == 4107
        assert 10 <= trio.current_time() - last < 10.5


class SlowTokens(MemoryStore):
    """Reading a session token takes ``SLOW_READ`` seconds (a busy store)."""

    SLOW_READ = 7.0

    async def get_session(self, token: str) -> SessionRecord | None:
        await trio.sleep(self.SLOW_READ)
        return await super().get_session(token)


@fail_after(100)
async def test_a_slow_reply_is_not_counted_as_idle_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The request comes 4 s into the idle period and its reply 7 s later, past the
    # deadline its frame left: the client was waiting, not idle, and its idle time
    # starts from the reply.
    async with (
        running_server({"idle_timeout": 10, "login_timeout": 10}, SlowTokens()) as running,
        running.user("alice") as client,
    ):
        await trio.sleep(4)
        # A second client on the socket resumes with a token memory does not know.
        resume = {"cmd": "session", "op": "open", "appId": "test", "peerId": "bob"}
        reply = await client.request({**resume, "r": True, "st": "unknown to memory"})
        assert is_error(reply, 4112)  # (the store did not know it either)
        answered = trio.current_time()
        await trio.sleep(9)
        assert len(running.server.connections) == 1
        reason = await client.closed()
        assert reason.code == 4107
        assert 10 <= trio.current_time() - answered < 10.5


class StuckTokens(MemoryStore):
    """Reading a session token never ends (a store that stopped answering). The read
    waits as a real store's thread does, with no cancel scope of its own."""

    async def get_session(self, token: str) -> SessionRecord | None:
        await trio.Event().wait()
        raise AssertionError("never set")


class BoundedStuckTokens(MemoryStore):
    """Reading a session token waits under a deadline of its own (a store or hook
    client that bounds its I/O: a cancel scope entered before its first wait), and
    finds nothing when it passes."""

    async def get_session(self, token: str) -> SessionRecord | None:
        with trio.move_on_after(30):
            await trio.Event().wait()
        return None


@pytest.mark.parametrize(("store", "closed_at"), [(StuckTokens, 10), (BoundedStuckTokens, 30)])
@fail_after(100)
async def test_a_close_during_a_request_that_waits_ends_only_that_connection(
    store: type[MemoryStore], closed_at: float, autojump_clock: trio.testing.MockClock
) -> None:
    # The connection reads without a cancel scope until a handler waits; from that
    # wait on, a close (here the idle deadline the request's frame set, at 10 s)
    # cancels it. A request that waits inside a cancel scope of its own (a deadline
    # on its I/O) ends first, by that deadline at the latest (30 s): the read scope
    # can only be entered around it once it has returned.
    async with (
        running_server({"idle_timeout": 10, "login_timeout": 10}, store()) as running,
        running.user("alice") as client,
    ):
        resume = {"cmd": "session", "op": "open", "appId": "test", "peerId": "bob"}
        await client.send(client.number({**resume, "r": True, "st": "unknown to memory"}))
        sent = trio.current_time()
        reason = await client.closed()
        assert reason.code == 4107
        assert closed_at <= trio.current_time() - sent < closed_at + 0.5
        await running.wait_connections(0)
        # The cancelled wait ended that connection only: the server serves others.
        async with running.user("carol") as other:
            assert (await other.request({"cmd": "conv", "op": "query", "limit": 1}))["cmd"]


@fail_after(100)
async def test_pings_do_not_stand_in_for_a_login(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        running_server({"idle_timeout": 5, "login_timeout": 10}) as running,
        running.client() as client,
    ):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ping_every_second, client)  # until the server closes
            reason = await client.closed()
            nursery.cancel_scope.cancel()
        assert reason.code == 4108


@fail_after(30)
async def test_a_room_flushed_in_slices_gets_every_message_in_order() -> None:
    # Five viewers written two at a time, every flush busy: messages fanned out
    # between two slices reach each viewer once, in the order they were sent.
    viewers = [f"v{i}" for i in range(5)]
    config = {"write_slice": 2, "write_delay_threshold": 2, **NO_INTAKE_SHEDDING}
    async with (
        running_server(config) as running,
        users(running, "host", *viewers) as (host, *clients),
    ):
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        for client, name in zip(clients, viewers, strict=True):
            await client.request({"cmd": "conv", "op": "add", "cid": cid, "m": [name]})
        sent = [f"m{i:03d}" for i in range(200)]
        for start in range(0, len(sent), 20):
            await host.say_many(cid, sent[start : start + 20])
        for client in clients:
            got: list[str] = []
            while len(got) < len(sent):
                push = await client.receive()
                if push["cmd"] == "direct":
                    got.append(push["msg"])
            assert got == sent
