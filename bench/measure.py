"""One measured step: the generator's counters joined with the server's /proc figures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import cast

from bench.generator import Generator, Json
from bench.procstat import Load, RssSampler, cpu_split
from bench.servers import Running

# A step during which the server or the generator waited for a CPU (taken by another
# process on this shared machine) longer than this share of the time is repeated once,
# then flagged and left out of the saturation search. bench.md's criterion, other
# processes' CPU above 25 % of a core, is reported too (foreign_cpu_pct), but with the
# server and generator pinned and reniced it says little about disturbance: run-queue
# wait measures the disturbance itself.
WAIT_LIMIT_PCT = 10.0
LOSS_LIMIT = 0.001  # saturation: loss <= 0.1 %,
P99_LIMIT_MS = 200.0  # p99 <= 200 ms, and no publisher backpressure (bench.md)
PRIORITY_NAMES = ("high", "normal", "low")


@dataclass
class Latency:
    n: int = 0
    p50: float = -1.0
    p90: float = -1.0
    p99: float = -1.0
    p999: float = -1.0
    max: float = -1.0
    mean: float = -1.0


@dataclass
class Step:
    """Everything measured in one step (rates in messages/s, latencies in ms)."""

    step: int
    rate: float
    subs: int
    pubs: int
    sent: int
    received: int
    expected: int
    lost: int
    loss: float
    deliveries_per_s: float
    latency: Latency
    by_priority: dict[str, dict[str, float]]
    acks: int
    acks_per_s: float
    ack_latency: Latency
    pub_rx: int
    server_cpu_pct: float
    server_us_per_delivery: float
    server_rss_kb: int
    gen_cpu_pct: float
    gen_us_per_delivery: float
    skipped: int
    errors: int
    ack_errors: int
    closed: int
    first_error: str
    drained: bool
    send_s: float
    wall_s: float
    foreign_cpu_pct: float = 0.0
    cpu_wait_pct: float = 0.0
    # the kernel's share of the server's CPU time (system calls, the TCP stack)
    server_kernel_pct: float = -1.0
    cores: list[dict[str, float]] = field(default_factory=list)
    contaminated: bool = False
    passed: bool = False
    notes: list[str] = field(default_factory=list)


def _latency(raw: object) -> Latency:
    d = cast(dict[str, float], raw)
    return Latency(
        n=int(d["n"]),
        p50=d["p50"],
        p90=d["p90"],
        p99=d["p99"],
        p999=d["p999"],
        max=d["max"],
        mean=d["mean"],
    )


def _ints(raw: Json, key: str) -> list[int]:
    return [int(v) for v in cast(list[int], raw[key])]


def from_raw(raw: Json, server_cpu_s: float, rss_kb: int) -> Step:
    sent_by, recv_by = _ints(raw, "sent"), _ints(raw, "received")
    subs, wall = int(cast(int, raw["subs"])), float(cast(float, raw["wall_s"]))
    lat = cast(dict[str, object], raw["lat"])
    sent, received = sum(sent_by), sum(recv_by)
    expected = sent * subs
    lost = max(expected - received, 0)
    span = float(cast(float, raw["span_s"]))
    gen_cpu = float(cast(float, raw["gen_cpu_s"]))
    counted = received + int(cast(int, raw["pub_rx"]))
    by_priority: dict[str, dict[str, float]] = {}
    for k, name in enumerate(PRIORITY_NAMES):
        if sent_by[k]:
            prio_lat = _latency(lat[name])
            by_priority[name] = {
                "sent": sent_by[k],
                "arrived": recv_by[k] / (sent_by[k] * subs) if subs else 0.0,
                "p50": prio_lat.p50,
                "p99": prio_lat.p99,
                "max": prio_lat.max,
            }
    send_s = float(cast(float, raw["send_s"]))
    acks = int(cast(int, raw["acks"]))
    step = Step(
        step=int(cast(int, raw["id"])),
        rate=float(cast(float, raw["rate"])),
        subs=subs,
        pubs=int(cast(int, raw["pubs"])),
        sent=sent,
        received=received,
        expected=expected,
        lost=lost,
        loss=lost / expected if expected else 0.0,
        deliveries_per_s=received / span if span > 0 else 0.0,
        latency=_latency(lat["all"]),
        by_priority=by_priority,
        acks=acks,
        acks_per_s=acks / send_s if send_s > 0 else 0.0,
        ack_latency=_latency(lat["ack"]),
        pub_rx=int(cast(int, raw["pub_rx"])),
        server_cpu_pct=server_cpu_s / wall * 100 if wall > 0 else -1.0,
        server_us_per_delivery=server_cpu_s * 1e6 / counted if counted else -1.0,
        server_rss_kb=rss_kb,
        gen_cpu_pct=gen_cpu / wall * 100 if wall > 0 else -1.0,
        gen_us_per_delivery=gen_cpu * 1e6 / counted if counted else -1.0,
        skipped=int(cast(int, raw["skipped"])),
        errors=int(cast(int, raw["errors"])),
        ack_errors=int(cast(int, raw["ack_errors"])),
        closed=int(cast(int, raw["closed"])),
        first_error=str(raw["first_error"]),
        drained=bool(raw["drained"]),
        send_s=send_s,
        wall_s=wall,
    )
    step.passed = (
        step.expected > 0
        and step.loss <= LOSS_LIMIT
        and 0 <= step.latency.p99 <= P99_LIMIT_MS
        and step.skipped == 0
    )
    return step


def _measure_once(
    gen: Generator,
    server: Running,
    step_id: int,
    rate: float,
    secs: float,
    window: int,
    mix: tuple[int, int],
) -> Step:
    load = Load(server.pid, gen.pid)
    user0, kernel0 = cpu_split(server.pid)
    load.start()
    with RssSampler(server.pid) as rss:
        raw = gen.step(step_id, rate, secs, window=window, mix=mix)
    load.stop()
    user1, kernel1 = cpu_split(server.pid)
    gone = min(user0, user1) < 0
    spent = -1.0 if gone else user1 - user0 + kernel1 - kernel0
    step = from_raw(raw, spent, rss.max_kb)
    if spent > 0:
        step.server_kernel_pct = round((kernel1 - kernel0) / spent * 100, 1)
    step.foreign_cpu_pct = round(load.foreign_pct, 1)
    step.cores = load.cores
    step.cpu_wait_pct = round(load.wait_pct, 1)
    step.contaminated = load.wait_pct > WAIT_LIMIT_PCT
    if not server.alive():
        step.notes.append(f"server exited with code {server.proc.returncode}")
        step.passed = False
    return step


def wait_quiet(gen: Generator, server: Running, max_secs: float = 10.0) -> float:
    """Wait (servicing the sockets) until other processes use less than a core for one
    second; returns the last foreign load seen."""
    deadline = time.monotonic() + max_secs
    while True:
        load = Load(server.pid, gen.pid)
        load.start()
        gen.poll(1.0)
        load.stop()
        if load.foreign_pct < 100 or time.monotonic() > deadline:
            return load.foreign_pct


def measure(
    gen: Generator,
    server: Running,
    step_id: int,
    rate: float,
    secs: float,
    *,
    window: int = 0,
    mix: tuple[int, int] = (0, 100),
) -> Step:
    """Run one step on the generator while watching the server's CPU and RSS and the
    box's other load; a step disturbed by other processes is repeated once, after
    waiting for quiet, and stays flagged ``contaminated`` if disturbed again."""
    step = _measure_once(gen, server, step_id, rate, secs, window, mix)
    if step.contaminated and server.alive():
        first = step.cpu_wait_pct
        wait_quiet(gen, server)
        step = _measure_once(gen, server, step_id, rate, secs, window, mix)
        step.notes.append(f"repeated: waited for a CPU {first:.0f}% of the time")
    return step
