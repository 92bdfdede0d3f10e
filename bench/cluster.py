"""The ``cluster`` scenario: one chatroom's viewers spread over two nodes meeting in
Redis, the publisher on node A, beside the same load on one node, in one run.

    .venv/bin/python -m bench.cluster [--viewers 200] [--seconds 5] [--rate 100] [--rounds 3]
        [--spin] [--pause SECONDS]

It starts a private ``redis-server`` (unix socket) and the servers as processes
(``chatroom serve``; the two nodes share one SQLite file, which only the chatroom's
row is read from), then for each setup measures:

- the latency at a low rate (50 messages/s): p50/p99 from the publisher's send to a
  viewer's receipt, for viewers on node A and on node B (the hop is B minus one node);
  and at 5 messages/s (``quiet_lat_*``), each message written alone at once: the hop
  without a busy room's pauses (the summary gives B minus one node at both rates);
- server CPU (both nodes and Redis) per delivery at a fixed rate (``--rate`` messages/s
  for ``seconds``): the same work for both setups; with each process's context
  switches per message (``rate_switches_per_message``: node A, node B, redis-server;
  each all of them, and the voluntary ones, the wake-ups), and node A's PUBLISHes
  and drains written at once by the publisher's task per message
  (``rate_publishes_per_message``, ``rate_at_once_per_message``: a quiet link, no
  wake-up of its drain); each process's reads and writes per message, bytes per write
  and the kernel's share of its CPU (``rate_calls_per_message``, from /proc/PID/io and
  stat: counts that do not move with the machine's load, but for how many messages a
  busy flusher gathers into one write), and the latency at that rate (``rate_lat_*``);
- the same per message for the fixed-rate step, every process together: user CPU per
  message, writes per message and kernel CPU per write (``rate_user_us_per_message``,
  ``rate_writes_per_message``, ``rate_kernel_us_per_write``);
- saturation: the publisher keeps ``window`` messages unacknowledged for ``seconds``;
  deliveries/s counted by the viewers, server CPU per delivery, and node A's PUBLISHes
  per message (its ``/healthz`` counters); each process's system calls, context
  switches and user CPU per message (``calls_per_message``, ``switches_per_message``,
  ``user_us_per_message_each``), and every
  process's user and kernel CPU per message together (``user_us_per_message``,
  ``kernel_us_per_message``). There a write carries a hundred messages or more, so
  the CPU per message is nearly all per-message work: the publisher's commands, the
  hop's records, and the kernel's copy of each frame to each viewer; the kernel's part
  moves between rounds with the machine, which the two parts given apart show.

The servers (nodes and Redis) run on core 0 and the clients on core 1, so "two nodes"
means two nodes on one core. The setups alternate ``--rounds`` times (one node first in
odd rounds, two nodes first in even ones, so that a drift of the machine cancels out);
the summary gives each round's two nodes / one node ratios and their median.

The clients are the main bench's C load generator (bench/gen.c, one process, epoll):
the publisher (protobuf, on node A; its messages HIGH, so none is shed, with the
payload that carries its send time) and the viewers, which log in as the JS SDK 4.3.1
does (protobuf, its ``ua``), so the servers serve them as they serve real 4.x viewers
(pushes without ``peerId``, read from the room's frame log), one in turn on each node
(gen.c's ``port`` plan line); it counts receipts and their latency for each port. A
Python crowd saturated its core at 1000 viewers and read the fixed-rate messages in
bunches, which moved the ratio from round to round; gen.c reads 1000 viewers at 100
messages/s with most of its core idle. ``--spin`` has gen.c poll without sleeping
during the fixed-rate step, so that a server's write never pays for waking it.

How many messages a viewer's write carries decides most of the CPU per delivery, and
by default it follows each flush's length (``write_max_pause``, ``write_latency``),
which moves with the machine's timing and is not the same for one node with 1000
viewers and two with 500: ``--pause S`` has every node pause exactly S seconds after a
busy flush, so that both setups gather alike and the ratio shows what the cluster
itself costs.
"""

