"""Rules every store shares, so that they agree by construction rather than by care,
and what the SQL stores share: conversations as rows, and ``Db``, the connection
interface their shared statements are written against.

Everything here is pure (no I/O, no trio) or runs on a ``Db`` it is handed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import orjson

from chatroom.core.ids import thread_cid
from chatroom.core.matcher import compile_regex
from chatroom.core.model import (
    JSON,
    Conversation,
    ConvFilter,
    ConvOrder,
    ConvType,
)
from chatroom.protocol.errors import ChatError

from .base import ConflictError, IntegrityError, NotFoundError

# SQLite stores integers as signed 64-bit; the memory store refuses what SQLite would.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def members_key(members: Iterable[str]) -> str:
    """The lookup key of a member set for unique conversations.

    JSON of the sorted, de-duplicated ids: unlike a separator join, it cannot make two
    different sets collide whatever characters the ids contain.
    """
    return orjson.dumps(sorted(set(members))).decode()


def is_unique_normal(conv: Conversation) -> bool:
    """Whether ``find_unique_conversation`` may return this conversation."""
    return bool(conv.unique) and conv.kind == ConvType.NORMAL


def activity(conv: Conversation) -> int:
    """The time ``conversations_of`` orders by: the last message, else the creation."""
    return conv.created_at if conv.last_message_at is None else conv.last_message_at


def dump_json(value: JSON | list[str], what: str) -> str:
    """``value`` as JSON text, or IntegrityError if it is not JSON (non-string keys,
    integers beyond 64 bits, lone surrogates, unsupported types)."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise IntegrityError(f"{what} is not valid JSON: {exc}") from exc


def clamp_int64(value: int) -> int:
    """``value``, or the nearest signed 64-bit integer: a bound SQLite can compare with."""
    return max(min(value, INT64_MAX), INT64_MIN)


def check_int64(value: int | None, what: str) -> None:
    """IntegrityError unless ``value`` is None or fits a signed 64-bit integer."""
    if value is not None and not INT64_MIN <= value <= INT64_MAX:
        raise IntegrityError(f"{what} {value} is outside the 64-bit integer range")


_CONTROL = re.compile("[\\x00-\\x1f\\x7f]")


def json_path(path: str) -> str | None:
    """The SQLite JSON path of a dotted attribute path (``a.b`` -> ``$."a"."b"``), or
    None for a path SQLite cannot address safely (an empty part, a quote, a control
    character: SQLite reads a path up to its first NUL)."""
    parts = path.split(".")
    if any(not part or '"' in part or "\\" in part for part in parts) or _CONTROL.search(path):
        return None
    return "$" + "".join(f'."{part}"' for part in parts)


_ABSENT = object()


def attr_at(attrs: JSON, path: str) -> object:
    """The value at a dotted path of ``attrs``, or ``_ABSENT``."""
    value: object = attrs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def passes(conv: Conversation, where: ConvFilter) -> bool:
    """Whether ``conv`` meets ``where`` (``ConvFilter``), as ``SqliteStore`` decides."""
    if where.cids is not None and conv.cid not in where.cids:
        return False
    if any(m not in conv.members for m in where.members_all):
        return False
    if where.members_any is not None and not set(where.members_any) & set(conv.members):
        return False
    if where.kinds is not None and conv.kind not in where.kinds:
        return False
    if where.creator is not None and conv.creator != where.creator:
        return False
    expired = conv.expire_at is not None and where.alive_at is not None
    if expired and conv.expire_at <= where.alive_at:  # type: ignore[operator]
        return False
    for name, op, ms in where.ranges:
        value = range_value(conv, name)
        if value is None or not _RANGE_OPS[op](value, ms):
            return False
    for path, expected in where.attr_equals:
        found = attr_at(conv.attrs, path)
        if not isinstance(found, (list, dict)) and (found is _ABSENT or found != expected):
            return False
    for path, pattern, options in where.attr_regex:
        if not regex_passes(pattern, options, attr_at(conv.attrs, path)):
            return False
    if where.name_prefix is not None:
        given = conv.attrs.get("name")
        if not isinstance(given, str) or not given.startswith(where.name_prefix):
            return False
    return not where.any_of or any(passes(conv, branch) for branch in where.any_of)


