"""Rules both stores share, so that they agree by construction rather than by care.

Everything here is pure: no I/O, no trio.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from .base import JSON, Bound, Conversation, ConvType, Direction, HistoryQuery, IntegrityError

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


def check_int64(value: int | None, what: str) -> None:
    """IntegrityError unless ``value`` is None or fits a signed 64-bit integer."""
    if value is not None and not INT64_MIN <= value <= INT64_MAX:
        raise IntegrityError(f"{what} {value} is outside the 64-bit integer range")


def history_interval(query: HistoryQuery) -> tuple[Bound | None, Bound | None]:
    """The ``(lower, upper)`` bounds of a history query, lower being the older one.

    ``OLD`` reads from ``start`` towards ``end`` (start is the upper bound), ``NEW`` the
    other way. Clients do send bounds in the wrong order for the direction (the JS SDK
    picks NEW only when ``tt > t``), so a reversed pair is swapped, each bound keeping its
    own ``inclusive`` flag, rather than yielding an empty page.
    """
    if query.direction == Direction.NEW:
        lower, upper = query.start, query.end
    else:
        lower, upper = query.end, query.start
    if lower is not None and upper is not None and _newer(lower, upper):
        lower, upper = upper, lower
    return lower, upper


def _newer(a: Bound, b: Bound) -> bool:
    """Whether position ``a`` is strictly after ``b``; a missing mid compares equal."""
    if a.timestamp != b.timestamp:
        return a.timestamp > b.timestamp
    return a.mid is not None and b.mid is not None and a.mid > b.mid
