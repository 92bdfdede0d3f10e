"""PostgreSQL side of the shared SQL: placeholders, the few statements of its own, and
how it reads JSON attributes (``select_sql.SelectDialect``).

The shared statements (``sqlite_*.py``, ``common.py``) are written with SQLite's ``?`` and
``?N`` placeholders; ``PgConn`` rewrites them to psycopg's ``%s`` once per statement text
and reorders the parameters to match. Everything here runs in the store's worker threads
or is pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg

from .common import Db, Rows, json_path
from .postgres_schema import NAME_SQL
from .sql_store import Dialect
from .sqlite_messages import MSG_INSERTED, MSG_SELECT

_PLACEHOLDER = re.compile(r"\?(\d*)")

# PostgreSQL's text cannot hold U+0000, which message content may (SQLite keeps it).
# Content holding one, or starting with the marker U+FFFF, is stored as the marker and
# then the content with each U+FFFF doubled and each U+0000 written as U+FFFF "0";
# any other content (all but a few) is stored as it is.
NUL_MARK = "\uffff"
_ESCAPED = re.compile("\uffff(.)", re.DOTALL)


def nul_escaped(text: str) -> str:
    """``text`` as PostgreSQL stores it (see ``NUL_MARK``)."""
    if "\0" not in text and not text.startswith(NUL_MARK):
        return text
    return NUL_MARK + text.replace(NUL_MARK, NUL_MARK * 2).replace("\0", NUL_MARK + "0")


def nul_unescaped(stored: str) -> str:
    """What ``nul_escaped`` stored as ``stored``."""
    if not stored.startswith(NUL_MARK):
        return stored
    return _ESCAPED.sub(_unescape_one, stored[1:])


def _unescape_one(found: re.Match[str]) -> str:
    return "\0" if found.group(1) == "0" else NUL_MARK


@functools.lru_cache(maxsize=512)
def pg_sql(sql: str) -> tuple[str, tuple[int, ...]]:
    """``sql`` with psycopg placeholders, and the index of the parameter each takes."""
    order: list[int] = []

    def mark(found: re.Match[str]) -> str:
        order.append(int(found.group(1)) - 1 if found.group(1) else len(order))
        return "%s"

    return _PLACEHOLDER.sub(mark, sql.replace("%", "%%")), tuple(order)


def _arranged(params: Sequence[Any], order: tuple[int, ...]) -> Sequence[Any]:
    if tuple(range(len(params))) == order:
        return params
    return [params[i] for i in order]


class PgConn:
    """A psycopg connection as ``common.Db``: ``?`` placeholders, ``executemany``."""

    __slots__ = ("conn",)

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        if not params:
            return self.conn.execute(sql)
        text, order = pg_sql(sql)
        return self.conn.execute(text, _arranged(params, order))

    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Rows:
        text, order = pg_sql(sql)
        rows = [_arranged(p, order) for p in params]
        if not rows:
            return _NO_ROWS  # psycopg would report rowcount -1, sqlite3 reports 0
        cursor = self.conn.cursor()
        cursor.executemany(text, rows)  # one pipeline
        return cursor


class _NoRows:
    """The result of running a statement for no parameters at all."""

    rowcount = 0

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> Any:
        return None

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def close(self) -> None:
        pass


_NO_ROWS = _NoRows()


class _PgSelect:
    """Attributes through the ``chatroom_*`` functions of the schema, which order and
    compare JSON values as SQLite's ``json_extract`` does. Regular expressions are not
    PostgreSQL's to run (``ConvFilter`` patterns are RE2): ``PostgresStore`` applies
    them to the rows the query returns."""

    name_sql = NAME_SQL

    def attr_equals(self, path: str, value: object, args: list[object]) -> str | None:
        if path == "name" and isinstance(value, str):
            args.append(value)
            return f"{self.name_sql} = ?"
        if json_path(path) is None:
            return None  # the caller's matcher decides
        parts = path.split(".")
        container = "jsonb_typeof(c.attrs_j #> ?) IN ('array', 'object')"
        if isinstance(value, str):
            args += [parts, value, parts]
            return f"(chatroom_txt(c.attrs_j #> ?) = ? OR {container})"
        if isinstance(value, (bool, int, float)):
            args += [parts, str(int(value) if isinstance(value, bool) else value), parts]
            return f"(chatroom_num(c.attrs_j #> ?) = ?::numeric OR {container})"
        args.append(parts)
        return container

    def attr_regex(self, path: str, pattern: str, options: str, args: list[object]) -> str | None:
        return None

    def order_terms(self, field: str, direction: str, args: list[object]) -> list[str]:
        parts = field.split(".") if json_path(field) is not None else [""]
        args += [parts, parts, parts]
        return [
            f"chatroom_rank(c.attrs_j #> ?) {direction} NULLS LAST",
            f"chatroom_num(c.attrs_j #> ?) {direction}",
            f'chatroom_sort_txt(c.attrs_j #> ?) COLLATE "C" {direction}',
        ]


# Unread counts of a batch (sqlite_marks.count_unread): grouped by member first, since
# one upsert may not touch a row twice (a member gets messages from several senders).
_UNREAD_ADD = (
    "INSERT INTO member_marks (peer, cid, unread, mentioned, changed_at, acked_at, read_at)"
    " SELECT m.member, m.cid, sum((j.value ->> 2)::bigint), 0, max((j.value ->> 3)::bigint),"
    " 0, 0 FROM jsonb_array_elements(?::jsonb) AS j(value) JOIN conversation_members AS m"
    " ON m.cid = j.value ->> 0 AND m.member <> j.value ->> 1"
    " GROUP BY m.member, m.cid ORDER BY m.member, m.cid"
    " ON CONFLICT (peer, cid) DO UPDATE SET unread = member_marks.unread + excluded.unread,"
    " changed_at = greatest(member_marks.changed_at, excluded.changed_at)"
)

# A batch's messages in one statement: one array per column (sqlite_messages.MSG_INSERTED,
# then mention_pids), about 8x faster than a pipeline of one INSERT per message.
_ARRAY_TYPES = (
    "text", "text", "text", "bigint", "text", "bytea", "int", "text", "bigint", "bigint", "text",
)  # fmt: skip
_INSERT_ARRAYS = (
    f"INSERT INTO messages ({', '.join(MSG_INSERTED)}, mention_pids)".replace("binary", '"binary"')
    + f" SELECT * FROM unnest({', '.join(f'?::{t}[]' for t in _ARRAY_TYPES)})"
)


def insert_arrays(db: Db, rows: list[tuple[object, ...]]) -> None:
    """Insert message rows with one ``unnest`` of column arrays."""
    db.execute(_INSERT_ARRAYS, [list(column) for column in zip(*rows, strict=True)])


DIALECT = Dialect(
    select=_PgSelect(),
    unread_add=_UNREAD_ADD,
    find_by_dedupe_token=(
        f"{MSG_SELECT} WHERE cid = ? AND from_peer = ? AND dedupe_token = ?"
        " ORDER BY timestamp, mid LIMIT 1"
    ),
    recent_dedupe_tokens=(f"{MSG_SELECT} WHERE dedupe_token IS NOT NULL ORDER BY seq DESC LIMIT ?"),
    snapshot="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    insert_messages=insert_arrays,
    message_seq="seq",
    data_in=nul_escaped,
    data_out=nul_unescaped,
)
