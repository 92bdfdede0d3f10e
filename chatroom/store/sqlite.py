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
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, overload

import orjson
import trio

from chatroom.core.model import (
    Conversation,
    ConvEventRecord,
    ConvFilter,
    ConvOrder,
    HistoryQuery,
    LastingChanges,
    MemberMarks,
    Message,
    Patch,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.core.roles import Moderation, ModerationChanges

from . import common
from . import sqlite_lasting as lasting_tables
from . import sqlite_marks as marks_table
from . import sqlite_messages as messages_table
from . import sqlite_moderation as moderation_tables
from .base import IntegrityError, StoreError
from .common import (
    CONV_SELECT,
    CONVS_OF,
    INT64_MAX,
    clamp_int64,
    conversation_of_row,
    members_key,
    regex_passes,
)
from .select_sql import SqliteSelect, select_sql
from .sqlite_schema import SCHEMA_VERSION, migrate

T = TypeVar("T")

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


def _as_is(row: Any) -> Any:
    return row


# Values SQLite refuses (types, ranges, encodings), reported as the interface's error.
_BAD_DATA = (sqlite3.IntegrityError, OverflowError, UnicodeEncodeError, orjson.JSONEncodeError)


class SqliteStore:
    """A ``Store`` in the SQLite database file at ``path`` (created if missing)."""

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

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._writer
        if db is None:
            raise StoreError("the store is not open")
        return await trio.to_thread.run_sync(fn, db, limiter=self._write_limiter)

    @overload
    async def _query(self, sql: str, params: Sequence[object]) -> list[Any]: ...

    @overload
    async def _query(
        self, sql: str, params: Sequence[object], decode: Callable[[Any], T]
    ) -> list[T]: ...

    async def _query(
        self, sql: str, params: Sequence[object], decode: Callable[[Any], Any] = _as_is
    ) -> list[Any]:
        """All rows of one SELECT on a reader connection, each passed through ``decode``
        in the worker thread too: a query may return many thousands of rows, and
        decoding them on the event loop would hold it for as long.

        Fetching every row finishes the statement, which ends its read transaction: a
        pooled connection never holds an old snapshot (or blocks WAL checkpoints).
        """
        if self._closed:
            raise StoreError("the store is closed")
        return await trio.to_thread.run_sync(
            self._with_reader,
            lambda db: [decode(row) for row in db.execute(sql, params).fetchall()],
            limiter=self._read_limiter,
        )

    # conversations

    async def create_conversation(self, conv: Conversation) -> None:
        """Insert a new conversation; IntegrityError if its ``cid`` exists."""
        await self._write(lambda db: _in_transaction(db, common.create_conversation, conv))

    async def save_conversation(self, conv: Conversation) -> None:
        """Replace a stored conversation; NotFoundError if there is none.

        ``last_message_at`` never goes back: ``append_messages`` owns it, and a caller
        saving a copy read before the latest batch must not undo that batch's update.
        """
        await self._write(lambda db: _in_transaction(db, common.save_conversation, conv))

    async def get_conversation(self, cid: str) -> Conversation | None:
        """The stored conversation, or None."""
        rows = await self._query(f"{CONV_SELECT} WHERE cid = ?", (cid,))
        return conversation_of_row(rows[0]) if rows else None

    async def find_unique_conversation(self, members: Sequence[str]) -> Conversation | None:
        """The oldest unique normal conversation with exactly this member set."""
        sql = f"{CONV_SELECT} WHERE members_key = ? ORDER BY created_at, cid LIMIT 1"
        key = members_key(members)
        rows = await self._query(sql, (key,))
        return conversation_of_row(rows[0]) if rows else None

    async def conversations_of(self, member: str, limit: int, skip: int) -> list[Conversation]:
        """The member's conversations, most recently active first, ties by ``cid``."""
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        return await self._query(CONVS_OF, (member, limit, skip), conversation_of_row)

    async def select_conversations(
        self, where: ConvFilter, order: Sequence[ConvOrder], limit: int, skip: int
    ) -> list[Conversation]:
        """One SELECT: membership through ``conversation_members``, the rest through
        the conversation indexes (see ``_select_sql``)."""
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        if where.cids is not None and not where.cids:
            await trio.lowlevel.checkpoint()
            return []
        sql, args = select_sql(where, order, SqliteSelect)
        return await self._query(sql, [*args, limit, skip], conversation_of_row)

    # messages

    async def append_messages(self, batch: Sequence[Message]) -> None:
        """Store the whole batch in one transaction or, on IntegrityError, none of it."""
        if batch:
            await self._write(functools.partial(_append_messages, batch=batch))
        else:
            await trio.lowlevel.checkpoint()

    async def find_by_dedupe_token(self, cid: str, from_peer: str, token: str) -> Message | None:
        """The oldest message ``from_peer`` sent to ``cid`` with this ``dt``."""
        rows = await self._query(messages_table.FIND_BY_DEDUPE_TOKEN, (cid, from_peer, token))
        return messages_table.message_of_row(rows[0]) if rows else None

    async def get_message(self, cid: str, mid: str) -> Message | None:
        """One message by conversation and id."""
        rows = await self._query(messages_table.GET_MESSAGE, (cid, mid))
        return messages_table.message_of_row(rows[0]) if rows else None

    async def last_message(self, cid: str) -> Message | None:
        """The newest message of a conversation."""
        rows = await self._query(messages_table.LAST_MESSAGE, (cid,))
        return messages_table.message_of_row(rows[0]) if rows else None

    async def query_messages(self, query: HistoryQuery) -> list[Message]:
        """A history page, ascending (see ``HistoryQuery``): one indexed range scan."""
        sql, args, newest_first = messages_table.history_select(query)
        rows = await self._query(sql, args)
        messages = [messages_table.message_of_row(row) for row in rows]
        if newest_first:
            messages.reverse()
        return messages

    async def patch_message(self, patch: Patch) -> Message | None:
        """Rewrite one message's content in place (same row, same id)."""
        return await self._write(functools.partial(_patch_message, patch=patch))

    async def patches_since(self, member: str, since: int, limit: int) -> list[Message]:
        """Patched messages of the member's conversations, oldest patch first."""
        since = clamp_int64(since)
        rows = await self._query(messages_table.PATCHES_SINCE, (member, since, limit))
        return [messages_table.message_of_row(row) for row in rows]

    async def member_marks(self, cid: str) -> list[MemberMarks]:
        """Every member's marks in ``cid``."""
        sql = f"SELECT {marks_table.MARK_COLUMNS} FROM member_marks AS k WHERE k.cid = ?"
        return [marks_table.marks_of_row(row) for row in await self._query(sql, (cid,))]

    async def changed_marks(self, member: str, since: int | None, limit: int) -> list[MemberMarks]:
        """Marks for the login's unread sync (see ``Store.changed_marks``)."""
        if since is None:
            sql = marks_table.MARKS_OF_MEMBER.format(condition="k.unread > 0")
            rows = await self._query(sql, (member, limit))
        else:
            since = clamp_int64(since)
            condition = "(k.changed_at > ?3 OR (k.unread > 0 AND k.acked_at < k.changed_at))"
            sql = marks_table.MARKS_OF_MEMBER.format(condition=condition)
            rows = await self._query(sql, (member, limit, since))
        return [marks_table.marks_of_row(row) for row in rows]

    async def mark_acked(self, member: str, cid: str, timestamp: int) -> MemberMarks:
        """``acked_at`` = max(``acked_at``, ``timestamp``)."""
        return await self._write(
            functools.partial(_mark_acked, member=member, cid=cid, timestamp=timestamp)
        )

    async def mark_read(self, member: str, cid: str, timestamp: int, now: int) -> MemberMarks:
        """Read-up-to ``timestamp`` (see ``Store.mark_read``)."""
        return await self._write(
            functools.partial(_mark_read, member=member, cid=cid, timestamp=timestamp, now=now)
        )

    async def recent_dedupe_tokens(self, limit: int) -> list[Message]:
        """The last ``limit`` messages with a dedupe token, oldest first: the newest
        rowids, read backwards from the end of the table (no scan)."""
        if limit <= 0:
            await trio.lowlevel.checkpoint()
            return []
        rows = await self._query(messages_table.RECENT_DEDUPE_TOKENS, (limit,))
        return [messages_table.message_of_row(row) for row in reversed(rows)]

    async def max_message_timestamp(self) -> int:
        """The newest stored timestamp, 0 when there is none."""
        rows = await self._query("SELECT max_timestamp FROM meta", ())
        return int(rows[0][0])

    # state that outlives a process (sqlite_lasting.py has the SQL)

    async def save_lasting(self, changes: LastingChanges) -> None:
        """The whole batch in one short transaction, or nothing of it."""
        await self._write(lambda db: _in_transaction(db, lasting_tables.save, changes))

    async def get_session(self, token: str) -> SessionRecord | None:
        """The stored session token, or None."""
        rows = await self._query(lasting_tables.GET_SESSION_SQL, (token,))
        return lasting_tables.session_of_row(rows[0]) if rows else None

    async def live_nonces(self, now_ms: int, limit: int) -> dict[str, int]:
        """Nonces still in their window, the latest-expiring ``limit``."""
        rows = await self._query(lasting_tables.LIVE_NONCES_SQL, (now_ms, limit))
        return {row[0]: row[1] for row in rows}

    async def conv_events_for(
        self, peer: str, since: int, until: int | None, limit: int
    ) -> list[ConvEventRecord]:
        """The client's newest events in ``(since, until)``, ascending."""
        bound = INT64_MAX if until is None else clamp_int64(until)
        since = clamp_int64(since)
        decode = functools.partial(lasting_tables.conv_event_of_row, peer)
        events = await self._query(
            lasting_tables.CONV_EVENTS_SQL, (peer, since, bound, limit), decode
        )
        return events[::-1]

    async def pending_receipts(self, limit: int) -> list[PendingReceipt]:
        """The newest ``limit`` pending receipts, ascending by message time."""
        decode = lasting_tables.receipt_of_row
        receipts = await self._query(lasting_tables.PENDING_RECEIPTS_SQL, (limit,), decode)
        return receipts[::-1]

    async def will_of(self, peer_id: str) -> WillRecord | None:
        """The user's stored will, or None."""
        rows = await self._query(lasting_tables.WILL_OF_SQL, (peer_id,))
        return lasting_tables.will_of_row(rows[0]) if rows else None

    async def purge_expired(self, now_ms: int, limit: int) -> int:
        """At most ``limit`` expired rows per table, in one short transaction."""
        purge = lasting_tables.purge
        return await self._write(lambda db: _in_transaction(db, purge, now_ms, limit))

    # member moderation (sqlite_moderation.py has the SQL)

    async def moderation_of(self, cid: str) -> Moderation:
        """The conversation's managers, mutes and blocks, from one snapshot."""
        if self._closed:
            raise StoreError("the store is closed")
        load = functools.partial(moderation_tables.load, cid=cid)
        return await trio.to_thread.run_sync(self._with_reader, load, limiter=self._read_limiter)

    async def save_moderation(self, cid: str, changes: ModerationChanges) -> None:
        """Every change in one short transaction, or nothing of it."""
        save = moderation_tables.save
        await self._write(lambda db: _in_transaction(db, save, cid, changes))


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


def _in_transaction(db: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    with _transaction(db):
        return fn(db, *args)


def _append_messages(db: sqlite3.Connection, batch: Sequence[Message]) -> None:
    with _transaction(db):
        messages_table.append(db, batch)


def _patch_message(db: sqlite3.Connection, patch: Patch) -> Message | None:
    with _transaction(db):
        return messages_table.apply_patch(db, patch)


def _mark_acked(db: sqlite3.Connection, member: str, cid: str, timestamp: int) -> MemberMarks:
    with _transaction(db):
        return marks_table.mark_acked(db, member, cid, timestamp)


def _mark_read(
    db: sqlite3.Connection, member: str, cid: str, timestamp: int, now: int
) -> MemberMarks:
    with _transaction(db):
        return marks_table.mark_read(db, member, cid, timestamp, now)


def _regexp(pattern: str, options: str, value: object) -> int:
    """SQL ``chatroom_regexp``: 1 when the text matches (or the pattern is unusable, so
    that the caller decides), else 0; never raises inside a query."""
    return int(value is not None and regex_passes(pattern, options, value))
