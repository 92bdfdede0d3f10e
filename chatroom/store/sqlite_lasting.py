"""SQL of the state that outlives a process (schema version 2, ``LASTING_SCHEMA``), for
SQLite and PostgreSQL alike.

The write and purge functions run in the store's writer thread inside the caller's
transaction; the ``*_SQL`` reads run on reader connections.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatroom.core.model import (
    ConvEventRecord,
    LastingChanges,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)

from .common import Db

GET_SESSION_SQL = (
    "SELECT token, peer_id, tag, device_id, expires_at, taken_over, room, room_until"
    " FROM session_tokens WHERE token = ?"
)
LIVE_NONCES_SQL = (
    "SELECT nonce, expires_at FROM used_nonces WHERE expires_at > ?"
    " ORDER BY expires_at DESC LIMIT ?"
)
# The newest events of one client: one backwards range of conv_event_peers' key.
CONV_EVENTS_SQL = (
    "SELECT e.server_ts, e.payload, e.delivered, e.expires_at"
    " FROM conv_event_peers AS p JOIN conv_events AS e ON e.id = p.event"
    " WHERE p.peer = ?1 AND p.server_ts > ?2 AND p.server_ts < ?3"
    " ORDER BY p.server_ts DESC, p.event DESC LIMIT ?4"
)
PENDING_RECEIPTS_SQL = (
    "SELECT cid, mid, timestamp, sender, expires_at FROM pending_receipts"
    " ORDER BY timestamp DESC LIMIT ?"
)
WILL_OF_SQL = "SELECT peer_id, token, payload, expires_at FROM wills WHERE peer_id = ?"

_UPSERT_SESSION = (
    "INSERT INTO session_tokens"
    " (token, peer_id, tag, device_id, expires_at, taken_over, room, room_until)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token) DO UPDATE SET"
    " peer_id = excluded.peer_id, tag = excluded.tag, device_id = excluded.device_id,"
    " expires_at = excluded.expires_at, taken_over = excluded.taken_over,"
    " room = excluded.room, room_until = excluded.room_until"
)
_UPSERT_RECEIPT = (
    "INSERT INTO pending_receipts (cid, mid, timestamp, sender, expires_at)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (cid, mid) DO UPDATE SET"
    " timestamp = excluded.timestamp, sender = excluded.sender, expires_at = excluded.expires_at"
)
_UPSERT_WILL = (
    "INSERT INTO wills (peer_id, token, payload, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (peer_id) DO UPDATE SET"
    " token = excluded.token, payload = excluded.payload, expires_at = excluded.expires_at"
)


def save(db: Db, changes: LastingChanges) -> None:
    """Apply ``changes`` (see ``Store.save_lasting``) in the open transaction."""
    sessions = changes.sessions.items()
    db.executemany(
        "DELETE FROM session_tokens WHERE token = ?", [(t,) for t, r in sessions if r is None]
    )
    db.executemany(_UPSERT_SESSION, [_session_row(r) for r in changes.sessions.values() if r])
    db.executemany(
        "INSERT INTO used_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        list(changes.nonces.items()),
    )
    for event in changes.conv_events:
        peers = dict.fromkeys(event.peers)
        (event_id,) = db.execute(
            "INSERT INTO conv_events (server_ts, payload, delivered, expires_at, peer_count)"
            " VALUES (?, ?, ?, ?, ?) RETURNING id",
            (event.server_ts, event.payload, _dumps(event.delivered), event.expires_ms, len(peers)),
        ).fetchone()
        rows = [(peer, event.server_ts, event_id) for peer in peers]
        db.executemany(
            "INSERT INTO conv_event_peers (peer, server_ts, event) VALUES (?, ?, ?)", rows
        )
    receipts = changes.receipts.items()
    receipts_kept = [r for r in changes.receipts.values() if r is not None]
    db.executemany(
        "DELETE FROM pending_receipts WHERE cid = ? AND mid = ?",
        [key for key, r in receipts if r is None],
    )
    db.executemany(
        _UPSERT_RECEIPT,
        [(r.cid, r.mid, r.timestamp, r.sender, r.expires_ms) for r in receipts_kept],
    )
    wills = changes.wills.items()
    db.executemany("DELETE FROM wills WHERE peer_id = ?", [(p,) for p, w in wills if w is None])
    db.executemany(
        _UPSERT_WILL,
        [(w.peer_id, w.token, w.payload, w.expires_ms) for w in changes.wills.values() if w],
    )


# Keyed tables and their primary keys, for purge.
_EXPIRING = {
    "session_tokens": "token",
    "used_nonces": "nonce",
    "pending_receipts": "(cid, mid)",
    "wills": "peer_id",
}


def purge(db: Db, now_ms: int, limit: int) -> int:
    """Delete up to ``limit`` expired rows of each table, by their expiry indexes. The
    event log counts an event with its peer rows: the earliest-expiring events are taken
    until they reach ``limit`` rows (at least one event), so that a transaction deletes
    about ``limit`` rows, not ``limit`` events of up to thousands of peers each."""
    deleted = 0
    for table, key in _EXPIRING.items():
        inner = f"SELECT {key.strip('()')} FROM {table} WHERE expires_at <= ? ORDER BY expires_at"
        sql = f"DELETE FROM {table} WHERE {key} IN ({inner} LIMIT ?)"
        deleted += db.execute(sql, (now_ms, limit)).rowcount
    events: list[tuple[int]] = []
    rows = 0
    due = db.execute(
        "SELECT id, peer_count FROM conv_events WHERE expires_at <= ? ORDER BY expires_at, id",
        (now_ms,),
    )
    for event, peer_count in due:  # read only as far as needed
        if rows >= limit:
            break
        events.append((event,))
        rows += 1 + peer_count
    due.close()
    deleted += db.executemany("DELETE FROM conv_event_peers WHERE event = ?", events).rowcount
    return deleted + db.executemany("DELETE FROM conv_events WHERE id = ?", events).rowcount


def session_of_row(row: Any) -> SessionRecord:
    return SessionRecord(
        token=row[0],
        peer_id=row[1],
        tag=row[2],
        device_id=row[3],
        expires_ms=row[4],
        taken_over=bool(row[5]),
        room=row[6],
        room_until_ms=row[7],
    )


def conv_event_of_row(peer: str, row: Any) -> ConvEventRecord:
    """An event as read for one client (``peers`` holds that client only)."""
    return ConvEventRecord(
        peers=(peer,),
        server_ts=row[0],
        payload=bytes(row[1]),
        delivered=tuple(orjson.loads(row[2])),
        expires_ms=row[3],
    )


def receipt_of_row(row: Any) -> PendingReceipt:
    cid, mid, timestamp, sender, expires_ms = row
    return PendingReceipt(cid, mid, timestamp, sender, expires_ms)


def will_of_row(row: Any) -> WillRecord:
    return WillRecord(peer_id=row[0], token=row[1], payload=bytes(row[2]), expires_ms=row[3])


def _session_row(r: SessionRecord) -> tuple[object, ...]:
    return (
        r.token,
        r.peer_id,
        r.tag,
        r.device_id,
        r.expires_ms,
        int(r.taken_over),
        r.room,
        r.room_until_ms,
    )


def _dumps(tokens: tuple[str, ...]) -> str:
    return orjson.dumps(list(tokens)).decode()
