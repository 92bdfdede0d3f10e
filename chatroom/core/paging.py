"""History selection over messages held in memory (chatroom buffers, the memory store).
Pure; the same rules as ``HistoryQuery`` documents and the SQLite store implements."""

from __future__ import annotations

from collections.abc import Iterable

from chatroom.store.base import Bound, Direction, HistoryQuery, Message
from chatroom.store.common import history_interval


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
