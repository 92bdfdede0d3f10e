"""``python -m bench.halfopen``: the server's RSS around a burst of half-open handshakes.

Starts ``chatroom serve`` (in-memory store), opens ``--connections`` TCP connections
that each send the first part of a WebSocket upgrade request and never finish it,
then closes them all and watches the server's RSS for ``--after`` seconds. Prints the
RSS before the burst, at its peak (all connections open) and after.

RSS returning near the baseline is the point: each half-open connection's memory must
be freed when it closes and handed back to the system, not kept until a full
collection.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time

from bench.procstat import rss_kb

# A browser-like upgrade request without the blank line that ends it.
_HEAD = (
    b"GET /?subprotocol=lc.json.3 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: lc.json.3\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/120.0 Safari/537.36\r\nAccept-Language: en-US,en;q=0.9\r\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _open(port: int, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(_HEAD)
        socks.append(s)
    return socks


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.halfopen", description=__doc__)
    ap.add_argument("--connections", type=int, default=3000)
    ap.add_argument("--after", type=float, default=60.0, help="seconds watched after closing")
    ap.add_argument("--rounds", type=int, default=1, help="bursts, one after the other")
    args = ap.parse_args()
    port = _free_port()
    env = dict(os.environ, CHATROOM_HANDSHAKE_TIMEOUT="120")  # the client closes first
    command = [sys.executable, "-m", "chatroom", "serve", "--db", ":memory:"]
    command += ["--port", str(port), "--http-port", "0", "--log-level", "warning"]
    server = subprocess.Popen(command, env=env)
    try:
        _wait_listening(port, time.monotonic() + 30)
        time.sleep(3)
        print(f"baseline {rss_kb(server.pid) / 1024:.1f} MB", flush=True)
        for round_ in range(args.rounds):
            socks = _open(port, args.connections)
            time.sleep(2)  # the server reads what each one sent
            print(f"round {round_ + 1}: peak {rss_kb(server.pid) / 1024:.1f} MB", flush=True)
            for s in socks:
                s.close()
            start = time.monotonic()
            for mark in (1.0, 5.0, 15.0, args.after):
                time.sleep(max(0.0, start + mark - time.monotonic()))
                print(f"  {mark:g} s after closing: {rss_kb(server.pid) / 1024:.1f} MB", flush=True)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
