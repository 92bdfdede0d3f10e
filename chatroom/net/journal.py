"""Write-behind of the state that outlives a process: session tokens, used nonces, the
conversation event log, pending receipts and wills (``Store.save_lasting``).

The memory structures stay in front and answer every request; this journal collects
their changes and one task writes whatever has collected in one transaction, then the
next batch (group commit, without anyone waiting for it). A login is therefore never
slower for being remembered, and a burst of re-logins after a restart costs one
transaction per batch rather than per login. The price: a crash (not a shutdown, which
writes everything first) forgets the last few milliseconds of changes; their clients log
in again as they do today without a token.

Bounded: beyond ``backlog`` pending changes new records are dropped and counted until the
store catches up; not deletions, which undo something stored, nor changes of a key
already pending, which add nothing (dropped, the older change would be stored instead).
A batch the store fails to write is lost, but for its revocations of tokens and
deletions of wills: they stay pending (and ``revoked`` true) and go with the next batch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from chatroom.core.clock import Clock, SystemClock
from chatroom.core.model import (
    ConvEventRecord,
    LastingChanges,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.store.base import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LastingStatistics:
    written: int = 0  # changes stored
    batches: int = 0
    dropped: int = 0  # not recorded: the backlog was full
    failed: int = 0  # lost to a store error (deletions of tokens and wills are kept)
    purged: int = 0  # expired rows deleted


class Lasting:
    """The journal: record changes without awaiting; ``run`` stores them."""

    def __init__(self, store: Store, backlog: int, clock: Clock | None = None) -> None:
        self._store = store
        self._clock = clock if clock is not None else SystemClock()  # what has expired
        self._backlog = backlog
        self._pending = LastingChanges()
        self._size = 0  # len(self._pending), counted as changes come: not summed each time
        self._writing = LastingChanges()  # the batch being stored right now
        self._wake = trio.Event()
        self._closed = False
        self.stats = LastingStatistics()

    # recording: never awaits

    def session(self, token: str, record: SessionRecord | None) -> None:
        """Save (or with None, revoke) a session token."""
        if self._admit(record, token in self._pending.sessions):
            self._pending.sessions[token] = record

    def nonce(self, nonce: str, expires_ms: int) -> None:
        """A signature nonce was used; it stays used until ``expires_ms``."""
        if self._admit(nonce, nonce in self._pending.nonces):
            self._pending.nonces.setdefault(nonce, expires_ms)

    def conv_event(self, record: ConvEventRecord) -> None:
        if self._admit(record, False):
            self._pending.conv_events.append(record)

    def receipt(self, cid: str, mid: str, record: PendingReceipt | None) -> None:
        """A message now waits for its receipt (or with None, no longer does)."""
        if self._admit(record, (cid, mid) in self._pending.receipts):
            self._pending.receipts[cid, mid] = record

    def will(self, peer_id: str, record: WillRecord | None) -> None:
        """The user's will is now ``record`` (None: they have none)."""
        if self._admit(record, peer_id in self._pending.wills):
            self._pending.wills[peer_id] = record

    def revoked(self, token: str) -> bool:
        """Whether a revocation of ``token`` is not yet stored: the store may still
        hold the token, and must not be believed."""
        return any(
            token in changes.sessions and changes.sessions[token] is None
            for changes in (self._pending, self._writing)
        )

    def _admit(self, value: object, replacing: bool) -> bool:
        """Whether to record ``value`` (``replacing``: a change of its key is pending)."""
        if not replacing:
            if value is not None and self._size >= self._backlog:
                if self.stats.dropped == 0:
                    log.warning("the store is behind: new lasting state is no longer recorded")
                self.stats.dropped += 1
                return False
            self._size += 1
        self._wake.set()
        return True

    # storing

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Store batches until ``close`` has been called and nothing is pending."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            if self._size:
                await self._flush()
            elif self._closed:
                return

    async def _flush(self) -> None:
        self._writing, self._pending = self._pending, LastingChanges()
        self._size = 0
        last_try = self._closed
        kept = 0
        try:
            # Shielded: a shutdown must not leave half of the last batch unwritten.
            with trio.CancelScope(shield=True):
                await self._store.save_lasting(self._writing)
        except Exception:
            log.exception("storing %d lasting changes failed", len(self._writing))
            if not last_try:
                kept = _keep_deletions(self._writing, self._pending)
                self._size = len(self._pending)
            self.stats.failed += len(self._writing) - kept
        else:
            self.stats.written += len(self._writing)
            self.stats.batches += 1
        self._writing = LastingChanges()
        if not kept:
            self._wake.set()  # look again: more may have come, or close() meanwhile
        # else the kept deletions go with whatever wakes run next (a change, or close()),
        # rather than again at once to a store that just failed.
        await trio.lowlevel.checkpoint()  # the shielded write above was not one

    def close(self) -> None:
        """No more changes are coming: ``run`` stores what is pending and returns."""
        self._closed = True
        self._wake.set()

    async def purge(self, interval: float, limit: int) -> None:
        """Delete expired rows now and every ``interval`` seconds, ``limit`` rows per
        table per transaction so that message commits are never held up for long."""
        while True:
            try:
                while (
                    deleted := await self._store.purge_expired(self._clock.wall_ms(), limit)
                ) > 0:
                    self.stats.purged += deleted
                    if deleted < limit:
                        break
            except Exception:
                # Expired rows are refused by their readers anyway: try again later.
                log.exception("purging expired lasting state failed")
            await trio.sleep(interval)


def _keep_deletions(failed: LastingChanges, pending: LastingChanges) -> int:
    """Put the revocations of tokens and the deletions of wills of a batch that was not
    stored back into ``pending`` (a newer change of the same key there wins); how many.

    Such a deletion undoes a row the store may hold: dropped, ``revoked`` would stop
    reporting it, and a logged-out token could be loaded from the store again.
    """
    kept = 0
    for token, session in failed.sessions.items():
        if session is None:
            pending.sessions.setdefault(token, None)
            kept += 1
    for peer_id, will in failed.wills.items():
        if will is None:
            pending.wills.setdefault(peer_id, None)
            kept += 1
    return kept
