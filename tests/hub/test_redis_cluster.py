"""Two nodes of a cluster in one test process: each its own Server, RedisHub, ports
and sessions, both on one MemoryStore (as a shared database would be) and one real
redis-server. Clients on node A and node B chat, watch one chatroom, kick each other
and ask who is online, as users of two machines behind one address would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cluster_nodes import (
    count,
    eventually,
    host_and_viewers,
    join,
    link,
    online,
    room_watched,
    started,
    two_nodes,
    until,
    until_online,
)
from helpers import fail_after, http_get, running_server, scrape, value
from redis_server import RedisServer, redis_server

from chatroom.store.memory import MemoryStore


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


@fail_after(20)
async def test_one_to_one_and_group_messages_cross_nodes(redis: RedisServer) -> None:
    async with (
        two_nodes(redis.url) as (a, b),
        a.user("alice") as alice,
        b.user("bob") as bob,
        b.user("carol") as carol,
    ):
        await until_online(alice, ["bob", "carol"])
        cid = await started(alice, bob)
        await alice.say(cid, "hello bob")
        got = await bob.next_push("direct")
        assert (got["msg"], got["fromPeerId"], got["cid"]) == ("hello bob", "alice", cid)
        await bob.say(cid, "hi alice")
        assert (await alice.next_push("direct"))["msg"] == "hi alice"

        group = await alice.start(["bob", "carol"])
        texts = [f"m{i}" for i in range(20)]
        await alice.say_many(group, texts)
        for reader in (bob, carol):
            got_texts = [(await reader.next_push("direct"))["msg"] for _ in texts]
            assert got_texts == texts  # in the order the cluster accepted them


@fail_after(20)
async def test_chatroom_counts_and_broadcasts_cover_both_nodes(redis: RedisServer) -> None:
    async with host_and_viewers(redis.url) as ((a, b), host, v1, v2):
        cid = await room_watched(host, [v1, v2])
        await until(lambda: count(v1, cid), 3)
        sent = [f"live {i}" for i in range(30)]
        before = link(a).stats.publishes
        for text in sent:
            await host.request({"cmd": "direct", "cid": cid, "msg": text, "transient": True})
        for viewer in (v1, v2):
            assert [(await viewer.next_push("direct"))["msg"] for _ in sent] == sent
        assert cid in link(b).hub.subscribed  # node B hears the room: it has viewers
        # One PUBLISH per message at most (never one per viewer), heartbeats aside.
        assert link(a).stats.publishes - before <= len(sent) + 3
        await v2.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["v2"]})
        await until(lambda: count(host, cid), 2)
        metrics = await scrape(a)
        assert value(metrics, "chatroom_cluster_connected") == 1
        assert value(metrics, "chatroom_cluster_nodes") == 1
        assert value(metrics, "chatroom_cluster_publishes_total") >= 1  # packed: often fewer
        assert value(metrics, "chatroom_cluster_records_total", what="published") >= len(sent)
        assert value(metrics, "chatroom_cluster_records_total", what="lost") == 0
        # The drains written by the task that queued the record (a quiet link) apart.
        at_once = value(metrics, "chatroom_cluster_drains_total", by="at_once")
        assert at_once == link(a).stats.at_once
        assert value(metrics, "chatroom_cluster_drains_total", by="drain") >= 1
        assert (await http_get(a.http_port, "/readyz"))[0] == 200


class _Steps(trio.abc.Instrument):
    """Counts the steps (wake-ups) of one flusher's task."""

    def __init__(self, flusher: object) -> None:
        self.flusher, self.count = flusher, 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        frame = getattr(task.coro, "cr_frame", None)
        if frame is not None and frame.f_locals.get("self") is self.flusher:
            self.count += 1


@fail_after(20)
async def test_node_b_writes_a_quiet_chatrooms_messages_in_the_task_that_reads_them(
    redis: RedisServer,
) -> None:
    # Node B's flusher is idle between two messages of a quiet room: the task that
    # reads Redis writes them to the viewers itself, in order, without waking it.
    async with host_and_viewers(redis.url) as ((_, b), host, v1, v2):
        cid = await room_watched(host, [v1, v2])
        steps = _Steps(b.server._flusher)
        trio.lowlevel.add_instrument(steps)
        try:
            for n in range(10):
                text = f"quiet {n}"
                await host.request({"cmd": "direct", "cid": cid, "msg": text, "transient": True})
                for viewer in (v1, v2):
                    assert (await viewer.next_push("direct"))["msg"] == text
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.count == 0


