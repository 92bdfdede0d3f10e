"""History selection over messages held in memory (chatroom buffers, the memory store).
Pure; the same rules as ``HistoryQuery`` documents and the SQLite store implements."""

from __future__ import annotations

from collections.abc import Iterable

from chatroom.store.base import Bound, Direction, HistoryQuery, Message


def _key(message: Message) -> tuple[int, str]:
    return (message.timestamp, message.mid)


def _before(message: Message, bound: Bound) -> bool:
    """``message`` lies before ``bound`` (or on it, if the bound is inclusive)."""
    if bound.mid is None:
        ts = message.timestamp
        return ts <= bound.timestamp if bound.inclusive else ts < bound.timestamp
    key, edge = _key(message), (bound.timestamp, bound.mid)
    return key <= edge if bound.inclusive else key < edge


def _after(message: Message, bound: Bound) -> bool:
    if bound.mid is None:
        ts = message.timestamp
        return ts >= bound.timestamp if bound.inclusive else ts > bound.timestamp
    key, edge = _key(message), (bound.timestamp, bound.mid)
    return key >= edge if bound.inclusive else key > edge


def normalized(query: HistoryQuery) -> tuple[Bound | None, Bound | None]:
    """``(lower, upper)`` bounds of the interval, whatever order the client gave."""
    start, end = query.start, query.end
    if query.direction is Direction.OLD:
        upper, lower = start, end
    else:
        lower, upper = start, end
    if lower is not None and upper is not None and _newer(lower, upper):
        lower, upper = upper, lower
    return lower, upper


def _newer(a: Bound, b: Bound) -> bool:
    """``a`` lies strictly after ``b``. A bound without mid is level with every position
    in its millisecond, so it is never swapped with one of the same millisecond (the
    stores' rule, ``store/common.py``)."""
    if a.timestamp != b.timestamp:
        return a.timestamp > b.timestamp
    return a.mid is not None and b.mid is not None and a.mid > b.mid


def select(messages: Iterable[Message], query: HistoryQuery) -> list[Message]:
    """The page ``query`` asks for, ascending by ``(timestamp, mid)``."""
    lower, upper = normalized(query)
    chosen = [
        m
        for m in messages
        if (lower is None or _after(m, lower))
        and (upper is None or _before(m, upper))
        and (query.lctype is None or m.lctype == query.lctype)
    ]
    chosen.sort(key=_key)
    if query.direction is Direction.OLD:
        return chosen[-query.limit :] if query.limit else []
    return chosen[: query.limit]