def regex_passes(pattern: str, options: str, value: object) -> bool:
    """``ConvFilter.attr_regex`` for one value: a matching text, an array or an object.
    A pattern that does not compile lets everything through (the caller refuses it)."""
    if isinstance(value, (list, dict)):
        return True
    try:
        return isinstance(value, str) and bool(compile_regex(pattern, options).search(value))
    except ChatError:
        return True


def range_value(conv: Conversation, name: str) -> int | None:
    """The time a ``RANGE_FIELDS`` name refers to."""
    if name == "lm":
        return conv.last_message_at
    return conv.created_at if name == "createdAt" else conv.updated_at


_RANGE_OPS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def order_value(conv: Conversation, field: str) -> tuple[int, object] | None:
    """A sort key for one ``ConvOrder`` field, comparable across conversations as
    SQLite compares the column or ``json_extract`` value; None when missing."""
    fixed: dict[str, object] = {
        "activity": activity(conv),
        "lm": conv.last_message_at,
        "createdAt": conv.created_at,
        "updatedAt": conv.updated_at,
        "objectId": conv.cid,
        "c": conv.creator,
    }
    value = fixed[field] if field in fixed else attr_at(conv.attrs, field)
    if value is None or value is _ABSENT:
        return None
    if isinstance(value, (bool, int, float)):
        return (0, value)
    if isinstance(value, str):
        return (1, value)
    return (1, orjson.dumps(value).decode())


def sort_conversations(convs: list[Conversation], order: Sequence[ConvOrder]) -> None:
    """Sort in place by ``order``, missing values last in either direction; ties by
    ``cid`` in the direction of the first key."""
    convs.sort(key=lambda c: c.cid, reverse=bool(order) and order[0].descending)
    for key in reversed(order):
        present = [(order_value(c, key.field), c) for c in convs]
        have = [(v, c) for v, c in present if v is not None]
        have.sort(key=lambda vc: vc[0], reverse=key.descending)
        convs[:] = [c for _, c in have] + [c for v, c in present if v is None]


# Conversations as rows, in the same columns in every SQL store.

CONV_COLUMNS = (
    "cid", "kind", "creator", "members", "attrs", "created_at", "updated_at", "is_unique",
    "unique_id", "muted", "last_message_at", "expire_at", "version",
)  # fmt: skip
CONV_SELECT = f"SELECT {', '.join(CONV_COLUMNS)} FROM conversations"
CONV_INSERT = (
    f"INSERT INTO conversations ({', '.join(CONV_COLUMNS)}, members_key)"
    f" VALUES ({', '.join('?' * (len(CONV_COLUMNS) + 1))})"
)
# A compare and swap on ``version``; ``last_message_at`` only goes forward, in the
# statement itself so that an append_messages committed meanwhile is kept.
CONV_UPDATE = (
    f"UPDATE conversations SET {', '.join(f'{c} = ?' for c in CONV_COLUMNS[1:10])},"
    " last_message_at = CASE WHEN last_message_at IS NULL OR last_message_at < ?"
    " THEN ? ELSE last_message_at END,"
    " expire_at = ?, members_key = ?, version = version + 1 WHERE cid = ? AND version = ?"
)
CONVS_OF = (
    f"SELECT {', '.join('c.' + c for c in CONV_COLUMNS)}"
    " FROM conversation_members AS m JOIN conversations AS c ON c.cid = m.cid"
    " WHERE m.member = ?"
    " ORDER BY coalesce(c.last_message_at, c.created_at) DESC, c.cid LIMIT ? OFFSET ?"
)


