"""Messages in SQL: the ``messages`` table's statements and row conversions, run by
SQLite and PostgreSQL alike (``sql_store.SqlStore``; ``postgres_sql.py`` rewrites the
placeholders).

Group commit (``append``) and patches (``apply_patch``) run in the store's writer thread inside
the caller's transaction (the store opens it); the read paths get their SQL here
(history pages, dedupe tokens, missed patches) and run it on a pooled reader connection.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from chatroom.core.model import Bound, Direction, HistoryQuery, Message, Patch
from chatroom.core.paging import history_interval

from . import sqlite_marks as marks_table
from .common import INT64_MAX, INT64_MIN, Db

# Selected in Message field order; inserted with mention_pids last (see append).
MSG_COLUMNS = (
    'cid, mid, from_peer, timestamp, data, "binary", mention_all, mention_pids,'
    " dedupe_token, lctype, patch_timestamp"
)
MSG_SELECT = f"SELECT {MSG_COLUMNS} FROM messages"
# Inserted in this order, with mention_pids last (see append).
MSG_INSERTED = (
    "cid", "mid", "from_peer", "timestamp", "data", "binary", "mention_all", "dedupe_token",
    "lctype", "patch_timestamp",
)  # fmt: skip
_MSG_FIELDS = operator.attrgetter(*MSG_INSERTED)  # C-speed rows: the hot path of group commit
_DATA = MSG_INSERTED.index("data")
# How an engine that cannot hold some text as is (PostgreSQL: U+0000) stores message
# content, and reads it back: the ``data_in`` and ``data_out`` of ``sql_store.Dialect``.
TextMap = Callable[[str], str]
_MSG_INSERT = (
    # "binary" is a reserved word in PostgreSQL: quoted, it is a name in either engine.
    f"INSERT INTO messages ({', '.join(MSG_INSERTED)}, mention_pids)".replace("binary", '"binary"')
    + f" VALUES ({', '.join('?' * (len(MSG_INSERTED) + 1))})"
)
_SET_LAST_MESSAGE_AT = (
    "UPDATE conversations SET last_message_at = ?2"
    " WHERE cid = ?1 AND (last_message_at IS NULL OR last_message_at < ?2)"
)
GET_MESSAGE = f"{MSG_SELECT} WHERE cid = ? AND mid = ?"
LAST_MESSAGE = f"{MSG_SELECT} WHERE cid = ? ORDER BY timestamp DESC, mid DESC LIMIT 1"
# Without INDEXED BY the planner prefers messages_position for the ORDER BY, which reads
# every message of the conversation.
FIND_BY_DEDUPE_TOKEN = (
    f"SELECT {MSG_COLUMNS} FROM messages INDEXED BY messages_dedupe"
    " WHERE cid = ? AND from_peer = ? AND dedupe_token = ?"
    " ORDER BY timestamp, mid LIMIT 1"
)
# The newest rowids, read backwards from the end of the table (no scan).
RECENT_DEDUPE_TOKENS = (
    f"SELECT {MSG_COLUMNS} FROM messages WHERE dedupe_token IS NOT NULL ORDER BY rowid DESC LIMIT ?"
)
PATCHES_SINCE = (
    f"SELECT {', '.join('m.' + c.strip() for c in MSG_COLUMNS.split(','))}"
    " FROM messages AS m JOIN conversation_members AS c ON c.cid = m.cid AND c.member = ?1"
    " WHERE m.patch_timestamp > ?2 ORDER BY m.patch_timestamp, m.cid, m.mid LIMIT ?3"
)


def insert_each(db: Db, rows: list[tuple[object, ...]]) -> None:
    """Insert message rows (``_MSG_INSERT``'s parameters) one statement each."""
    db.executemany(_MSG_INSERT, rows)


def append(
    db: Db,
    batch: Sequence[Message],
    unread_add: str = marks_table.UNREAD_ADD,
    insert_rows: Callable[[Db, list[tuple[object, ...]]], None] = insert_each,
    data_in: TextMap | None = None,
) -> None:
    """Insert a non-empty batch with its conversation, unread and meta updates
    (``unread_add``: the statement of ``sqlite_marks.count_unread``; ``insert_rows``
    writes the rows, in ``_MSG_INSERT``'s order of columns; ``data_in``: the content
    as stored)."""
    # Rows are built inside the transaction so that bad values are reported alike.
    newest: dict[str, int] = {}
    rows = []
    for m in batch:
        pids = orjson.dumps(m.mention_pids).decode() if m.mention_pids else None
        fields = _MSG_FIELDS(m)
        if data_in is not None and m.data is not None:
            fields = (*fields[:_DATA], data_in(m.data), *fields[_DATA + 1 :])
        rows.append((*fields, pids))
        if m.timestamp > newest.get(m.cid, INT64_MIN):
            newest[m.cid] = m.timestamp
    insert_rows(db, rows)
    db.executemany(_SET_LAST_MESSAGE_AT, newest.items())
    marks_table.count_unread(db, batch, unread_add)
    db.execute(
        "UPDATE meta SET max_timestamp = ? WHERE max_timestamp < ?",
        (max(newest.values()),) * 2,
    )


def apply_patch(
    db: Db, patch: Patch, data_in: TextMap | None = None, data_out: TextMap | None = None
) -> Message | None:
    """Rewrite one message's content; the patched message, or None if there is none."""
    data = patch.data if data_in is None or patch.data is None else data_in(patch.data)
    pids = orjson.dumps(patch.mention_pids).decode() if patch.mention_pids else None
    db.execute(
        'UPDATE messages SET data = ?, "binary" = ?, mention_all = ?, mention_pids = ?,'
        " lctype = ?, patch_timestamp = ? WHERE cid = ? AND mid = ?",
        (
            data,
            patch.binary,
            int(patch.mention_all),
            pids,
            patch.lctype,
            patch.patch_timestamp,
            patch.cid,
            patch.mid,
        ),
    )
    found = db.execute(GET_MESSAGE, (patch.cid, patch.mid)).fetchall()
    return message_of_row(found[0], data_out) if found else None


def history_select(query: HistoryQuery, every: bool = False) -> tuple[str, list[object], bool]:
    """The SQL and parameters of one history page, and whether rows come newest first;
    ``every``: of all conversations (``query.cid`` is not used)."""
    lower, upper = history_interval(query)
    args: list[object] = [] if every else [query.cid]
    lower_sql = upper_sql = None
    if lower is not None:
        lower = _clamped(lower, is_lower=True)
        lower_sql = (">=" if lower.inclusive else ">", lower.mid is not None)
        args += (lower.timestamp,) if lower.mid is None else (lower.timestamp, lower.mid)
    if upper is not None:
        upper = _clamped(upper, is_lower=False)
        upper_sql = ("<=" if upper.inclusive else "<", upper.mid is not None)
        args += (upper.timestamp,) if upper.mid is None else (upper.timestamp, upper.mid)
    if query.lctype is not None:
        args.append(query.lctype)
    args.append(query.limit)
    newest_first = query.direction != Direction.NEW
    sql = _history_sql(lower_sql, upper_sql, newest_first, query.lctype is not None, every)
    return sql, args, newest_first


def message_of_row(row: Any, data_out: TextMap | None = None) -> Message:
    cid, mid, peer, timestamp, data, binary, mention_all, pids, token, lctype, patched = row
    if data_out is not None and data is not None:
        data = data_out(data)
    mentioned = tuple(orjson.loads(pids)) if pids else ()
    return Message(
        cid,
        mid,
        peer,
        timestamp,
        data,
        binary,
        bool(mention_all),
        mentioned,
        token,
        lctype,
        patched,
    )


def _clamped(bound: Bound, *, is_lower: bool) -> Bound:
    """An equivalent bound within SQLite's integer range (clients may send any number)."""
    if INT64_MIN <= bound.timestamp <= INT64_MAX:
        return bound
    if bound.timestamp > INT64_MAX:
        # Past every message: as upper bound it keeps all, as lower bound none.
        return Bound(INT64_MAX, None, inclusive=not is_lower)
    return Bound(INT64_MIN, None, inclusive=is_lower)


@functools.lru_cache(maxsize=128)
def _history_sql(
    lower: tuple[str, bool] | None,
    upper: tuple[str, bool] | None,
    newest_first: bool,
    typed: bool,
    every: bool,
) -> str:
    """The history query for one shape of bounds; each side is ``(operator, with_mid)``.

    Row values ``(timestamp, mid) < (?, ?)`` keep the whole condition a range of the
    ``messages_position`` index (``messages_time`` for ``every`` conversation), so a
    page costs ``limit`` index steps, not a scan.
    """
    where = [] if every else ["cid = ?"]
    for side in (lower, upper):
        if side is not None:
            op, with_mid = side
            where.append(f"(timestamp, mid) {op} (?, ?)" if with_mid else f"timestamp {op} ?")
    if typed:
        where.append("lctype = ?")
    order = "DESC" if newest_first else "ASC"
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"{MSG_SELECT}{condition} ORDER BY timestamp {order}, mid {order} LIMIT ?"
