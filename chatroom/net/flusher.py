"""Coalesced writes: connections with queued frames are flushed once per scheduler tick.

Fan-out only appends frames to outboxes and marks their connections dirty; this one
task then writes each dirty connection's frames with one non-blocking system call.
Several messages fanned out in the same tick share that call, and no delivery costs a
task switch (bench.md: a switch per delivery costs Trio more than the system call).
"""

from __future__ import annotations

import math
from typing import Protocol

import trio


class Flushable(Protocol):
    def flush_nowait(self) -> int:
        """Write what is queued; the number of frames handed to the kernel."""


class Flusher:
    """Flushes dirty connections, one system call each per cycle.

    After a cycle that flushed at least ``busy_threshold`` connections, the next one
    starts no earlier than ``write_delay`` seconds later, or later still when the
    cycle took long: as long again as it took, twice as long once its writes carried
    two frames or more each (messages arrive faster than cycles). A busy room then
    gathers the messages of that interval into each write, and writing never takes
    more than half the time (a third under load), while the first message after a
    quiet spell, and a quiet server (a few recipients per message), is written at
    once. With ``busy_threshold`` 0 every cycle waits ``write_delay`` after its first
    mark.
    """

    def __init__(self, write_delay: float = 0.0, busy_threshold: int = 0):
        self._delay = write_delay
        self._threshold = busy_threshold
        self._dirty: list[Flushable] = []
        self._wake = trio.Event()

    def mark(self, conn: Flushable) -> None:
        """Flush ``conn`` soon. The caller marks each connection once per flush."""
        if not self._dirty:
            # The first mark wakes the cycle; later ones join the list it will take.
            self._wake.set()
        self._dirty.append(conn)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        not_before = -math.inf  # end of the last busy cycle plus the delay
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._delay > 0:
                if self._threshold == 0:
                    await trio.sleep(self._delay)
                elif not_before > trio.current_time():
                    await trio.sleep_until(not_before)
            dirty, self._dirty = self._dirty, []
            start = trio.current_time()
            frames = 0
            for conn in dirty:
                frames += conn.flush_nowait()
            if dirty and len(dirty) >= self._threshold:
                end = trio.current_time()
                stretch = min(2.0, max(1.0, frames / len(dirty)))
                not_before = end + max(self._delay, stretch * (end - start))
