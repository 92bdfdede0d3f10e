"""The ``cluster`` scenario: one chatroom's viewers spread over two nodes meeting in
Redis, the publisher on node A, beside the same load on one node, in one run.

    .venv/bin/python -m bench.cluster [--viewers 200] [--seconds 5] [--rate 100] [--rounds 3]

It starts a private ``redis-server`` (unix socket) and the servers as processes
(``chatroom serve``; the two nodes share one SQLite file, which only the chatroom's
row is read from), then for each setup measures:

- the latency at a low rate (50 messages/s): p50/p99 from the publisher's send to a
  viewer's receipt, for viewers on node A and on node B (the hop is B minus one node);
- server CPU (both nodes and Redis) per delivery at a fixed rate (``--rate`` messages/s
  for ``seconds``): the same work for both setups; with each process's context
  switches per message (``rate_switches_per_message``: node A, node B, redis-server;
  each all of them, and the voluntary ones, the wake-ups), and node A's PUBLISHes
  and drains written at once by the publisher's task per message
  (``rate_publishes_per_message``, ``rate_at_once_per_message``: a quiet link, no
  wake-up of its drain);
- saturation: the publisher keeps ``window`` messages unacknowledged for ``seconds``;
  deliveries/s counted by the viewers, server CPU per delivery, and node A's PUBLISHes
  per message (its ``/healthz`` counters).

The servers (nodes and Redis) run on core 0 and this process on core 1, so "two nodes"
means two nodes on one core. The setups alternate ``--rounds`` times (one node first in
odd rounds, two nodes first in even ones, so that a drift of the machine cancels out);
the summary gives each round's two nodes / one node ratios and their median, since
one round's figures move by a quarter or more on a shared machine.

The viewers are raw sockets that log in as the JS SDK 4.3.1 does (protobuf, its
``ua``), so the servers serve them as they serve real 4.x viewers (pushes without
``peerId``, read from the room's frame log); they count frames without decoding
them, unless asked for latency. On a small
machine the viewers' own reading is the limit of the saturation step, so its figures
are relative (one node against two in the same run).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from bench import lc
from chatroom.protocol import codec

SUBPROTOCOL = "lc.json.3"  # the publisher's: a flat JSON socket


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, deadline: float = 15.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    def __init__(self, folder: Path, db: str, redis: str | None) -> None:
        self.port, self.http = _free_port(), _free_port()
        args = [sys.executable, "-m", "chatroom", "serve", "--port", str(self.port)]
        args += ["--http-port", str(self.http), "--db", db, "--log-level", "warning"]
        if redis:
            args += ["--redis", redis]
        log = (folder / f"node-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _wait_port(self.port)
        _wait_port(self.http)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def cluster(self) -> dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=5) as r:
            stats = json.loads(r.read())
        return dict(stats.get("cluster", {}))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@contextmanager
def redis_server(folder: Path) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench.cluster needs redis-server (Debian package redis-server)")
    sock = folder / "redis.sock"
    args = [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(folder)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not sock.exists():
            time.sleep(0.01)
        yield f"unix://{sock}", proc.pid
    finally:
        proc.kill()
        proc.wait()


class Viewer:
    """A raw WebSocket that logs in, joins the chatroom, then counts frames (and, when
    asked, decodes them for the latency the message text carries)."""

    def __init__(self, port: int, peer: str) -> None:
        self.port, self.peer = port, peer
        self.frames = 0
        self.latencies: list[float] = []
        self.decode = False
        self.joined = trio.Event()
        self.last_rx = 0.0

    async def run(self, cid: str) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(
            (
                f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {lc.SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some()
        buf = buf.split(b"\r\n\r\n", 1)[1]
        for frame in (lc.login(self.peer, 1), lc.join(cid, self.peer, 2)):
            await stream.send_all(_masked(frame))
        while True:
            for payload in _frames(buf_holder := [buf]):
                self._seen(payload)
            buf = buf_holder[0]
            chunk = await stream.receive_some(1 << 18)
            if not chunk:
                return
            buf += chunk

    def _seen(self, payload: bytes) -> None:
        if not self.joined.is_set():
            if codec.decode(codec.Codec.PROTOBUF, payload).i == 2:
                self.joined.set()
            return
        self.frames += 1
        self.last_rx = time.monotonic()
        if self.decode:
            cmd = codec.decode(codec.Codec.PROTOBUF, payload)
            if cmd.HasField("directMessage"):
                self.latencies.append(time.monotonic() - float(cmd.directMessage.msg))


def _received(crowd: list[Viewer], before: list[int]) -> int:
    return sum(v.frames - b for v, b in zip(crowd, before, strict=True))


def _masked(payload: bytes) -> bytes:
    """A client's binary frame (a protobuf command)."""
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([0x82, 0x80 | size]) if size < 126 else bytes([0x82, 0xFE]) + size.to_bytes(2)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _frames(holder: list[bytes]) -> Iterator[bytes]:
    buf, at = holder[0], 0
    while len(buf) - at >= 2:
        size = buf[at + 1] & 0x7F
        head = 2
        if size == 126:
            if len(buf) - at < 4:
                break
            size, head = int.from_bytes(buf[at + 2 : at + 4]), 4
        elif size == 127:
            if len(buf) - at < 10:
                break
            size, head = int.from_bytes(buf[at + 2 : at + 10]), 10
        if len(buf) - at < head + size:
            break
        yield buf[at + head : at + head + size]
        at += head + size
    holder[0] = buf[at:]


