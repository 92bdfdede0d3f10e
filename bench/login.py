"""Server CPU per login and chatroom join, stage by stage (not a benchmark).

``python -m bench.login [N] --stage join`` runs a server in this process on an
in-memory store; a child process (``--client``) first logs ``pub0`` in and makes it
create a live-stream chatroom, then opens N WebSockets (protobuf codec, ua
``js/4.3.1`` as the bench's viewers) in waves of ``--wave`` at once, as a crowd does:
every socket of a wave connects and sends its handshake, then each its login, then
each its join (``conv add``), the next step once every reply of the wave is in.

``--stage`` stops earlier: ``handshake`` (connect and the 101 only) or ``login``.
The server's CPU time (``time.process_time``: every thread of this process, none of
the client's; the kernel's part, system calls and loopback TCP, given apart) from the
first connection to the last reply, over N, is the cost of one client; the difference
between two stages is that stage's. It prints trio's task steps per client too
(``--where K``: the K awaits they resume from most), counted by a trio instrument
that the server does not run otherwise: it costs ~15 k instructions per client
(``--no-steps`` leaves it out, for the server's own count). ``--profile K`` runs the server
under ``cProfile`` and prints the K functions with the most time of their own
(cProfile slows Python code: the shares, not the figures, are what it tells;
``CALLERS=regex`` adds who called the functions it matches, ``CALLEES=regex`` what
they called; ``PROFILE_OUT=file`` saves the whole profile, for ``pstats``).

CPU time moves with the machine's load (caches, the other core's work): on a shared
machine compare instruction counts, which do not. Under callgrind the server alone
is counted (the client is a child it does not trace), and two sizes cancel start-up::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.login 500 --exit
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.login 1500 --exit

(the difference of the two ``I refs`` over 1000 is one client's instructions; ``--exit``
leaves out closing the connections, which the CPU time does not count either).
"""

from __future__ import annotations

import argparse
import base64
import collections
import cProfile
import os
import pstats
import resource
import socket
import struct
import subprocess
import sys
import time
from typing import Any

import trio

from bench import lc
from bench.idlemem import _Steps
from chatroom.config import Config
from chatroom.net.server import Server
from chatroom.protocol import codec
from chatroom.protocol import messages_pb2 as pb

STAGES = ("handshake", "login", "join")


class _Where(_Steps):
    """Task steps by the await they resume from (the innermost coroutine's function
    and line, outside trio), as ``--where K`` prints them."""

    def __init__(self) -> None:
        super().__init__()
        self.where: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        super().before_task_step(task)
        coro: Any = task.coro
        place = "?"
        while coro is not None and hasattr(coro, "cr_frame"):
            frame = coro.cr_frame
            if frame is not None and "/trio/" not in frame.f_code.co_filename:
                place = f"{frame.f_code.co_qualname}:{frame.f_lineno}"
            coro = coro.cr_await
        self.where[place] += 1


_HEAD = (
    "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    f"Sec-WebSocket-Protocol: {lc.SUBPROTOCOL}\r\n\r\n"
)


def _masked(payload: bytes) -> bytes:
    """A client's binary frame (payloads under 126 bytes, as every frame here is)."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[k % 4] for k, b in enumerate(payload))
    return struct.pack("!BB", 0x82, 0x80 | len(payload)) + mask + body


class _Client:
    """One blocking socket and what it has read but not yet used."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    def head(self) -> None:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        status, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(status.decode(errors="replace"))

    def reply(self, i: int) -> bytes:
        """The payload of the server's reply to request ``i`` (pushes are skipped)."""
        while True:
            while len(self.buf) < 2:
                self._more()
            size, start = self.buf[1] & 0x7F, 2
            if size == 126:
                while len(self.buf) < 4:
                    self._more()
                size, start = struct.unpack("!H", self.buf[2:4])[0], 4
            while len(self.buf) < start + size:
                self._more()
            payload, self.buf = self.buf[start : start + size], self.buf[start + size :]
            cmd = codec.decode(codec.Codec.PROTOBUF, payload)
            if cmd.i == i:
                if cmd.HasField("errorMessage") or cmd.cmd == pb.error:
                    raise ConnectionError(lc.describe(payload))
                return payload


def _opened(port: int, count: int) -> list[_Client]:
    clients = [_Client(port) for _ in range(count)]
    for client in clients:
        key = base64.b64encode(os.urandom(16)).decode()
        client.sock.sendall(_HEAD.format(key=key).encode())
    for client in clients:
        client.head()
    return clients


