"""``SqliteStore.sweep``: the SQL of the retention sweep (chatroom/net/retention.py).

Runs in the writer's worker thread, inside one short transaction per call, and reads
at most ``limit`` rows of the message table per call: messages are taken in rowid
order, which is the order they were committed and so, since the server stamps them
as it accepts them, the order of their timestamps. The first one at or after the
cutoff ends the old part.
"""

from __future__ import annotations

import sqlite3

_OLDEST = "SELECT rowid, timestamp FROM messages ORDER BY rowid LIMIT ?"
_EXPIRED = "SELECT cid FROM conversations WHERE kind = 4 AND expire_at <= ? LIMIT 1"
_MESSAGES_OF = (
    "DELETE FROM messages WHERE rowid IN (SELECT rowid FROM messages WHERE cid = ? LIMIT ?)"
)
# Everything else kept per conversation, deleted with it once its messages are gone.
_CONVERSATION_TABLES = (
    "conversations",
    "conversation_members",
    "member_marks",
    "member_roles",
    "member_mutes",
    "member_blocks",
)


def sweep(db: sqlite3.Connection, cutoff_ms: int, now_ms: int, limit: int) -> int:
    """Delete at most ``limit`` messages older than ``cutoff_ms`` (0: none), then
    messages of one expired temporary conversation, and the conversation once it has
    none left; the number of rows deleted."""
    deleted = 0
    if cutoff_ms > 0:
        last = None
        for rowid, timestamp in db.execute(_OLDEST, (limit,)):
            if timestamp >= cutoff_ms:
                break
            last = rowid
            deleted += 1
        if last is not None:
            db.execute("DELETE FROM messages WHERE rowid <= ?", (last,))
    room = limit - deleted
    if room <= 0:
        return deleted
    row = db.execute(_EXPIRED, (now_ms,)).fetchone()
    if row is None:
        return deleted
    cid = row[0]
    gone = db.execute(_MESSAGES_OF, (cid, room)).rowcount
    deleted += gone
    if gone < room:
        for table in _CONVERSATION_TABLES:
            deleted += db.execute(f"DELETE FROM {table} WHERE cid = ?", (cid,)).rowcount
    return deleted