async def _open_room(ws: WebSocketConnection) -> str:
    """Log the publisher in and create the chatroom; its cid."""
    login = {"cmd": "session", "op": "open", "appId": "b", "peerId": "pub", "i": 1}
    start = {"cmd": "conv", "op": "start", "transient": True, "attr": {"name": "live"}, "i": 2}
    for cmd in (login, start):
        await ws.send_message(orjson.dumps(cmd).decode())
    while True:
        reply = orjson.loads(await ws.get_message())
        if reply.get("i") == 2:
            return str(reply["cid"])


class _Publisher:
    """The publisher's socket: sends chatroom messages (HIGH, so that none is shed and
    every viewer should get each), counts its acks."""

    def __init__(self, ws: WebSocketConnection, cid: str) -> None:
        self.ws, self.cid = ws, cid
        self.sent = 0

    async def send(self) -> None:
        cmd = {
            "cmd": "direct",
            "cid": self.cid,
            "msg": repr(time.monotonic()),
            "transient": True,
            "priority": 1,  # HIGH: never shed, so every message reaches every viewer
            "i": 10 + self.sent,
        }
        await self.ws.send_message(orjson.dumps(cmd).decode())
        self.sent += 1


def _switches(pid: int) -> tuple[int, int]:
    """Context switches of ``pid``'s main thread (the event loop) so far: voluntary
    (it waited) and not (preempted, which depends on the machine's load too)."""
    counts = [0, 0]
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            counts[0] = int(line.split()[1])
        elif line.startswith("nonvoluntary_ctxt_switches:"):
            counts[1] = int(line.split()[1])
    return counts[0], counts[1]


