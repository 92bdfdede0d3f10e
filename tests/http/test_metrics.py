"""``/metrics`` (chatroom/http/metrics.py) parsed by prometheus_client's own parser after
real traffic, and ``/healthz`` / ``/readyz`` (chatroom/http/health.py)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from helpers import (
    conversation,
    fail_after,
    http_get,
    running_server,
    scrape,
    users,
    value,
)
from hook_endpoint import HookCall, hooked, result

from chatroom.store.sqlite import SqliteStore


@fail_after(20)
async def test_counters_follow_real_traffic() -> None:
    async with running_server() as running:
        before = await scrape(running)
        assert value(before, "chatroom_connections") == 0
        assert value(before, "chatroom_messages_accepted_total", kind="normal") == 0
        async with users(running, "alice", "bob") as (alice, bob):
            cid = await conversation(alice, bob)
            for text in ("one", "two", "three"):
                await alice.say(cid, text)
            for _ in range(3):
                await bob.next_push("direct")
            after = await scrape(running)
        assert value(after, "chatroom_connections") == 2
        assert value(after, "chatroom_sessions") == 2
        assert value(after, "chatroom_clients") == 2
        assert value(after, "chatroom_logins_total") == 2
        assert value(after, "chatroom_messages_accepted_total", kind="normal") == 3
        assert value(after, "chatroom_messages_accepted_total", kind="transient") == 0
        assert value(after, "chatroom_messages_committed_total") == 3
        # bob got the three messages; both got the conversation's creation events
        assert value(after, "chatroom_deliveries_total") >= 3
        batches = value(after, "chatroom_commit_batch_messages_count")
        assert 1 <= batches <= 3
        assert value(after, "chatroom_commit_batch_messages_sum") == 3
        assert value(after, "chatroom_commit_batch_messages_bucket", le="+Inf") == batches
        assert value(after, "chatroom_commit_duration_seconds_count") == batches
        assert value(after, "chatroom_commit_duration_seconds_sum") > 0
        assert value(after, "chatroom_store_failures_total", what="messages") == 0
        assert value(after, "chatroom_frames_shed_total", priority="low") == 0
        assert value(after, "chatroom_intake_shed_total", reason="backlog") == 0
        assert value(after, "chatroom_event_loop_lag_seconds") >= 0


@fail_after(20)
async def test_budget_refusals_are_counted_by_budget() -> None:
    tight = {"user_messages_per_second": 0.001, "user_message_burst": 1}
    async with running_server(tight) as running, users(running, "alice", "bob") as (alice, bob):
        cid = await conversation(alice, bob)
        await alice.say(cid, "fits")
        refused = await alice.request({"cmd": "direct", "cid": cid, "msg": "over"})
        assert refused.get("code") == 4116, refused
        samples = await scrape(running)
        assert value(samples, "chatroom_budget_refusals_total", budget="messages") == 1
        assert value(samples, "chatroom_budget_refusals_total", budget="requests") == 0
        assert value(samples, "chatroom_messages_accepted_total", kind="normal") == 1


@fail_after(20)
async def test_healthz_says_alive_and_readyz_checks_the_store(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "chat.db"))
    async with running_server({"db": str(tmp_path / "chat.db")}, store=store) as running:
        status, _, body = await http_get(running.http_port, "/healthz")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        status, _, body = await http_get(running.http_port, "/readyz")
        assert (status, json.loads(body)) == (200, {"status": "ready"})
        await store.aclose()  # the store goes away under the running server
        status, _, body = await http_get(running.http_port, "/readyz")
        answer = json.loads(body)
        assert (status, answer["code"]) == (503, 503)
        assert "store" in answer["error"]
        status, _, _ = await http_get(running.http_port, "/healthz")
        assert status == 200  # alive all the same


@fail_after(20)
async def test_readiness_ends_with_shutdown() -> None:
    # Over HTTP this is a race with the listener's own end: asked directly.
    async with running_server() as running:
        assert await running.server.ready() is None
        running.server.shutdown.set()
        assert await running.server.ready() == "shutting down"


@fail_after(20)
async def test_hook_calls_failures_and_latency_are_exported() -> None:
    async def broken(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        if call.params.get("content") == "fine":
            return result({})
        return 503, b'{"code": 1, "error": "down"}'

    async with (
        hooked(broken, {"messageReceived": {}}) as (running, _),
        users(running, "tom", "jerry") as (tom, jerry),
    ):
        cid = await conversation(tom, jerry)
        await tom.say(cid, "fine")
        await tom.say(cid, "breaks the hook")  # passes: on_failure is "pass" by default
        for _ in range(2):
            await jerry.next_push("direct")
        samples = await scrape(running)
    hook = "_messageReceived"
    assert value(samples, "chatroom_hook_calls_total", hook=hook) == 2
    assert value(samples, "chatroom_hook_problems_total", hook=hook, outcome="failures") == 1
    assert value(samples, "chatroom_hook_problems_total", hook=hook, outcome="timeouts") == 0
    assert value(samples, "chatroom_hook_duration_seconds_count", hook=hook) == 2
    assert value(samples, "chatroom_hook_duration_seconds_bucket", hook=hook, le="+Inf") == 2
    assert value(samples, "chatroom_hook_duration_seconds_sum", hook=hook) > 0
