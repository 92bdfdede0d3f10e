"""The data model shared by the services and the stores: conversations, messages,
read marks, patches, history and conversation queries, and the records of the state that
outlives a process. Plain values; no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

import orjson

# A JSON value as orjson produces and accepts it.
JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"


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
    # How many times the stored record was saved (``Store.save_conversation`` compares
    # and swaps it); bookkeeping, not content, so not compared.
    version: int = field(default=0, compare=False)

    def may_read(self, peer: str) -> bool:
        """Whether ``peer`` may see the messages: its members, and anyone for a chatroom
        (``logs``, and the last message a ``conv/query`` shows with flag 2)."""
        return self.kind is ConvType.TRANSIENT or peer in self.members


def lctype_of(text: str) -> int | None:
    """``_lctype`` of typed JSON content (the SDK's typed messages), or None for plain
    text: what ``Message.lctype`` holds for history filters by type."""
    if not text.startswith("{"):
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    kind = value.get("_lctype") if isinstance(value, dict) else None
    return kind if isinstance(kind, int) and not isinstance(kind, bool) else None


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


@dataclass(slots=True)
class SessionRecord:
    """A session token as it outlives the process: what resuming with it restores.

    ``taken_over``: another device logged in with the same tag (a resume gets 4111).
    ``room``/``room_until_ms``: the chatroom watched when the connection dropped, which
    a resume before ``room_until_ms`` rejoins. Times are epoch milliseconds.

    A value: nothing changes one once made (the journal and the store keep it). Not a
    frozen dataclass all the same: one is made at every login and every chatroom
    join (the journal's record of the ticket), and a frozen one sets each of its
    eight fields through ``object.__setattr__`` (~1.5 us a record, against ~0.3).
    """

    token: str
    peer_id: str
    tag: str | None
    device_id: str | None
    expires_ms: int
    taken_over: bool = False
    room: str | None = None
    room_until_ms: int = 0

    def state(self) -> list[object]:
        """The fields in order, as other nodes rebuild it (``SessionRecord(*state)``):
        ``astuple`` without its deep copy, which every login paid for plain values."""
        return [getattr(self, name) for name in self.__slots__]


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
