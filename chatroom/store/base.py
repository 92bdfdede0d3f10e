"""The storage interface: what the core asks of a store, and the records it keeps.

Three implementations pass one contract suite (``tests/store/test_store_contract.py``):
``memory.MemoryStore`` (tests, ``--db :memory:``), ``sqlite.SqliteStore`` (the default)
and ``postgres.PostgresStore`` (``--db postgresql://...``); ``factory.open_store`` picks.
Every method is a coroutine so that a store may do its I/O in worker threads; none of
them may block the Trio loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

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


class StoreError(Exception):
    """A store refused or failed an operation. Nothing of that operation was stored."""


class IntegrityError(StoreError):
    """The operation would break the data model: a duplicate key (a conversation id or a
    message id already stored, or twice in one batch), a message with both or neither of
    ``data`` and ``binary``, an integer outside the signed 64-bit range, text that is not
    valid Unicode, attributes that are not JSON. Every store detects these cases;
    PostgreSQL also refuses text containing NUL (U+0000), which it cannot hold."""


class ConflictError(StoreError):
    """A save compared versions and lost: another save of the same record came first
    (maybe on another node). Read the record again, apply the change again, retry."""


class NotFoundError(StoreError):
    """The operation needs a record that does not exist (saving an unknown conversation)."""


class Store(Protocol):
    """What the server needs from persistent storage."""

    async def open(self) -> None:
        """Create the schema if needed. Called once before any other method."""

    async def aclose(self) -> None:
        """Flush and release resources. No other call follows."""

    # conversations

    async def create_conversation(self, conv: Conversation) -> None:
        """Insert a new conversation (its ``cid`` is new)."""

    async def save_conversation(self, conv: Conversation) -> int:
        """Replace the stored record of an existing conversation with ``conv`` if its
        ``version`` is still ``conv.version`` (compare and swap), and return the stored
        version, ``conv.version + 1``. ConflictError (nothing stored) when another save
        came between; NotFoundError when there is no such conversation.
        ``last_message_at`` never goes back (``append_messages`` owns it)."""

    async def get_conversation(self, cid: str) -> Conversation | None:
        """The conversation with this id, or None."""

    async def find_unique_conversation(self, members: Sequence[str]) -> Conversation | None:
        """The normal conversation created with ``unique`` whose sorted member set is
        exactly ``sorted(members)``, or None."""

    async def conversations_of(self, member: str, limit: int, skip: int) -> list[Conversation]:
        """Conversations that have ``member`` in ``members``, most recently active
        first (``last_message_at`` or else ``created_at``, descending)."""

    async def select_conversations(
        self, where: ConvFilter, order: Sequence[ConvOrder], limit: int, skip: int
    ) -> list[Conversation]:
        """Conversations passing ``where`` (see ``ConvFilter``), sorted by ``order``
        then ``cid``, the ``skip``-th to the ``skip + limit``-th. Attribute paths compare
        as JSON values: numbers before strings; booleans as numbers."""

    # messages

    async def append_messages(self, batch: Sequence[Message]) -> None:
        """Persist a batch in one transaction (group commit). Also sets each
        conversation's ``last_message_at`` to its newest message's timestamp and, in
        the same transaction, adds each message to the ``MemberMarks.unread`` of every
        current member but its sender (``changed_at`` = its newest such message; a member
        listed in ``mention_pids``, or any with ``mention_all``, gets ``mentioned``)."""

    async def find_by_dedupe_token(self, cid: str, from_peer: str, token: str) -> Message | None:
        """The message that ``from_peer`` sent to ``cid`` with this ``dt``, or None."""

    async def get_message(self, cid: str, mid: str) -> Message | None:
        """One message by conversation and id."""

    async def last_message(self, cid: str) -> Message | None:
        """The newest message of a conversation."""

    async def query_messages(self, query: HistoryQuery) -> list[Message]:
        """A history page (see ``HistoryQuery``), ascending by ``(timestamp, mid)``."""

    async def query_all_messages(self, query: HistoryQuery) -> list[Message]:
        """A history page over the messages of every conversation (``query.cid`` is
        not used), ascending by ``(timestamp, mid)``."""

    async def patch_message(self, patch: Patch) -> Message | None:
        """Replace a message's content and mentions and set its ``patch_timestamp``;
        the id, sender and timestamp stay. The patched message, or None if unknown."""

    async def patches_since(self, member: str, since: int, limit: int) -> list[Message]:
        """Messages patched after ``since`` (``patch_timestamp > since``) in the
        conversations ``member`` is in, oldest patch first, at most ``limit``."""

    # per-member marks: unread counts, receipts

    async def member_marks(self, cid: str) -> list[MemberMarks]:
        """The marks of every member of ``cid`` that has any, in no particular order."""

    async def changed_marks(self, member: str, since: int | None, limit: int) -> list[MemberMarks]:
        """The member's marks in conversations they are still in, for the unread sync at
        login: with ``since`` None those with ``unread > 0``; else those changed after
        ``since`` plus those with unread messages newer than ``acked_at`` (not yet
        delivered to any of their clients). Most recently changed first."""

    async def mark_acked(self, member: str, cid: str, timestamp: int) -> MemberMarks:
        """Delivered-up-to: ``acked_at`` becomes at least ``timestamp``."""

    async def mark_read(self, member: str, cid: str, timestamp: int, now: int) -> MemberMarks:
        """Read-up-to ``timestamp``: ``read_at`` and ``acked_at`` become at least that,
        ``unread`` becomes the number of others' messages after it (usually 0), with
        ``mentioned`` recomputed over them, and ``changed_at`` becomes ``now``."""

    async def recent_dedupe_tokens(self, limit: int) -> list[Message]:
        """The last ``limit`` stored messages that carry a ``dedupe_token``, oldest
        first, so that a restarted server still recognises a client's resend."""

    async def max_message_timestamp(self) -> int:
        """The newest timestamp of any stored message (0 when empty), so that a
        restarted server never issues ids that sort before stored ones."""

    # state that outlives a process: session tokens, nonces, event log, receipts, wills

    async def save_lasting(self, changes: LastingChanges) -> None:
        """Apply every change of the batch in one transaction (see ``LastingChanges``).
        IntegrityError (nothing stored) for values the store cannot hold."""

    async def get_session(self, token: str) -> SessionRecord | None:
        """The stored session token, expired or not (the caller checks), or None."""

    async def live_nonces(self, now_ms: int, limit: int) -> dict[str, int]:
        """Used signature nonces still in their window (``expires_ms > now_ms``), the
        ``limit`` latest-expiring ones: nonce -> expires_ms."""

    async def conv_events_for(
        self, peer: str, since: int, until: int | None, limit: int
    ) -> list[ConvEventRecord]:
        """The newest ``limit`` events logged for ``peer`` with ``since < server_ts``
        (and ``server_ts < until`` unless None), ascending by time."""

    async def pending_receipts(self, limit: int) -> list[PendingReceipt]:
        """The ``limit`` newest pending receipts, ascending by message time."""

    async def will_of(self, peer_id: str) -> WillRecord | None:
        """The user's will, expired or not (the caller checks), or None."""

    async def purge_expired(self, now_ms: int, limit: int) -> int:
        """Delete at most ``limit`` rows of each kind of lasting state whose
        ``expires_ms <= now_ms``; the number deleted (call again while it is large).
        An event of the log counts as one row plus one per peer it was logged for: the
        earliest-expiring events go until they reach ``limit`` rows, at least one."""

    async def sweep(self, cutoff_ms: int, now_ms: int, limit: int) -> int:
        """Retention, one small batch: delete messages with ``timestamp < cutoff_ms``
        (none when it is 0), oldest first, and expired temporary conversations
        (``expire_at <= now_ms``) with their messages, members, marks and moderation
        state; at most about ``limit`` rows. The number deleted: call again while it is
        not 0."""

    async def delete_message(self, cid: str, mid: str) -> bool:
        """Delete one stored message (its conversation's unread marks stay as they
        are); whether it existed."""

    async def delete_conversation(self, cid: str) -> bool:
        """Delete the conversation with its messages, members, marks and moderation
        state, and a system conversation's subscriber threads (``common.threads_of``)
        too (the messages possibly over several transactions: a reader may see some of
        them gone before the conversation is); whether it existed."""

    # member moderation: managers, mutes and blocks (chatroom/core/roles.py)

    async def moderation_of(self, cid: str) -> Moderation:
        """The conversation's managers, mutes (expired ones included: the caller
        checks) and blocks; empty when it has none, or does not exist."""

    async def save_moderation(self, cid: str, changes: ModerationChanges) -> None:
        """Apply ``changes`` in one transaction (see ``ModerationChanges``). Lifting a
        mute or block that does not exist changes nothing; blocking a blocked member
        keeps the first ``since``. IntegrityError (nothing stored) for values the
        store cannot hold."""
