"""A hook endpoint for tests: a tiny HTTP/1.1 server (h11 over Trio) in the test's own
nursery that records every call and answers through a programmable ``respond``, so a
test can make it slow, failing or rewriting, and read what the server sent.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import h11
import orjson
import trio
from helpers import Running, running_server

from chatroom.core.hooks import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify

SECRET = "test-hook-secret"


@dataclass
class HookCall:
    name: str  # the last path segment: the hook's name
    params: dict[str, Any]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def signed(self, secret: str = SECRET) -> bool:
        """Whether the call carries a valid signature for ``secret``."""
        stamp = self.headers.get(HEADER_TIMESTAMP.lower(), "")
        header = self.headers.get(HEADER_SIGNATURE.lower(), "")
        return stamp.isdigit() and verify(secret, int(stamp), self.body, header)


Respond = Callable[[HookCall], Awaitable[tuple[int, bytes]]]


def result(value: object) -> tuple[int, bytes]:
    """LeanCloud's reply: 200 with ``{"result": value}``."""
    return 200, orjson.dumps({"result": value})


async def carry_on(call: HookCall) -> tuple[int, bytes]:
    await trio.lowlevel.checkpoint()
    return result({})


class HookEndpoint:
    def __init__(self, respond: Respond = carry_on, tls: ssl.SSLContext | None = None) -> None:
        self.respond = respond
        self.tls = tls  # serve https:// with it
        self.calls: list[HookCall] = []
        self.port = 0
        self._arrived = trio.Event()

    def url(self, name: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/1.1/functions/{name}"

    def config(self, hooks: dict[str, dict[str, object]], **more: object) -> dict[str, object]:
        """Server settings calling this endpoint for ``hooks`` (name -> extra keys)."""
        tables = {n: {"url": self.url("_" + n.lstrip("_")), **extra} for n, extra in hooks.items()}
        return {"hooks": tables, "hook_secret": SECRET, **more}

    def of(self, name: str) -> list[HookCall]:
        return [c for c in self.calls if c.name == name]

    async def wait_for(self, name: str, count: int = 1) -> list[HookCall]:
        """Until ``count`` calls of ``name`` arrived (under the test's deadline)."""
        while len(self.of(name)) < count:
            await self._arrived.wait()
        return self.of(name)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, tcp: trio.SocketStream) -> None:
        stream: trio.abc.Stream = tcp
        if self.tls is not None:
            stream = trio.SSLStream(tcp, self.tls, server_side=True)
        # A caller that gave up (its timeout) or refused the certificate breaks the
        # stream: there is nobody to answer.
        with contextlib.suppress(trio.BrokenResourceError):
            async with stream:
                await self._exchange(stream)

    async def _exchange(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        target, headers, body = b"", {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                target = event.target
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        name = target.decode().rsplit("/", 1)[-1]
        call = HookCall(name, orjson.loads(body) if body else {}, headers, body)
        self.calls.append(call)
        self._arrived.set()
        self._arrived = trio.Event()
        status, reply = await self.respond(call)
        response = h11.Response(
            status_code=status,
            headers=[("Content-Length", str(len(reply))), ("Connection", "close")],
        )
        out = conn.send(response) or b""
        out += conn.send(h11.Data(data=reply)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)


@asynccontextmanager
async def hooked(
    respond: Respond, hooks: dict[str, dict[str, object]], **more: object
) -> AsyncIterator[tuple[Running, HookEndpoint]]:
    """A server whose ``hooks`` call an endpoint answering with ``respond``."""
    endpoint = HookEndpoint(respond)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        async with running_server(endpoint.config(hooks, **more)) as running:
            yield running, endpoint
        nursery.cancel_scope.cancel()
