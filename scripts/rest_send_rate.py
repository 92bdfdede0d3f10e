#!/usr/bin/env python3
"""Requests per second of ``POST /1.2/rtm/conversations/{cid}/messages`` (a REST send,
answered after its commit), at 1 and 16 concurrent keep-alive HTTP connections.

Starts ``chatroom serve`` on a fresh SQLite file in a temporary directory (private ports,
stopped by its PID), makes one conversation, then each connection sends messages one at
a time for ``--seconds``; prints one line per concurrency. The client is a minimal
HTTP/1.1 keep-alive client on Trio sockets, so that it costs little beside the server.

    .venv/bin/python scripts/rest_send_rate.py [--seconds 5] [--concurrency 1,16]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import trio

MASTER = "rate-master"
_LISTENING = re.compile(r"and http://(\S+):(\d+)")


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, stream: trio.SocketStream, host: str) -> None:
        self.stream = stream
        self.host = host
        self.buffer = b""

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"X-LC-Key: {MASTER},master\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        await self.stream.send_all(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await self._more()
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status = int(header.split(b" ", 2)[1])
        length = int(re.search(rb"(?i)content-length: (\d+)", header).group(1))  # type: ignore[union-attr]
        while len(self.buffer) < length:
            self.buffer += await self._more()
        reply, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, reply

    async def _more(self) -> bytes:
        chunk = await self.stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk


async def measure(host: str, port: int, concurrency: int, seconds: float) -> float:
    async def connect() -> Connection:
        return Connection(await trio.open_tcp_stream(host, port), f"{host}:{port}")

    setup = await connect()
    status, made = await setup.post(
        "/1.2/rtm/conversations", json.dumps({"m": ["alice", "bob"]}).encode()
    )
    assert status == 201, made
    path = f"/1.2/rtm/conversations/{json.loads(made)['objectId']}/messages"
    body = json.dumps({"from_client": "alice", "message": "x" * 64}).encode()
    counts = [0] * concurrency
    deadline = trio.current_time() + seconds

    async def sender(n: int) -> None:
        connection = await connect()
        while trio.current_time() < deadline:
            try:
                status, reply = await connection.post(path, body)
            except ConnectionError:  # hypercorn ends a connection after 1000 requests
                connection = await connect()
                continue
            assert status == 200, reply
            counts[n] += 1

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in range(concurrency):
            nursery.start_soon(sender, n)
    return sum(counts) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "chatroom", "serve", "--host", "127.0.0.1", "--port", "0"]
        cmd += ["--http-port", "0", "--db", str(Path(tmp) / "rate.db")]
        env = {**os.environ, "CHATROOM_MASTER_KEY": MASTER}
        server = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        try:
            assert server.stderr is not None
            for line in server.stderr:
                match = _LISTENING.search(line)
                if match:
                    host, port = match.group(1), int(match.group(2))
                    break
            else:
                raise SystemExit("the server did not start")
            # Keep reading its log, so that a full pipe never stalls it.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                rate = trio.run(measure, host, port, concurrency, args.seconds)
                print(
                    f"REST send, ack after commit: {concurrency:>3} connections: {rate:8.0f} req/s"
                )
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(15)


if __name__ == "__main__":
    main()
