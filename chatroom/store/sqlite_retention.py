"""``Store.sweep`` of both SQL engines: the retention sweep (chatroom/net/retention.py),
and ``Store.delete_conversation``, which removes a conversation the same way.

Runs in the writer's worker thread, inside one short transaction per call, and reads
at most ``limit`` rows of the message table per call: messages are taken in commit
order (SQLite's rowid, PostgreSQL's ``seq`` identity column), which is also the
order of their timestamps, since the server stamps them as it accepts them. The first
one at or after the cutoff ends the old part.
"""

from __future__ import annotations

from collections.abc import Sequence

from .common import Db

_OLDEST = "SELECT {seq}, timestamp FROM messages ORDER BY {seq} LIMIT ?"
DELETE_MESSAGE = "DELETE FROM messages WHERE cid = ? AND mid = ?"
_EXPIRED = "SELECT cid FROM conversations WHERE kind = 4 AND expire_at <= ? LIMIT 1"
_MESSAGES_OF = (
    "DELETE FROM messages WHERE {seq} IN (SELECT {seq} FROM messages WHERE cid IN ({cids}) LIMIT ?)"
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


def sweep(db: Db, cutoff_ms: int, now_ms: int, limit: int, seq: str = "rowid") -> int:
    """Delete at most ``limit`` messages older than ``cutoff_ms`` (0: none), then
    messages of one expired temporary conversation, and the conversation once it has
    none left; the number of rows deleted."""
    deleted = 0
    if cutoff_ms > 0:
        last = None
        for position, timestamp in db.execute(_OLDEST.format(seq=seq), (limit,)).fetchall():
            if timestamp >= cutoff_ms:
                break
            last = position
            deleted += 1
        if last is not None:
            db.execute(f"DELETE FROM messages WHERE {seq} <= ?", (last,))
    room = limit - deleted
    if room <= 0:
        return deleted
    row = db.execute(_EXPIRED, (now_ms,)).fetchone()
    if row is None:
        return deleted
    return deleted + drop_conversation(db, row[0], room, seq)[0]


def drop_messages(db: Db, cids: Sequence[str], limit: int, seq: str = "rowid") -> int:
    """Delete at most ``limit`` messages of the conversations (or threads) ``cids``:
    how many went (fewer than ``limit``: none of them is left)."""
    sql = _MESSAGES_OF.format(seq=seq, cids=", ".join("?" * len(cids)))
    return db.execute(sql, (*cids, limit)).rowcount


def drop_conversation(db: Db, cid: str, limit: int, seq: str = "rowid") -> tuple[int, bool]:
    """Delete at most ``limit`` messages of ``cid`` and, once it has none left, the
    conversation with its members, marks and moderation state: the rows deleted, and
    whether the conversation is gone (call again until it is)."""
    deleted = drop_messages(db, (cid,), limit, seq)
    if deleted >= limit:
        return deleted, False
    for table in _CONVERSATION_TABLES:
        deleted += db.execute(f"DELETE FROM {table} WHERE cid = ?", (cid,)).rowcount
    return deleted, True
