"""``chatroom serve --workers N`` with real processes: N workers on one port through a
real redis-server and PostgreSQL, clients spread over them by the kernel
(SO_REUSEPORT), one chatroom seen alike from every worker; a worker killed is started
again; a setup that cannot start ends the supervisor with the workers' error."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import orjson
import pytest
import trio
from helpers import fail_after, http_get
from pg_server import PgServer
from redis_server import RedisServer, redis_server
from serve_process import LISTENING, ServeProcess, free_port, serving

from chatroom.cli.workers import without_password
from chatroom.client import Client, Message, Options, connect

STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


def ports_and_db(pg: PgServer) -> list[str]:
    """A fixed port and HTTP port (``--workers`` shares them) and a database of its own."""
    db = pg.url(pg.create_database())
    return ["--port", str(free_port()), "--http-port", str(free_port()), "--db", db]


@asynccontextmanager
async def two_workers(pg: PgServer, redis: RedisServer) -> AsyncIterator[tuple[ServeProcess, int]]:
    args = [*ports_and_db(pg), "--redis", redis.url, "--workers", "2"]
    with serving(args) as parent:
        await parent.wait_for(LISTENING, 2)
        yield parent, int(args[3])


async def per_node(http_port: int, clients: int) -> dict[str, int]:
    """WebSocket connections per worker (node id), from /healthz: each request is a
    new connection, which the kernel hands to either worker; asked until the workers
    heard of every client (the test's fail_after bounds it)."""
    seen: dict[str, int] = {}
    while len(seen) < 2 or sum(seen.values()) != clients:
        status, _, body = await http_get(http_port, "/healthz")
        assert status == 200
        health = orjson.loads(body)
        seen[health["cluster"]["node"]] = health["connections"]
    return seen


async def eventually(check: Callable[[], object]) -> None:
    while not await check():  # type: ignore[misc]  # noqa: ASYNC110 - asking the servers
        await trio.sleep(0.05)


async def next_message(client: Client) -> Message:
    async for event in client.events():
        if isinstance(event, Message):
            return event
    raise AssertionError("the client stopped")


@fail_after(90)
async def test_two_workers_share_one_port_and_one_chatroom(
    pg_server: PgServer, redis: RedisServer
) -> None:
    async with two_workers(pg_server, redis) as (parent, http_port), AsyncExitStack() as stack:
        port = int(parent.matches(LISTENING)[0].group(1))
        (said,) = [line for line in parent.lines if "2 workers on port" in line]
        assert f"2 workers on port {port}" in said
        assert "cluster through unix://" in said
        assert "store postgresql://" in said
        url = f"ws://127.0.0.1:{port}"
        options = Options(reconnect=False)
        viewers = [
            await stack.enter_async_context(connect(url, f"viewer{n}", options)) for n in range(20)
        ]
        cid = await viewers[0].create_chatroom("live")
        for viewer in viewers[1:]:
            await viewer.join(cid)
        spread = await per_node(http_port, 20)
        assert len(spread) == 2, spread
        assert min(spread.values()) > 0, spread

        async def all_count_20() -> bool:
            return all([await viewer.count(cid) == 20 for viewer in viewers])

        await eventually(all_count_20)
        await viewers[7].send(cid, "hello everyone", priority="high")
        for viewer in viewers[:7] + viewers[8:]:  # the sender gets its ack, not a push
            got = await next_message(viewer)
            assert (got.text, got.sender, got.cid) == ("hello everyone", "viewer7", cid)
    assert await parent.exit_code() == 0, parent.tail()
    assert [line for line in parent.lines if "received SIGTERM: stopping 2 workers" in line]


@fail_after(90)
async def test_a_killed_worker_is_started_again(pg_server: PgServer, redis: RedisServer) -> None:
    async with two_workers(pg_server, redis) as (parent, http_port):
        first = parent.matches(STARTED)[0]
        os.kill(int(first.group(2)), signal.SIGKILL)
        restarted = await parent.wait_for(STARTED, 3)
        assert restarted[2].group(1) == first.group(1)  # the same slot, a new process
        assert restarted[2].group(2) != first.group(2)
        assert [line for line in parent.lines if "was killed by SIGKILL" in line]
        await parent.wait_for(LISTENING, 3)
        # Both serve again: /healthz answers from two nodes.
        await per_node(http_port, 0)
        parent.proc.send_signal(signal.SIGTERM)
        assert await parent.exit_code() == 0, parent.tail()


@fail_after(60)
async def test_workers_that_cannot_start_end_the_supervisor(tmp_path: object) -> None:
    db = f"postgresql://nobody@/chat?host={tmp_path}&port=1"
    args = ["--port", str(free_port()), "--http-port", str(free_port()), "--db", db]
    with serving([*args, "--redis", "redis://127.0.0.1:1/0", "--workers", "2"]) as parent:
        assert await parent.exit_code() == 1, parent.tail()
        await parent.wait_for(re.compile("cannot connect to PostgreSQL"))
        await parent.wait_for(re.compile(r"worker \d exited with 1 before it listened"))


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


@fail_after(60)
async def test_workers_shut_down_when_the_supervisor_is_killed(
    pg_server: PgServer, redis: RedisServer
) -> None:
    async with two_workers(pg_server, redis) as (parent, _):
        pids = [int(match.group(2)) for match in parent.matches(STARTED)]
        assert all(running(pid) for pid in pids)
        parent.proc.send_signal(signal.SIGKILL)  # no chance to pass anything on
        while any(running(pid) for pid in pids):  # noqa: ASYNC110 - not our children
            await trio.sleep(0.05)
        await parent.wait_for(re.compile("the supervisor is gone: shutting down"), 2)


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("redis://:s3cret@10.0.0.5:6379/0", "redis://:***@10.0.0.5:6379/0"),
        ("postgresql://chat:s3cret@db:5432/chat", "postgresql://chat:***@db:5432/chat"),
        ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
    ],
)
def test_the_start_line_never_shows_a_password(url: str, logged: str) -> None:
    assert without_password(url) == logged
