"""History selection over messages held in memory (chatroom buffers, the memory store).
Pure; the same rules as ``HistoryQuery`` documents and the SQLite store implements."""

from __future__ import annotations

from collections.abc import Iterable

from chatroom.core.model import Bound, Direction, HistoryQuery, Message


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


def select(messages: Iterable[Message], query: HistoryQuery) -> list[Message]:
    """The page ``query`` asks for, ascending by ``(timestamp, mid)``."""
    lower, upper = history_interval(query)
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
