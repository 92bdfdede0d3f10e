"""``MemoryStore``'s state that would outlive a process (it does not: it is in memory).

Kept in its own class so that ``memory.py`` stays about messages and conversations;
the rules are those of ``sqlite_lasting.py``, checked by the same contract suite.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import TypeVar

import trio

from chatroom.core.model import (
    ConvEventRecord,
    LastingChanges,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)

from .common import check_int64

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class MemoryLasting:
    """Session tokens, used nonces, the conversation event log, pending receipts and
    wills, in dicts. Every method checkpoints first and then never awaits."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._nonces: dict[str, int] = {}
        self._events: dict[int, ConvEventRecord] = {}  # by insertion number
        self._events_of: defaultdict[str, list[int]] = defaultdict(list)
        self._event_ids = 0
        self._receipts: dict[tuple[str, str], PendingReceipt] = {}
        self._wills: dict[str, WillRecord] = {}

    async def save_lasting(self, changes: LastingChanges) -> None:
        """Apply the whole batch, or (IntegrityError) none of it."""
        await trio.lowlevel.checkpoint()
        _check(changes)
        for token, session in changes.sessions.items():
            _put(self._sessions, token, session)
        for nonce, expires in changes.nonces.items():
            self._nonces.setdefault(nonce, expires)
        for event in changes.conv_events:
            self._event_ids += 1
            self._events[self._event_ids] = event
            for peer in dict.fromkeys(event.peers):
                self._events_of[peer].append(self._event_ids)
        for key, receipt in changes.receipts.items():
            _put(self._receipts, key, receipt)
        for peer, will in changes.wills.items():
            _put(self._wills, peer, will)

    async def get_session(self, token: str) -> SessionRecord | None:
        """The stored session token, or None."""
        await trio.lowlevel.checkpoint()
        return self._sessions.get(token)

    async def live_nonces(self, now_ms: int, limit: int) -> dict[str, int]:
        """Nonces still in their window, the latest-expiring ``limit``."""
        await trio.lowlevel.checkpoint()
        live = sorted(((e, n) for n, e in self._nonces.items() if e > now_ms), reverse=True)
        return {n: e for e, n in live[: max(limit, 0)]}

    async def conv_events_for(
        self, peer: str, since: int, until: int | None, limit: int
    ) -> list[ConvEventRecord]:
        """The client's newest events in ``(since, until)``, ascending."""
        await trio.lowlevel.checkpoint()
        found = [
            (e.server_ts, i, e)
            for i in self._events_of.get(peer, ())
            if (e := self._events.get(i)) is not None
            and e.server_ts > since
            and (until is None or e.server_ts < until)
        ]
        found.sort(key=lambda item: item[:2])
        return [dataclasses.replace(e, peers=(peer,)) for _, _, e in _newest(found, limit)]

    async def pending_receipts(self, limit: int) -> list[PendingReceipt]:
        """The newest ``limit`` pending receipts, ascending by message time."""
        await trio.lowlevel.checkpoint()
        ordered = sorted(self._receipts.values(), key=lambda r: r.timestamp)
        return _newest(ordered, limit)

    async def will_of(self, peer_id: str) -> WillRecord | None:
        """The user's stored will, or None."""
        await trio.lowlevel.checkpoint()
        return self._wills.get(peer_id)

    async def purge_expired(self, now_ms: int, limit: int) -> int:
        """At most ``limit`` expired entries of each kind, the earliest-expiring first
        (events: see ``sqlite_lasting.purge``)."""
        await trio.lowlevel.checkpoint()
        deleted = _purge(self._sessions, lambda s: s.expires_ms, now_ms, limit)
        deleted += _purge(self._receipts, lambda r: r.expires_ms, now_ms, limit)
        deleted += _purge(self._wills, lambda w: w.expires_ms, now_ms, limit)
        deleted += _purge(self._nonces, lambda expires: expires, now_ms, limit)
        # An event counts with its peers (SQLite's rows): at least one, about ``limit`` rows.
        rows = 0
        for i in _oldest_expired(self._events, lambda e: e.expires_ms, now_ms, len(self._events)):
            if rows >= limit:
                break
            peers = dict.fromkeys(self._events.pop(i).peers)
            rows += 1 + len(peers)
            for peer in peers:
                ids = self._events_of[peer]
                ids.remove(i)
                if not ids:
                    del self._events_of[peer]
        return deleted + rows


def _newest(items: list[V], limit: int) -> list[V]:
    """The last ``limit`` of ``items`` (none for a limit of 0 or less)."""
    return items[-limit:] if limit > 0 else []


def _put(table: dict[K, V], key: K, value: V | None) -> None:
    if value is None:
        table.pop(key, None)
    else:
        table[key] = value


def _oldest_expired(
    table: dict[K, V], expiry: Callable[[V], int], now_ms: int, limit: int
) -> list[K]:
    due = sorted((expiry(v), n, k) for n, (k, v) in enumerate(table.items()) if expiry(v) <= now_ms)
    return [k for _, _, k in due[: max(limit, 0)]]


def _purge(table: dict[K, V], expiry: Callable[[V], int], now_ms: int, limit: int) -> int:
    expired = _oldest_expired(table, expiry, now_ms, limit)
    for key in expired:
        del table[key]
    return len(expired)


def _check(changes: LastingChanges) -> None:
    """IntegrityError for what SQLite would refuse: integers beyond 64 bits."""
    for s in changes.sessions.values():
        if s is not None:
            check_int64(s.expires_ms, "expires_ms")
            check_int64(s.room_until_ms, "room_until_ms")
    for expires in changes.nonces.values():
        check_int64(expires, "expires_ms")
    for e in changes.conv_events:
        check_int64(e.server_ts, "server_ts")
        check_int64(e.expires_ms, "expires_ms")
    for r in changes.receipts.values():
        if r is not None:
            check_int64(r.timestamp, "timestamp")
            check_int64(r.expires_ms, "expires_ms")
    for w in changes.wills.values():
        if w is not None:
            check_int64(w.expires_ms, "expires_ms")
