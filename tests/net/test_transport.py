"""chatroom.net.transport: the handshake, inbound messages and raw outbound frames, over
real localhost sockets with trio-websocket as the client. Port 0, every test under
``fail_after``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import select
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from helpers import fail_after, masked_frame
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    WebSocketConnection,
    open_websocket_url,
)
from websockets.server import ServerProtocol

from chatroom.net import fullhead, readiness
from chatroom.net import handshake as handshake_module
from chatroom.net import transport as transport_module
from chatroom.net.handshake import Rejected
from chatroom.net.listen import RawSocketStream
from chatroom.net.transport import Transport, TransportBroken
from chatroom.protocol.codec import Codec, Subprotocol
from chatroom.protocol.framing import OP_BINARY, FrameReader, ws_frame


def _choose(offered: list[str], path: str) -> Subprotocol:
    if "refuse-me" in offered:
        raise Rejected("no such subprotocol")
    return Subprotocol(offered[0] if offered else None, Codec.JSON, 3)


@asynccontextmanager
async def ws_pair(
    max_message_bytes: int = 2**20,
    subprotocols: tuple[str, ...] = (),
    client_max: int = 2**20,
) -> AsyncIterator[tuple[Transport, WebSocketConnection]]:
    """(server transport, client connection) of one WebSocket on localhost."""
    send, receive = trio.open_memory_channel[Transport](1)
    done = trio.Event()

    async def handler(transport: Transport, chosen: Subprotocol, remote: str) -> None:
        await send.send(transport)
        await done.wait()
        await transport.aclose(1000, "test over")

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: handshake_module.serve_websocket(
                handler,
                _choose,
                "127.0.0.1",
                0,
                max_message_bytes=max_message_bytes,
                handshake_timeout=5,
                task_status=task_status,
            )
        )
        url = f"ws://127.0.0.1:{port}/"
        async with open_websocket_url(
            url, subprotocols=list(subprotocols), max_message_size=client_max
        ) as client:
            server_side = await receive.receive()
            yield server_side, client
            done.set()
        nursery.cancel_scope.cancel()


@fail_after()
async def test_handshake_echoes_the_chosen_subprotocol() -> None:
    async with ws_pair(subprotocols=("lc.json.3",)) as (_, client):
        assert client.subprotocol == "lc.json.3"


@fail_after()
async def test_handshake_refused_with_400() -> None:
    refused: list[ConnectionRejected] = []
    try:
        async with ws_pair(subprotocols=("refuse-me",)):
            pass  # pragma: no cover - the handshake fails
    except* ConnectionRejected as group:
        refused.extend(e for e in group.exceptions if isinstance(e, ConnectionRejected))
    assert [e.status_code for e in refused] == [400]


@fail_after()
async def test_plain_http_gets_an_error_and_the_server_goes_on() -> None:
    async def handler(transport: Transport, chosen: Subprotocol, remote: str) -> None:
        raise AssertionError("not a WebSocket")  # pragma: no cover

    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            lambda task_status: handshake_module.serve_websocket(
                handler,
                _choose,
                "127.0.0.1",
                0,
                max_message_bytes=1024,
                handshake_timeout=5,
                task_status=task_status,
            )
        )
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = await stream.receive_some(4096)
        assert reply.startswith(b"HTTP/1.1 4")
        await stream.aclose()
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("size", "header"), [(0, 2), (1, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_ws_frame_header_lengths(size: int, header: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    for binary, opcode in ((True, 0x82), (False, 0x81)):
        frame = ws_frame(payload, binary)
        assert len(frame) == header + size
        assert frame[0] == opcode  # FIN and the opcode
        assert frame[1] & 0x80 == 0  # a server never masks
        assert frame[header:] == payload
        if header == 2:
            assert frame[1] == size
        elif header == 4:
            assert frame[1] == 126
            assert struct.unpack("!H", frame[2:4])[0] == size
        else:
            assert frame[1] == 127
            assert struct.unpack("!Q", frame[2:10])[0] == size


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@fail_after()
async def test_frames_of_every_header_size_reach_a_real_client(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    async with ws_pair() as (transport, client_ws):
        await transport.write(ws_frame(payload, binary=True))
        await transport.write(ws_frame(b"text \xc3\xa9", binary=False))
        assert await client_ws.get_message() == payload
        assert await client_ws.get_message() == "text é"


@fail_after()
async def test_write_nowait_sends_several_frames_in_one_call() -> None:
    async with ws_pair() as (transport, client_ws):
        data = b"".join(ws_frame(f"m{i}".encode(), binary=False) for i in range(3))
        assert transport.write_nowait(data) == len(data)
        assert [await client_ws.get_message() for _ in range(3)] == ["m0", "m1", "m2"]


@fail_after()
async def test_write_nowait_yields_to_a_waiting_write() -> None:
    async with ws_pair() as (transport, client_ws):
        # The client reads nothing for now: fill its socket until the kernel refuses
        # bytes, cutting a frame; ``write`` then waits to finish it.
        # (The client's reader takes some first, until its queue of messages is full.)
        filler = ws_frame(b"x" * 60000, binary=True)
        fillers = 0
        sent = len(filler)
        while sent == len(filler):
            await trio.testing.wait_all_tasks_blocked()
            sent = transport.write_nowait(filler)
            fillers += 1
        async with trio.open_nursery() as nursery:
            first = filler[sent:] + ws_frame(b"first", binary=False)
            nursery.start_soon(transport.write, first)
            await trio.testing.wait_all_tasks_blocked()
            assert transport.write_nowait(ws_frame(b"not now", binary=False)) == 0
            with pytest.raises(TransportBroken):  # nor does a second write
                await transport.write(ws_frame(b"nor this", binary=False))
            for _ in range(fillers):  # the client reads: the write finishes
                assert len(await client_ws.get_message()) == 60000
        assert transport.write_nowait(ws_frame(b"now", binary=False)) > 0
        assert await client_ws.get_message() == "first"
        assert await client_ws.get_message() == "now"


@fail_after(20)
async def test_a_partial_nowait_write_can_be_finished_by_write() -> None:
    payload = bytes(i % 253 for i in range(16 * 2**20))
    frame = ws_frame(payload, binary=True)
    async with ws_pair(client_max=len(payload)) as (transport, client_ws):
        written = transport.write_nowait(frame)
        assert 0 < written <= len(frame)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.write, frame[written:])
            assert await client_ws.get_message() == payload


@fail_after()
async def test_receive_returns_client_messages() -> None:
    async with ws_pair() as (transport, client_ws):
        await client_ws.send_message("hello")
        await client_ws.send_message(b"\x00\x01")
        assert await transport.receive() == "hello"
        assert await transport.receive() == b"\x00\x01"


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux's")
@fail_after()
async def test_waits_for_frames_do_not_arm_the_socket_in_trios_epoll_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each trio wait_readable is an epoll_ctl (two on a new socket); the transport's
    # socket is in net/readiness.py's edge-triggered set for its life instead.
    monkeypatch.setattr(readiness, "ENABLED", True)  # (whatever the default)
    armed: list[int] = []
    trio_wait = trio.lowlevel.wait_readable

    async def counting(fd: int) -> None:
        armed.append(fd)
        await trio_wait(fd)

    monkeypatch.setattr(trio.lowlevel, "wait_readable", counting)
    async with ws_pair() as (transport, client_ws):
        armed.clear()  # (the handshake may have waited for the head through trio)
        got: list[str | bytes] = []

        async def receive() -> None:
            got.append(await transport.receive())

        for text in ("one", "two", "three"):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(receive)
                await trio.testing.wait_all_tasks_blocked()  # waiting for the socket
                await client_ws.send_message(text)
        assert got == ["one", "two", "three"]
        assert transport.fileno not in armed


@fail_after()
async def test_backlog_counts_frames_still_in_the_kernel() -> None:
    # 3000 frames of 100 bytes (106 on the wire, masked): one read of 64 KiB parses
    # about 600 of them, the rest wait in the socket's receive queue.
    async with ws_pair() as (transport, client_ws), trio.open_nursery() as nursery:

        async def send_all() -> None:  # blocks while the server's queue is full
            for _ in range(3000):
                await client_ws.send_message(b"x" * 100)

        nursery.start_soon(send_all)
        assert await transport.receive() == b"x" * 100
        parsed_in_one_read = 65536 // 106
        # Polls the kernel (no event to wait for); fail_after ends it if never.
        while transport.backlog <= parsed_in_one_read + 100:  # noqa: ASYNC110
            await trio.sleep(0.01)  # loopback still filling the receive queue
        assert transport.backlog <= 2999
        for _ in range(2999):
            await transport.receive()
        assert transport.backlog == 0


@fail_after()
async def test_aclose_sends_the_close_code_and_reason() -> None:
    async with ws_pair() as (transport, client_ws):
        assert not transport.closed
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.aclose, 4120, "slow consumer")
            with pytest.raises(ConnectionClosed) as info:
                await client_ws.get_message()
        reason = info.value.reason
        assert reason is not None
        assert (reason.code, reason.reason) == (4120, "slow consumer")
        assert transport.closed
        with pytest.raises(TransportBroken):
            transport.write_nowait(ws_frame(b"late", binary=False))
        with pytest.raises(transport_module.ConnectionClosed):
            await transport.receive()


@fail_after()
async def test_close_reason_is_cut_to_fit_a_close_frame() -> None:
    async with ws_pair() as (transport, client_ws):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.aclose, 4000, "x" * 500)
            with pytest.raises(ConnectionClosed) as info:
                await client_ws.get_message()
        closed = info.value.reason
        assert closed is not None
        assert closed.reason is not None
        assert 0 < len(closed.reason.encode()) <= 123


class Owner:
    """A transport's owner that keeps the control frames it is handed."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.reads = 0

    def control_frames(self, frames: bytes) -> None:
        self.sent.append(frames)

    def frames_read(self) -> None:
        self.reads += 1


