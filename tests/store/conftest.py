"""The ``store`` fixture of the store contract suites: every test that takes it runs
against each implementation, so that they cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from helpers import TIMEOUT
from pg_server import PgServer, own_pg_server, pg_server

from chatroom.store.base import Store
from chatroom.store.memory import MemoryStore
from chatroom.store.postgres import PostgresStore
from chatroom.store.sqlite import SqliteStore

__all__ = ["own_pg_server", "pg_server", "store"]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store of each kind (SQLite on a file under ``tmp_path``, PostgreSQL in a
    database of its own on the session's server), closed after the test, which fails
    rather than hangs after ``TIMEOUT`` seconds."""
    opened: Store
    database = None
    pg: PgServer | None = None
    if request.param == "postgres":
        pg = request.getfixturevalue("pg_server")
        database = pg.create_database()
        opened = PostgresStore(pg.url(database))
    elif request.param == "memory":
        opened = MemoryStore()
    else:
        opened = SqliteStore(str(tmp_path / "chat.db"))
    await opened.open()
    try:
        with trio.fail_after(TIMEOUT):
            yield opened
    finally:
        await opened.aclose()
        if pg is not None and database is not None:
            pg.drop_database(database)
