"""Cycle collection that does not stall a busy room.

A logged-in connection keeps about ninety objects that CPython's cycle collector
tracks (its task, coroutine frames, cancel scopes, protocol state). The collector's
oldest generation holds all of them, and a full pass, run whenever what was promoted
since the last one exceeds a quarter of it, walks every one: at 5000 viewers that is
a 170 ms stop every few seconds under load, and every message in flight waits.

So long-lived objects are moved out of the collector's sight (``gc.freeze``) every
``freeze_interval`` seconds, which costs nothing (a list splice): the automatic
passes then only walk what is new. The collector's own passes over its oldest
generation are turned off meanwhile: in a flash crowd, thousands of connections are
promoted there within a second, before the next freeze, and a pass over them stops the
server for 70-120 ms (5000 clients logging in at once). What reaches that generation is
frozen at the next round, as before; a cycle among it waits for a full pass, as every
frozen one does. What was frozen is still freed by reference
counting; only reference cycles among frozen objects (mostly closed connections) wait
for an explicit full pass, which runs once ``full_after_closes`` connections have
closed since the last one, or after ``full_interval`` seconds. Its duration is logged.

Memory freed when connections close (their queued frames above all) stays with the
process: CPython hands big blocks to the C allocator, and glibc keeps freed pages in
its heap. Once ``trim_after_closes`` connections have closed, the next round asks
glibc to return them (``malloc_trim(0)``): one call per round at most, off the hot
path, a few milliseconds for a heap of hundreds of megabytes. Connections that never
finished their handshake count too (``unserved_closed``): a burst of them is memory
to return like any other.

Between two rounds a crowd's new connections are walked twice: by a young pass, which
moves them to the middle generation, and by a pass over that one (every tenth young
pass), which moves them on to the oldest; the round's freeze then takes them. In a crowd
of 5000 the middle passes freed nothing (a gc.callbacks probe), yet took as long as
all the young passes. So a middle pass that frees nothing turns them off until the next
round: the freeze takes what they would have walked. A pass that finds garbage leaves
them on; the next round turns them on again, so a cycle that came meanwhile is found
by the next middle pass after it or, once frozen, by a full pass like any other.

Small objects are another matter: CPython's allocator returns a 1 MiB arena to the
system only once every object in it is freed, and the interpreter's free lists (of
tuples, dicts, lists...) keep freed objects for reuse, a few in nearly every arena a
burst of connections touched. Only a collection of the oldest generation empties those
lists; the automatic ones seldom run it, and a full pass waits for ``full_after_closes``.
So the trimming round also runs one (``gc.collect()``) while the long-lived objects are
frozen: it walks only what is new since the last round, a few milliseconds, and lets
the emptied arenas go (measured after 3,000 half-open handshakes had closed, in a
process of 32 MB before them: 66 MB after a plain trim, 41 MB with this collection).
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import time
from collections.abc import Callable

import trio

log = logging.getLogger(__name__)


_TRIM_ROUND = 1.0  # seconds between rounds when nothing is frozen but memory is trimmed
# The oldest generation's threshold while the policy runs: CPython collects it once this
# many collections of the middle one have run, so in practice never (see above).
_NO_AUTOMATIC_FULL = 1 << 30


@functools.cache
def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None with another C library (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class GcPolicy:
    def __init__(
        self,
        freeze_interval: float,
        full_after_closes: int,
        full_interval: float,
        trim_after_closes: int = 0,
    ):
        self._freeze_interval = freeze_interval
        self._full_after_closes = full_after_closes
        self._full_interval = full_interval
        self._trim_after_closes = trim_after_closes
        self._malloc_trim = _glibc_malloc_trim() if trim_after_closes > 0 else None
        self._closes = 0
        self._closes_untrimmed = 0
        self.full_passes = 0
        self.trims = 0
        self.middle_passes_off = 0  # times a middle pass that freed nothing turned them off

    @property
    def enabled(self) -> bool:
        return self._freeze_interval > 0

    def connection_closed(self) -> None:
        """A served connection closed: counts toward a full pass and a trim."""
        self._closes += 1
        self._closes_untrimmed += 1

    def unserved_closed(self) -> None:
        """A connection closed before its handshake completed (refused, abandoned or
        timed out). Its memory is worth returning, so it counts toward a trim; not
        toward a full pass: the transport frees it without the cycle collector."""
        self._closes_untrimmed += 1

    def trim_due(self) -> bool:
        """Whether enough connections closed since the last trim to return memory."""
        return self._malloc_trim is not None and (self._closes_untrimmed >= self._trim_after_closes)

    def trim(self) -> None:
        """Hand the C heap's free pages back to the system (logged)."""
        self._closes_untrimmed = 0
        if self._malloc_trim is None:
            return
        start = time.perf_counter()
        self._malloc_trim(0)
        self.trims += 1
        log.info(
            "returned free memory to the system in %.1f ms", (time.perf_counter() - start) * 1e3
        )

    def due(self, seconds_since_full: float) -> bool:
        """Whether the next round runs a full pass instead of only freezing."""
        return self._closes >= self._full_after_closes or (
            self._full_interval > 0 and seconds_since_full >= self._full_interval
        )

    def full_pass(self) -> None:
        """Collect everything, frozen or not, then freeze the survivors (logged)."""
        start = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        took = time.perf_counter() - start
        self._closes = 0
        self.full_passes += 1
        log.info("full garbage collection: %d unreachable objects in %.1f ms", found, took * 1e3)

    async def run(self) -> None:
        """Freeze (and trim) periodically until cancelled; then hand everything back to
        the collector."""
        await trio.lowlevel.checkpoint()
        if not self.enabled and self._malloc_trim is None:
            return
        last_full = trio.current_time()
        thresholds = gc.get_threshold()
        if self.enabled:
            gc.set_threshold(thresholds[0], thresholds[1], _NO_AUTOMATIC_FULL)
            gc.callbacks.append(self._collected)
        try:
            while True:
                await trio.sleep(self._freeze_interval if self.enabled else _TRIM_ROUND)
                if self.enabled:  # middle passes on again (see ``_collected``)
                    gc.set_threshold(thresholds[0], thresholds[1], _NO_AUTOMATIC_FULL)
                trim = self.trim_due()
                if self.enabled and self.due(trio.current_time() - last_full):
                    self.full_pass()
                    last_full = trio.current_time()
                elif self.enabled:
                    if trim:
                        # Empties the free lists (see above). Before freezing, so that
                        # the garbage made since the last round goes too.
                        gc.collect()
                    gc.freeze()
                if trim:
                    self.trim()
        finally:
            if self._collected in gc.callbacks:
                gc.callbacks.remove(self._collected)
            gc.set_threshold(*thresholds)
            gc.unfreeze()

    def _collected(self, phase: str, info: dict[str, int]) -> None:
        """A gc callback: after a pass over the middle generation that freed nothing,
        no more of them until the next round (see the module's docstring)."""
        if phase == "stop" and info["generation"] == 1 and not info["collected"]:
            self.middle_passes_off += 1
            young = gc.get_threshold()[0]
            gc.set_threshold(young, _NO_AUTOMATIC_FULL, _NO_AUTOMATIC_FULL)