NO_INTAKE_SHEDDING: dict[str, object] = {
    "shed_backlog_low": 1_000_000,
    "shed_backlog_normal": 1_000_000,
    "shed_lag_low": 3600.0,
    "shed_lag_normal": 3600.0,
}


@fail_after(30)
async def test_a_viewer_on_node_b_that_fell_behind_sheds_normal_messages_never_high_ones(
    redis: RedisServer,
) -> None:
    # A viewer of node B stops reading while the room gets big messages, one HIGH in
    # ten: its outbox sheds NORMAL ones only. Reading again, it gets every HIGH one and
    # the NORMAL ones kept, in the order they were sent, and a notice of the count shed.
    overrides: dict[str, object] = {"outbox_max_frames": 16, **NO_INTAKE_SHEDDING}
    async with (
        two_nodes(redis.url, overrides) as (a, b),
        a.user("host") as host,
        b.user("slow") as slow,
    ):
        cid = await room_watched(host, [slow])
        shed = b.server.context.counters.shed
        sent: list[str] = []
        high: list[str] = []
        while shed.normal < 50:
            batch = [f"{len(sent) + i:05d}" + "x" * 30_000 for i in range(10)]
            high.append(batch[0])
            commands = [
                {"cmd": "direct", "cid": cid, "msg": text, "transient": True, "priority": p}
                for text, p in zip(batch, [1] + [2] * 9, strict=True)
            ]
            acks = await host.pipeline(commands)
            assert all(ack["cmd"] == "ack" and "code" not in ack for ack in acks), acks
            sent += batch
        got, told = await slow.until_shed_told(len(sent))
        assert told == len(sent) - len(got) > 0
        kept = set(got)
        assert got == [text for text in sent if text in kept]  # in order
        assert kept >= set(high)  # HIGH is never shed


@fail_after(20)
async def test_json_viewers_on_the_other_node_are_told_the_priority_a_sender_gave(
    redis: RedisServer,
) -> None:
    # A priority reaches the other node in the record as the shared command of that
    # priority (codec.told_priority); a message without one tells none.
    async with host_and_viewers(redis.url) as (_, host, v1, v2):
        cid = await room_watched(host, [v1, v2])
        for priority in (1, 2, 3, None):
            command = {"cmd": "direct", "cid": cid, "msg": f"p{priority}", "transient": True}
            if priority is not None:
                command["priority"] = priority
            await host.request(command)
            for viewer in (v1, v2):
                push = await viewer.next_push("direct")
                assert (push["msg"], push.get("priority")) == (f"p{priority}", priority)


@fail_after(20)
async def test_a_viewer_hears_a_message_sent_on_the_other_node_right_after_its_join(
    redis: RedisServer,
) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("host") as host, b.user("v1") as v1:
        for n in range(5):
            cid = await host.start([], transient=True)
            await join(v1, cid, "v1")  # the first viewer of this room on node B
            # Answered once node B hears the room: the host's message, published after
            # the reply, cannot pass node B's subscription on its way.
            assert cid in link(b).hub.subscribed
            text = f"right after {n}"
            await host.request({"cmd": "direct", "cid": cid, "msg": text, "transient": True})
            assert (await v1.next_push("direct"))["msg"] == text


@fail_after(20)
async def test_a_viewer_kicked_from_a_chatroom_on_the_other_node_leaves_it(
    redis: RedisServer,
) -> None:
    async with host_and_viewers(redis.url) as (_, host, v1, v2):
        cid = await room_watched(host, [v1, v2])
        reply = await host.request({"cmd": "conv", "op": "remove", "cid": cid, "m": ["v1"]})
        assert reply.get("allowedPids") == ["v1"], reply
        # Node B hears of the kick before the message the host sends after the reply.
        await host.request({"cmd": "direct", "cid": cid, "msg": "after", "transient": True})
        assert (await v2.next_push("direct"))["msg"] == "after"
        # v2's copy came through node B, which would have queued v1's before it.
        assert not [p for p in await v1.take_pushes() if p.get("cmd") == "direct"]
        for asker in (host, v2):
            await until(lambda: count(asker, cid), 2)  # noqa: B023 (awaited at once)
        # Rejoining is allowed (a kick is not a block), and brings the messages back.
        await join(v1, cid, "v1")
        await until(lambda: count(host, cid), 3)
        await host.request({"cmd": "direct", "cid": cid, "msg": "back", "transient": True})
        assert (await v1.next_push("direct"))["msg"] == "back"