@fail_after()
async def test_client_close_ends_receive_with_its_code_and_replies_through_the_owner() -> None:
    async with ws_pair() as (transport, client_ws):
        owner = Owner()
        transport.owner = owner
        sent = owner.sent
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_ws.aclose, 4321, "bye")
            with pytest.raises(transport_module.ConnectionClosed) as info:
                await transport.receive()
            assert info.value.code == 4321
            # the close reply goes out in order with everything else
            assert sent
            assert sent[0][0] == 0x88
            transport.write_nowait(sent[0])


@fail_after()
async def test_ping_is_answered_through_the_owner() -> None:
    async with ws_pair() as (transport, client_ws):
        owner = Owner()
        transport.owner = owner
        sent = owner.sent
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client_ws.ping, b"abc")
            await trio.testing.wait_all_tasks_blocked()  # the ping is on the wire first
            await client_ws.send_message("after ping")
            assert await transport.receive() == "after ping"
            assert sent == [b"\x8a\x03abc"]  # an unmasked pong with the payload
            transport.write_nowait(sent[0])  # lets the client's ping() return


@fail_after()
async def test_oversized_message_closes_with_1009() -> None:
    async with ws_pair(max_message_bytes=100) as (transport, client_ws):
        await client_ws.send_message("x" * 101)
        with pytest.raises(transport_module.ConnectionClosed) as info:
            await transport.receive()
        assert info.value.code == 1009


