"""Stored conversations and messages made for tests, and the reference history pages
they must give: shared by the store contract suite and the pure paging tests; and
SQLite files as older schema versions left them, for the migration tests."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from chatroom.core.model import Bound, Conversation, ConvType, Direction, HistoryQuery, Message


def make_conv(
    cid: str = "c1", members: tuple[str, ...] = ("alice", "bob"), **kw: object
) -> Conversation:
    """A normal conversation created at 1000 by its first member."""
    fields: dict[str, object] = {
        "cid": cid,
        "kind": ConvType.NORMAL,
        "creator": members[0] if members else "alice",
        "members": list(members),
        "attrs": {"name": cid},
        "created_at": 1000,
        "updated_at": 1000,
    }
    fields.update(kw)
    return Conversation(**fields)  # type: ignore[arg-type]


def make_msg(cid: str, timestamp: int, mid: str, **kw: object) -> Message:
    """A text message (``data`` defaults to a text naming it)."""
    fields: dict[str, object] = {
        "cid": cid,
        "mid": mid,
        "from_peer": "alice",
        "timestamp": timestamp,
    }
    fields.update(kw)
    if "binary" not in fields and "data" not in fields:
        fields["data"] = f"text {mid}"
    return Message(**fields)  # type: ignore[arg-type]


def positions(messages: list[Message]) -> list[tuple[int, str]]:
    return [(m.timestamp, m.mid) for m in messages]


def stamps(messages: list[Message]) -> list[int]:
    return [m.timestamp for m in messages]


FIVE = [make_msg("c1", ts, mid) for ts, mid in zip(range(1, 6), "abcde", strict=True)]
EXAMPLES: list[tuple[HistoryQuery, list[int]]] = [
    (HistoryQuery("c1", limit=2), [4, 5]),
    (HistoryQuery("c1", limit=2, start=Bound(4)), [2, 3]),
    (HistoryQuery("c1", limit=2, start=Bound(4, inclusive=True)), [3, 4]),
    (HistoryQuery("c1", limit=2, direction=Direction.NEW), [1, 2]),
    (HistoryQuery("c1", start=Bound(2), end=Bound(5), direction=Direction.NEW), [3, 4]),
    (
        HistoryQuery(
            "c1",
            start=Bound(2, inclusive=True),
            end=Bound(5, inclusive=True),
            direction=Direction.NEW,
        ),
        [2, 3, 4, 5],
    ),
    (HistoryQuery("c1"), [1, 2, 3, 4, 5]),
    (HistoryQuery("c1", start=Bound(5), end=Bound(2)), [3, 4]),
    (HistoryQuery("c1", start=Bound(5), end=Bound(2, inclusive=True), limit=10), [2, 3, 4]),
    (HistoryQuery("c1", start=Bound(4, "d"), limit=2), [2, 3]),
    (HistoryQuery("c1", start=Bound(4, "d", inclusive=True), limit=2), [3, 4]),
    (HistoryQuery("c1", start=Bound(3), direction=Direction.NEW), [4, 5]),
    (HistoryQuery("c1", end=Bound(3)), [4, 5]),
    (HistoryQuery("c1", end=Bound(3, inclusive=True), limit=2), [4, 5]),
    (HistoryQuery("c1", end=Bound(3), direction=Direction.NEW), [1, 2]),
    (HistoryQuery("c1", start=Bound(1)), []),
    (HistoryQuery("c1", start=Bound(5), direction=Direction.NEW), []),
    (HistoryQuery("c1", start=Bound(3), end=Bound(3)), []),
    (HistoryQuery("c1", start=Bound(3, inclusive=True), end=Bound(3, inclusive=True)), [3]),
    (HistoryQuery("c1", limit=1000, lctype=None), [1, 2, 3, 4, 5]),
    (HistoryQuery("c2"), []),
]


def reference_page(messages: list[Message], q: HistoryQuery) -> list[Message]:
    """The history semantics written as plainly as possible, for comparison."""

    def cmp(m: Message, b: Bound) -> int:
        """-1, 0, 1 as message ``m`` is before, on, after bound ``b``."""
        if m.timestamp != b.timestamp or b.mid is None:
            return (m.timestamp > b.timestamp) - (m.timestamp < b.timestamp)
        return (m.mid > b.mid) - (m.mid < b.mid)

    def newer(a: Bound, b: Bound) -> bool:
        if a.timestamp != b.timestamp:
            return a.timestamp > b.timestamp
        return a.mid is not None and b.mid is not None and a.mid > b.mid

    lower, upper = (q.start, q.end) if q.direction == Direction.NEW else (q.end, q.start)
    if lower is not None and upper is not None and newer(lower, upper):
        lower, upper = upper, lower
    found = sorted(
        (
            m
            for m in messages
            if m.cid == q.cid
            and (q.lctype is None or m.lctype == q.lctype)
            and (lower is None or cmp(m, lower) > 0 or (lower.inclusive and cmp(m, lower) == 0))
            and (upper is None or cmp(m, upper) < 0 or (upper.inclusive and cmp(m, upper) == 0))
        ),
        key=lambda m: (m.timestamp, m.mid),
    )
    return found[: q.limit] if q.direction == Direction.NEW else found[-q.limit :]


def old_sqlite_file(path: Path, statements: Iterable[str], version: int) -> None:
    """A SQLite file as schema ``version`` left it: ``statements`` (that version's
    tables, then its rows) run in one transaction, and its ``user_version``."""
    with sqlite3.connect(path) as db:
        for statement in statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()
