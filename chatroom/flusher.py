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
    """Flushes dirty connections, one system call each per cycle.

    ``write_delay`` (seconds) is waited before a cycle when the previous one flushed
    at least ``busy_threshold`` connections: a busy room then gathers several messages
    into each write, while a quiet server (a few recipients per message) writes at once.
    With ``busy_threshold`` 0 every cycle waits.
    """

    def __init__(self, write_delay: float = 0.0, busy_threshold: int = 0):
        self._delay = write_delay
        self._threshold = busy_threshold
        self._dirty: list[Flushable] = []
        self._wake = trio.Event()

    def mark(self, conn: Flushable) -> None:
        """Flush ``conn`` soon. The caller marks each connection once per flush."""
        self._dirty.append(conn)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        busy = self._threshold == 0
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if busy and self._delay > 0:
                await trio.sleep(self._delay)
            dirty, self._dirty = self._dirty, []
            for conn in dirty:
                conn.flush_nowait()
            busy = len(dirty) >= self._threshold
