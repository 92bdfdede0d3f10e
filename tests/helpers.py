"""Shared builders for the server tests: a running server and small test clients.

Testing charter (after trio-websocket's): localhost only, port 0, every I/O test under
``trio.fail_after`` (the ``fail_after`` decorator below) so that a hang fails fast, and
no assertion on durations. "Nothing arrived" is never checked by waiting: ``sync()``
makes an ``echo`` round trip, after which every push the server queued for that
connection before it handled the echo has been received (one outbox, in order).

Clients speak any subprotocol but take and return commands as flat JSON objects (the
form of the README): the protobuf and base64 clients convert with
``chatroom.protocol.codec``, which ``test_codec.py`` checks against real SDK frames.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import struct
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ParamSpec, TypeVar, cast

import orjson
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import CloseReason, ConnectionClosed, WebSocketConnection, open_websocket_url

from chatroom.config import Config
from chatroom.core.clock import Clock
from chatroom.net.server import Server
from chatroom.protocol import codec
from chatroom.protocol.codec import Codec
from chatroom.store.base import Store

JSON_SUB = "lc.json.3"
PROTOBUF_SUB = "lc.protobuf2.3"
BASE64_SUB = "lc.proto2base64.3"
ALL_SUBS = [JSON_SUB, PROTOBUF_SUB, BASE64_SUB]
TIMEOUT = 10.0  # seconds: the default fail_after of an I/O test

# Commands as the flat JSON objects of the README; values are whatever JSON holds.
Cmd = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")


def fail_after(
    seconds: float = TIMEOUT,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async test so that it fails, rather than hangs, after ``seconds``."""

    def decorate(test: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(test)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with trio.fail_after(seconds):
                return await test(*args, **kwargs)

        return wrapper

    return decorate


def codec_of(subprotocol: str | None) -> Codec:
    if subprotocol is None:
        return Codec.JSON
    chosen = codec.parse_subprotocol(subprotocol)
    assert chosen is not None, subprotocol
    return chosen.codec


class Client:
    """One WebSocket connection to the server, with request/reply matching by ``i``.

    ``request`` numbers the command (unless it has an ``i``), sends it and returns the
    reply with that ``i``; everything else received meanwhile is kept, in order, for
    ``next_push``. ``received`` is every command in arrival order.
    """

    def __init__(self, ws: WebSocketConnection, codec_: Codec):
        self.ws = ws
        self.codec = codec_
        self.pushes: deque[Cmd] = deque()
        self.received: list[Cmd] = []
        self._next_i = 0
        self.peer_id: str | None = None  # the last client logged in

    # -- sending ----------------------------------------------------------------------

    def encode(self, cmd: Cmd) -> str | bytes:
        if self.codec is Codec.JSON:
            return orjson.dumps(cmd).decode()
        raw = codec.serialize(codec.from_json(cmd))
        return raw if self.codec is Codec.PROTOBUF else base64.b64encode(raw).decode()

    async def send(self, cmd: Cmd) -> None:
        await self.ws.send_message(self.encode(cmd))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    def number(self, cmd: Cmd) -> Cmd:
        """A copy of ``cmd`` with a fresh ``i`` (unless it has one)."""
        if "i" in cmd:
            return dict(cmd)
        self._next_i += 1
        return {**cmd, "i": self._next_i}

    # -- receiving --------------------------------------------------------------------

    async def until_shed_told(self, sent: int) -> tuple[list[str], int]:
        """A viewer that fell behind reads on until each of the ``sent`` messages came
        (a ``direct`` push) or was counted in a ``shed`` notice: the texts that came, in
        arrival order, and the last notice's count."""
        got: list[str] = []
        told = 0
        while len(got) + told < sent:
            push = await self.receive()
            if push["cmd"] == "direct":
                got.append(push["msg"])
            elif push["cmd"] == "shed":
                told = push["count"]
        return got, told

    async def receive(self) -> Cmd:
        """The next command from the server (ConnectionClosed at the end)."""
        message = await self.ws.get_message()
        if self.codec is Codec.JSON:
            assert isinstance(message, str), "JSON commands come in text frames"
            decoded = orjson.loads(message)
            assert isinstance(decoded, dict)
            cmd = cast(Cmd, decoded)
        else:
            binary = self.codec is Codec.PROTOBUF
            assert isinstance(message, bytes) == binary, "frame type follows the codec"
            cmd = codec.to_json(codec.decode(self.codec, message))
        self.received.append(cmd)
        return cmd

    async def reply_to(self, i: int) -> Cmd:
        while True:
            cmd = await self.receive()
            if cmd.get("i") == i:
                return cmd
            self.pushes.append(cmd)

    async def request(self, cmd: Cmd) -> Cmd:
        numbered = self.number(cmd)
        await self.send(numbered)
        return await self.reply_to(cast(int, numbered["i"]))

    async def pipeline(self, cmds: list[Cmd]) -> list[Cmd]:
        """Send every command before reading any reply; the replies, in the same order."""
        numbered = [self.number(cmd) for cmd in cmds]
        for cmd in numbered:
            await self.send(cmd)
        replies: dict[int, Cmd] = {}
        wanted = {cast(int, cmd["i"]) for cmd in numbered}
        while len(replies) < len(wanted):
            cmd = await self.receive()
            if cmd.get("i") in wanted:
                replies[cmd["i"]] = cmd
            else:
                self.pushes.append(cmd)
        return [replies[cast(int, cmd["i"])] for cmd in numbered]

    async def next_push(self, cmd: str | None = None, op: str | None = None) -> Cmd:
        """The first push not yet taken (of this ``cmd``/``op``, if given); the others
        stay queued."""

        def wanted(push: Cmd) -> bool:
            return (cmd is None or push.get("cmd") == cmd) and (op is None or push.get("op") == op)

        for push in self.pushes:
            if wanted(push):
                self.pushes.remove(push)
                return push
        while True:
            push = await self.receive()
            if wanted(push):
                return push
            self.pushes.append(push)

    async def sync(self) -> None:
        """Barrier: after it, every push queued for this connection before the server
        handled this echo is in ``pushes``."""
        reply = await self.request({"cmd": "echo"})
        assert reply["cmd"] == "echo", reply

    async def take_pushes(self) -> list[Cmd]:
        """``sync``, then return (and forget) every push received."""
        await self.sync()
        out = list(self.pushes)
        self.pushes.clear()
        return out

    async def closed(self) -> CloseReason:
        """Read until the server closes the connection; return its close reason."""
        try:
            while True:
                self.pushes.append(await self.receive())
        except ConnectionClosed as exc:
            reason = exc.reason
        assert reason is not None
        return reason

    # -- conveniences ------------------------------------------------------------------

    async def login(self, peer_id: str, **fields: object) -> Cmd:
        reply = await self.request(
            {"cmd": "session", "op": "open", "appId": "test", "peerId": peer_id, **fields}
        )
        assert (reply["cmd"], reply.get("op")) == ("session", "opened"), reply
        self.peer_id = peer_id
        return reply

    async def start(self, members: list[str], **fields: object) -> str:
        """Create a conversation; returns its cid."""
        reply = await self.request({"cmd": "conv", "op": "start", "m": members, **fields})
        assert reply.get("op") == "started", reply
        return cast(str, reply["cid"])

    async def say(self, cid: str, text: str, **fields: object) -> Cmd:
        """Send a text message; returns the ack."""
        ack = await self.request({"cmd": "direct", "cid": cid, "msg": text, **fields})
        assert ack["cmd"] == "ack", ack
        assert "code" not in ack, ack
        return ack

    async def say_many(self, cid: str, texts: list[str]) -> list[Cmd]:
        """Send text messages without waiting in between; returns their acks."""
        acks = await self.pipeline([{"cmd": "direct", "cid": cid, "msg": t} for t in texts])
        assert all(ack["cmd"] == "ack" and "code" not in ack for ack in acks), acks
        return acks

    async def logs(self, cid: str, **fields: object) -> list[Cmd]:
        reply = await self.request({"cmd": "logs", "cid": cid, **fields})
        assert reply["cmd"] == "logs", reply
        return cast(list[Cmd], reply.get("logs", []))

    async def all_logs(self, cid: str, page: int = 20) -> list[Cmd]:
        """The whole history, read backwards in pages of ``page`` (as the SDK's message
        iterator does), ascending."""
        found: list[Cmd] = []
        bound: dict[str, object] = {}
        while batch := await self.logs(cid, l=page, **bound):
            found[:0] = batch
            bound = {"t": batch[0]["timestamp"], "mid": batch[0]["msgId"]}
        return found

    async def drop(self) -> None:
        """Close the TCP connection abruptly: no logout, no WebSocket close frame."""
        await self.ws._stream.aclose()
        # trio-websocket's reader may be parked handing over a message nobody reads;
        # reading lets it notice the closed stream (otherwise leaving hangs). What is
        # read is not decoded: it may be anything.
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.get_message()


@dataclass
class Running:
    server: Server
    ws_port: int
    http_port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/"

    @asynccontextmanager
    async def client(self, subprotocol: str | None = JSON_SUB) -> AsyncIterator[Client]:
        subprotocols = [subprotocol] if subprotocol else None
        async with open_websocket_url(
            self.url, subprotocols=subprotocols, connect_timeout=5, disconnect_timeout=2
        ) as ws:
            yield Client(ws, codec_of(subprotocol))

    @asynccontextmanager
    async def user(self, peer_id: str, subprotocol: str | None = JSON_SUB) -> AsyncIterator[Client]:
        """A connection with ``peer_id`` logged in."""
        async with self.client(subprotocol) as client:
            await client.login(peer_id)
            yield client

    async def wait_connections(self, count: int) -> None:
        """Until the server holds exactly ``count`` connections (it noticed closes)."""
        # The server has no event for this; a short poll under the test's fail_after.
        while len(self.server.connections) != count:  # noqa: ASYNC110
            await trio.sleep(0.005)


def make_config(overrides: Mapping[str, object] | None = None) -> Config:
    base = Config(host="127.0.0.1", port=0, http_port=0, db=":memory:")
    return base.with_overrides(overrides or {})


@asynccontextmanager
async def running_server(
    overrides: Mapping[str, object] | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
) -> AsyncIterator[Running]:
    """A server on free localhost ports (``:memory:`` store unless ``db`` is given),
    shut down gracefully, with ``run`` returning, at the end. A ``ManualClock`` as
    ``clock`` lets a test move the server's wall time instead of sleeping."""
    server = Server(make_config(overrides), store, clock)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(server.run)
        try:
            yield Running(server, listening.ws_port, listening.http_port)
        finally:
            server.shutdown.set()


async def http_get(port: int, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request over a real socket: status, headers (lower-case), body."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
        await stream.send_all(request.encode())
        raw = b""
        while chunk := await stream.receive_some():
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields, body


@asynccontextmanager
async def users(
    running: Running, *peer_ids: str, subprotocol: str | None = JSON_SUB
) -> AsyncIterator[list[Client]]:
    """One logged-in connection per peer id."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running.user(p, subprotocol)) for p in peer_ids]


async def conversation(creator: Client, *others: Client, **fields: object) -> str:
    """A conversation of every client's first session (``fields`` for ``conv start``),
    its events consumed; its cid."""
    peers = [str(c.received[0]["peerId"]) for c in others]
    cid = await creator.start(peers, **fields)
    for client in (creator, *others):
        await client.take_pushes()
    return cid


def ops(pushes: list[Cmd]) -> list[tuple[object, object]]:
    """``(cmd, op)`` of each push, for compact assertions."""
    return [(p.get("cmd"), p.get("op")) for p in pushes]


async def assert_serving(
    running: Running, cid: str | None = None, texts: tuple[str, ...] = (), reader: str = "alice"
) -> None:
    """The server still serves a new client, and ``cid``'s history is exactly ``texts``
    (as its member ``reader`` reads it)."""
    async with running.client() as client:
        await client.login(reader)
        await client.sync()
        if cid is not None:
            logs = await client.all_logs(cid)
            assert tuple(item["data"] for item in logs) == texts


# -- an HTTP endpoint that records what it is sent (webhook tests)


class _Hook(BaseHTTPRequestHandler):
    received: list[Any] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def webhook() -> Iterator[tuple[str, list[Any]]]:
    """A real HTTP server on localhost, in a thread; yields its URL and what it got."""
    received: list[Any] = []
    handler = type("Hook", (_Hook,), {"received": received})
    httpd = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/push", received
    finally:
        httpd.shutdown()
        httpd.server_close()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(running: Running) -> Samples:
    """The server's ``/metrics`` parsed by prometheus_client: samples by name and labels."""
    status, headers, body = await http_get(running.http_port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample of a scrape."""
    return samples[(name, tuple(sorted(labels.items())))]


def masked_frame(opcode: int, payload: bytes, fin: bool = True, *, first_extra: int = 0) -> bytes:
    """A client WebSocket frame as a browser sends it (masked with a random key);
    ``first_extra`` sets more bits of the first byte (the reserved ones)."""
    key = os.urandom(4)
    first = (0x80 if fin else 0) | opcode | first_extra
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
