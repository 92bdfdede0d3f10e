"""chatroom.transport: pre-encoded frames written past trio-websocket, over real sockets.

The outbound path relies on two private attributes of ``trio_websocket``'s
``WebSocketConnection``: ``_stream`` (the ``trio.SocketStream``) and ``_stream_lock``
(held while trio-websocket writes). trio-websocket is pinned exactly; the canary test
below fails loudly if an upgrade changes them. Localhost, port 0, every test under
``fail_after``.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
from helpers import fail_after
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

from chatroom.transport import Transport, TransportBroken, ws_frame


@asynccontextmanager
async def ws_pair(
    max_message_size: int = 2**20,
) -> AsyncIterator[tuple[WebSocketConnection, WebSocketConnection]]:
    """(server side, client side) of one WebSocket connection on localhost."""
    send, receive = trio.open_memory_channel[WebSocketConnection](1)
    done = trio.Event()

    async def handler(request: WebSocketRequest) -> None:
        await send.send(await request.accept())
        await done.wait()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/"
        async with open_websocket_url(url, max_message_size=max_message_size) as client:
            server_ws = await receive.receive()
            yield server_ws, client
        done.set()
        nursery.cancel_scope.cancel()


@fail_after()
async def test_canary_private_attributes_of_trio_websocket() -> None:
    async with ws_pair() as (server_ws, client_ws):
        for ws in (server_ws, client_ws):
            assert isinstance(ws._stream, trio.SocketStream)
            assert isinstance(ws._stream_lock, trio.StrictFIFOLock)
            assert ws._stream.socket.fileno() >= 0
            assert ws.closed is None  # open


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
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
        await transport.write(ws_frame(payload, binary=True))
        await transport.write(ws_frame(b"text \xc3\xa9", binary=False))
        assert await client_ws.get_message() == payload
        assert await client_ws.get_message() == "text é"


@fail_after()
async def test_write_nowait_sends_several_frames_in_one_call() -> None:
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
        data = b"".join(ws_frame(f"m{i}".encode(), binary=False) for i in range(3))
        assert transport.write_nowait(data) == len(data)
        assert [await client_ws.get_message() for _ in range(3)] == ["m0", "m1", "m2"]


@fail_after()
async def test_write_nowait_yields_to_trio_websocket_writing() -> None:
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
        async with server_ws._stream_lock:
            assert transport.write_nowait(ws_frame(b"not now", binary=False)) == 0
        assert transport.write_nowait(ws_frame(b"now", binary=False)) > 0
        assert await client_ws.get_message() == "now"


@fail_after(20)
async def test_a_partial_nowait_write_can_be_finished_by_write() -> None:
    payload = bytes(i % 253 for i in range(16 * 2**20))
    frame = ws_frame(payload, binary=True)
    async with ws_pair(max_message_size=len(payload)) as (server_ws, client_ws):
        transport = Transport(server_ws)
        written = transport.write_nowait(frame)
        assert 0 < written <= len(frame)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.write, frame[written:])
            assert await client_ws.get_message() == payload


@fail_after()
async def test_receive_returns_client_messages() -> None:
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
        await client_ws.send_message("hello")
        await client_ws.send_message(b"\x00\x01")
        assert await transport.receive() == "hello"
        assert await transport.receive() == b"\x00\x01"


@fail_after()
async def test_aclose_sends_the_close_code_and_reason() -> None:
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
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
        with pytest.raises(ConnectionClosed):
            await transport.receive()


@fail_after()
async def test_close_reason_is_cut_to_fit_a_close_frame() -> None:
    async with ws_pair() as (server_ws, client_ws):
        transport = Transport(server_ws)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.aclose, 4000, "x" * 500)
            with pytest.raises(ConnectionClosed) as info:
                await client_ws.get_message()
        closed = info.value.reason
        assert closed is not None
        assert closed.reason is not None
        assert 0 < len(closed.reason.encode()) <= 123