def conversation_row(conv: Conversation) -> tuple[object, ...]:
    """The ``CONV_INSERT`` parameters for ``conv``."""
    try:
        kind = ConvType(conv.kind)
    except ValueError as exc:
        raise IntegrityError(f"unknown conversation type {conv.kind!r}") from exc
    members = list(conv.members)
    members_json = dump_json(members, "members")
    return (
        conv.cid,
        int(kind),
        conv.creator,
        members_json,
        dump_json(conv.attrs, "attrs"),
        conv.created_at,
        conv.updated_at,
        int(bool(conv.unique)),
        conv.unique_id,
        dump_json(list(conv.muted), "muted"),
        conv.last_message_at,
        conv.expire_at,
        conv.version,
        members_key(members) if is_unique_normal(conv) else None,
    )


def conversation_of_row(row: Any) -> Conversation:
    return Conversation(
        cid=row[0],
        kind=ConvType(row[1]),
        creator=row[2],
        members=orjson.loads(row[3]),
        attrs=orjson.loads(row[4]),
        created_at=row[5],
        updated_at=row[6],
        unique=bool(row[7]),
        unique_id=row[8],
        muted=orjson.loads(row[9]),
        last_message_at=row[10],
        expire_at=row[11],
        version=row[12],
    )


def save_conversation(db: Db, conv: Conversation) -> int:
    """Replace a stored conversation of the same version inside the caller's
    transaction (``Store.save_conversation``); the new version."""
    row = conversation_row(conv)
    old = db.execute("SELECT members FROM conversations WHERE cid = ?", (conv.cid,)).fetchall()
    if not old:
        raise NotFoundError(f"conversation {conv.cid!r} does not exist")
    last = row[10]
    # PostgreSQL: a save committed after the SELECT above leaves no row to update here.
    done = db.execute(CONV_UPDATE, (*row[1:10], last, last, row[11], row[13], conv.cid, row[12]))
    if done.rowcount != 1:
        raise ConflictError(f"conversation {conv.cid!r} was saved meanwhile")
    # Only the difference: saving a 500-member group's name rewrites no member row.
    old_members, new_members = set(orjson.loads(old[0][0])), set(conv.members)
    db.executemany(
        "DELETE FROM conversation_members WHERE member = ? AND cid = ?",
        [(member, conv.cid) for member in old_members - new_members],
    )
    db.executemany(
        "INSERT INTO conversation_members (member, cid) VALUES (?, ?)",
        [(member, conv.cid) for member in new_members - old_members],
    )
    return conv.version + 1


def create_conversation(db: Db, conv: Conversation) -> None:
    """Insert a new conversation and its member rows inside the caller's transaction."""
    db.execute(CONV_INSERT, conversation_row(conv))
    db.executemany(
        "INSERT INTO conversation_members (member, cid) VALUES (?, ?) ON CONFLICT DO NOTHING",
        [(member, conv.cid) for member in dict.fromkeys(conv.members)],
    )


class Rows(Protocol):
    """What the shared SQL functions use of a cursor (``sqlite3`` and psycopg alike)."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...

    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def close(self) -> None: ...


def threads_of(conv: Conversation | None) -> list[str]:
    """Where a system conversation keeps what it and each subscriber wrote to the other
    (``core.ids.thread_cid``): messages apart from its own, deleted with it. None for
    the other kinds."""
    if conv is None or conv.kind is not ConvType.SYSTEM:
        return []
    return [thread_cid(conv.cid, member) for member in conv.members]


class Db(Protocol):
    """A connection as the shared SQL functions use it: ``?`` placeholders (``?N`` for
    the N-th parameter), SQL both SQLite and PostgreSQL accept."""

    def execute(self, sql: str, params: Any = ..., /) -> Rows: ...

    def executemany(self, sql: str, params: Iterable[Any], /) -> Rows: ...
