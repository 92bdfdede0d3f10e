"""A CPU-time sampler inside a Python process under a bench (``bench/cpusample.py``).

With this folder on ``PYTHONPATH`` and ``CHATROOM_CPU_SAMPLES`` naming a folder, a Python
process starts sampling on SIGUSR1: each 0.5 ms of its CPU time (``ITIMER_PROF``, user
and system) the handler records the Python stack the signal lands on. SIGUSR2 stops it
and writes the stacks, collapsed (``frame;frame;... count`` per line), to
``<folder>/<pid>.txt``.

Unlike a wall-clock sampler (py-spy), it counts no time the process spends waiting or
preempted by another process on its core. A signal is handled between two bytecodes,
and one that expires during a system call (or during the kernel's side of a wake-up)
waits for it: that time is counted to the line after it, and expiries that pile up
count once, so time in the kernel is under-counted against Python's.
"""

from __future__ import annotations

import collections
import os
import signal
from types import FrameType

_INTERVAL = 0.0005  # seconds of CPU time between samples


def _install(folder: str) -> None:
    counts: collections.Counter[str] = collections.Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        stack = []
        while frame is not None:
            code = frame.f_code
            stack.append(f"{code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})")
            frame = frame.f_back
        counts[";".join(reversed(stack))] += 1

    def start(signum: int, frame: FrameType | None) -> None:
        counts.clear()
        signal.signal(signal.SIGPROF, sample)
        signal.setitimer(signal.ITIMER_PROF, _INTERVAL, _INTERVAL)

    def stop(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        path = os.path.join(folder, f"{os.getpid()}.txt")
        with open(path, "w", encoding="utf-8") as out:
            out.writelines(f"{stack} {n}\n" for stack, n in counts.items())

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if os.environ.get("CHATROOM_CPU_SAMPLES"):
    _install(os.environ["CHATROOM_CPU_SAMPLES"])
