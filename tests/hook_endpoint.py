"""A hook endpoint for tests: a tiny HTTP/1.1 server (h11 over Trio) in the test's own
nursery that records every call and answers through a programmable ``respond``, so a
test can make it slow, failing or rewriting, and read what the server sent.

It closes each connection after its reply (``Connection: close``) unless made with
``keep_alive``; then it serves requests on a connection until the client closes it,
``drop_idle`` closes the idle ones (as a server's keep-alive timeout does), and a
``respond`` that returns status 0 closes the connection without answering.
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
    on_connection: int = 1  # the how-manieth request of its connection

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
    def __init__(
        self,
        respond: Respond = carry_on,
        tls: ssl.SSLContext | None = None,
        keep_alive: bool = False,
    ) -> None:
        self.respond = respond
        self.tls = tls  # serve https:// with it
        self.keep_alive = keep_alive
        self.calls: list[HookCall] = []
        self.port = 0
        self.connections = 0  # accepted so far
        self.open = 0  # open now
        self._arrived = trio.Event()
        self._idle: set[trio.CancelScope] = set()  # connections waiting for a request

    def url(self, name: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}/1.1/functions/{name}"

    def config(self, hooks: dict[str, dict[str, object]], **more: object) -> dict[str, object]:
        """Server settings calling this endpoint for ``hooks`` (name -> extra keys)."""
        tables = {n: {"url": self.url("_" + n.lstrip("_")), **extra} for n, extra in hooks.items()}
        return {"hooks": tables, "hook_secret": SECRET, **more}

    def of(self, name: str) -> list[HookCall]:
        return [c for c in self.calls if c.name == name]

    async def drop_idle(self) -> None:
        """Once every open connection waits for its next request, close them all."""
        while len(self._idle) != self.open:
            await self._arrived.wait()
        for scope in self._idle:
            scope.cancel()

    async def wait_open(self, count: int) -> None:
        """Until exactly ``count`` connections are open (under the test's deadline)."""
        while self.open != count:
            await self._arrived.wait()

    def _changed(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

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
        self.connections += 1
        self.open += 1
        self._changed()
        # A caller that gave up (its timeout) or refused the certificate breaks the
        # stream: there is nobody to answer.
        try:
            with contextlib.suppress(trio.BrokenResourceError, h11.RemoteProtocolError):
                async with stream:
                    conn = h11.Connection(h11.SERVER)
                    served = 1
                    while await self._exchange(stream, conn, served):
                        conn.start_next_cycle()
                        served += 1
        finally:
            self.open -= 1
            self._changed()

    async def _exchange(self, stream: trio.abc.Stream, conn: h11.Connection, nth: int) -> bool:
        """Serve one request; whether to wait for another on the same connection."""
        target, headers, body = b"", {}, b""
        waiting = trio.CancelScope()
        self._idle.add(waiting)
        self._changed()
        try:
            with waiting:
                event = conn.next_event()
                while event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                    event = conn.next_event()
        finally:
            self._idle.discard(waiting)
        if waiting.cancelled_caught:
            return False  # dropped while idle
        while True:
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Request):
                target = event.target
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:  # closed (or dropped) before a request
                return False
            event = conn.next_event()
        name = target.decode().rsplit("/", 1)[-1]
        call = HookCall(name, orjson.loads(body) if body else {}, headers, body, nth)
        self.calls.append(call)
        self._changed()
        status, reply = await self.respond(call)
        if status == 0:
            return False  # closed without an answer
        fields = [("Content-Length", str(len(reply)))]
        if not self.keep_alive:
            fields.append(("Connection", "close"))
        out = conn.send(h11.Response(status_code=status, headers=fields)) or b""
        out += conn.send(h11.Data(data=reply)) or b""
        out += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(out)
        return self.keep_alive


@asynccontextmanager
async def hooked(
    respond: Respond,
    hooks: dict[str, dict[str, object]],
    *,
    keep_alive: bool = False,
    **more: object,
) -> AsyncIterator[tuple[Running, HookEndpoint]]:
    """A server whose ``hooks`` call an endpoint answering with ``respond``."""
    endpoint = HookEndpoint(respond, keep_alive=keep_alive)
    async with trio.open_nursery() as nursery:
        await nursery.start(endpoint.serve)
        async with running_server(endpoint.config(hooks, **more)) as running:
            yield running, endpoint
        nursery.cancel_scope.cancel()
