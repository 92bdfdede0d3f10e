"""Python heap per idle logged-in viewer, by ``tracemalloc`` (not a benchmark).

``python -m bench.idlemem [N]`` runs a server in this process on an in-memory store,
then a child process opens N WebSockets (protobuf codec), logs each in and leaves
it idle. The heap traced after ``gc.collect()`` with the N viewers in, less the heap
before them, over N, is what one viewer costs; ``--top K`` prints the K lines of
code that allocated most of it. It also counts trio's task steps (reschedules) and
tasks spawned per viewer while they connect and log in; ``--cpu`` (without tracemalloc,
which slows every allocation) the server's CPU time per login instead. The clients are another
process, so nothing of theirs is counted here.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import subprocess
import sys
import time
import tracemalloc

import trio

from chatroom.config import Config
from chatroom.net.server import Server

_CLIENT = r"""
import base64, os, socket, struct, sys
from bench import lc
port, n = int(sys.argv[1]), int(sys.argv[2])
head = ("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: " + lc.SUBPROTOCOL + "\r\n\r\n")
def frame(payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
    return struct.pack("!BB", 0x82, 0x80 | len(payload)) + mask + body
socks = []
for k in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall((head % base64.b64encode(os.urandom(16)).decode()).encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(4096)
    s.sendall(frame(lc.login("idle%d" % k, 1)))
    if len(got.split(b"\r\n\r\n", 1)[1]) == 0:
        s.recv(4096)
    socks.append(s)
sys.stdout.write("in\n"); sys.stdout.flush()
sys.stdin.read()
"""


class _Steps(trio.abc.Instrument):
    """Counts task steps (each a reschedule) and tasks spawned."""

    def __init__(self) -> None:
        self.steps = 0
        self.spawned = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.spawned += 1


def _heap() -> int:
    gc.collect()
    return sum(stat.size for stat in tracemalloc.take_snapshot().statistics("filename"))


async def _measure(n: int, top: int, depth: int, cpu: bool) -> None:
    config = Config(db=":memory:", host="127.0.0.1", port=0, http_port=0)
    server = Server(config)
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(server.run)
        if not cpu:
            tracemalloc.start(depth)
        await trio.sleep(0.5)
        before_snap = tracemalloc.take_snapshot() if not cpu else None
        before = _heap() if not cpu else 0
        cpu_before = time.process_time()
        steps = _Steps()
        trio.lowlevel.add_instrument(steps)
        child = await trio.lowlevel.open_process(
            [sys.executable, "-c", _CLIENT, str(listening.ws_port), str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout is not None
        assert child.stdin is not None
        await child.stdout.receive_some(16)  # "in": all are logged in
        cpu_used = time.process_time() - cpu_before
        trio.lowlevel.remove_instrument(steps)
        await trio.sleep(1.0)
        if cpu:
            print(f"{n} viewers: {cpu_used / n * 1e6:.0f} us of server CPU per login")
        else:
            heap = (_heap() - before) / n
            print(f"{n} viewers: {heap:.0f} B of Python heap each")
        print(f"per login: {steps.steps / n:.1f} task steps, {steps.spawned / n:.1f} tasks spawned")
        if top and before_snap is not None:
            key = "traceback" if depth > 1 else "lineno"
            diff = tracemalloc.take_snapshot().compare_to(before_snap, key)
            for stat in diff[:top]:
                each, blocks = stat.size_diff / n, stat.count_diff / n
                where = "\n    ".join(stat.traceback.format()) if depth > 1 else stat.traceback
                print(f"{each:8.0f} B {blocks:6.2f} blocks  {where}")
        await child.stdin.aclose()
        await child.wait()
        server.shutdown.set()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1000)
    parser.add_argument("--top", type=int, default=0)
    parser.add_argument("--depth", type=int, default=1, help="frames per allocation kept")
    parser.add_argument(
        "--cpu", action="store_true", help="no tracemalloc: server CPU time per login instead"
    )
    args = parser.parse_args()
    socket.setdefaulttimeout(None)
    trio.run(_measure, args.n, args.top, args.depth, args.cpu)


if __name__ == "__main__":
    main()
