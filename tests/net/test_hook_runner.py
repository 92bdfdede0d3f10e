"""The hook runner and its HTTP client against a real endpoint on localhost
(chatroom/net/hooks.py, net/hookclient.py): signatures, the reply, timeouts, failures
under both policies, the concurrency bound and the notification queue.
"""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import trio
import trio.testing
from helpers import fail_after
from hook_endpoint import SECRET, HookCall, HookEndpoint, Respond, carry_on, result

from chatroom.config import HookSetting
from chatroom.core.hooks import HEADER_HOOK, HEADER_TIMESTAMP, HookFailed
from chatroom.net.hookclient import HookClient, HookHTTPError
from chatroom.net.hooks import HookRunner

NAME = "_messageReceived"
NOTE = "_messageSent"


@asynccontextmanager
async def runner(
    respond: Respond = carry_on,
    on_failure: str = "pass",
    concurrency: int = 8,
    queue: int = 10,
    workers: int = 1,
    start: bool = True,
) -> AsyncIterator[tuple[HookRunner, HookEndpoint]]:
    endpoint = HookEndpoint(respond)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        settings = [
            HookSetting(name, endpoint.url(name), 500, on_failure, concurrency)
            for name in (NAME, NOTE)
        ]
        hooks = HookRunner(settings, SECRET, queue, workers, lambda: 1_700_000_000_000)
        if start:
            await nursery.start(hooks.run)
        yield hooks, endpoint
        nursery.cancel_scope.cancel()


async def sleepy(call: HookCall) -> tuple[int, bytes]:
    await trio.sleep(60)
    return result({})


async def broken(call: HookCall) -> tuple[int, bytes]:
    await trio.lowlevel.checkpoint()
    return 500, b'{"code": 1, "error": "boom"}'


@fail_after()
async def test_a_call_is_signed_and_its_result_returned() -> None:
    async def rewrite(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return result({"content": call.params["content"].upper()})

    async with runner(rewrite) as (hooks, endpoint):
        assert await hooks.call(NAME, {"content": "hi", "toPeers": ["b"]}) == {"content": "HI"}
        [call] = endpoint.calls
        assert call.name == NAME
        assert call.params == {"content": "hi", "toPeers": ["b"]}
        assert call.headers[HEADER_HOOK.lower()] == NAME
        assert call.headers[HEADER_TIMESTAMP.lower()] == "1700000000000"
        assert call.headers["content-type"] == "application/json"
        assert call.signed()
        assert not call.signed("another secret")
        stats = hooks.stats[NAME]
        assert (stats.calls, stats.failures, stats.timeouts, stats.latency_count) == (1, 0, 0, 1)


@fail_after(100)  # virtual seconds
async def test_a_slow_endpoint_times_out_and_passes_or_refuses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with runner(sleepy) as (hooks, _):
        started = trio.current_time()
        assert await hooks.call(NAME, {}) == {}  # "pass": as if it said nothing
        assert trio.current_time() - started == pytest.approx(0.5)  # the timeout, virtual
        assert hooks.stats[NAME].timeouts == 1
        assert hooks.stats[NAME].latency_ms_sum == pytest.approx(500, abs=1)
    async with runner(sleepy, on_failure="refuse") as (hooks, _):
        with pytest.raises(HookFailed, match="no reply within 500 ms"):
            await hooks.call(NAME, {})


@fail_after()
async def test_a_failing_endpoint_passes_or_refuses() -> None:
    async with runner(broken) as (hooks, _):
        assert await hooks.call(NAME, {"x": 1}) == {}
        assert hooks.stats[NAME].failures == 1
    async with runner(broken, on_failure="refuse") as (hooks, _):
        with pytest.raises(HookFailed, match="HTTP 500"):
            await hooks.call(NAME, {})


@fail_after()
async def test_a_dead_endpoint_is_a_failure_not_a_crash() -> None:
    hooks = HookRunner(
        [HookSetting(NAME, "http://127.0.0.1:1/f", 500, "refuse", 1)], "", 1, 1, lambda: 0
    )
    with pytest.raises(HookFailed, match="connect"):
        await hooks.call(NAME, {})
    assert hooks.stats[NAME].failures == 1


@fail_after(100)
async def test_calls_beyond_the_concurrency_meet_the_policy_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with runner(sleepy, on_failure="refuse", concurrency=1) as (hooks, endpoint):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hooks.call, NAME, {})  # times out (refused) after 0.5 s
            await endpoint.wait_for(NAME)
            before = trio.current_time()
            with pytest.raises(HookFailed, match="too many calls in flight"):
                await hooks.call(NAME, {})
            assert trio.current_time() == before  # not queued behind the first
            nursery.cancel_scope.cancel()
        assert (hooks.stats[NAME].busy, hooks.stats[NAME].calls) == (1, 1)


