"""Reading a process's CPU time and memory from /proc (Linux only)."""

from __future__ import annotations

import contextlib
import os
import threading
from types import TracebackType

_TICK = os.sysconf("SC_CLK_TCK")


# How the server and the generator are scheduled, both alike, each pinned to its core:
#   "normal"   nice 0, as servers run in production (the default);
#   "nice"     nice -10 when allowed;
#   "realtime" SCHED_RR priority 1 when allowed (else nice -10): a noise-study option.
#              The kernel's RT throttling still leaves 5 % of each core to everything
#              else. Measured with both cores busy with other people's tests: at nice
#              -10 the server's event loop still waited for its core 10-30 % of the
#              time and p99 doubled; under SCHED_RR it waited < 1 %. It hides how a
#              server behaves when it shares its machine, so it is not the default.
BOOST_NICE = -10
SCHEDULING = {"mode": "normal"}
SCHEDULING_LABELS = {
    "normal": "normal priority (nice 0)",
    "nice": f"nice {BOOST_NICE}",
    "realtime": "SCHED_RR priority 1 (realtime: a noise-study option, not how servers run)",
}


def pin_and_schedule(core: int) -> None:
    """For a child before exec: run on one core only, scheduled as ``SCHEDULING`` says."""
    os.sched_setaffinity(0, {core})
    mode = SCHEDULING["mode"]
    if mode == "realtime":
        try:
            os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
            return
        except PermissionError:
            pass
    # normal: nice 0 even if the harness itself was started niced (when allowed)
    with contextlib.suppress(PermissionError):
        os.setpriority(os.PRIO_PROCESS, 0, 0 if mode == "normal" else BOOST_NICE)


def scheduling_of(pid: int) -> str:
    try:
        policy = os.sched_getscheduler(pid)
        return (
            "SCHED_RR" if policy == os.SCHED_RR else f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"
        )
    except OSError:
        return "unknown"


def cpu_split(pid: int) -> tuple[float, float]:
    """utime and stime of the whole process (all its threads), in seconds: its own
    code and the kernel's work for it (system calls, the TCP stack); -1s if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return -1.0, -1.0
    fields = raw[raw.rindex(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process, in seconds; -1 if gone."""
    user, kernel = cpu_split(pid)
    return user + kernel if user >= 0 else -1.0


def run_queue_wait_s(pid: int) -> float:
    """Time the process's main thread (the event loop) spent runnable but waiting for
    a CPU (schedstat). Other threads are left out: their waits are mostly for the
    main thread, on the same pinned core."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kb(pid: int) -> int:
    """Resident set size in KiB; -1 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread; keeps the maximum."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.max_kb = rss_kb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.max_kb = max(self.max_kb, rss_kb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.max_kb = max(self.max_kb, rss_kb(self.pid))


def core_jiffies() -> list[tuple[int, int, int]]:
    """Per core, from /proc/stat: (busy without softirq, softirq, total) in ticks."""
    out: list[tuple[int, int, int]] = []
    with open("/proc/stat", "rb") as f:
        for line in f:
            if not line.startswith(b"cpu") or line.startswith(b"cpu "):
                continue
            v = [int(x) for x in line.split()[1:9]]
            user, nice, system, _idle, _iowait, irq, softirq, _steal = v
            out.append((user + nice + system + irq, softirq, sum(v)))
    return out


class Load:
    """CPU used on the box between start() and stop(): per core, and by processes other
    than the ones named (the server, the generator, this harness), in % of one core;
    and how long the named processes waited for a CPU (% of the wall time, the worst)."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.cores: list[dict[str, float]] = []
        self.foreign_pct = 0.0
        self.wait_pct = 0.0

    def _ours(self) -> float:
        return sum(max(cpu_seconds(p), 0.0) for p in self.pids) + sum(os.times()[:2])

    def start(self) -> None:
        self._j0, self._ours0, self._t0 = core_jiffies(), self._ours(), os.times().elapsed
        self._waits0 = [run_queue_wait_s(p) for p in self.pids]

    def stop(self) -> None:
        j1, ours1, wall = core_jiffies(), self._ours(), os.times().elapsed - self._t0
        busy = 0.0
        self.cores = []
        for (b0, s0, t0), (b1, s1, t1) in zip(self._j0, j1, strict=False):
            total = max(t1 - t0, 1)
            busy += (b1 - b0) / _TICK
            self.cores.append(
                {
                    "busy_pct": round((b1 - b0 + s1 - s0) * 100 / total),
                    "softirq_pct": round((s1 - s0) * 100 / total),
                }
            )
        waits = [run_queue_wait_s(p) - w for p, w in zip(self.pids, self._waits0, strict=True)]
        self.wait_pct = max(waits, default=0.0) / wall * 100 if wall > 0 else 0.0
        foreign = busy - (ours1 - self._ours0)
        self.foreign_pct = max(foreign / wall * 100, 0.0) if wall > 0 else 0.0
