"""How much CPU a Python load generator spends per received frame.

This is the measurement behind the choice of a C generator (bench/gen.c): the
leanest Python receiver we could write (raw non-blocking sockets, one epoll, one
``recv`` of up to 64 KiB per readable socket, frames split by hand, only the
payload's send time parsed) is driven by a C publisher through a broadcast server,
and its own CPU per delivery is printed. Run::

    python -m bench.pyprobe --port PORT [--subs 1000] [--rate 50] [--secs 5]

against any running peer (``node node_ws_prepared.js PORT``). At ~10 us per delivery
one core saturates near 100k deliveries/s, the rate the servers are expected to
reach, so a Python generator would measure itself rather than the server.
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import time

_HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _frame(payload: bytes) -> bytes:
    """A masked text frame with a zero mask (valid, and the payload stays readable)."""
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(_HANDSHAKE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(4096)
    sock.setblocking(False)
    return sock


def _consume(buf: bytearray) -> int:
    """Parse whole frames off the front of buf; returns how many payloads were seen."""
    seen = 0
    pos = 0
    end = len(buf)
    while end - pos >= 2:
        length = buf[pos + 1] & 0x7F
        head = 2
        if length == 126:
            if end - pos < 4:
                break
            length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
            head = 4
        if end - pos < head + length:
            break
        payload = bytes(buf[pos + head : pos + head + length])
        int(payload.split(b"|", 4)[3])  # the send time, as the real generator would
        seen += 1
        pos += head + length
    del buf[:pos]
    return seen


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--subs", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=50.0, help="messages/s from the publisher")
    ap.add_argument("--secs", type=float, default=5.0)
    args = ap.parse_args(argv)
    subs = [_connect(args.port) for _ in range(args.subs)]
    pub = _connect(args.port)
    ep = select.epoll()
    bufs = {s.fileno(): (s, bytearray()) for s in subs}
    for fd in bufs:
        ep.register(fd, select.EPOLLIN)
    time.sleep(0.5)
    cpu0, t0 = time.process_time(), time.monotonic()
    received = sent = 0
    while (now := time.monotonic()) - t0 < args.secs:
        while sent < (now - t0) * args.rate:
            body = f"1|0|{sent}|{time.monotonic_ns()}|".encode().ljust(100, b"x")
            pub.send(_frame(body))
            sent += 1
        for fd, _ in ep.poll(0.001, 1024):
            sock, buf = bufs[fd]
            buf += sock.recv(65536)
            received += _consume(buf)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    print(
        f"pid={os.getpid()} received={received}/{sent * args.subs} "
        f"deliveries/s={received / wall:.0f} own CPU={cpu / wall * 100:.0f}% "
        f"= {cpu * 1e6 / max(received, 1):.1f} us/delivery"
    )


if __name__ == "__main__":
    main()
