"""The store ``--db`` names: ``:memory:``, a PostgreSQL URL, or else a SQLite file."""

from __future__ import annotations

from .base import Store
from .memory import MemoryStore
from .sqlite import SqliteStore

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def open_store(db: str) -> Store:
    """The (unopened) store that ``db`` names. StoreError for a PostgreSQL URL that
    libpq cannot read."""
    if db == ":memory:":
        return MemoryStore()
    if db.startswith(POSTGRES_SCHEMES):
        from .postgres import PostgresStore  # psycopg only when it is used

        return PostgresStore(db)
    return SqliteStore(db)
