"""The default store: one SQLite file in WAL mode, driven from worker threads.

Threads and connections (ecosystem.md section 1, pitfalls 11 and 12):

* one writer connection, used only through ``trio.to_thread.run_sync`` with the store's
  own ``CapacityLimiter(1)``: that limiter is what serializes writes, and it keeps the
  store off trio's shared default limiter. ``to_thread`` may pick a different thread each
  time, hence ``check_same_thread=False``;
* a small pool of ``query_only`` read connections behind a second limiter: WAL lets them
  read while a batch is being written, and each read sees whole transactions only.

Every write is one short ``BEGIN IMMEDIATE`` transaction; ``append_messages`` writes a
whole batch in one (group commit), which is what makes ack-after-commit affordable.
A cancelled caller still waits for its thread: the operation may have committed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import orjson
import trio

from . import sqlite_marks as marks_table
from . import sqlite_messages as messages_table
from .base import IntegrityError, StoreError
from .common import (
    Db,
    regex_passes,
)
from .select_sql import SqliteSelect
from .sql_store import Dialect, SqlStore
from .sqlite_schema import SCHEMA_VERSION, migrate

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


# Values SQLite refuses (types, ranges, encodings), reported as the interface's error.
_BAD_DATA = (sqlite3.IntegrityError, OverflowError, UnicodeEncodeError, orjson.JSONEncodeError)


class SqliteStore(SqlStore):
    """A ``Store`` in the SQLite database file at ``path`` (created if missing)."""

    _dialect = Dialect(
        select=SqliteSelect,
        unread_add=marks_table.UNREAD_ADD,
        find_by_dedupe_token=messages_table.FIND_BY_DEDUPE_TOKEN,
        recent_dedupe_tokens=messages_table.RECENT_DEDUPE_TOKENS,
        snapshot="BEGIN",
    )

    def __init__(self, path: str, *, readers: int = 4, busy_timeout_ms: int = 5000) -> None:
        if path in ("", ":memory:") or path.startswith("file::memory:"):
            # Each connection would get its own empty database; use MemoryStore.
            raise ValueError("SqliteStore needs a file; use MemoryStore for ':memory:'")
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: sqlite3.Connection | None = None
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(readers)
        self._idle_readers: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()  # the pool is used from worker threads
        self._closed = False

    async def open(self) -> None:
        """Open the file, switch it to WAL and create or check the schema.

        StoreError if the file is not a chatroom database, or was written by a newer
        version of chatroom (its schema version is higher than ``SCHEMA_VERSION``).
        """
        self._writer = await trio.to_thread.run_sync(self._open_writer, limiter=self._write_limiter)

    async def aclose(self) -> None:
        """Close every connection, after the write in progress (if any) has finished."""
        with trio.CancelScope(shield=True):  # cleanup must happen even when cancelled
            await trio.to_thread.run_sync(self._close_all, limiter=self._write_limiter)

    # connections (these run in worker threads)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        # ConvFilter.attr_regex: rows are tested before they are decoded.
        db.create_function("chatroom_regexp", 3, _regexp, deterministic=True)
        return db

    def _open_writer(self) -> sqlite3.Connection:
        db = self._connect()
        try:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self._path}: cannot use WAL journal mode (got {mode})")
            db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable but for power loss
            db.execute("PRAGMA cache_size = -32768")  # 32 MiB: index pages of busy conversations
            # A batch spread over many conversations dirties one index leaf per message;
            # the default (checkpoint every 1000 pages, 4 MiB) then copies pages back to
            # the file after nearly every commit. Every 40 MiB, pages rewritten by
            # consecutive commits are copied once: about twice the sustained rows/s.
            db.execute("PRAGMA wal_autocheckpoint = 10000")
            db.execute("PRAGMA journal_size_limit = 67108864")  # truncate the WAL back to 64 MiB
            with _transaction(db):
                migrate(db, self._path)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StoreError(f"{self._path}: not a usable SQLite database: {exc}") from exc
        except BaseException:
            db.close()
            raise
        return db

    def _connect_reader(self) -> sqlite3.Connection:
        db = self._connect()
        db.execute("PRAGMA query_only = 1")  # a bug in a read path cannot write
        return db

    def _with_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._pool_lock:
            db = self._idle_readers.pop() if self._idle_readers else None
        if db is None:
            db = self._connect_reader()
        try:
            return fn(db)
        finally:
            with self._pool_lock:
                if self._closed:
                    db.close()
                else:
                    self._idle_readers.append(db)

    def _close_all(self) -> None:
        with self._pool_lock:
            self._closed = True
            readers, self._idle_readers = self._idle_readers, []
        for db in readers:
            db.close()
        if self._writer is not None:
            # Closing the last connection checkpoints the WAL into the main file.
            self._writer.close()
            self._writer = None

    async def _write(self, fn: Callable[[Db], T]) -> T:
        db = self._writer
        if db is None:
            raise StoreError("the store is not open")
        return await trio.to_thread.run_sync(_in_transaction, db, fn, limiter=self._write_limiter)

    async def _read(self, fn: Callable[[Db], T]) -> T:
        if self._closed:
            raise StoreError("the store is closed")
        return await trio.to_thread.run_sync(self._with_reader, fn, limiter=self._read_limiter)


# The functions below run in worker threads.


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction: committed, or rolled back and re-raised.

    Bad values are reported as IntegrityError; either way nothing of them is stored.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except _BAD_DATA as exc:
        raise IntegrityError(str(exc)) from exc


def _in_transaction(db: sqlite3.Connection, fn: Callable[[Db], T]) -> T:
    with _transaction(db):
        return fn(db)


def _regexp(pattern: str, options: str, value: object) -> int:
    """SQL ``chatroom_regexp``: 1 when the text matches (or the pattern is unusable, so
    that the caller decides), else 0; never raises inside a query."""
    return int(value is not None and regex_passes(pattern, options, value))
