"""``chatroom backup PATH`` (chatroom/cli/backup.py, store/sqlite_backup.py): a copy
taken while a client keeps sending opens as a store and holds every message that was
acknowledged before the copy began."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import trio
from helpers import conversation, fail_after, running_server, users

from chatroom.cli.main import main
from chatroom.core.model import Bound, HistoryQuery
from chatroom.store import sqlite_backup
from chatroom.store.sqlite import SqliteStore


@fail_after(60)
async def test_a_backup_under_write_load_holds_every_acknowledged_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, copy = tmp_path / "chat.db", tmp_path / "copy.db"
    acked: list[str] = []
    async with (
        running_server({"db": str(db)}) as running,
        users(running, "alice", "bob") as (alice, bob),
    ):
        cid = await conversation(alice, bob)
        for i in range(200):  # enough pages for many steps of two
            acked.append((await alice.say(cid, f"{i:04} " + "x" * 1000))["uid"])

        async def keep_sending() -> None:
            for i in range(200, 100_000):
                acked.append((await alice.say(cid, f"{i:04}"))["uid"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_sending)
            before = len(acked)
            # about 120 steps of one page, 20 ms apart: the copy takes over two seconds,
            # so acknowledgements come while it runs, even on a loaded machine
            args = ["backup", str(copy), "--db", str(db), "--pages", "1", "--pause", "0.02"]
            assert await trio.to_thread.run_sync(main, args) == 0
            during = len(acked)
            nursery.cancel_scope.cancel()
        assert during > before  # the server kept acknowledging while it copied
    assert "backed up" in capsys.readouterr().out
    store = SqliteStore(str(copy))
    await store.open()
    try:
        stored = await all_ids(store, cid)
    finally:
        await store.aclose()
    assert set(acked[:before]) <= set(stored)
    assert stored == acked[: len(stored)]  # a snapshot: acknowledged ones, in order


async def all_ids(store: SqliteStore, cid: str) -> list[str]:
    ids: list[str] = []
    query = HistoryQuery(cid, limit=1000)
    while page := await store.query_messages(query):
        ids = [m.mid for m in page] + ids
        oldest = page[0]
        query = HistoryQuery(cid, limit=1000, start=Bound(oldest.timestamp, oldest.mid))
    return ids


def test_backup_refuses_to_overwrite_and_needs_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    existing = tmp_path / "there.db"
    existing.write_text("keep me")
    assert main(["backup", str(existing), "--db", str(tmp_path / "none.db")]) == 1
    assert "no such database" in capsys.readouterr().err
    db = tmp_path / "chat.db"
    db.write_bytes(b"")
    assert main(["backup", str(existing), "--db", str(db)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert existing.read_text() == "keep me"
    assert main(["backup", str(tmp_path / "x.db"), "--db", ":memory:"]) == 1
    assert "in-memory" in capsys.readouterr().err


def test_the_pause_comes_between_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--pause`` waits between every two steps, not only after a busy one (sqlite3's
    own ``sleep``): a step of one page each, a pause after each but the last."""
    db = tmp_path / "chat.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x BLOB)")
        conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 3000,)] * 5)
    conn.close()
    pauses: list[float] = []
    steps: list[int] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    pages = sqlite_backup.backup(
        str(db),
        str(tmp_path / "copy.db"),
        pages=1,
        pause=0.25,
        progress=lambda _status, remaining, _total: steps.append(remaining),
    )
    assert pages >= 6
    assert steps[-1] == 0
    assert len(steps) == pages
    assert pauses == [0.25] * (pages - 1)
