"""The accept loop (chatroom/net/listen.py): a crowd is served in full, running out of
descriptors pauses accepting without losing anyone, and cancelling closes the port."""

from __future__ import annotations

import logging
import os
import resource
import socket
import struct
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
from helpers import fail_after

from chatroom.net import listen
from chatroom.net.listen import RawSocketStream, Stream, accept_all, close_now, fileno_of

CROWD = 200


async def _greet(stream: Stream, remote: str) -> None:
    await stream.send_all(b"hi")


async def _tell_address(stream: Stream, remote: str) -> None:
    await stream.send_all(remote.encode())


async def _listening() -> tuple[trio.socket.SocketType, int]:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock, sock.getsockname()[1]


def _clients(port: int, count: int) -> list[socket.socket]:
    """Connected (the kernel completes the handshake before any accept)."""
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]


async def _greeted(client: socket.socket, size: int = 2) -> bytes:
    """What the server sent, up to ``size`` bytes or its end; then the socket is closed."""
    client.setblocking(False)
    got = b""
    while len(got) < size:
        await trio.lowlevel.wait_readable(client)
        data = client.recv(64)
        if not data:
            break
        got += data
    client.close()
    return got


@contextmanager
def _descriptors(limit: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@fail_after(20)
async def test_a_crowd_waiting_in_the_backlog_is_served_in_full() -> None:
    listener, port = await _listening()
    clients = _clients(port, CROWD)  # all in the backlog before the loop starts
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_all, listener, _greet, nursery)
        for client in clients:
            assert await _greeted(client) == b"hi"
        nursery.cancel_scope.cancel()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port))


def _accept_queue(listener: trio.socket.SocketType) -> int:
    """How many connections wait in ``listener``'s kernel backlog (Linux: TCP_INFO's
    ``tcpi_unacked`` of a listening socket)."""
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(struct.unpack_from("I", info, 24)[0])


@pytest.mark.skipif(sys.platform != "linux", reason="TCP_INFO of a listening socket")
@fail_after(20)
async def test_a_crowd_is_taken_out_of_the_kernel_backlog_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """More connections wait than are started per pass: all of them leave the kernel's
    backlog in the first pass (whose overflow would drop later clients' SYNs), and
    they are started a few per pass, in arrival order."""
    monkeypatch.setattr(listen, "_ACCEPT_BATCH", 2)
    listener, port = await _listening()
    clients = _clients(port, 10)
    names = [f"127.0.0.1:{client.getsockname()[1]}" for client in clients]
    left_in_backlog: list[int] = []
    served: list[str] = []

    async def note(stream: Stream, remote: str) -> None:
        if not served:
            left_in_backlog.append(_accept_queue(watched))
        served.append(remote)
        await stream.send_all(b"hi")

    watched = trio.socket.fromfd(listener.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        assert _accept_queue(watched) == 10
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept_all, listener, note, nursery)
            for client in clients:
                assert await _greeted(client) == b"hi"
            nursery.cancel_scope.cancel()
    finally:
        watched.close()
    assert left_in_backlog == [0]
    # two per pass, in arrival order (trio runs the two of one pass in either order)
    assert [set(served[k : k + 2]) for k in range(0, 10, 2)] == [
        set(names[k : k + 2]) for k in range(0, 10, 2)
    ]


class _Told(logging.Handler):
    """Sets ``told`` at the first record logged."""

    def __init__(self) -> None:
        super().__init__()
        self.told = trio.Event()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.told.set()


@fail_after(20)
async def test_out_of_descriptors_accepting_pauses_and_nobody_is_lost() -> None:
    listener, port = await _listening()
    clients = _clients(port, 5)
    handler = _Told()
    logger = logging.getLogger("chatroom.net.listen")
    logger.addHandler(handler)
    try:
        async with trio.open_nursery() as nursery:
            used = {int(fd) for fd in os.listdir("/proc/self/fd")}
            lowest_free = min(set(range(len(used) + 1)) - used)
            with _descriptors(lowest_free):  # no descriptor left: accept(2) gets EMFILE
                nursery.start_soon(accept_all, listener, _greet, nursery)
                await handler.told.wait()
            assert "accept failed" in handler.messages[0]
            for client in clients:  # served once descriptors are there again
                assert await _greeted(client) == b"hi"
            nursery.cancel_scope.cancel()
    finally:
        logger.removeHandler(handler)


@fail_after(20)
async def test_each_connection_is_served_with_its_client_address() -> None:
    listener, port = await _listening()
    clients = _clients(port, 3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_all, listener, _tell_address, nursery)
        for client in clients:
            host, client_port = client.getsockname()
            expected = f"{host}:{client_port}".encode()
            assert await _greeted(client, len(expected)) == expected
        nursery.cancel_scope.cancel()


@fail_after(20)
async def test_accepted_streams_have_the_options_trio_gives_its_streams() -> None:
    listener, port = await _listening()
    early = _clients(port, 2)  # queued before the accept loop set the listener's options
    streams: list[Stream] = []

    async def keep(stream: Stream, remote: str) -> None:
        streams.append(stream)
        await stream.send_all(b"hi")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_all, listener, keep, nursery)
        for client in early:
            assert await _greeted(client) == b"hi"
        late = _clients(port, 2)
        for client in late:
            assert await _greeted(client) == b"hi"
        nursery.cancel_scope.cancel()
    # The early ones are trio.SocketStreams (they set the options themselves), the
    # later ones only their descriptor (they inherit them from the listener).
    assert [type(stream) for stream in streams] == [trio.SocketStream] * 2 + [RawSocketStream] * 2
    for stream in streams:
        sock = socket.socket(fileno=os.dup(fileno_of(stream)))
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 2**14
        assert not os.get_blocking(fileno_of(stream))
        sock.close()
        close_now(stream)


@fail_after(20)
async def test_a_raw_stream_reads_writes_and_closes_its_descriptor() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    stream = RawSocketStream(a.detach(), (socket.AF_UNIX, socket.SOCK_STREAM, 0))
    fd = stream.fileno()
    b.send(b"ping")
    assert await stream.receive_some(10) == b"ping"  # through a trio.SocketStream made now
    await stream.send_all(b"pong")
    assert b.recv(10) == b"pong"
    await stream.send_eof()
    assert b.recv(10) == b""
    await stream.aclose()
    assert stream.fileno() == -1
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # closed (and nothing reuses it in between)
    with pytest.raises(trio.ClosedResourceError):
        await stream.send_all(b"more")
    b.close()
    # Closed before anything made its socket objects: the descriptor itself is closed.
    c, d = socket.socketpair()
    raw = RawSocketStream(c.detach(), (socket.AF_UNIX, socket.SOCK_STREAM, 0))
    fd = raw.fileno()
    close_now(raw)
    close_now(raw)  # again: nothing
    assert raw.fileno() == -1
    assert d.recv(10) == b""
    with pytest.raises(trio.ClosedResourceError):
        await raw.receive_some(10)
    d.close()
