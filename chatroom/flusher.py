"""Coalesced writes: connections with queued frames are flushed once per scheduler tick.

Fan-out only appends frames to outboxes and marks their connections dirty; this one
task then writes each dirty connection's frames with one non-blocking system call.
Several messages fanned out in the same tick share that call, and no delivery costs a
task switch (bench.md: a switch per delivery costs Trio more than the system call).
"""

from __future__ import annotations

from typing import Protocol

import trio


class Flushable(Protocol):
    def flush_nowait(self) -> None: ...


class Flusher:
    def __init__(self, write_delay: float = 0.0):
        self._delay = write_delay
        self._dirty: list[Flushable] = []
        self._wake = trio.Event()

    def mark(self, conn: Flushable) -> None:
        """Flush ``conn`` soon. The caller marks each connection once per flush."""
        self._dirty.append(conn)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._delay > 0:
                await trio.sleep(self._delay)
            dirty, self._dirty = self._dirty, []
            for conn in dirty:
                conn.flush_nowait()
