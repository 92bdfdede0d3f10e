"""The server-wide budget of queued bytes (chatroom/net/budget.py, ``queued_bytes_budget``):
when viewers who stopped reading hold it all, the one holding the most is closed with
4120 and its backlog is dropped; the others, stalled or not, keep their messages."""

from __future__ import annotations

from collections.abc import Callable

import trio
from helpers import Client, fail_after, running_server, users

BIG = "x" * 30_000


async def send(
    alice: Client,
    cid: str,
    delivered: trio.MemoryReceiveChannel[str],
    texts: list[str],
) -> None:
    """Send in batches of 5 (150 KB), each read by a member who keeps up before the
    next: what a reader has queued stays far under the budget."""
    for at in range(0, len(texts), 5):
        batch = texts[at : at + 5]
        await alice.say_many(cid, batch)
        for text in batch:
            assert await delivered.receive() == text


async def send_until(
    alice: Client,
    cid: str,
    delivered: trio.MemoryReceiveChannel[str],
    done: Callable[[], bool],
) -> list[str]:
    sent: list[str] = []
    while not done():
        batch = [f"{len(sent) + i:05d}{BIG}" for i in range(5)]
        await send(alice, cid, delivered, batch)
        sent += batch
    return sent


async def read_all(client: Client, out: trio.MemorySendChannel[str]) -> None:
    while True:
        push = await client.receive()
        if push["cmd"] == "direct":
            await out.send(push["msg"])


@fail_after(30)
async def test_a_spent_budget_closes_the_connection_holding_the_most_with_4120() -> None:
    settings = {
        "queued_bytes_budget": 1_000_000,
        # Far above the budget: only the budget can close anyone here.
        "outbox_max_bytes": 64_000_000,
        "outbox_max_frames": 100_000,
        "handshake_timeout": 1,
    }
    async with (
        running_server(settings) as running,
        users(running, "alice", "bob", "slowest") as (alice, bob, slowest),
        trio.open_nursery() as nursery,
    ):
        cid = await alice.start(["bob", "slowest", "slow"])
        await slowest.take_pushes()
        await bob.take_pushes()
        to_bob, delivered = trio.open_memory_channel[str](1000)
        nursery.start_soon(read_all, bob, to_bob)  # bob keeps up throughout
        # From here on "slowest" reads nothing; "slow" logs in (and reads nothing)
        # 1.2 MB later.
        early = [f"early{i:03d}{BIG}" for i in range(40)]
        await send(alice, cid, delivered, early)
        queued = running.server.context.policies.queued
        async with running.user("slow") as slow:
            sent = await send_until(alice, cid, delivered, lambda: queued.closed > 0)
            assert queued.closed == 1
            assert queued.used <= 1_000_000
            reason = await slowest.closed()  # reading again: what it had, then the close
            await running.wait_connections(3)  # alice, bob and slow
            assert reason.code == 4120
            assert "budget" in (reason.reason or "")
            got = [p["msg"] for p in slowest.pushes if p["cmd"] == "direct"]
            assert got == (early + sent)[: len(got)]  # what it had, in order, no gap
            # "slow" was stalled too but held less: it is still served, completely.
            await send(alice, cid, delivered, ["after"])
            for text in [*sent, "after"]:
                assert (await slow.next_push("direct"))["msg"] == text
            assert running.server.context.counters.closed_slow == 1
        nursery.cancel_scope.cancel()


@fail_after(30)
async def test_nothing_is_closed_while_the_budget_holds() -> None:
    async with (
        running_server({"queued_bytes_budget": 64_000_000}) as running,
        users(running, "alice", "bob") as (alice, bob),
        trio.open_nursery() as nursery,
    ):
        cid = await alice.start(["bob"])
        await bob.take_pushes()
        to_bob, delivered = trio.open_memory_channel[str](1000)
        nursery.start_soon(read_all, bob, to_bob)
        await send(alice, cid, delivered, [f"{i}{BIG}" for i in range(20)])
        queued = running.server.context.policies.queued
        assert (queued.closed, queued.overruns, queued.used) == (0, 0, 0)
        nursery.cancel_scope.cancel()
