"""The hook runner: calls the operator's hook URLs, bounded in time, in number and in
queue (the ``Hooks`` port of service/ports.py; docs/hooks.md).

- ``call`` (blocking hooks) asks the endpoint under the hook's ``timeout_ms``. At most
  ``concurrency`` calls of one hook are in flight: one more does not wait, it fails at
  once, and every failure (timeout, connection error, non-200, a reply that is not
  ``{"result": object}``) meets the hook's ``on_failure`` policy.
- ``notify`` (notification hooks) puts the call in one bounded queue that
  ``hook_workers`` tasks drain; a full queue drops the call and counts it.
- ``start_soon`` runs a request's continuation in the runner's nursery: the message
  path uses it so that a message waiting on ``_messageReceived`` holds up neither its
  connection nor any other conversation.

Every call is signed (``X-Chatroom-Signature``, core/hooks.py) when a secret is set.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson
import trio

from chatroom.config import HookSetting
from chatroom.core.hooks import (
    HEADER_HOOK,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    BadReply,
    HookFailed,
    HookStats,
    parse_reply,
    signature,
)
from chatroom.core.model import JSON
from chatroom.net.hookclient import MAX_IDLE, HookClient, HookHTTPError, tls_context

log = logging.getLogger(__name__)

_MAX_REPLY = 256 * 1024  # bytes of one hook reply; a larger one is a failed call


class HookRunner:
    def __init__(
        self,
        settings: Sequence[HookSetting],
        secret: str,
        queue_size: int,
        workers: int,
        wall_ms: Callable[[], int],
        ca_file: str = "",
        max_idle: int = MAX_IDLE,
    ) -> None:
        """``max_idle``: kept-alive connections per hook origin (0: one per call)."""
        self._settings = {s.name: s for s in settings}
        secure = any(s.url.startswith("https:") for s in settings)
        self._client = HookClient(tls_context(ca_file) if secure else None, max_idle)
        self._secret = secret
        self._workers = max(workers, 1)
        self._wall_ms = wall_ms
        self._in_flight = dict.fromkeys(self._settings, 0)
        self._stats = {name: HookStats() for name in self._settings}
        self._send, self._receive = trio.open_memory_channel[tuple[str, dict[str, JSON]]](
            max(queue_size, 0)
        )
        self._nursery: trio.Nursery | None = None

    @property
    def stats(self) -> dict[str, HookStats]:
        return self._stats

    @property
    def enabled(self) -> bool:
        return bool(self._settings)

    def wants(self, name: str) -> bool:
        return name in self._settings

    async def call(self, name: str, params: dict[str, JSON]) -> dict[str, JSON]:
        setting = self._settings[name]
        stats = self._stats[name]
        if self._in_flight[name] >= setting.concurrency:
            stats.busy += 1
            await trio.lowlevel.checkpoint()
            return self._failed(setting, "too many calls in flight")
        self._in_flight[name] += 1
        stats.calls += 1
        started = trio.current_time()
        try:
            with trio.move_on_after(setting.timeout_ms / 1000):
                body, headers = self._request(name, params)
                status, body = await self._client.post(setting.url, body, headers, _MAX_REPLY)
                return parse_reply(status, body)
            stats.timeouts += 1
            why = f"no reply within {setting.timeout_ms} ms"
        except (HookHTTPError, BadReply) as exc:
            stats.failures += 1
            why = str(exc)
        finally:
            self._in_flight[name] -= 1
            stats.observe(trio.current_time() - started)
        log.warning("hook %s (%s) failed: %s", name, setting.url, why)
        return self._failed(setting, why)  # noqa: ASYNC910 - after post(), which awaited

    def _request(self, name: str, params: dict[str, JSON]) -> tuple[bytes, list[tuple[str, str]]]:
        body = orjson.dumps(params)
        now = self._wall_ms()
        headers = [(HEADER_HOOK, name), (HEADER_TIMESTAMP, str(now))]
        if self._secret:
            headers.append((HEADER_SIGNATURE, signature(self._secret, now, body)))
        return body, headers

    @staticmethod
    def _failed(setting: HookSetting, why: str) -> dict[str, JSON]:
        if setting.on_failure == "refuse":
            raise HookFailed(setting.name, why)
        return {}

    def notify(self, name: str, params: dict[str, JSON]) -> None:
        if name not in self._settings:
            return
        try:
            self._send.send_nowait((name, params))
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._stats[name].dropped += 1

    def start_soon(self, work: Callable[[], Awaitable[None]]) -> None:
        assert self._nursery is not None, "the hook runner is not running"
        self._nursery.start_soon(_guarded, work)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Post notifications and run continuations until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for _ in range(self._workers):
                    nursery.start_soon(self._drain)
                if self._settings:
                    nursery.start_soon(self._prune)
                task_status.started()
        finally:
            self._client.close()

    async def _prune(self) -> None:
        """Close kept-alive connections that have been idle too long."""
        while True:
            await trio.sleep(self._client.idle_timeout)
            self._client.prune()

    async def _drain(self) -> None:
        async for name, params in self._receive:
            # A notification has nothing to refuse; the failure is counted.
            with contextlib.suppress(HookFailed):
                await self.call(name, params)


async def _guarded(work: Callable[[], Awaitable[None]]) -> None:  # noqa: ASYNC910 - awaits work
    """A continuation that fails is logged, never taken down with the server."""
    try:
        await work()
    except Exception:
        log.exception("hook continuation failed")
