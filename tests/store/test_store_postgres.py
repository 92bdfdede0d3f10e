"""What only the PostgreSQL store has: versioned migrations (also two nodes starting at
once), refusing databases it did not create, deadlines when the server is gone, and
recovering by itself when it returns. The contract suites run on it too (conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trio
from pg_server import PgServer
from store_examples import make_conv, make_msg

from chatroom.core.model import HistoryQuery
from chatroom.store.base import IntegrityError, StoreError
from chatroom.store.factory import open_store
from chatroom.store.memory import MemoryStore
from chatroom.store.postgres import SCHEMA_VERSION, PostgresStore
from chatroom.store.sqlite import SqliteStore

TIMEOUT = 30


@pytest.fixture
def database(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


def versions(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY 1")]


async def test_two_nodes_starting_at_once_migrate_once(database: str) -> None:
    stores = [PostgresStore(database) for _ in range(3)]
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for store in stores:
                nursery.start_soon(store.open)
        await stores[0].create_conversation(make_conv("c1"))
        assert await stores[2].get_conversation("c1") == make_conv("c1")
        for store in stores:
            await store.aclose()
        again = PostgresStore(database)  # a restart finds the schema and keeps the data
        await again.open()
        assert await again.get_conversation("c1") == make_conv("c1")
        await again.aclose()
    assert versions(database) == list(range(1, SCHEMA_VERSION + 1))


async def test_content_is_stored_as_is_unless_it_holds_nul_and_old_rows_are_migrated(
    database: str,
) -> None:
    plain, nul = make_msg("c1", 1, "plain", data="x\uffff0"), make_msg("c1", 2, "n", data="\0")
    with trio.fail_after(TIMEOUT):
        store = PostgresStore(database)
        await store.open()
        await store.append_messages([plain, nul])
        await store.aclose()
    with psycopg.connect(database) as conn:
        stored: dict[str, str] = dict(conn.execute("SELECT mid, data FROM messages").fetchall())
        assert stored == {"plain": "x\uffff0", "n": "\uffff\uffff0"}
        # A database of version 1, which stored content as it was: a message starting
        # with the marker is escaped by the migration to version 2.
        conn.execute("DELETE FROM schema_version WHERE version > 1")
        conn.execute("DELETE FROM messages WHERE mid = 'n'")
        conn.execute(
            "INSERT INTO messages (cid, mid, from_peer, timestamp, data, mention_all)"
            " VALUES ('c1', 'old', 'alice', 3, %s, 0)",
            ("\uffff0\uffff\uffff",),
        )
    with trio.fail_after(TIMEOUT):
        store = PostgresStore(database)
        await store.open()
        old = await store.get_message("c1", "old")
        assert old is not None
        assert old.data == "\uffff0\uffff\uffff"
        assert await store.get_message("c1", "plain") == plain
        await store.aclose()
    assert versions(database) == list(range(1, SCHEMA_VERSION + 1))


async def test_a_newer_schema_is_refused(database: str) -> None:
    with trio.fail_after(TIMEOUT):
        store = PostgresStore(database)
        await store.open()
        await store.aclose()
        with psycopg.connect(database) as conn:
            conn.execute("INSERT INTO schema_version VALUES (%s)", (SCHEMA_VERSION + 1,))
        with pytest.raises(StoreError, match="newer"):
            await PostgresStore(database).open()


async def test_a_database_of_something_else_is_refused_and_left_alone(database: str) -> None:
    with psycopg.connect(database) as conn:
        conn.execute("CREATE TABLE invoices (id int)")
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError, match="not a chatroom database"):
        await PostgresStore(database).open()
    with psycopg.connect(database) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        assert [row[0] for row in tables] == ["invoices"]  # the refusal rolled back


async def test_an_unreachable_server_fails_under_its_deadline(tmp_path: Path) -> None:
    store = PostgresStore(f"postgresql://nobody@/chat?host={tmp_path}&port=1")
    with trio.fail_after(TIMEOUT), pytest.raises(StoreError, match="cannot connect"):
        await store.open()
    with pytest.raises(StoreError, match="not a PostgreSQL URL"):
        PostgresStore("postgresql://[broken")


async def test_text_postgresql_cannot_hold_is_refused_and_changes_nothing(database: str) -> None:
    store = PostgresStore(database)
    with trio.fail_after(TIMEOUT):
        await store.open()
        try:
            # Content keeps it (postgres_sql.NUL_MARK); an id cannot (clients' ids are
            # refused at the boundary, chatroom/protocol/ids.py).
            bad = make_msg("c1", 1, "a", dedupe_token="nul \x00 inside")
            with pytest.raises(IntegrityError, match="NUL"):
                await store.append_messages([bad])
            with pytest.raises(IntegrityError):
                await store.create_conversation(make_conv("c2", attrs={"name": "\x00"}))
            await store.append_messages([make_msg("c1", 2, "b")])
            assert [m.mid for m in await store.query_messages(HistoryQuery("c1"))] == ["b"]
            assert await store.get_conversation("c2") is None
        finally:
            await store.aclose()


async def test_the_store_fails_while_the_server_is_down_and_recovers(
    own_pg_server: PgServer,
) -> None:
    name = own_pg_server.create_database()
    store = PostgresStore(own_pg_server.url(name))
    with trio.fail_after(TIMEOUT):
        await store.open()
        try:
            await store.append_messages([make_msg("c1", 1, "before")])
            await trio.to_thread.run_sync(own_pg_server.stop)
            with pytest.raises(StoreError) as refused:
                await store.append_messages([make_msg("c1", 2, "lost")])
            assert not isinstance(refused.value, IntegrityError)
            with pytest.raises(StoreError):
                await store.query_messages(HistoryQuery("c1"))
            await trio.to_thread.run_sync(own_pg_server.start)
            await store.append_messages([make_msg("c1", 3, "after")])
            got = await store.query_messages(HistoryQuery("c1"))
            assert [m.mid for m in got] == ["before", "after"]
        finally:
            await store.aclose()


def test_db_names_its_store(tmp_path: Path) -> None:
    assert isinstance(open_store(":memory:"), MemoryStore)
    assert isinstance(open_store(str(tmp_path / "chat.db")), SqliteStore)
    for url in ("postgresql://chat@db.example:5432/chat", "postgres://chat@/chat?host=/run"):
        assert isinstance(open_store(url), PostgresStore)
