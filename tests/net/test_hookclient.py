"""The hook client's kept-alive connections (chatroom/net/hookclient.py) against a real
HTTP/1.1 endpoint on localhost (tests/hook_endpoint.py): reuse, the endpoint's
``Connection: close``, an idle connection the endpoint closed, a request it closed
unanswered, the bound on idle connections, their expiry and a cancelled call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from helpers import fail_after
from hook_endpoint import HookCall, HookEndpoint, Respond, carry_on, result

from chatroom.config import HookSetting
from chatroom.net.hookclient import HookClient, HookHTTPError
from chatroom.net.hooks import HookRunner

NAME = "_messageReceived"
MAX_REPLY = 10_000


@asynccontextmanager
async def serving(
    respond: Respond = carry_on, keep_alive: bool = True
) -> AsyncIterator[HookEndpoint]:
    endpoint = HookEndpoint(respond, keep_alive=keep_alive)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        yield endpoint
        nursery.cancel_scope.cancel()


async def call(client: HookClient, endpoint: HookEndpoint, n: int = 0) -> tuple[int, bytes]:
    return await client.post(endpoint.url(NAME), b'{"n": %d}' % n, [], MAX_REPLY)


@fail_after()
async def test_calls_reuse_one_connection_of_a_keep_alive_endpoint() -> None:
    async with serving() as endpoint:
        client = HookClient()
        for n in range(5):
            assert await call(client, endpoint, n) == result({})
        assert endpoint.connections == 1
        assert [c.on_connection for c in endpoint.calls] == [1, 2, 3, 4, 5]
        assert [c.params["n"] for c in endpoint.calls] == [0, 1, 2, 3, 4]
        client.close()
        await endpoint.wait_open(0)


@fail_after()
async def test_the_hook_runner_keeps_its_connection_and_closes_it_when_it_stops() -> None:
    async with serving() as endpoint:
        setting = HookSetting(NAME, endpoint.url(NAME), 5000, "refuse", 4)
        hooks = HookRunner([setting], "", 1, 1, lambda: 0)
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            for n in range(3):
                assert await hooks.call(NAME, {"n": n}) == {}
            assert endpoint.connections == 1
            await endpoint.wait_open(1)
            nursery.cancel_scope.cancel()
        await endpoint.wait_open(0)


@fail_after()
async def test_an_endpoint_that_closes_after_each_reply_gets_a_new_connection_each_call() -> None:
    async with serving(keep_alive=False) as endpoint:
        client = HookClient()
        for n in range(3):
            assert await call(client, endpoint, n) == result({})
        assert endpoint.connections == 3
        assert client.idle() == 0
        await endpoint.wait_open(0)


@fail_after()
async def test_an_idle_connection_the_endpoint_closed_is_replaced_without_a_retry() -> None:
    async with serving() as endpoint:
        client = HookClient()
        assert await call(client, endpoint, 1) == result({})
        await endpoint.drop_idle()  # as a server's keep-alive timeout does
        await endpoint.wait_open(0)
        assert await call(client, endpoint, 2) == result({})
        assert endpoint.connections == 2
        assert [(c.params["n"], c.on_connection) for c in endpoint.calls] == [(1, 1), (2, 1)]


@fail_after()
async def test_a_request_closed_unanswered_on_a_reused_connection_is_sent_once_more() -> None:
    async def second_unanswered(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return (0, b"") if call.on_connection == 2 else result({})

    async with serving(second_unanswered) as endpoint:
        client = HookClient()
        assert await call(client, endpoint, 1) == result({})
        assert await call(client, endpoint, 2) == result({})
        # The second went out on the first connection, which the endpoint closed
        # without answering; then once more, on a new one.
        seen = [(c.params["n"], c.on_connection) for c in endpoint.calls]
        assert seen == [(1, 1), (2, 2), (2, 1)]
        assert endpoint.connections == 2


@fail_after()
async def test_a_request_closed_unanswered_on_a_new_connection_fails_without_a_retry() -> None:
    async def unanswered(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return 0, b""

    async with serving(unanswered) as endpoint:
        client = HookClient()
        with pytest.raises(HookHTTPError):
            await call(client, endpoint)
        assert len(endpoint.calls) == 1
        assert client.idle() == 0


@fail_after()
async def test_idle_connections_are_bounded_per_origin_and_expire() -> None:
    now = [0.0]
    client = HookClient(max_idle=2, idle_timeout=4.0, clock=lambda: now[0])
    all_in = trio.Event()

    async def together(call: HookCall) -> tuple[int, bytes]:
        if len(endpoint.calls) >= 5:
            all_in.set()
        await all_in.wait()  # five connections at once
        return result({})

    async with serving(together) as endpoint, trio.open_nursery() as nursery:
        for n in range(5):
            nursery.start_soon(call, client, endpoint, n)
    # Outside the nursery: every call returned.
    assert endpoint.connections == 5
    assert client.idle() == 2
    async with serving() as endpoint:
        await call(client, endpoint)
        await call(client, endpoint)
        assert endpoint.connections == 1
        now[0] += 3.9
        await call(client, endpoint)  # idle 3.9 s: still kept
        assert endpoint.connections == 1
        now[0] += 4.0
        client.prune()  # idle 4 s: closed
        assert client.idle() == 0
        await endpoint.wait_open(0)
        await call(client, endpoint)
        assert endpoint.connections == 2


@fail_after()
async def test_a_cancelled_call_closes_its_connection() -> None:
    release = trio.Event()

    async def held_first(call: HookCall) -> tuple[int, bytes]:
        if call.params["n"] == 1:
            await release.wait()
        await trio.lowlevel.checkpoint()
        return result({})

    async with serving(held_first) as endpoint:
        client = HookClient()
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(call, client, endpoint, 1)
                await endpoint.wait_for("_messageReceived")
                scope.cancel()
        release.set()
        await endpoint.wait_open(0)
        assert client.idle() == 0
        assert await call(client, endpoint, 2) == result({})
        assert endpoint.connections == 2
        assert client.idle() == 1