_masked = masked_frame


@fail_after()
async def test_fragments_are_reassembled_and_invalid_utf8_closes_with_1007() -> None:
    async with ws_pair() as (transport, client_ws):
        raw = client_ws._stream  # write frames trio-websocket would not produce
        await raw.send_all(_masked(0x1, b"hel", fin=False) + _masked(0x0, b"lo"))
        assert await transport.receive() == "hello"
        await raw.send_all(_masked(0x2, b"\x00", fin=False) + _masked(0x0, b"\x01"))
        assert await transport.receive() == b"\x00\x01"
        await raw.send_all(_masked(0x1, b"\xff\xfe"))
        with pytest.raises(transport_module.ConnectionClosed) as info:
            await transport.receive()
        assert info.value.code == 1007


# -- refused and abandoned handshakes ---------------------------------------------------


async def _close_at_once(transport: Transport, chosen: Subprotocol, remote: str) -> None:
    await transport.aclose(1000, "bye")


@asynccontextmanager
async def listening(
    handshake_timeout: float = 5, handler: handshake_module.Handler = _close_at_once
) -> AsyncIterator[int]:
    """A WebSocket listener on localhost (its port) whose handler closes at once."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(
            lambda task_status: handshake_module.serve_websocket(
                handler,
                _choose,
                "127.0.0.1",
                0,
                max_message_bytes=1024,
                handshake_timeout=handshake_timeout,
                task_status=task_status,
            )
        )
        nursery.cancel_scope.cancel()


async def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` (while reading, since the server may answer before it has read
    all of it) and return everything received until the server hangs up."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = b""
    async with stream, trio.open_nursery() as nursery:
        if request:
            nursery.start_soon(stream.send_all, request)
        while chunk := await stream.receive_some(65536):
            received += chunk
    return received


_MB = b"a" * 2**20
BAD_REQUESTS = [
    ("header-line-1MB", b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + _MB + b"\r\n\r\n", 431),
    ("too-many-headers", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n", 431),
    ("request-line-1MB", b"GET /" + _MB + b" HTTP/1.1\r\n\r\n", 414),
    ("not-http", b"\x00\xffNOT HTTP AT ALL\r\n\r\n", 400),
    ("no-version", b"GET /\r\n\r\n", 400),
    ("plain-get", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426),
]


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [(r, s) for _, r, s in BAD_REQUESTS],
    ids=[name for name, _, _ in BAD_REQUESTS],
)
@fail_after()
async def test_a_malformed_handshake_gets_an_http_error_and_no_traceback(
    request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with listening() as port:
        reply = await exchange(port, request_bytes)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply[:200]
        assert 0 < len(body) < 200
        async with open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            assert ws.subprotocol is None  # and the listener still serves
    assert [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info] == []


@fail_after()
async def test_refused_handshakes_are_logged_once_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "chatroom.net.transport")
    async with listening() as port:
        for _ in range(20):
            assert (await exchange(port, b"\x00junk\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            assert (await exchange(port, BAD_REQUESTS[0][1])).startswith(b"HTTP/1.1 431 ")
    lines = [r.getMessage() for r in caplog.records if r.name == "chatroom.net.transport"]
    assert len(lines) == 2, lines
    assert "(InvalidMessage)" in lines[0]
    assert "(HeaderLineTooLong)" in lines[1]
    assert all(len(line) < 300 for line in lines)


async def test_a_refusal_log_line_counts_those_left_out_since_the_last(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "chatroom.net.transport")
    refusals = handshake_module.RefusalLog(interval=60)
    for _ in range(5):
        refusals.note("InvalidMessage", "1.2.3.4:5", "400 not an HTTP request")
    refusals.note("timeout", "1.2.3.4:6", "none within 10 s")
    await trio.sleep(59)
    refusals.note("InvalidMessage", "1.2.3.4:7", "x" * 10_000)  # still within the minute
    await trio.sleep(1)
    refusals.note("InvalidMessage", "1.2.3.4:8", "400 not an HTTP request")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "(0 more since" in lines[0]
    assert "(timeout)" in lines[1]
    assert "1.2.3.4:8" in lines[2]
    assert "(5 more since" in lines[2]


def _live_protocols() -> int:
    return sum(isinstance(o, ServerProtocol) for o in gc.get_objects())


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"",  # connects and waits: the handshake times out
        b"GET / HTTP/1.1\r\nHost: x\r\n",  # half a request, then the timeout
        b"\x00junk\r\n\r\n",
        BAD_REQUESTS[0][1],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: refuse-me\r\n\r\n",
    ],
    ids=["silent", "half", "not-http", "too-large", "plain-get", "refused"],
)
@fail_after(100)
async def test_failed_handshakes_are_freed_without_the_cycle_collector(
    request_bytes: bytes, autojump_clock: trio.testing.MockClock
) -> None:
    # The server freezes long-lived objects out of the collector's sight (gcpolicy):
    # a failed handshake that left a reference cycle would stay until a full pass.
    gc.collect()
    gc.disable()
    try:
        async with listening(handshake_timeout=5) as port:
            for _ in range(10):
                await exchange(port, request_bytes)  # the server hangs up in the end
            await trio.testing.wait_all_tasks_blocked()
            assert _live_protocols() == 0
    finally:
        gc.enable()


_UPGRADE_HEAD = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


@fail_after()
async def test_a_half_sent_handshake_holds_no_protocol_object_until_its_head_ends() -> None:
    # Thousands of clients that never finish their handshake must cost little: each
    # holds the bytes it sent, not a parser with its half-built headers.
    gc.collect()
    async with listening(handshake_timeout=60) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            for line in _UPGRADE_HEAD.splitlines(keepends=True):
                await stream.send_all(line)
                await trio.testing.wait_all_tasks_blocked()
                assert _live_protocols() == 0
            await stream.send_all(b"\r\n")  # the head is over: the handshake goes on
            reply = await stream.receive_some(4096)
            assert reply.startswith(b"HTTP/1.1 101 "), reply


@fail_after()
async def test_a_long_request_head_is_still_parsed() -> None:
    # Past the bytes buffered before parsing (cookies can be long), the parser reads on.
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40))
    async with listening() as port:
        reply = await exchange(port, _UPGRADE_HEAD + padding + b"\r\n")
    assert reply.startswith(b"HTTP/1.1 101 "), reply[:100]


def _recorder(got: list[str | bytes]) -> handshake_module.Handler:
    """A handler that keeps every message received in ``got``, then closes."""

    async def handler(transport: Transport, chosen: Subprotocol, remote: str) -> None:
        with contextlib.suppress(transport_module.ConnectionClosed):
            while True:
                got.append(await transport.receive())
        await transport.aclose(1000, "bye")

    return handler


_PADDED_HEAD = _UPGRADE_HEAD + b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 6000) for i in range(4))


@pytest.mark.parametrize("head", [_UPGRADE_HEAD, _PADDED_HEAD], ids=["short", "over-16KiB"])
@fail_after()
async def test_frames_sent_with_the_handshake_are_read(head: bytes) -> None:
    got: list[str | bytes] = []
    async with listening(handler=_recorder(got)) as port:
        request = head + b"\r\n" + _masked(0x1, b"hi") + _masked(0x8, b"\x0f\xa0")
        received = await exchange(port, request)
    assert received.startswith(b"HTTP/1.1 101 ")
    assert got == ["hi"]
    assert received.endswith(b"\x88\x02\x0f\xa0")  # the client's close (4000), echoed


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x81\x02hi", 1002),  # not masked
        (_masked(0x0, b"x"), 1002),  # a continuation of nothing
        (_masked(0x8, b"\x03"), 1002),  # a close frame too short for its code
        (_masked(0x1, b"x" * 2000), 1009),  # over max_message_bytes (1024)
    ],
    ids=["unmasked", "stray-continuation", "short-close", "too-big"],
)
@fail_after()
async def test_a_protocol_violation_is_answered_with_its_close_code(
    frame: bytes, code: int
) -> None:
    got: list[str | bytes] = []
    async with listening(handler=_recorder(got)) as port:
        received = await exchange(port, _UPGRADE_HEAD + b"\r\n" + frame)
    assert got == []
    close = received[received.index(b"\r\n\r\n") + 4 :]
    assert close[0] == 0x88
    assert int.from_bytes(close[2:4], "big") == code
    assert len(close) == 2 + close[1]  # that close frame and nothing else


def test_the_head_end_is_found_wherever_the_reads_split_it() -> None:
    wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nFRAMES"
    blank = wire.index(b"\r\n\r\n")
    for cut in range(blank - 2, blank + 6):
        head_end = fullhead._HeadEnd()
        parts = head_end.head_part(wire[:cut]) + head_end.head_part(wire[cut:])
        assert parts == wire[: blank + 4]
        assert head_end.rest == b"FRAMES"
    head_end = fullhead._HeadEnd()  # one byte a read
    assert (
        b"".join(head_end.head_part(wire[k : k + 1]) for k in range(len(wire))) == wire[: blank + 4]
    )
    assert head_end.rest == b"FRAMES"


async def _until_close_frame(stream: trio.SocketStream) -> bytes:
    """What the server sends up to its close frame, after the 101 response."""
    received = b""
    while True:
        chunk = await stream.receive_some(65536)
        assert chunk, received
        received += chunk
        head_end = received.find(b"\r\n\r\n")
        frames = received[head_end + 4 :] if head_end >= 0 else b""
        if len(frames) >= 2 and len(frames) >= 2 + frames[1]:
            return frames


@pytest.mark.parametrize("together", [False, True], ids=["in-pieces", "with-the-close"])
@fail_after()
async def test_the_rest_of_a_refused_frame_is_read_before_the_socket_closes(
    together: bool,
) -> None:
    # The server refuses a frame over max_message_bytes from its header. A client still
    # sending it must get that close (1009) and an orderly end: closing the socket while
    # the payload's rest is unread would reset the connection, and the payload's bytes
    # must not pass for the client's close frame.
    frame = _masked(0x2, bytes(range(256)) * 1200)  # 300 KB; the limit is 1024
    close = _masked(0x8, (1009).to_bytes(2, "big"))
    got: list[str | bytes] = []
    async with listening(handler=_recorder(got)) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(_UPGRADE_HEAD + b"\r\n" + frame[:4000])
            frames = await _until_close_frame(stream)
            assert frames[0] == 0x88
            assert int.from_bytes(frames[2:4], "big") == 1009
            rest = frame[4000:] + close
            if together:
                await stream.send_all(rest)
            else:
                for at in range(0, len(rest), 7000):
                    await stream.send_all(rest[at : at + 7000])
                    await trio.sleep(0.001)
            assert await stream.receive_some(65536) == b""  # the end, not a reset
    assert got == []


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux's")
@fail_after()
async def test_a_wait_woken_then_cancelled_before_its_read_loses_no_frame(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The socket's readiness is edge-triggered: a reader woken for a frame and
    # cancelled before reading it gets no second event for that frame; the next
    # receive reads before it waits, and finds it.
    ours, theirs = socket.socketpair()
    kind = (socket.AF_UNIX, socket.SOCK_STREAM, 0)
    ours.setblocking(False)
    monkeypatch.setattr(readiness, "ENABLED", True)  # (whatever the default)
    transport = Transport(RawSocketStream(ours.detach(), kind), FrameReader(2**20))
    ready = readiness.current()
    assert ready is not None
    got: list[str | bytes] = []
    scope = trio.CancelScope()

    async def receive() -> None:
        with scope:
            got.append(await transport.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        await trio.testing.wait_all_tasks_blocked()
        theirs.send(masked_frame(OP_BINARY, b"hello"))
        ready._wake()  # the set's task would: the reader is rescheduled...
        scope.cancel()  # ...and cancelled before it ran
    if not got:
        with trio.move_on_after(5):
            got.append(await transport.receive())
    assert got == [b"hello"]
    await transport.abort()
    theirs.close()