class _Cpu:
    """Server CPU seconds and context switches (nodes and, for a cluster, Redis) since
    it was made."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = [_cpu(pid) for pid in pids]
        self.switched = [_switches(pid) for pid in pids]

    def each(self) -> list[float]:
        return [round(_cpu(pid) - s, 2) for pid, s in zip(self.pids, self.start, strict=True)]

    def switches(self) -> list[tuple[int, int]]:
        """Voluntary and other context switches of each process since it was made."""
        now = [_switches(pid) for pid in self.pids]
        return [(a[0] - b[0], a[1] - b[1]) for a, b in zip(now, self.switched, strict=True)]


async def _delivered(crowd: list[Viewer], before: list[int], expected: int) -> int:
    with trio.move_on_after(20):  # the last deliveries arrive
        while _received(crowd, before) < expected:  # noqa: ASYNC110 - counters only
            await trio.sleep(0.05)
    return _received(crowd, before)


async def _latency(pub: _Publisher, crowd: list[Viewer], nodes: list[Node]) -> dict[str, float]:
    """p50/p99 at 50 messages/s, from a few viewers on each node."""
    out: dict[str, float] = {}
    probes = crowd[:4]
    for viewer in probes:
        viewer.decode = True
    for _ in range(150):
        await pub.send()
        await trio.sleep(0.02)
    await trio.sleep(0.5)
    for viewer in probes:
        viewer.decode = False
    for name, idx in (("A", 0), ("B", 1)):
        lat = sorted(
            x for v in probes if v.port == nodes[idx % len(nodes)].port for x in v.latencies
        )
        if lat:
            out[f"lat_{name}_p50_ms"] = round(1000 * lat[len(lat) // 2], 3)
            out[f"lat_{name}_p99_ms"] = round(1000 * lat[int(len(lat) * 0.99)], 3)
    return out


@contextmanager
def _recording(pids: list[int], command: str | None) -> Iterator[None]:
    """Runs ``command`` (``--record``: ``{pid}`` and ``{name}`` filled in; ``{name}`` is
    ``one``, or ``A``, ``B`` and ``redis``) for each process while the block runs, then
    interrupts it, e.g. ``perf record -g -p {pid} -o /tmp/{name}.data``."""
    if command is None:
        yield
        return
    names = ["A", "B", "redis"] if len(pids) > 1 else ["one"]
    procs = [
        subprocess.Popen(
            shlex.split(command.format(pid=pid, name=name)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, name in zip(pids, names, strict=False)
    ]
    time.sleep(0.5)
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(2)
        for proc in procs:
            proc.wait(30)


async def _spin() -> None:
    """Keeps this process's event loop from ever sleeping (``--spin``): epoll is then
    polled, never waited on, and a server's write to a viewer never pays for waking
    this process on the other core, a cost set by the viewers' timing (and, over a real
    network, paid on their machine, not the server's)."""
    while True:
        await trio.lowlevel.checkpoint()


async def _steady(
    pub: _Publisher,
    crowd: list[Viewer],
    pids: list[int],
    rate: float,
    seconds: float,
    record: str | None = None,
    spin: bool = False,
) -> dict[str, object]:
    """Server CPU per delivery at a fixed rate, the same work for both setups."""
    with _recording(pids, record):
        before = [v.frames for v in crowd]
        cpu = _Cpu(pids)
        sent0 = pub.sent
        async with trio.open_nursery() as nursery:
            if spin:
                nursery.start_soon(_spin)
            t0 = trio.current_time()
            for k in range(round(rate * seconds)):
                await trio.sleep_until(t0 + k / rate)
                await pub.send()
            deliveries = await _delivered(crowd, before, (pub.sent - sent0) * len(crowd))
            each = cpu.each()
            switched = cpu.switches()
            nursery.cancel_scope.cancel()
    sent = max(1, pub.sent - sent0)
    return {
        "rate_msgs_per_s": rate,
        "rate_deliveries": deliveries,
        "rate_cpu_us_per_delivery": round(1e6 * sum(each) / max(1, deliveries), 2),
        "rate_cpu_s_per_process": each,  # node A[, node B, redis-server]
        # context switches per message, in the same order: voluntary + not, voluntary
        "rate_switches_per_message": [
            (round((v + n) / sent, 2), round(v / sent, 2)) for v, n in switched
        ],
    }


async def _saturate(
    pub: _Publisher,
    crowd: list[Viewer],
    nodes: list[Node],
    pids: list[int],
    seconds: float,
    window: int,
) -> dict[str, object]:
    """Deliveries/s and server CPU per delivery with ``window`` messages unacknowledged."""
    before = [v.frames for v in crowd]
    cpu = _Cpu(pids)
    stats0 = nodes[0].cluster()
    sent0 = pub.sent
    t0 = time.monotonic()
    inflight = 0
    while time.monotonic() - t0 < seconds:
        while inflight < window:
            await pub.send()
            inflight += 1
        reply = await pub.ws.get_message()
        if '"ack"' in reply:
            inflight -= 1
    messages = pub.sent - sent0
    deliveries = await _delivered(crowd, before, messages * len(crowd))
    span = max(v.last_rx for v in crowd) - t0
    each = cpu.each()
    out: dict[str, object] = {
        "messages": messages,
        "deliveries": deliveries,
        "expected": messages * len(crowd),
        "deliveries_per_s": round(deliveries / span),
        "server_cpu_us_per_delivery": round(1e6 * sum(each) / max(1, deliveries), 2),
        "cpu_s_per_process": each,  # node A[, node B, redis-server]
    }
    stats1 = nodes[0].cluster()
    if stats1:
        pubs = int(stats1["publishes"]) - int(stats0["publishes"])
        out["publishes_per_message"] = round(pubs / max(1, messages), 3)
    return out


