"""The ``Store`` methods both SQL engines share: SQLite (``sqlite.py``) and PostgreSQL
(``postgres.py``) run the same statements (``?`` placeholders; ``sqlite_*.py`` has them)
and differ only in how they reach their connections, and in the few statements of a
``Dialect``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

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
from . import sqlite_retention as retention_sql
from .common import (
    CONV_SELECT,
    CONVS_OF,
    INT64_MAX,
    Db,
    clamp_int64,
    conversation_of_row,
    members_key,
    threads_of,
)
from .select_sql import SelectDialect, select_sql

T = TypeVar("T")
_DELETE_BATCH = 1000  # messages deleted per transaction by delete_conversation
_THREADS_A_STATEMENT = 500  # a system conversation's threads named in one DELETE


def _as_is(row: Any) -> Any:
    return row


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the engines in the statements ``SqlStore`` runs."""

    select: SelectDialect
    unread_add: str  # sqlite_marks.count_unread's statement
    find_by_dedupe_token: str  # (cid, from_peer, token) -> the oldest such message
    recent_dedupe_tokens: str  # (limit) -> the newest tokened messages, newest first
    snapshot: str  # begins a read transaction that sees one snapshot
    # writes a batch's message rows (sqlite_messages.append)
    insert_messages: Callable[[Db, list[tuple[object, ...]]], None] = messages_table.insert_each
    message_seq: str = "rowid"  # the messages' column in commit order (the retention sweep)
    # message content as stored and as read back, where the engine cannot hold any text
    data_in: messages_table.TextMap | None = None
    data_out: messages_table.TextMap | None = None


