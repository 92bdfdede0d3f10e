"""Coalesced writes: connections with queued frames are flushed once per scheduler tick.

Fan-out only appends frames to outboxes and marks their connections dirty; this one
task then writes each dirty connection's frames with one non-blocking system call.
Several messages fanned out in the same tick share that call, and no delivery costs a
task switch (bench.md: a switch per delivery costs Trio more than the system call).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

# A read that ``release`` fans out in the last quarter of a pause is written at once
SLACK = 0.25


def _no_cpu() -> float:
    """The CPU clock of a flusher that is no cluster node's: its cycles never scale."""
    return 0.0


class Flushable(Protocol):
    def flush_nowait(self) -> int:
        """Write what is queued; the number of frames handed to the kernel."""


class Flusher:
    """Flushes dirty connections, one system call each per cycle.

    After a cycle that flushed at least ``busy_threshold`` connections, the next one
    starts no earlier than ``write_delay`` seconds later, or later still when the
    cycle took long: as long again as its writes took, twice as long once they carried
    two frames or more each (messages arrive faster than cycles), but never more than
    ``max_pause``. A busy room then gathers the messages of that interval into each
    write, and writing never takes more than half the time (a third under load), while
    the first message after a quiet spell, and a quiet server (a few recipients per
    message), is written at once. With ``busy_threshold`` 0 every cycle waits
    ``write_delay`` after its first mark.

    The pause is bounded by ``latency`` too: a message that comes just after the cycle
    wrote a connection waits for the rest of that cycle, the pause and the next cycle
    up to that connection, so the pause is cut to ``latency`` minus two cycles (never
    below ``write_delay``). In a room of thousands, whose cycles are long, messages then
    share writes because they come during a cycle, not because the flusher waits; a
    smaller room's short cycles keep the longer pause and its savings.

    A cycle writes ``slice_size`` sockets at a time (0: all at once) and lets the
    other tasks run between slices: a message read meanwhile is queued in time for the
    connections the cycle has not reached yet, instead of waiting behind a sweep of
    every socket of a big room. A connection already written is marked again and
    written by the next cycle; each connection's frames stay in order either way.

    A task that fans out what it read in one go (node B's Redis reader) may ``hold``
    the flusher meanwhile: on ``release``, when the flusher's task is idle and the next
    cycle would start at once (no ``write_delay`` due), the caller runs that cycle
    itself, its first slice at least (the rest is left to the flusher's task), and
    the flusher's task is not woken: no task switch and no scheduler pass between
    reading a message and writing it. Otherwise the flusher's task wakes as usual.
    A release in the last quarter (``SLACK``) of a pause counts as one after it: the
    node that sent those messages paces as this node does, a little out of step with
    it; the read is written then, not a whole pause behind that node's viewers. A
    *prompt* release is written at once wherever the pause is, even when the task
    waits it out with other connections marked (they go along): what it brings was
    held by the sending node until its own flush (net/redis_link.py), so it comes
    once per cycle of the room's already, and a node that waited for its own pause
    as well would keep its viewers (and the sender's, who read it back from Redis)
    a pause behind. One that comes during a cycle has the next start at once.

    A cluster node writes only its own share of a chatroom's viewers, so its cycles are
    shorter than one node's with all of them, and by the rules above it would pause
    less and gather fewer messages per write: two nodes would write each viewer more
    often than one node. A room's writer therefore tells the flusher how many sockets
    the other nodes write for the same messages (``wrote``'s ``elsewhere``: the room's
    viewers there, from the cluster's presence), and the pause follows what one node
    writing the whole room would do: the cycle's time is taken as long as those
    sockets would make it, and the next cycle waits for the rest of that longer cycle
    and its pause, the pause within the same bounds (``write_delay``, ``max_pause``)
    and the whole wait within ``latency`` minus two of this node's own cycles. A room
    on one node alone pauses as before. The longer cycle is scaled from the cycle's
    CPU time (``cpu_clock``), not its wall time: nodes that share a core write
    meanwhile, and a cycle's wall time then holds their writes already; it is taken
    as the longer cycle when it is longer still.
    """

    def __init__(
        self,
        write_delay: float = 0.0,
        busy_threshold: int = 0,
        *,
        max_pause: float = math.inf,
        slice_size: int = 0,
        latency: float = math.inf,
    ):
        self._delay = write_delay
        self._threshold = busy_threshold
        self._max_pause = max(max_pause, write_delay)
        self._latency = latency
        self.slice_size = slice_size
        self._dirty: list[Flushable] = []
        self._cycle: list[Flushable] | None = None  # what the cycle under way writes
        self._wake = trio.Event()
        self._more_sockets = 0  # sockets written beyond one per flushed item this cycle
        self._elsewhere = 0.0  # sockets other nodes write for the rooms of this cycle
        self._not_before = -math.inf  # end of the last busy cycle plus the pause
        self._soon = -math.inf  # the same, less ``SLACK`` of the pause (``release``)
        self._parked = False  # the flusher's task waits for a mark
        self._hurry = False  # a prompt release came during a cycle: no pause after it
        # While the flusher's task waits out a pause (``_not_before``): that wait
        self._nap: trio.CancelScope | None = None
        self._held = False  # marks do not wake the task until ``release``
        self._deferred = False  # a mark found nothing dirty while held: the wake is owed
        # frames, sockets, seconds, sockets elsewhere and CPU seconds of a cycle begun
        # by ``release``
        self._carried = (0, 0, 0.0, 0.0, 0.0)
        # This thread's CPU seconds, read only on a cluster node (``pace``; a test's
        # fake writes set their own)
        self.cpu_clock: Callable[[], float] = _no_cpu
        # A room's viewers on other nodes for each of this node's (net/roomwriter.py);
        # a cluster node sets it (``pace``).
        self.elsewhere: Callable[[Any], float] | None = None

    def pace(self, elsewhere: Callable[[Any], float]) -> None:
        """A cluster node's flusher: ``elsewhere`` gives a room's viewers on the other
        nodes (chatroom/hub/delivery.py ``RoomLogs.elsewhere``), and its cycles are
        timed in this thread's CPU seconds too, to scale them to one node's."""
        self.elsewhere = elsewhere
        self.cpu_clock = time.thread_time

    @property
    def due(self) -> float:
        """When the next cycle may start: after a busy one, its end plus the pause;
        -inf when a mark would be written at once."""
        return self._not_before if self._delay > 0 and self._threshold > 0 else -math.inf

    def wrote(self, sockets: int, elsewhere: float = 0.0) -> None:
        """A flushed item wrote ``sockets`` sockets (a room's followers: net/roomwriter.py),
        and other nodes write ``elsewhere`` more for the same frames (its viewers there)."""
        self._more_sockets += sockets - 1
        self._elsewhere += elsewhere

    def mark(self, conn: Flushable) -> None:
        """Flush ``conn`` soon. The caller marks each connection once per flush."""
        if not self._dirty:
            # The first mark wakes the cycle; later ones join the list it will take.
            if self._held:
                self._deferred = True
            else:
                self._wake.set()
        self._dirty.append(conn)

    def hold(self) -> None:
        """Marks from now on wait for ``release`` (one holder at a time)."""
        self._held = True

    def release(self, prompt: bool = False) -> None:
        """What was marked since ``hold``: written now, in the caller's task, when the
        flusher's task is idle and would write at once, or when ``prompt`` and the task
        is idle or waits out a pause (with what is marked already); else the task wakes
        (and after a cycle under way, when ``prompt``, starts the next at once)."""
        self._held = False
        deferred, self._deferred = self._deferred, False
        if not (deferred or (prompt and self._dirty)):
            return
        at_once = self._delay <= 0 or (self._threshold > 0 and self._soon <= trio.current_time())
        if (self._parked and (prompt or at_once)) or (prompt and self._nap is not None):
            self._sweep()
            if self._carried[1] and self._nap is not None:
                self._nap.cancel()  # the rest of that cycle: now, by the task
        elif prompt:
            self._hurry = True
        if self._dirty:
            self._wake.set()

    def again(self, conn: Flushable) -> None:
        """Flush ``conn`` once more in this cycle, after the others' turn: a room whose
        followers are more than a slice (net/roomwriter.py). Outside a cycle: ``mark``."""
        if self._cycle is None:
            self.mark(conn)
        else:
            self._cycle.append(conn)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._parked = True
            try:
                await self._wake.wait()
            finally:
                self._parked = False
            self._wake = trio.Event()
            if self._delay > 0 and not self._carried[1]:  # (the rest of a cycle: at once)
                if self._threshold == 0:
                    await trio.sleep(self._delay)
                else:
                    # (a prompt release may sweep meanwhile, and move the pause's end on)
                    try:
                        while (
                            self._not_before > trio.current_time()
                            and not self._carried[1]
                            and not self._hurry
                        ):
                            with trio.move_on_at(self._not_before) as self._nap:
                                await trio.sleep_forever()
                    finally:
                        self._nap = None
            self._hurry = False
            self._ended(*await self._cycle_once())

    def _ended(self, frames: int, sockets: int, spent: float, elsewhere: float, cpu: float) -> None:
        """A cycle wrote ``frames`` to ``sockets`` in ``spent`` seconds (``cpu`` of them
        this thread's), and other nodes ``elsewhere`` sockets more for its rooms: the
        pause after a busy one. One node with all the viewers would take their CPU
        time (``cpu`` scaled), or longer: this cycle's wall time may hold the other
        nodes' writes already, when they share its core."""
        if sockets and sockets + elsewhere >= self._threshold:
            whole = max(spent, cpu * (sockets + elsewhere) / sockets) if elsewhere else spent
            wait = self._pause(frames / sockets, spent, whole)
            # A cycle swept before its time (``SLACK``, a prompt release) ends as if it
            # began on time: the rest of its pause is kept, and the cycles keep their
            # cadence.
            end = max(trio.current_time(), self._not_before + spent)
            self._not_before = end + wait
            self._soon = end + (1 - SLACK) * wait

    def _pause(self, frames_per_socket: float, spent: float, whole: float) -> float:
        """Seconds from the end of a busy cycle to the next, after ``spent`` seconds of
        writes carrying ``frames_per_socket`` frames each; ``whole``: what the cycle
        would have taken on one node with its rooms' viewers on other nodes too, whose
        end and pause the next cycle waits for (``spent`` on one node alone).
        ``write_delay`` and ``max_pause`` bound the pause, not the wait for that end:
        with the same bounds, a room's cycles start at the same rate whichever nodes
        its viewers are on."""
        stretch = min(2.0, max(1.0, frames_per_socket))
        pause = max(self._delay, min(self._max_pause, stretch * whole))  # after ``whole``
        return max(self._delay, min(whole - spent + pause, self._latency - 2 * spent))

    async def _cycle_once(self) -> tuple[int, int, float, float, float]:
        """Write what is dirty, a slice at a time; frames and sockets written, the
        seconds spent writing (the other tasks' turns left out), and the sockets other
        nodes write for the same rooms, and its CPU seconds. A cycle within one
        slice does not checkpoint: ``run`` has just waited for its wake-up."""
        self._cycle = dirty = self._dirty
        self._dirty = []
        self._more_sockets = 0
        step = self.slice_size or math.inf
        # the part ``release`` wrote
        frames, more, spent, self._elsewhere, cpu = self._carried
        self._carried = (0, 0, 0.0, 0.0, 0.0)
        done = 0
        next_turn = step  # the others run once this many sockets are written
        start, cpu_start = trio.current_time(), self.cpu_clock()
        try:
            while done < len(dirty):
                frames += dirty[done].flush_nowait()
                done += 1
                if done + self._more_sockets >= next_turn and done < len(dirty):
                    spent += trio.current_time() - start
                    cpu += self.cpu_clock() - cpu_start
                    await trio.lowlevel.checkpoint()
                    start, cpu_start = trio.current_time(), self.cpu_clock()
                    next_turn = done + self._more_sockets + step
        finally:
            self._cycle = None
        spent += trio.current_time() - start
        cpu += self.cpu_clock() - cpu_start
        sockets = more + done + self._more_sockets
        return frames, sockets, spent, self._elsewhere, cpu  # noqa: ASYNC910

    def _sweep(self) -> None:
        """``release``'s cycle: its first slice in the caller's task; the rest, when
        there is more, left first in line for the flusher's task."""
        self._cycle = dirty = self._dirty
        self._dirty = []
        self._more_sockets = 0
        self._elsewhere = 0.0
        step = self.slice_size or math.inf
        frames = done = 0
        start, cpu_start = trio.current_time(), self.cpu_clock()
        try:
            while done < len(dirty) and done + self._more_sockets < step:
                frames += dirty[done].flush_nowait()
                done += 1
        finally:
            self._cycle = None
        sockets, spent = done + self._more_sockets, trio.current_time() - start
        cpu = self.cpu_clock() - cpu_start
        if done < len(dirty):  # marked during the sweep: after the rest of this cycle
            self._dirty[:0] = dirty[done:]
            self._carried = (frames, sockets, spent, self._elsewhere, cpu)
        else:
            self._ended(frames, sockets, spent, self._elsewhere, cpu)
