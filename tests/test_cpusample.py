"""bench/cpusample.py and its sampler: a real Python process sampled by its CPU time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUSY = """
import time
def spin():
    x = 0
    for i in range(200_000):
        x += i
    return x
def rest():
    time.sleep(0.01)
print("ready", flush=True)
while True:
    spin()
    rest()
"""


def _wait_for(path: Path, deadline: float = 10.0) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        assert time.monotonic() < end, f"no {path}"
        time.sleep(0.05)


def test_a_process_is_sampled_by_its_cpu_time_not_its_sleep(tmp_path: Path) -> None:
    env = {**os.environ, "CHATROOM_CPU_SAMPLES": str(tmp_path)}
    env["PYTHONPATH"] = str(ROOT / "bench" / "cpusampler")
    proc = subprocess.Popen([sys.executable, "-c", BUSY], env=env, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        os.kill(proc.pid, signal.SIGUSR1)
        time.sleep(0.5)
        os.kill(proc.pid, signal.SIGUSR2)
        samples = tmp_path / f"{proc.pid}.txt"
        _wait_for(samples)
    finally:
        proc.kill()
        proc.wait()
    own: dict[str, int] = {}
    for line in samples.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        name = stack.split(";")[-1].split(" (")[0]
        own[name] = own.get(name, 0) + int(count)
    # its sleep costs no CPU time: (nearly) no samples
    assert own.get("spin", 0) > 10 * max(1, own.get("rest", 0))
    top = subprocess.run(
        [sys.executable, "-m", "bench.cpusample", "top", str(samples), "--shown", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "spin (<string>:" in top.stdout