def _request(clients: list[_Client], frames: list[bytes], i: int) -> list[bytes]:
    """Each client sends its frame (request ``i``); the replies, once all are in."""
    for client, frame in zip(clients, frames, strict=True):
        client.sock.sendall(_masked(frame))
    return [client.reply(i) for client in clients]


def client(port: int, n: int, stage: str, wave: int) -> None:
    """The child process: the room first, then N clients up to ``stage``; "in" when done."""
    (creator,) = _opened(port, 1)
    _request([creator], [lc.login("pub0", 1)], 1)
    (started,) = _request([creator], [lc.start_conversation(["pub0"], 2, transient=True)], 2)
    cid = lc.started_cid(started)
    sys.stdout.write("room\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the server starts counting
    kept = [creator]
    for first in range(0, n, wave):
        peers = [f"crowd{k}" for k in range(first, min(n, first + wave))]
        clients = _opened(port, len(peers))
        if stage != "handshake":
            _request(clients, [lc.login(peer, 1) for peer in peers], 1)
        if stage == "join":
            _request(clients, [lc.join(cid, peer, 2) for peer in peers], 2)
        kept += clients
    sys.stdout.write("in\n")
    sys.stdout.flush()
    sys.stdin.read()


async def _measure(args: argparse.Namespace) -> None:
    server = Server(Config(db=":memory:", host="127.0.0.1", port=0, http_port=0))
    async with trio.open_nursery() as nursery:
        listening = await nursery.start(server.run)
        command = [sys.executable, "-m", "bench.login", "--client", str(listening.ws_port)]
        child = await trio.lowlevel.open_process(
            [*command, str(args.n), "--stage", args.stage, "--wave", str(args.wave)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert child.stdout is not None
        assert child.stdin is not None
        await child.stdout.receive_some(16)  # "room": the chatroom exists
        steps = _Where() if args.where else _Steps()
        counting = not args.no_steps or args.where
        profile = cProfile.Profile(time.process_time) if args.profile else None
        if counting:
            trio.lowlevel.add_instrument(steps)
        cpu_before = time.process_time()
        sys_before = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        if profile is not None:
            profile.enable()
        await child.stdin.send_all(b"go\n")
        got = await child.stdout.receive_some(16)  # "in": every client is in
        if profile is not None:
            profile.disable()
        cpu_used = time.process_time() - cpu_before
        sys_used = resource.getrusage(resource.RUSAGE_SELF).ru_stime - sys_before
        if counting:
            trio.lowlevel.remove_instrument(steps)
        if got != b"in\n":
            raise SystemExit(f"the clients failed (exit {await child.wait()})")
        n = args.n
        counted = (
            f", {steps.steps / n:.1f} task steps, {steps.spawned / n:.1f} tasks spawned"
            if counting
            else ""
        )
        print(
            f"{n} clients to {args.stage}: {cpu_used / n * 1e6:.0f} us of server CPU each "
            f"({sys_used / n * 1e6:.0f} us of it in the kernel){counted}"
        )
        if isinstance(steps, _Where):
            for place, count in steps.where.most_common(args.where):
                print(f"{count / n:6.2f} steps per client resume at {place}")
        if args.exit:
            sys.stdout.flush()
            os._exit(0)  # the client ends when its stdin does
        if profile is not None:
            stats = pstats.Stats(profile).sort_stats("tottime")
            if os.environ.get("PROFILE_OUT"):
                stats.dump_stats(os.environ["PROFILE_OUT"])
            stats.print_stats(args.profile)
            if os.environ.get("CALLERS"):
                stats.print_callers(os.environ["CALLERS"])
            if os.environ.get("CALLEES"):
                stats.print_callees(os.environ["CALLEES"])
        await child.stdin.aclose()
        await child.wait()
        server.shutdown.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--stage", choices=STAGES, default="join")
    parser.add_argument("--wave", type=int, default=500, help="clients at once")
    parser.add_argument("--profile", type=int, default=0, metavar="K")
    parser.add_argument(
        "--exit", action="store_true", help="exit at once after the figures (no teardown)"
    )
    parser.add_argument("--where", type=int, default=0, metavar="K")
    parser.add_argument(
        "--no-steps", action="store_true", help="no task-step count (its instrument costs CPU)"
    )
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        client(args.client, args.n, args.stage, args.wave)
        return
    trio.run(_measure, args)


if __name__ == "__main__":
    main()