class SqlStore:
    """A ``Store`` over SQL; a subclass opens, closes and supplies ``_write`` and
    ``_read``, which run a function in a worker thread on one of its connections."""

    _dialect: Dialect

    async def _write(self, fn: Callable[[Db], T]) -> T:
        """``fn`` on the writer connection, inside one transaction: committed, or rolled
        back with IntegrityError for values the engine refuses."""
        raise NotImplementedError

    async def _read(self, fn: Callable[[Db], T]) -> T:
        """``fn`` on a reader connection (outside any transaction)."""
        raise NotImplementedError

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
        return await self._read(
            lambda db: [decode(row) for row in db.execute(sql, params).fetchall()]
        )

    # conversations

    async def create_conversation(self, conv: Conversation) -> None:
        """Insert a new conversation; IntegrityError if its ``cid`` exists."""
        await self._write(functools.partial(common.create_conversation, conv=conv))

    async def save_conversation(self, conv: Conversation) -> int:
        """Replace a stored conversation of the same version (see ``Store``).

        ``last_message_at`` never goes back: ``append_messages`` owns it, and a caller
        saving a copy read before the latest batch must not undo that batch's update.
        """
        return await self._write(functools.partial(common.save_conversation, conv=conv))

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
        the conversation indexes (see ``select_sql``)."""
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        if where.cids is not None and not where.cids:
            await trio.lowlevel.checkpoint()
            return []
        sql, args = select_sql(where, order, self._dialect.select)
        return await self._query(sql, [*args, limit, skip], conversation_of_row)

    # messages

    async def append_messages(self, batch: Sequence[Message]) -> None:
        """Store the whole batch in one transaction or, on IntegrityError, none of it."""
        if batch:
            await self._write(
                functools.partial(
                    messages_table.append,
                    batch=batch,
                    unread_add=self._dialect.unread_add,
                    data_in=self._dialect.data_in,
                )
            )
        else:
            await trio.lowlevel.checkpoint()

    def _message(self, row: Any) -> Message:
        return messages_table.message_of_row(row, self._dialect.data_out)

    async def find_by_dedupe_token(self, cid: str, from_peer: str, token: str) -> Message | None:
        """The oldest message ``from_peer`` sent to ``cid`` with this ``dt``."""
        rows = await self._query(self._dialect.find_by_dedupe_token, (cid, from_peer, token))
        return self._message(rows[0]) if rows else None

    async def get_message(self, cid: str, mid: str) -> Message | None:
        """One message by conversation and id."""
        rows = await self._query(messages_table.GET_MESSAGE, (cid, mid))
        return self._message(rows[0]) if rows else None

    async def last_message(self, cid: str) -> Message | None:
        """The newest message of a conversation."""
        rows = await self._query(messages_table.LAST_MESSAGE, (cid,))
        return self._message(rows[0]) if rows else None

    async def query_messages(self, query: HistoryQuery) -> list[Message]:
        """A history page, ascending (see ``HistoryQuery``): one indexed range scan."""
        return await self._history(query, every=False)

    async def query_all_messages(self, query: HistoryQuery) -> list[Message]:
        """A page of every conversation's messages: a range of ``messages_time``."""
        return await self._history(query, every=True)

    async def _history(self, query: HistoryQuery, every: bool) -> list[Message]:
        sql, args, newest_first = messages_table.history_select(query, every)
        rows = await self._query(sql, args)
        messages = [self._message(row) for row in rows]
        if newest_first:
            messages.reverse()
        return messages

    async def patch_message(self, patch: Patch) -> Message | None:
        """Rewrite one message's content in place (same row, same id)."""
        dialect = self._dialect
        apply = functools.partial(
            messages_table.apply_patch,
            patch=patch,
            data_in=dialect.data_in,
            data_out=dialect.data_out,
        )
        return await self._write(apply)

    async def patches_since(self, member: str, since: int, limit: int) -> list[Message]:
        """Patched messages of the member's conversations, oldest patch first."""
        since = clamp_int64(since)
        rows = await self._query(messages_table.PATCHES_SINCE, (member, since, limit))
        return [self._message(row) for row in rows]

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
            functools.partial(marks_table.mark_acked, member=member, cid=cid, timestamp=timestamp)
        )

    async def mark_read(self, member: str, cid: str, timestamp: int, now: int) -> MemberMarks:
        """Read-up-to ``timestamp`` (see ``Store.mark_read``)."""
        return await self._write(
            functools.partial(
                marks_table.mark_read, member=member, cid=cid, timestamp=timestamp, now=now
            )
        )

    async def recent_dedupe_tokens(self, limit: int) -> list[Message]:
        """The last ``limit`` messages with a dedupe token, oldest first: the newest
        rows, read backwards from the end of an index (no scan)."""
        if limit <= 0:
            await trio.lowlevel.checkpoint()
            return []
        rows = await self._query(self._dialect.recent_dedupe_tokens, (limit,))
        return [self._message(row) for row in reversed(rows)]

    async def max_message_timestamp(self) -> int:
        """The newest stored timestamp, 0 when there is none."""
        rows = await self._query("SELECT max_timestamp FROM meta", ())
        return int(rows[0][0])

    # state that outlives a process (sqlite_lasting.py has the SQL of both engines)

    async def save_lasting(self, changes: LastingChanges) -> None:
        """The whole batch in one short transaction, or nothing of it."""
        await self._write(functools.partial(lasting_tables.save, changes=changes))

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
        purge = functools.partial(lasting_tables.purge, now_ms=now_ms, limit=limit)
        return await self._write(purge)

    async def sweep(self, cutoff_ms: int, now_ms: int, limit: int) -> int:
        """The retention sweep's batch (sqlite_retention.py), in one short transaction."""
        seq = self._dialect.message_seq
        run = functools.partial(
            retention_sql.sweep, cutoff_ms=cutoff_ms, now_ms=now_ms, limit=limit, seq=seq
        )
        return await self._write(run)

    async def delete_message(self, cid: str, mid: str) -> bool:
        """One row, by its primary key."""
        sql = retention_sql.DELETE_MESSAGE
        return await self._write(lambda db: db.execute(sql, (cid, mid)).rowcount > 0)

    async def delete_conversation(self, cid: str) -> bool:
        """A system conversation's threads, then its own messages, a batch per
        transaction (the committer shares the writer), then the conversation's own rows;
        whether it existed."""
        conv = await self.get_conversation(cid)
        threads = threads_of(conv)
        for at in range(0, len(threads), _THREADS_A_STATEMENT):
            drop_threads = functools.partial(
                retention_sql.drop_messages,
                cids=threads[at : at + _THREADS_A_STATEMENT],
                limit=_DELETE_BATCH,
                seq=self._dialect.message_seq,
            )
            while await self._write(drop_threads) >= _DELETE_BATCH:
                pass
        drop = functools.partial(
            retention_sql.drop_conversation,
            cid=cid,
            limit=_DELETE_BATCH,
            seq=self._dialect.message_seq,
        )
        while not (await self._write(drop))[1]:
            pass
        return conv is not None

    # member moderation (sqlite_moderation.py has the SQL of both engines)

    async def moderation_of(self, cid: str) -> Moderation:
        """The conversation's managers, mutes and blocks, from one snapshot."""
        begin = self._dialect.snapshot
        return await self._read(functools.partial(moderation_tables.load, cid=cid, begin=begin))

    async def save_moderation(self, cid: str, changes: ModerationChanges) -> None:
        """Every change in one short transaction, or nothing of it."""
        await self._write(functools.partial(moderation_tables.save, cid=cid, changes=changes))
