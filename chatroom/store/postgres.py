"""A store in PostgreSQL, for a cluster of nodes that share one database.

psycopg 3's synchronous API, driven from worker threads (ecosystem.md section 1):

* the store owns a small pool of connections, used only through
  ``trio.to_thread.run_sync`` with the store's own limiters: one writer at a time
  (``CapacityLimiter(1)``: batches of one node never wait on each other's row locks),
  ``readers`` reads alongside;
* every write is one short transaction; ``append_messages`` writes a whole batch in one
  (group commit; psycopg sends its inserts in one pipeline);
* every call is under a deadline: ``connect_timeout`` to connect, ``statement_timeout``
  and ``lock_timeout`` on the server, TCP keepalives and ``tcp_user_timeout`` against a
  silent peer. A connection that fails is dropped, not reused: the next call connects
  anew, so the store recovers by itself when the database returns.

Statements are those of ``sql_store.SqlStore`` (shared with SQLite); ``postgres_sql.py``
has the placeholders and the few of PostgreSQL's own, ``postgres_schema.py`` the schema
and its versioned migrations, run at ``open`` under an advisory lock.
"""

from __future__ import annotations

import functools
import select
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson
import psycopg
import trio
from psycopg import pq

from chatroom.core.model import Conversation, ConvFilter, ConvOrder

from .base import IntegrityError, StoreError
from .common import Db, conversation_of_row, passes
from .postgres_schema import SCHEMA_VERSION, migrate
from .postgres_sql import DIALECT, PgConn, pg_sql
from .select_sql import has_regex, select_sql
from .sql_store import SqlStore

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

# Values PostgreSQL refuses (types, ranges, encodings, NUL in text, duplicate keys),
# reported as the interface's error: nothing of the transaction is stored.
_BAD_DATA = (
    psycopg.IntegrityError,
    psycopg.DataError,
    OverflowError,
    UnicodeEncodeError,
    orjson.JSONEncodeError,
)
_REGEX_FETCH = 500  # rows per round trip when a regular expression filters in Python


def redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(an unreadable postgresql:// URL)"
    where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
    return f"postgresql://{info.get('user', '')}@{where}/{info.get('dbname', '')}"


class PostgresStore(SqlStore):
    """A ``Store`` in the PostgreSQL database at ``url`` (a libpq URL or conninfo)."""

    _dialect = DIALECT

    def __init__(
        self,
        url: str,
        *,
        readers: int = 4,
        connect_timeout_s: int = 5,
        statement_timeout_ms: int = 10_000,
    ) -> None:
        """StoreError for a URL libpq cannot read."""
        ms = int(statement_timeout_ms)
        deadlines: dict[str, str | int] = {
            "connect_timeout": max(2, connect_timeout_s),  # libpq's least
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}"
            f" -c idle_in_transaction_session_timeout={ms * 6}",
            "application_name": "chatroom",
            # a silent peer (a cable cut, a dropped route) fails the call, not hangs it
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": ms,
        }
        self._where = redacted(url)
        try:
            self._conninfo = psycopg.conninfo.make_conninfo(url, **deadlines)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"not a PostgreSQL URL: {self._where}: {exc}") from exc
        self._write_limiter = trio.CapacityLimiter(1)
        self._read_limiter = trio.CapacityLimiter(readers)
        self._idle: list[psycopg.Connection[Any]] = []  # at most readers + 1
        self._pool_lock = threading.Lock()  # the pool is used from worker threads
        self._opened = False
        self._closed = False

    async def open(self) -> None:
        """Connect and create or upgrade the schema. StoreError if the database cannot
        be reached (within ``connect_timeout``), is not UTF-8, was written by a newer
        chatroom, or has tables of something else."""
        migrate = functools.partial(self._run, self._migrate, transaction=True)
        await trio.to_thread.run_sync(migrate, limiter=self._write_limiter)
        self._opened = True

    async def aclose(self) -> None:
        """Close every connection, after the calls in progress have finished."""
        with trio.CancelScope(shield=True):  # cleanup must happen even when cancelled
            async with self._write_limiter:
                await trio.to_thread.run_sync(self._close_all)

    # connections (these run in worker threads)

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        encoding = conn.execute("SHOW server_encoding").fetchone()
        if encoding is None or encoding[0] != "UTF8":
            raise StoreError(f"{self._where}: the database must be UTF8, not {encoding}")
        migrate(PgConn(conn), self._where)

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"{self._where}: cannot connect to PostgreSQL: {exc}") from exc
        conn.adapters.register_dumper(bool, _BoolAsInt)
        return conn

    def _run(self, fn: Callable[[psycopg.Connection[Any]], T], *, transaction: bool) -> T:
        """``fn`` on a pooled connection (inside one transaction if ``transaction``).

        The connection goes back to the pool unless it failed. A pooled connection that
        the server closed while it was idle (a restart, a terminated backend) is
        replaced before ``fn`` runs, and so is every other idle one: the first call
        after the database returns does not fail on a stale connection.
        """
        with self._pool_lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not _alive(conn):
            conn.close()
            self._forget_idle()
            conn = None
        if conn is None:
            conn = self._connect()
        try:
            if transaction:
                with conn.transaction():
                    result = fn(conn)
            else:
                result = fn(conn)
        except _BAD_DATA as exc:  # rolled back; the connection is fine
            self._give_back(conn)
            raise IntegrityError(str(exc)) from exc
        except psycopg.Error as exc:
            conn.close()  # broken, or in an unknown state: never reused
            self._forget_idle()  # they are likely to share its fate
            raise StoreError(f"{self._where}: PostgreSQL failed: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._give_back(conn)
        return result

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._pool_lock:
            idle = conn.info.transaction_status == pq.TransactionStatus.IDLE
            if not self._closed and idle:
                self._idle.append(conn)
                return
        conn.close()

    def _forget_idle(self) -> None:
        with self._pool_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _close_all(self) -> None:
        with self._pool_lock:
            self._closed = True
        self._forget_idle()

    def _run_write(self, fn: Callable[[Db], T]) -> T:
        return self._run(lambda conn: fn(PgConn(conn)), transaction=True)

    def _run_read(self, fn: Callable[[Db], T]) -> T:
        return self._run(lambda conn: fn(PgConn(conn)), transaction=False)

    async def _write(self, fn: Callable[[Db], T]) -> T:
        self._check_open()
        return await trio.to_thread.run_sync(self._run_write, fn, limiter=self._write_limiter)

    async def _read(self, fn: Callable[[Db], T]) -> T:
        self._check_open()
        return await trio.to_thread.run_sync(self._run_read, fn, limiter=self._read_limiter)

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise StoreError("the store is not open")

    async def select_conversations(
        self, where: ConvFilter, order: Sequence[ConvOrder], limit: int, skip: int
    ) -> list[Conversation]:
        """As ``SqlStore`` does, except with a regular expression: PostgreSQL's are not
        RE2, so the query leaves them out and the worker thread tests the rows it
        streams, in order, until it has ``skip + limit`` (never the whole table)."""
        if not has_regex(where):
            return await super().select_conversations(where, order, limit, skip)
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        sql, args = select_sql(where, order, self._dialect.select)
        sql = sql.removesuffix(" LIMIT ? OFFSET ?")
        self._check_open()
        scan = functools.partial(_filtered, sql=sql, args=args, where=where, end=skip + limit)
        run = functools.partial(self._run, scan, transaction=True)  # the cursor needs one
        found = await trio.to_thread.run_sync(run, limiter=self._read_limiter)
        return found[skip:]


class _BoolAsInt(psycopg.adapt.Dumper):
    """Booleans as 0 and 1, the integers their columns hold (as in SQLite)."""

    oid = psycopg.postgres.types["int4"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


def _filtered(
    conn: psycopg.Connection[Any], sql: str, args: list[object], where: ConvFilter, end: int
) -> list[Conversation]:
    """The first ``end`` rows of ``sql`` that pass ``where``, read through a server-side
    cursor ``_REGEX_FETCH`` rows at a time (inside the caller's transaction)."""
    text, order = pg_sql(sql)
    found: list[Conversation] = []
    with conn.cursor(name="chatroom_regex_scan") as cursor:
        cursor.itersize = _REGEX_FETCH
        cursor.execute(text, [args[i] for i in order])
        for row in cursor:
            if len(found) >= end:
                break
            conv = conversation_of_row(row)
            if passes(conv, where):
                found.append(conv)
    return found


def _alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is still open: the server has sent nothing since
    (a closing server sends an error and then closes; we never LISTEN). No round trip."""
    if conn.closed:
        return False
    poll = select.poll()
    poll.register(conn.fileno(), select.POLLIN)
    return not poll.poll(0)
