"""Unread counts and receipts in SQL: the ``member_marks`` table, for SQLite and
PostgreSQL alike (PostgreSQL has its own ``UNREAD_ADD``: ``postgres_sql.py``).

Every function here runs in the store's writer thread inside the caller's transaction
(the store opens it); the SQL constants are shared with its read paths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import orjson

from chatroom.core.model import MemberMarks, Message

from .common import Db

# Unread counts, in the commit's transaction: one statement per batch (not per message,
# not per member) adds each (conversation, sender) group of the batch to every other
# member's count, members found through the conversation_members_cid index.
UNREAD_ADD = (
    "INSERT INTO member_marks (peer, cid, unread, mentioned, changed_at, acked_at, read_at)"
    " SELECT m.member, m.cid, json_extract(j.value, '$[2]'), 0,"
    " json_extract(j.value, '$[3]'), 0, 0"
    " FROM json_each(?1) AS j JOIN conversation_members AS m"
    " ON m.cid = json_extract(j.value, '$[0]') AND m.member <> json_extract(j.value, '$[1]')"
    " WHERE true"  # an ON CONFLICT right after a join's ON would not parse
    " ON CONFLICT (peer, cid) DO UPDATE SET unread = unread + excluded.unread,"
    " changed_at = max(changed_at, excluded.changed_at)"
)
MENTIONED = "UPDATE member_marks SET mentioned = 1 WHERE cid = ?1 AND peer = ?2 AND peer <> ?3"
MENTIONED_ALL = "UPDATE member_marks SET mentioned = 1 WHERE cid = ?1 AND peer <> ?2"
MARK_COLUMNS = "k.peer, k.cid, k.unread, k.mentioned, k.changed_at, k.acked_at, k.read_at"
MARKS_OF_MEMBER = (
    f"SELECT {MARK_COLUMNS} FROM member_marks AS k"
    " JOIN conversation_members AS m ON m.member = k.peer AND m.cid = k.cid"
    " WHERE k.peer = ?1 AND {condition} ORDER BY k.changed_at DESC, k.cid LIMIT ?2"
)


def count_unread(db: Db, batch: Sequence[Message], unread_add: str = UNREAD_ADD) -> None:
    """Add a committed batch to the unread counts (inside the caller's transaction):
    ``unread_add`` takes the JSON array ``[[cid, sender, count, newest], ...]``."""
    groups: dict[tuple[str, str], list[int]] = {}  # (cid, sender) -> [count, newest]
    mentions: list[tuple[str, str, str]] = []
    mention_all: list[tuple[str, str]] = []
    for m in batch:
        group = groups.get((m.cid, m.from_peer))
        if group is None:
            groups[(m.cid, m.from_peer)] = [1, m.timestamp]
        else:
            group[0] += 1
            group[1] = max(group[1], m.timestamp)
        if m.mention_all:
            mention_all.append((m.cid, m.from_peer))
        mentions.extend((m.cid, pid, m.from_peer) for pid in m.mention_pids)
    # One statement for the whole batch: [[cid, sender, count, newest], ...] as JSON.
    # Sorted, so that concurrent commits lock member rows in one order (no deadlock).
    rows = sorted([cid, peer, n, t] for (cid, peer), (n, t) in groups.items())
    db.execute(unread_add, (orjson.dumps(rows).decode(),))
    if mentions:
        db.executemany(MENTIONED, mentions)
    if mention_all:
        db.executemany(MENTIONED_ALL, mention_all)


def _read_marks(db: Db, member: str, cid: str) -> MemberMarks:
    rows = db.execute(
        f"SELECT {MARK_COLUMNS} FROM member_marks AS k WHERE k.peer = ? AND k.cid = ?",
        (member, cid),
    ).fetchall()
    return marks_of_row(rows[0]) if rows else MemberMarks(member, cid)


def _write_marks(db: Db, k: MemberMarks) -> None:
    db.execute(
        "INSERT INTO member_marks (peer, cid, unread, mentioned, changed_at, acked_at, read_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (peer, cid) DO UPDATE SET"
        " unread = excluded.unread, mentioned = excluded.mentioned,"
        " changed_at = excluded.changed_at, acked_at = excluded.acked_at,"
        " read_at = excluded.read_at",
        (k.peer, k.cid, k.unread, int(k.mentioned), k.changed_at, k.acked_at, k.read_at),
    )


def mark_acked(db: Db, member: str, cid: str, timestamp: int) -> MemberMarks:
    """``acked_at`` = max(``acked_at``, ``timestamp``)."""
    marks = _read_marks(db, member, cid)
    if timestamp > marks.acked_at:
        marks = dataclasses.replace(marks, acked_at=timestamp)
        _write_marks(db, marks)
    return marks


def mark_read(db: Db, member: str, cid: str, timestamp: int, now: int) -> MemberMarks:
    """Read-up-to ``timestamp`` (``Store.mark_read``)."""
    marks = _read_marks(db, member, cid)
    read_at = max(marks.read_at, timestamp)
    # Messages after the read mark stay unread (one committed while the read was on its
    # way); the count is exact, not just reset.
    left = db.execute(
        "SELECT mention_all, mention_pids FROM messages"
        " WHERE cid = ? AND timestamp > ? AND from_peer <> ?",
        (cid, read_at, member),
    ).fetchall()
    mentioned = any(all_ or (pids and member in orjson.loads(pids)) for all_, pids in left)
    marks = MemberMarks(
        member, cid, len(left), bool(mentioned), now, max(marks.acked_at, read_at), read_at
    )
    _write_marks(db, marks)
    return marks


def marks_of_row(row: Any) -> MemberMarks:
    peer, cid, unread, mentioned, changed_at, acked_at, read_at = row
    return MemberMarks(peer, cid, unread, bool(mentioned), changed_at, acked_at, read_at)
