"""The storage interface: what the core asks of a store, and the records it keeps.

Two implementations pass one contract suite (``tests/store/test_store_contract.py``):
``memory.MemoryStore`` (tests, ``--db :memory:``) and ``sqlite.SqliteStore`` (the default).
Every method is a coroutine so that a store may do its I/O in worker threads; none of
them may block the Trio loop.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

# A JSON value as orjson produces and accepts it.
JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"


class StoreError(Exception):
    """A store refused or failed an operation. Nothing of that operation was stored."""


class IntegrityError(StoreError):
    """The operation would break the data model: a duplicate key (a conversation id or a
    message id already stored, or twice in one batch), a message with both or neither of
    ``data`` and ``binary``, an integer outside the signed 64-bit range, text that is not
    valid Unicode, attributes that are not JSON. Both stores detect the same cases."""


class NotFoundError(StoreError):
    """The operation needs a record that does not exist (saving an unknown conversation)."""


class ConvType(enum.IntEnum):
    """``convType`` on the wire (protocol.md section 3.2, DirectCommand field 22)."""

    NORMAL = 1
    TRANSIENT = 2  # a chatroom ("tr")
    SYSTEM = 3
    TEMPORARY = 4


@dataclass(slots=True)
class Conversation:
    """One conversation as stored.

    ``attrs`` holds the name and every custom attribute at top level (``{"name": ..,
    "color": ..}``), exactly the keys a client set. Times are epoch milliseconds.
    """

    cid: str
    kind: ConvType
    creator: str
    members: list[str]
    attrs: dict[str, JSON]
    created_at: int
    updated_at: int
    unique: bool = False
    unique_id: str | None = None
    muted: list[str] = field(default_factory=list)
    last_message_at: int | None = None
    expire_at: int | None = None  # temporary conversations only


@dataclass(frozen=True, slots=True)
class Message:
    """One persisted message. Ordered within a conversation by ``(timestamp, mid)``.

    Message ids are made by the server so that, within one millisecond, later messages
    have greater ids: ``(timestamp, mid)`` order is the order the server accepted them.
    Exactly one of ``data`` and ``binary`` is set.
    """

    cid: str
    mid: str
    from_peer: str
    timestamp: int
    data: str | None = None
    binary: bytes | None = None
    mention_all: bool = False
    mention_pids: tuple[str, ...] = ()
    dedupe_token: str | None = None  # the client's ``dt``
    lctype: int | None = None  # ``_lctype`` of typed JSON content, for history filters
    patch_timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class MemberMarks:
    """What one member has received and read of one conversation (times in ms).

    ``unread`` counts the stored messages of others not yet covered by a read, whether
    or not they were delivered live; ``mentioned`` says one of them mentions the member.
    ``changed_at`` is when ``unread`` last changed (a message, or a read), which is what
    ``lastUnreadNotifTime`` is compared with. ``acked_at`` is the newest message time the
    member's clients acknowledged (delivered-up-to), ``read_at`` the newest read mark.
    """

    peer: str
    cid: str
    unread: int = 0
    mentioned: bool = False
    changed_at: int = 0
    acked_at: int = 0
    read_at: int = 0


@dataclass(frozen=True, slots=True)
class Patch:
    """A new content for a stored message (an edit, a recall or a filter's change)."""

    cid: str
    mid: str
    patch_timestamp: int
    data: str | None = None
    binary: bytes | None = None
    mention_all: bool = False
    mention_pids: tuple[str, ...] = ()
    lctype: int | None = None


class Direction(enum.IntEnum):
    """History direction, values as on the wire (LogsCommand.QueryDirection)."""

    OLD = 1  # newest first: from the start bound towards older messages
    NEW = 2  # oldest first: from the start bound towards newer messages


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a history interval: a message position ``(timestamp, mid)``.

    Without ``mid`` the bound compares by timestamp alone. ``inclusive`` keeps messages
    that sit exactly on the bound.
    """

    timestamp: int
    mid: str | None = None
    inclusive: bool = False


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """A history page request, already validated (``1 <= limit <= 1000``).

    ``start`` is where reading begins and ``end`` where it stops; with ``Direction.OLD``
    reading goes from ``start`` (or the newest message) towards older ones, with
    ``Direction.NEW`` from ``start`` (or the oldest message) towards newer ones. The
    result is always the ``limit`` messages nearest to ``start``, in ascending order.
    """

    cid: str
    limit: int = 20
    start: Bound | None = None
    end: Bound | None = None
    direction: Direction = Direction.OLD
    lctype: int | None = None


# Conversation fields a ``ConvOrder`` may name besides attribute paths, and what they
# mean: the ``Conversation`` attribute each sorts by ("activity" is the last message
# time, else the creation time: the default order of a conversation list).
ORDER_FIELDS = ("activity", "lm", "createdAt", "updatedAt", "objectId", "c")
RANGE_FIELDS = ("lm", "createdAt", "updatedAt")


@dataclass(frozen=True, slots=True)
class ConvFilter:
    """The indexable part of a conversation query (``Store.select_conversations``).

    A conversation passes when it meets every condition given. The caller evaluates
    the full ``where`` afterwards, so a store may return a superset but never drop a
    conversation that meets these conditions:

    - ``cids``: its id is one of these;
    - ``members_all`` / ``members_any``: ``members`` holds all / at least one of these;
    - ``kinds``: its type is one of these;
    - ``creator``: ``creator`` equals it;
    - ``ranges``: ``(field, op, ms)`` with field in ``RANGE_FIELDS`` and op one of
      ``< <= > >=``; a missing ``last_message_at`` fails every range;
    - ``attr_equals``: ``(path, value)``: the attribute at the dotted path equals the
      value, or holds an array or an object there (which the caller then decides on);
    - ``alive_at``: temporary conversations that have expired by then are left out;
    - ``any_of``: it passes at least one of these filters (a ``$or``);
    - ``name_prefix``: its ``name`` attribute starts with this text;
    - ``attr_regex``: ``(path, pattern, options)``: the attribute at the path is a text
      that ``chatroom.core.matcher.compile_regex(pattern, options)`` finds a match in, or an
      array or an object (which the caller then decides on).
    """

    cids: tuple[str, ...] | None = None
    members_all: tuple[str, ...] = ()
    members_any: tuple[str, ...] | None = None
    kinds: frozenset[ConvType] | None = None
    creator: str | None = None
    ranges: tuple[tuple[str, str, int], ...] = ()
    attr_equals: tuple[tuple[str, str | int | float], ...] = ()
    alive_at: int | None = None
    any_of: tuple[ConvFilter, ...] = ()
    name_prefix: str | None = None  # the name attribute is a string starting with it
    attr_regex: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ConvOrder:
    """One sort key: a name of ``ORDER_FIELDS`` or a dotted attribute path. Missing
    values sort last in both directions; ties are broken by ``cid``, in the direction
    of the first key (ascending when there is none)."""

    field: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session token as it outlives the process: what resuming with it restores.

    ``taken_over``: another device logged in with the same tag (a resume gets 4111).
    ``room``/``room_until_ms``: the chatroom watched when the connection dropped, which
    a resume before ``room_until_ms`` rejoins. Times are epoch milliseconds.
    """

    token: str
    peer_id: str
    tag: str | None
    device_id: str | None
    expires_ms: int
    taken_over: bool = False
    room: str | None = None
    room_until_ms: int = 0


@dataclass(frozen=True, slots=True)
class ConvEventRecord:
    """One conversation event (a ``conv`` push) logged for the ``peers`` it concerns.

    ``payload`` is the serialized ``GenericCommand`` (without ``peerId``);
    ``delivered`` the tokens of the sessions that got it live.
    """

    peers: tuple[str, ...]
    server_ts: int
    payload: bytes
    delivered: tuple[str, ...]
    expires_ms: int


@dataclass(frozen=True, slots=True)
class PendingReceipt:
    """A message sent with ``r: true`` whose receiver has not acknowledged it yet."""

    cid: str
    mid: str
    timestamp: int
    sender: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class WillRecord:
    """A user's will message: ``payload`` is the serialized ``DirectCommand``, set by
    the session with ``token``. At most one per user."""

    peer_id: str
    token: str
    payload: bytes
    expires_ms: int


@dataclass(slots=True)
class LastingChanges:
    """One batch of changes to the state that outlives a process (``Store.save_lasting``).

    Keyed changes keep only the last one per key; ``None`` deletes. ``nonces`` are
    inserted only where absent (a nonce keeps its first expiry).
    """

    sessions: dict[str, SessionRecord | None] = field(default_factory=dict)  # by token
    nonces: dict[str, int] = field(default_factory=dict)  # nonce -> expires_ms
    conv_events: list[ConvEventRecord] = field(default_factory=list)
    receipts: dict[tuple[str, str], PendingReceipt | None] = field(default_factory=dict)
    wills: dict[str, WillRecord | None] = field(default_factory=dict)  # by peer_id

    def __len__(self) -> int:
        return (
            len(self.sessions)
            + len(self.nonces)
            + len(self.conv_events)
            + len(self.receipts)
            + len(self.wills)
        )


class Store(Protocol):
    """What the server needs from persistent storage."""

    async def open(self) -> None:
        """Create the schema if needed. Called once before any other method."""

    async def aclose(self) -> None:
        """Flush and release resources. No other call follows."""

    # conversations

    async def create_conversation(self, conv: Conversation) -> None:
        """Insert a new conversation (its ``cid`` is new)."""

    async def save_conversation(self, conv: Conversation) -> None:
        """Replace the stored record of an existing conversation with ``conv``."""

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
        ``expires_ms <= now_ms``; the number deleted (call again while it is large)."""