@fail_after()
async def test_notifications_beyond_the_queue_are_dropped_and_counted() -> None:
    async with runner(queue=2, start=False) as (hooks, endpoint):
        for n in range(5):
            hooks.notify(NOTE, {"n": n})  # nobody drains: the queue fills
        hooks.notify("_clientOnline", {})  # not configured: ignored
        assert hooks.stats[NOTE].dropped == 3
        async with trio.open_nursery() as nursery:
            await nursery.start(hooks.run)
            calls = await endpoint.wait_for(NOTE, 2)
            nursery.cancel_scope.cancel()
        assert [c.params["n"] for c in calls] == [0, 1]


@fail_after()
async def test_a_failing_notification_is_counted_and_the_workers_go_on() -> None:
    async with runner(broken) as (hooks, endpoint):
        hooks.notify(NOTE, {"n": 1})
        hooks.notify(NOTE, {"n": 2})
        await endpoint.wait_for(NOTE, 2)
        # The runner has no event for a reply read; a short poll under fail_after.
        while hooks.stats[NOTE].failures < 2:  # noqa: ASYNC110
            await trio.sleep(0.001)
        assert hooks.stats[NOTE].calls == 2


@fail_after()
async def test_a_continuation_that_fails_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with runner() as (hooks, _):
        done = trio.Event()

        async def failing() -> None:
            await trio.lowlevel.checkpoint()
            raise RuntimeError("bug")

        async def fine() -> None:
            await trio.lowlevel.checkpoint()
            done.set()

        hooks.start_soon(failing)
        hooks.start_soon(fine)
        await done.wait()
    assert "hook continuation failed" in caplog.text


@fail_after()
async def test_the_client_bounds_the_reply_and_reports_bad_urls() -> None:
    async def huge(call: HookCall) -> tuple[int, bytes]:
        await trio.lowlevel.checkpoint()
        return 200, orjson.dumps({"result": {"x": "y" * 5000}})

    client = HookClient()
    async with runner(huge) as (_, endpoint):
        status, body = await client.post(endpoint.url(NAME), b"{}", [], 100_000)
        assert status == 200
        assert len(body) > 5000
        with pytest.raises(HookHTTPError, match="reply over 1000 bytes"):
            await client.post(endpoint.url(NAME), b"{}", [], 1000)
    with pytest.raises(HookHTTPError, match="not an http"):
        await client.post("ftp://example.com/x", b"{}", [], 1000)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@fail_after()
async def test_https_endpoints_are_called_trusting_the_configured_ca(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    endpoint = HookEndpoint(tls=server_tls, keep_alive=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        setting = [HookSetting(NAME, endpoint.url(NAME), 2000, "refuse", 1)]
        trusting = HookRunner(setting, SECRET, 1, 1, lambda: 0, ca_file=str(cert))
        assert await trusting.call(NAME, {"over": "tls"}) == {}
        assert endpoint.calls[0].params == {"over": "tls"}
        assert endpoint.calls[0].signed()
        assert await trusting.call(NAME, {"again": True}) == {}
        assert [c.on_connection for c in endpoint.calls] == [1, 2]  # one TLS connection
        system_only = HookRunner(setting, SECRET, 1, 1, lambda: 0)  # does not know the CA
        with pytest.raises(HookFailed, match="CERTIFICATE_VERIFY_FAILED"):
            await system_only.call(NAME, {})
        assert len(endpoint.calls) == 2
        nursery.cancel_scope.cancel()