async def _measure(
    nodes: list[Node], viewers: int, args: argparse.Namespace, redis_pid: int
) -> dict[str, object]:
    async with (
        open_websocket_url(nodes[0].url, subprotocols=[SUBPROTOCOL]) as ws,
        trio.open_nursery() as nursery,
    ):
        cid = await _open_room(ws)
        crowd = [Viewer(nodes[k % len(nodes)].port, f"v{k}") for k in range(viewers)]
        for viewer in crowd:
            nursery.start_soon(viewer.run, cid)
        for viewer in crowd:
            await viewer.joined.wait()
        await trio.sleep(2.5)  # presence settles (heartbeat), subscriptions made
        pub = _Publisher(ws, cid)
        pids = [n.proc.pid for n in nodes] + ([redis_pid] if len(nodes) > 1 else [])
        out: dict[str, object] = dict(await _latency(pub, crowd, nodes))
        stats0 = nodes[0].cluster()
        out.update(await _steady(pub, crowd, pids, args.rate, args.seconds, args.record, args.spin))
        stats1 = nodes[0].cluster()
        if stats1:  # node A's PUBLISHes, and drains written at once (a quiet link)
            for key in ("publishes", "at_once"):
                count = int(stats1.get(key, 0)) - int(stats0.get(key, 0))
                out[f"rate_{key}_per_message"] = round(count / (args.rate * args.seconds), 2)
        out.update(await _saturate(pub, crowd, nodes, pids, args.seconds, args.window))
        nursery.cancel_scope.cancel()
    return out


def _pin(pid: int, core: int) -> None:
    """Servers on core 0, the bench's own clients on core 1, when there are two."""
    if len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, {core})


def _summary(rounds: list[dict[str, dict[str, object]]]) -> None:
    """Each round's two nodes / one node ratios, then their medians."""
    figures = {
        "server CPU per delivery at saturation": "server_cpu_us_per_delivery",
        "server CPU per delivery at the fixed rate": "rate_cpu_us_per_delivery",
        "saturation deliveries/s": "deliveries_per_s",
    }
    for label, key in figures.items():
        ratios = []
        for r in rounds:
            one, two = r["one node"][key], r["two nodes"][key]
            assert isinstance(one, int | float)
            assert isinstance(two, int | float)
            ratios.append(two / max(one, 1e-9))
        shown = ", ".join(f"{x:.2f}" for x in ratios)
        print(f"two nodes / one node, {label}: median {statistics.median(ratios):.2f} ({shown})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s, fixed-rate step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--spin",
        action="store_true",
        help="the viewers' process polls without sleeping during the fixed-rate step",
    )
    parser.add_argument(
        "--record",
        metavar="COMMAND",
        help="run for each server during the fixed-rate step ({pid}, {name} filled in)",
    )
    args = parser.parse_args(argv)
    rounds: list[dict[str, dict[str, object]]] = []
    _pin(os.getpid(), 1)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        with redis_server(folder) as (url, redis_pid):
            _pin(redis_pid, 0)
            for r in range(args.rounds):
                results: dict[str, dict[str, object]] = {}
                setups = ["one node", "two nodes"]
                for setup in setups if r % 2 == 0 else setups[::-1]:  # drift cancels out
                    db = str(folder / f"{setup.replace(' ', '-')}-{r}.db")
                    nodes = [Node(folder, db, url if setup == "two nodes" else None)]
                    if setup == "two nodes":
                        nodes.append(Node(folder, db, url))
                    try:
                        for node in nodes:
                            _pin(node.proc.pid, 0)
                        results[setup] = trio.run(_measure, nodes, args.viewers, args, redis_pid)
                    finally:
                        for node in nodes:
                            node.stop()
                    print(f"round {r + 1}", setup, json.dumps(results[setup]), flush=True)
                rounds.append(results)
    _summary(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
