"""``Store.query_all_messages``: the history of every conversation by time, against
every store, with the paging of a conversation's history; and the SQLite index it
reads, added to an older file in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import trio
from helpers import TIMEOUT
from store_examples import make_conv, make_msg, old_sqlite_file

from chatroom.core.model import Bound, Direction, HistoryQuery
from chatroom.store.base import Store
from chatroom.store.sqlite import SCHEMA_VERSION, SqliteStore
from chatroom.store.sqlite_schema import LASTING_SCHEMA, MODERATION_SCHEMA, SCHEMA


async def _three_conversations(store: Store) -> list[str]:
    for cid in ("c1", "c2", "c3"):
        await store.create_conversation(make_conv(cid))
    # Interleaved in time, two at the same millisecond in different conversations.
    batch = [make_msg(f"c{1 + i % 3}", 100 + i // 2, f"m{i:02}") for i in range(12)]
    await store.append_messages(batch)
    return [m.mid for m in batch]


async def test_every_conversation_pages_by_time(store: Store) -> None:
    mids = await _three_conversations(store)
    newest = await store.query_all_messages(HistoryQuery("", limit=5))
    assert [m.mid for m in newest] == mids[-5:]
    assert {m.cid for m in newest} == {"c1", "c2", "c3"}
    # Paging on from the oldest of a page, exclusive: every message once, no gaps.
    seen = [m.mid for m in newest]
    while True:
        start = Bound(newest[0].timestamp, newest[0].mid, inclusive=False)
        newest = await store.query_all_messages(HistoryQuery("", limit=5, start=start))
        if not newest:
            break
        seen[:0] = [m.mid for m in newest]
    assert seen == mids
    oldest = await store.query_all_messages(HistoryQuery("", limit=4, direction=Direction.NEW))
    assert [m.mid for m in oldest] == mids[:4]
    end = Bound(102, None, inclusive=True)
    window = HistoryQuery("", limit=100, start=Bound(101, None, True), end=end,
                          direction=Direction.NEW)  # fmt: skip
    assert [m.timestamp for m in await store.query_all_messages(window)] == [101] * 2 + [102] * 2
    assert await store.delete_message("c2", mids[1])
    assert mids[1] not in [m.mid for m in await store.query_all_messages(HistoryQuery(""))]


async def test_a_version_3_file_gets_the_time_index_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    row = (
        "INSERT INTO messages (cid, mid, from_peer, timestamp, data, mention_all)"
        " VALUES ('c1', 'm1', 'alice', 7, 'kept', 0)"
    )
    old_sqlite_file(path, [*SCHEMA, *LASTING_SCHEMA, *MODERATION_SCHEMA, row], 3)
    assert SCHEMA_VERSION == 5
    with trio.fail_after(TIMEOUT):
        store = SqliteStore(str(path))
        await store.open()
        try:
            assert [m.mid for m in await store.query_all_messages(HistoryQuery(""))] == ["m1"]
        finally:
            await store.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = db.execute(
            "EXPLAIN QUERY PLAN SELECT mid FROM messages ORDER BY timestamp DESC, mid DESC LIMIT 5"
        ).fetchall()
        assert "messages_time" in str(plan)
    db.close()
