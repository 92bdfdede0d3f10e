"""Two nodes of a cluster in one test process (tests/hub/test_redis_*.py): each its own
Server, RedisHub, ports and sessions, both on one MemoryStore (as a shared database
would be; or each its own store on one PostgreSQL database, ``db``) and one real
redis-server; and what their tests ask of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio
from helpers import Client, Running, running_server

from chatroom.net.redis_link import RedisLink
from chatroom.store.memory import MemoryStore

Nodes = tuple[Running, Running]


@asynccontextmanager
async def two_nodes(
    url: str, overrides: dict[str, object] | None = None, db: str | None = None
) -> AsyncIterator[Nodes]:
    store = None if db else MemoryStore()
    config = {"redis": url, **({"db": db} if db else {}), **(overrides or {})}
    async with running_server(config, store) as a, running_server(config, store) as b:
        for node in (a, b):
            with trio.fail_after(5):
                await link(node).ready.wait()
        # Each node has heard the other (a heartbeat a second): presence is shared.
        await eventually(lambda: len(link(a).hub.view.nodes()) == 1)
        await eventually(lambda: len(link(b).hub.view.nodes()) == 1)
        yield a, b


@asynccontextmanager
async def host_and_viewers(url: str) -> AsyncIterator[tuple[Nodes, Client, Client, Client]]:
    """Two nodes (``two_nodes``), a chatroom host's client on node A and two viewers'
    (``v1``, ``v2``) on node B: the nodes, the host, v1, v2."""
    async with (
        two_nodes(url) as (a, b),
        a.user("host") as host,
        b.user("v1") as v1,
        b.user("v2") as v2,
    ):
        yield (a, b), host, v1, v2


def link(node: Running) -> RedisLink:
    cluster = node.server.cluster
    assert cluster is not None
    return cluster


async def eventually(check: Callable[[], bool]) -> None:
    """Until ``check()`` holds (the test's fail_after bounds the wait)."""
    while not check():  # noqa: ASYNC110 - presence spreads without an event to wait on
        await trio.sleep(0.01)


async def online(client: Client, peers: list[str]) -> list[str]:
    reply = await client.request({"cmd": "session", "op": "query", "sessionPeerIds": peers})
    return list(reply.get("onlineSessionPeerIds", []))


async def count(client: Client, cid: str) -> int:
    reply = await client.request({"cmd": "conv", "op": "count", "cid": cid})
    return int(reply["count"])


async def join(client: Client, cid: str, peer: str) -> None:
    reply = await client.request({"cmd": "conv", "op": "add", "cid": cid, "m": [peer]})
    assert "code" not in reply, reply


async def until_online(client: Client, peers: list[str]) -> None:
    await until(lambda: online(client, peers), peers)


async def started(starter: Client, member: Client, **fields: object) -> str:
    """A conversation ``starter`` starts with ``member`` (on the other node), once each
    one's node knows the other is online, and after the member heard it joined."""
    assert starter.peer_id is not None
    assert member.peer_id is not None
    await until_online(starter, [member.peer_id])
    await until_online(member, [starter.peer_id])
    cid = await starter.start([member.peer_id], **fields)
    await member.next_push("conv", "joined")
    return cid


async def room_watched(host: Client, viewers: list[Client]) -> str:
    """A chatroom ``host`` starts and ``viewers`` (on either node) join; its cid, once
    the host's node counts them all."""
    cid = await host.start([], transient=True)
    for viewer in viewers:
        assert viewer.peer_id is not None
        await join(viewer, cid, viewer.peer_id)
    await until(lambda: count(host, cid), len(viewers) + 1)
    return cid


async def until(ask: Callable[[], Awaitable[object]], want: object) -> None:
    """Until ``await ask()`` answers ``want`` (the test's fail_after bounds the wait)."""
    while await ask() != want:  # noqa: ASYNC110 - asking the server is the point
        await trio.sleep(0.02)