from __future__ import annotations

import argparse
import itertools
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
from typing import Any, cast

from bench import lc
from bench.generator import (
    PUBLISHER,
    VIEWER,
    Conn,
    Connected,
    Generator,
    Json,
    Plan,
    build,
    handshake,
)


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
    def __init__(self, folder: Path, db: str, redis: str | None, pause: float | None) -> None:
        self.port, self.http = _free_port(), _free_port()
        args = [sys.executable, "-m", "chatroom", "serve", "--port", str(self.port)]
        args += ["--http-port", str(self.http), "--db", db, "--log-level", "warning"]
        if redis:
            args += ["--redis", redis]
        env = dict(os.environ)
        if pause is not None:  # every busy flush followed by this pause, no other
            env["CHATROOM_WRITE_DELAY"] = env["CHATROOM_WRITE_MAX_PAUSE"] = str(pause)
        log = (folder / f"node-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
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


# reads, writes, bytes read, bytes written, user and kernel CPU seconds
_IoFigures = tuple[int, int, int, int, float, float]


def _io(pid: int) -> _IoFigures:
    """System calls that read and that wrote, and bytes they read and wrote
    (``/proc/PID/io``: syscr, syscw, rchar, wchar, every thread), then user and system
    CPU seconds of ``pid`` so far."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    counts = tuple(int(fields[k]) for k in ("syscr", "syscw", "rchar", "wchar"))
    return (*counts, int(stat[11]) / tick, int(stat[12]) / tick)  # type: ignore[return-value]


class _Cpu:
    """Server CPU seconds and context switches (nodes and, for a cluster, Redis) since
    it was made."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = [_cpu(pid) for pid in pids]
        self.switched = [_switches(pid) for pid in pids]
        self.io = [_io(pid) for pid in pids]

    def since(self) -> list[_IoFigures]:
        """Each process's ``_io`` figures since it was made."""
        return [
            cast(_IoFigures, tuple(a - b for a, b in zip(_io(pid), start, strict=True)))
            for pid, start in zip(self.pids, self.io, strict=True)
        ]

    def each(self) -> list[float]:
        return [round(_cpu(pid) - s, 2) for pid, s in zip(self.pids, self.start, strict=True)]

    def switches(self) -> list[tuple[int, int]]:
        """Voluntary and other context switches of each process since it was made."""
        now = [_switches(pid) for pid in self.pids]
        return [(a[0] - b[0], a[1] - b[1]) for a, b in zip(now, self.switched, strict=True)]


def _calls(moved: list[_IoFigures], messages: int) -> list[Json]:
    """Each process's system calls per message (``_Cpu.since``): reads and writes
    (``/proc/PID/io``), bytes per write, and the share of its CPU time spent in the
    kernel (a load-dependent figure, for the split only)."""
    return [
        {
            "reads": round(reads / messages, 2),
            "writes": round(writes / messages, 2),
            "bytes_per_write": round(wrote / max(1, writes)),
            "kernel_share": round(system / max(1e-9, user + system), 2),
        }
        for reads, writes, _, wrote, user, system in moved
    ]


@contextmanager
def _recording(pids: list[int], command: str | None) -> Iterator[None]:
    """Runs ``command`` (``--record``: ``{pid}`` and ``{name}`` filled in; ``{name}`` is
    ``one``, or ``A``, ``B`` and ``redis``) for each process while the block runs, then
    interrupts it, e.g. ``perf record -g -p {pid} -o /tmp/{name}.data``; during the
    fixed-rate step, or the saturation step with ``--record-at saturation``."""
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


def _step(gen: Generator, **kwargs: Any) -> Json:
    """One gen.c step of HIGH messages (never shed: every viewer should get each) from
    the publisher on node A; its report."""
    kwargs.setdefault("max_drain", 20.0)
    return gen.step(next(_step_ids), mix=(100, 0), **kwargs)


_step_ids = itertools.count(1)


def _latency(gen: Generator, nodes: list[Node]) -> dict[str, float]:
    """p50/p99 at 50 messages/s, from the publisher's send to each viewer's receipt,
    for the viewers of node A and of node B (one node: both its own); and at 5
    messages/s (``quiet_lat_*``), where every message is written alone, at once: the
    hop by itself, without the pauses of a busy room."""
    quiet = _latencies(_step(gen, rate=5.0, secs=3.0), nodes, "quiet_lat")
    return {**_latencies(_step(gen, rate=50.0, secs=3.0), nodes, "lat"), **quiet}


def _latencies(report: Json, nodes: list[Node], label: str) -> dict[str, float]:
    """A step's p50/p99 for the viewers of node A and of node B (one node: both)."""
    by_port = {int(cast(int, p["port"])): p for p in cast(list[Json], report["by_port"])}
    out: dict[str, float] = {}
    for name, idx in (("A", 0), ("B", 1)):
        lat = cast(Json, by_port[nodes[idx % len(nodes)].port]["lat"])
        out[f"{label}_{name}_p50_ms"] = float(cast(float, lat["p50"]))
        out[f"{label}_{name}_p99_ms"] = float(cast(float, lat["p99"]))
    return out


def _received(report: Json) -> int:
    return sum(cast(list[int], report["received"]))


def _steady(
    gen: Generator,
    nodes: list[Node],
    pids: list[int],
    rate: float,
    seconds: float,
    record: str | None = None,
) -> dict[str, object]:
    """Server CPU per delivery at a fixed rate, the same work for both setups, and
    the latency at that rate (``rate_lat_*``: messages gathered into fewer writes wait
    longer)."""
    with _recording(pids, record):
        cpu = _Cpu(pids)
        report = _step(gen, rate=rate, secs=seconds)
        each = cpu.each()
        switched = cpu.switches()
        sent = max(1, sum(cast(list[int], report["sent"])))
        moved = cpu.since()
    user, kernel = sum(m[4] for m in moved), sum(m[5] for m in moved)
    writes = sum(m[1] for m in moved)
    deliveries = _received(report)
    return {
        "rate_msgs_per_s": rate,
        "rate_deliveries": deliveries,
        "rate_expected": sent * int(cast(int, report["subs"])),
        "rate_cpu_us_per_delivery": round(1e6 * sum(each) / max(1, deliveries), 4),
        "rate_cpu_s_per_process": each,  # node A[, node B, redis-server]
        # context switches per message, in the same order: voluntary + not, voluntary
        "rate_switches_per_message": [
            (round((v + n) / sent, 2), round(v / sent, 2)) for v, n in switched
        ],
        # system calls per message, bytes per write, kernel's share of CPU: same order
        "rate_calls_per_message": _calls(moved, sent),
        # every process together (per message and per write move apart: docs/cluster.md)
        "rate_user_us_per_message": round(1e6 * user / sent, 1),
        "rate_kernel_us_per_write": round(1e6 * kernel / max(1, writes), 2),
        "rate_writes_per_message": round(writes / sent, 1),
        **_latencies(report, nodes, "rate_lat"),
    }


def _saturate(
    gen: Generator, nodes: list[Node], pids: list[int], seconds: float, window: int
) -> dict[str, object]:
    """Deliveries/s and server CPU per delivery with ``window`` messages unacknowledged."""
    cpu = _Cpu(pids)
    stats0 = nodes[0].cluster()
    report = _step(gen, rate=0.0, secs=seconds, window=window)
    each = cpu.each()
    moved = cpu.since()
    switched = cpu.switches()
    messages = sum(cast(list[int], report["sent"]))
    deliveries = _received(report)
    out: dict[str, object] = {
        # as at the fixed rate; then every process's user and kernel CPU per message
        # together (where the setups part: the kernel's share moves with the machine)
        "calls_per_message": _calls(moved, max(1, messages)),
        "switches_per_message": [
            (round((v + n) / max(1, messages), 3), round(v / max(1, messages), 3))
            for v, n in switched
        ],
        "user_us_per_message_each": [round(1e6 * m[4] / max(1, messages), 1) for m in moved],
        "user_us_per_message": round(1e6 * sum(m[4] for m in moved) / max(1, messages), 1),
        "kernel_us_per_message": round(1e6 * sum(m[5] for m in moved) / max(1, messages), 1),
        "messages": messages,
        "deliveries": deliveries,
        "expected": messages * int(cast(int, report["subs"])),
        "deliveries_per_s": round(deliveries / max(1e-9, float(cast(float, report["span_s"])))),
        "server_cpu_us_per_delivery": round(1e6 * sum(each) / max(1, deliveries), 4),
        "cpu_s_per_process": each,  # node A[, node B, redis-server]
    }
    stats1 = nodes[0].cluster()
    if stats1:
        pubs = int(stats1["publishes"]) - int(stats0["publishes"])
        out["publishes_per_message"] = round(pubs / max(1, messages), 3)
    return out


def _connect(gen: Generator, conns: list[Conn], port: int, what: str) -> Connected:
    plan = Plan("lc", handshake("/", lc.SUBPROTOCOL), conns, port=port)
    done = gen.connect(plan)
    if done.failed:
        raise RuntimeError(f"{done.failed} of {done.count} {what} failed: {done.first_error}")
    return done


def _open_room(gen: Generator, nodes: list[Node], viewers: int, publishers: int = 1) -> None:
    """The publisher logs in on node A and creates the chatroom; the viewers log in as
    the JS SDK 4.3.1 does and join it, one in turn on each node. More publishers
    (``--publishers``) join it too, one in turn on each node from node B on; gen.c sends
    from each in turn."""
    start = lc.start_conversation(["pub"], 2, transient=True)
    creator = Conn(PUBLISHER, [(lc.login("pub", 1), 1), (start, 2)])
    cid = lc.started_cid(gen.reply(_connect(gen, [creator], nodes[0].port, "publisher").first))
    for n in range(1, publishers):
        joiner = Conn(PUBLISHER, [(lc.login(f"pub{n}", 1), 1), (lc.join(cid, f"pub{n}", 2), 2)])
        _connect(gen, [joiner], nodes[n % len(nodes)].port, "publisher")
    for k, node in enumerate(nodes):
        crowd = [
            Conn(VIEWER, [(lc.login(f"v{n}", 1), 1), (lc.join(cid, f"v{n}", 2), 2)])
            for n in range(k, viewers, len(nodes))
        ]
        _connect(gen, crowd, node.port, "viewers")
    gen.size(100)
    for prio in (1, 2, 3):
        prefix, suffix = lc.direct_template(cid, 100, prio, transient=True)
        gen.template(prio, prefix, suffix, ack_tail=True)


def _measure(
    nodes: list[Node], viewers: int, args: argparse.Namespace, redis_pid: int, binary: Path
) -> dict[str, object]:
    gen = Generator(binary, nodes[0].port, binary.parent)
    try:
        _open_room(gen, nodes, viewers, args.publishers)
        gen.poll(2.5)  # presence settles (heartbeat), subscriptions made
        pids = [n.proc.pid for n in nodes] + ([redis_pid] if len(nodes) > 1 else [])
        out: dict[str, object] = dict(_latency(gen, nodes))
        # where each process runs, read back: the servers (nodes, Redis), then the clients
        out["cores"] = [sorted(os.sched_getaffinity(pid)) for pid in [*pids, gen.pid]]
        stats0 = nodes[0].cluster()
        gen.spin(args.spin)
        at_rate = args.record if args.record_at == "rate" else None
        out.update(_steady(gen, nodes, pids, args.rate, args.seconds, at_rate))
        gen.spin(False)
        stats1 = nodes[0].cluster()
        if stats1:  # node A's PUBLISHes, and drains written at once (a quiet link)
            for key in ("publishes", "at_once"):
                count = int(stats1.get(key, 0)) - int(stats0.get(key, 0))
                out[f"rate_{key}_per_message"] = round(count / (args.rate * args.seconds), 2)
        at_saturation = args.record if args.record_at == "saturation" else None
        with _recording(pids, at_saturation):
            out.update(_saturate(gen, nodes, pids, args.seconds, args.window))
    finally:
        gen.close()
    return out


# The cores this bench may use, read before it pins itself to one of them
_CORES = len(os.sched_getaffinity(0))


def _pin(pid: int, core: int) -> None:
    """Servers on core 0, the bench's own clients on core 1, when there are two."""
    if _CORES >= 2:
        os.sched_setaffinity(pid, {core})


def _summary(rounds: list[dict[str, dict[str, object]]]) -> None:
    """Each round's two nodes / one node ratios, then their medians."""
    figures = {
        "server CPU per delivery at saturation": "server_cpu_us_per_delivery",
        "  its user CPU per message (saturation)": "user_us_per_message",
        "  its kernel CPU per message (saturation)": "kernel_us_per_message",
        "server CPU per delivery at the fixed rate": "rate_cpu_us_per_delivery",
        "  its user CPU per message": "rate_user_us_per_message",
        "  its writes per message": "rate_writes_per_message",
        "  its kernel CPU per write": "rate_kernel_us_per_write",
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
    for rate, prefix in (("5", "quiet_lat"), ("50", "lat")):
        for q in ("p50", "p99"):
            hops = []
            for r in rounds:
                one, two = r["one node"], r["two nodes"]
                hops.append(
                    float(cast(float, two[f"{prefix}_B_{q}_ms"]))
                    - float(cast(float, one[f"{prefix}_A_{q}_ms"]))
                )
            shown = ", ".join(f"{x:+.2f}" for x in hops)
            label = f"node B minus one node, {q} at {rate} messages/s, ms"
            print(f"{label}: median {statistics.median(hops):+.2f} ({shown})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--rate", type=float, default=100.0, help="messages/s, fixed-rate step")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--publishers",
        type=int,
        default=1,
        help="publishers in the room, one in turn on each node (the first on node A); "
        "the fixed rate is shared among them",
    )
    parser.add_argument(
        "--spin",
        action="store_true",
        help="the clients' process (gen.c) polls without sleeping during the fixed-rate step",
    )
    parser.add_argument(
        "--pause",
        type=float,
        metavar="SECONDS",
        help="every node pauses exactly this long after a busy flush (write_delay and "
        "write_max_pause both): both setups gather alike, whatever their flushes take",
    )
    parser.add_argument(
        "--record",
        metavar="COMMAND",
        help="run for each server during the fixed-rate step ({pid}, {name} filled in)",
    )
    parser.add_argument(
        "--record-at",
        choices=("rate", "saturation"),
        default="rate",
        help="the step --record runs during (default: the fixed-rate step)",
    )
    args = parser.parse_args(argv)
    rounds: list[dict[str, dict[str, object]]] = []
    _pin(os.getpid(), 1)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        binary = build(folder)
        with redis_server(folder) as (url, redis_pid):
            _pin(redis_pid, 0)
            for r in range(args.rounds):
                results: dict[str, dict[str, object]] = {}
                setups = ["one node", "two nodes"]
                for setup in setups if r % 2 == 0 else setups[::-1]:  # drift cancels out
                    db = str(folder / f"{setup.replace(' ', '-')}-{r}.db")
                    nodes = [Node(folder, db, url if setup == "two nodes" else None, args.pause)]
                    if setup == "two nodes":
                        nodes.append(Node(folder, db, url, args.pause))
                    try:
                        for node in nodes:
                            _pin(node.proc.pid, 0)
                        results[setup] = _measure(nodes, args.viewers, args, redis_pid, binary)
                    finally:
                        for node in nodes:
                            node.stop()
                    print(f"round {r + 1}", setup, json.dumps(results[setup]), flush=True)
                rounds.append(results)
    _summary(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
