"""The SELECT of ``select_conversations``, for every SQL store.

Membership, ids, types, creators, time ranges and expiry are plain SQL both SQLite and
PostgreSQL run; what differs is how a JSON attribute is read, compared and sorted, which a
``SelectDialect`` supplies. Pure: builds text and parameters (``?`` placeholders).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatroom.core.model import ConvFilter, ConvOrder

from .common import CONV_COLUMNS, json_path

# Columns for ConvFilter ranges and ConvOrder fields. "activity" is the expression of the
# conversations_activity index, written the same way so that the planner uses it.
ORDER_SQL = {
    "activity": "coalesce(c.last_message_at, c.created_at)",
    "lm": "c.last_message_at",
    "createdAt": "c.created_at",
    "updatedAt": "c.updated_at",
    "objectId": "c.cid",
    "c": "c.creator",
}
_NOT_NULL = frozenset({"activity", "createdAt", "updatedAt", "objectId", "c"})
_IN_MEMBER = "c.cid IN (SELECT cid FROM conversation_members WHERE member = ?)"
_CONV_SELECT_C = f"SELECT {', '.join('c.' + c for c in CONV_COLUMNS)}"


class SelectDialect(Protocol):
    """How one SQL engine reads the JSON attributes of ``c.attrs``."""

    # The expression of the conversations_name index: the name when it is a text.
    name_sql: str

    def attr_equals(self, path: str, value: object, args: list[object]) -> str | None:
        """The condition "the attribute equals ``value`` or is an array or object", or
        None to leave the decision to the caller's matcher."""

    def attr_regex(self, path: str, pattern: str, options: str, args: list[object]) -> str | None:
        """The condition of ``ConvFilter.attr_regex``, or None when the store checks it
        itself on the rows the query returns (``regex_in_sql`` False)."""

    def order_terms(self, field: str, direction: str, args: list[object]) -> list[str]:
        """ORDER BY terms of an attribute: JSON values ordered as SQLite orders
        ``json_extract`` (numbers and booleans, then texts), missing ones last."""


class _Sqlite:
    name_sql = "json_extract(c.attrs, '$.name')"  # as conversations_name writes it

    def attr_equals(self, path: str, value: object, args: list[object]) -> str | None:
        if path == "name" and isinstance(value, str):
            # Names are always strings (the service refuses others): the index alone decides.
            args.append(value)
            return f"{self.name_sql} = ?"
        jpath = json_path(path)
        if jpath is None:
            return None  # the caller's matcher decides
        args += [jpath, value, jpath]
        return "(json_extract(c.attrs, ?) = ? OR json_type(c.attrs, ?) IN ('array', 'object'))"

    def attr_regex(self, path: str, pattern: str, options: str, args: list[object]) -> str | None:
        jpath = json_path(path)
        if jpath is None:
            return None
        args += [jpath, pattern, options, jpath]
        return (
            "(json_type(c.attrs, ?) IN ('array', 'object')"
            " OR chatroom_regexp(?, ?, json_extract(c.attrs, ?)))"
        )

    def order_terms(self, field: str, direction: str, args: list[object]) -> list[str]:
        if field == "name":
            return [f"{self.name_sql} {direction} NULLS LAST"]  # the conversations_name index
        args.append(json_path(field) or '$.""')
        return [f"json_extract(c.attrs, ?) {direction} NULLS LAST"]


SqliteSelect: SelectDialect = _Sqlite()


def select_sql(
    where: ConvFilter, order: Sequence[ConvOrder], dialect: SelectDialect
) -> tuple[str, list[object]]:
    """The SELECT for ``select_conversations`` (its LIMIT and OFFSET parameters last).

    The first required member drives the query from ``conversation_members`` (one range
    of its primary key); names go through the ``conversations_name`` expression index;
    other attribute equalities are checked on the rows the indexes leave.
    """
    source = "conversations AS c"
    args: list[object] = []
    members = list(where.members_all)
    drive = []
    if members:
        source = "conversation_members AS m0 JOIN conversations AS c ON c.cid = m0.cid"
        drive.append("m0.member = ?")
        args.append(members.pop(0))
    clauses = drive + _filter_clauses(where, members, args, dialect)
    terms: list[str] = []
    for key in order:
        direction = "DESC" if key.descending else "ASC"
        expr = ORDER_SQL.get(key.field)
        if expr is None:
            terms += dialect.order_terms(key.field, direction, args)
        else:
            # NOT NULL columns need no NULLS LAST, which would keep their index out.
            nulls = "" if key.field in _NOT_NULL else " NULLS LAST"
            terms.append(f"{expr} {direction}{nulls}")
    # Ties go by cid in the first key's direction, so that one index scan (forwards or
    # backwards) yields the whole order.
    terms.append("c.cid DESC" if order and order[0].descending else "c.cid")
    sql = f"{_CONV_SELECT_C} FROM {source}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql + f" ORDER BY {', '.join(terms)} LIMIT ? OFFSET ?", args


def has_regex(where: ConvFilter) -> bool:
    """Whether ``where`` or one of its branches filters by a regular expression."""
    return bool(where.attr_regex) or any(has_regex(branch) for branch in where.any_of)


def _filter_clauses(
    where: ConvFilter, members: list[str], args: list[object], dialect: SelectDialect
) -> list[str]:
    """The AND-ed SQL conditions of ``where`` (``members``: the required members not
    already joined), their parameters appended to ``args``."""
    clauses: list[str] = []
    for member in members:
        clauses.append(_IN_MEMBER)
        args.append(member)
    if where.cids is not None:
        clauses.append(f"c.cid IN ({', '.join('?' * len(where.cids))})")
        args += where.cids
    if where.members_any is not None:
        marks = ", ".join("?" * len(where.members_any))
        clauses.append(f"c.cid IN (SELECT cid FROM conversation_members WHERE member IN ({marks}))")
        args += where.members_any
    if where.kinds is not None:
        clauses.append(f"c.kind IN ({', '.join('?' * len(where.kinds))})")
        args += sorted(int(k) for k in where.kinds)
    if where.creator is not None:
        clauses.append("c.creator = ?")
        args.append(where.creator)
    for name, op, ms in where.ranges:
        clauses.append(f"{ORDER_SQL[name]} {op} ?")
        args.append(ms)
    for path, value in where.attr_equals:
        clause = dialect.attr_equals(path, value, args)
        if clause is not None:
            clauses.append(clause)
    if where.alive_at is not None:
        clauses.append("(c.expire_at IS NULL OR c.expire_at > ?)")
        args.append(where.alive_at)
    for path, pattern, options in where.attr_regex:
        clause = dialect.attr_regex(path, pattern, options, args)
        if clause is not None:
            clauses.append(clause)
    if where.name_prefix is not None:
        # A range of the conversations_name index: every text that starts with it.
        clauses.append(f"{dialect.name_sql} >= ? AND {dialect.name_sql} < ?")
        args += [where.name_prefix, where.name_prefix + "\U0010ffff"]
    if where.any_of:
        branches = []
        for branch in where.any_of:
            inner = _filter_clauses(branch, list(branch.members_all), args, dialect)
            branches.append("(" + (" AND ".join(inner) or "TRUE") + ")")
        clauses.append("(" + " OR ".join(branches) + ")")
    return clauses