@fail_after(20)
async def test_a_node_without_its_redis_is_not_ready(tmp_path: Path) -> None:
    nobody = f"unix://{tmp_path / 'no-redis.sock'}"  # nothing listens there
    async with running_server({"redis": nobody}) as node, node.user("ann") as ann:
        # It serves its own clients alone, and tells the load balancer it is not ready.
        await ann.request({"cmd": "session", "op": "query", "sessionPeerIds": ["ann"]})
        status, _, body = await http_get(node.http_port, "/readyz")
        assert status == 503
        assert b"Redis" in body
        assert value(await scrape(node), "chatroom_cluster_connected") == 0


@fail_after(20)
async def test_single_device_login_kicks_the_device_on_the_other_node(
    redis: RedisServer,
) -> None:
    async with (
        two_nodes(redis.url) as (a, b),
        b.user("watcher") as watcher,  # on node B: it sees what node B knows
        a.client() as phone_a,
        b.client() as phone_b,
    ):
        token = (await phone_a.login("dana", tag="mobile"))["st"]
        await until_online(watcher, ["dana"])
        await phone_b.login("dana", tag="mobile")
        closed = await phone_a.next_push("session", "closed")
        assert closed["code"] == 4111
        # Dana stays online through her session on node B.
        assert await online(watcher, ["dana"]) == ["dana"]
        # The kicked device's token no longer opens a session on its node.
        async with a.client() as again:
            reply = await again.request(
                {"cmd": "session", "op": "open", "appId": "t", "peerId": "dana", "st": token}
            )
            assert reply.get("code") == 4111, reply
        assert not (await phone_b.take_pushes())  # node B's session was left alone


@fail_after(20)
async def test_a_will_fires_once_from_the_node_that_held_the_connection(
    redis: RedisServer,
) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("bob") as bob:
        async with b.user("alice") as alice:
            cid = await started(alice, bob)
            await alice.say(cid, "alice left unexpectedly", will=True)
            await alice.drop()
        push = await bob.next_push("direct")
        assert (push["msg"], push["fromPeerId"]) == ("alice left unexpectedly", "alice")
        await until(lambda: online(bob, ["alice"]), [])
        assert [p for p in await bob.take_pushes() if p.get("cmd") == "direct"] == []


@fail_after(20)
async def test_session_query_sees_the_whole_cluster(redis: RedisServer) -> None:
    async with two_nodes(redis.url) as (a, b), a.user("asker") as asker:
        async with b.user("erin"):
            await until_online(asker, ["erin"])
        await until(lambda: online(asker, ["erin"]), [])


@fail_after(20)
async def test_a_dead_node_leaves_the_counts(redis: RedisServer) -> None:
    store = MemoryStore()
    async with running_server({"redis": redis.url}, store) as a, a.user("host") as host:
        cid = await host.start([], transient=True)
        with trio.CancelScope() as kill:
            async with running_server({"redis": redis.url}, store) as b, b.user("v") as viewer:
                await join(viewer, cid, "v")
                await until(lambda: count(host, cid), 2)
                # Node B stops at once, as a killed process: no goodbye to the cluster.
                kill.cancel()
                await trio.sleep_forever()
        assert await count(host, cid) == 2  # until its silence says it is gone
        await until(lambda: count(host, cid), 1)
        assert link(a).hub.view.nodes() == []


@fail_after(20)
async def test_a_node_shut_down_says_goodbye(redis: RedisServer) -> None:
    store = MemoryStore()
    async with running_server({"redis": redis.url}, store) as a, a.user("host") as host:
        cid = await host.start([], transient=True)
        async with running_server({"redis": redis.url}, store) as b, b.user("v") as viewer:
            await join(viewer, cid, "v")
            await until(lambda: count(host, cid), 2)
            await viewer.drop()  # the viewer's node then shuts down gracefully
        await until(lambda: count(host, cid), 1)
        assert link(a).hub.view.nodes() == []
        assert link(a).hub.view.farewells == 1  # told, not guessed from its silence


@fail_after(30)
async def test_redis_restarts_and_delivery_resumes() -> None:
    for server in redis_server():
        async with (
            two_nodes(server.url) as (a, b),
            a.user("fay") as fay,
            b.user("gus") as gus,
        ):
            cid = await started(fay, gus)
            server.restart()
            await eventually(lambda: not link(a).hub.connected)
            await eventually(lambda: link(a).hub.connected and link(b).hub.connected)
            await until_online(fay, ["gus"])
            await fay.say(cid, "after the restart")
            assert (await gus.next_push("direct"))["msg"] == "after the restart"
            assert link(a).stats.reconnects >= 1
