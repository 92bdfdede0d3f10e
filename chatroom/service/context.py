"""The state every command handler shares, and the small helpers they have in common.

Handlers are plain functions ``handler(ctx, link, cmd) -> reply | None`` grouped by
command family in the sibling modules. They hold the business rules and never touch a
socket: replies are returned, pushes go to sessions' outboxes.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from chatroom.config import Config
from chatroom.core.convlog import ConvEventLog
from chatroom.core.ids import MessageClock, ObjectIds, wall_ms
from chatroom.core.model import Conversation, ConvType, PendingReceipt, SessionRecord
from chatroom.core.outbox import Priority, QueuedBytes, ShedTotals
from chatroom.core.presence import Outlet, Presence, Session
from chatroom.core.ratelimit import IntakeBacklog, RoomBudget, UserBudgets
from chatroom.core.receipt_book import ReceiptBook, Waiting
from chatroom.core.recent import Dedupe, RoomBuffers
from chatroom.core.roles import ModerationBook
from chatroom.core.signature import Verifier
from chatroom.core.wordfilter import WordFilter
from chatroom.http.push_webhook import PushNotifier
from chatroom.net.committer import Committer
from chatroom.net.journal import Lasting
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, Subprotocol
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.store.base import Store


class Link(Outlet, Protocol):
    """What handlers may do with the connection a command arrived on."""

    @property
    def subprotocol(self) -> Subprotocol: ...

    def session_for(self, peer_id: str | None) -> Session | None:
        """The session a command is for: by ``peerId``, else the first one."""

    def attach(self, session: Session) -> None: ...

    def sessions(self) -> list[Session]: ...

    def backlog(self) -> int:
        """Messages received on this connection and not yet processed."""


# Handlers that need no I/O are plain functions; the others are coroutines.
SyncHandler = Callable[["Context", Link, pb.GenericCommand], pb.GenericCommand | None]
Handler = Callable[["Context", Link, pb.GenericCommand], Awaitable[pb.GenericCommand | None]]


class ConversationCache:
    """Conversations loaded from the store, most recently used kept (bounded).

    Handlers change a cached record without awaiting between reading and writing it,
    then save a copy, so concurrent changes to one conversation never get lost.
    """

    def __init__(self, store: Store, size: int = 100_000):
        self._store = store
        self._size = size
        self._items: OrderedDict[str, Conversation] = OrderedDict()

    async def get(self, cid: str) -> Conversation | None:
        conv = self._items.get(cid)
        if conv is not None or not cid:
            # Always a checkpoint, so that every handler is one (flake8-async ASYNC910).
            await trio.lowlevel.checkpoint()
            if conv is not None:
                self._items.move_to_end(cid)
            return conv
        loaded = await self._store.get_conversation(cid)
        if loaded is None:
            return None
        # Another task may have loaded it meanwhile: keep the first copy.
        conv = self._items.setdefault(cid, loaded)
        self._trim()
        return conv

    def put(self, conv: Conversation) -> None:
        self._items[conv.cid] = conv
        self._items.move_to_end(conv.cid)
        self._trim()

    def peek(self, cid: str) -> Conversation | None:
        return self._items.get(cid)

    async def save(self, conv: Conversation) -> None:
        await self._store.save_conversation(copy.deepcopy(conv))

    def _trim(self) -> None:
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class SessionTicket:
    """What a session token resumes: the client and its device tag."""

    peer_id: str
    tag: str | None
    device_id: str | None
    expires_ms: int
    session: Session | None = None
    taken_over: bool = False
    room: str | None = None  # the chatroom watched when the connection dropped
    room_until_ms: int = 0  # ... rejoined automatically on resume until then
    will: bytes | None = None  # a will set before a restart, for the resumed session

    def record(self, token: str) -> SessionRecord:
        """What the store keeps of this ticket."""
        return SessionRecord(
            token,
            self.peer_id,
            self.tag,
            self.device_id,
            self.expires_ms,
            self.taken_over,
            self.room,
            self.room_until_ms,
        )

    @classmethod
    def of_record(cls, r: SessionRecord) -> SessionTicket:
        """A ticket from before a restart (no live session)."""
        return cls(
            r.peer_id, r.tag, r.device_id, r.expires_ms, None, r.taken_over, r.room, r.room_until_ms
        )


@dataclass(slots=True)
class Counters:
    """Plain integers on the hot path; exported by ``statistics()``."""

    logins: int = 0
    messages_accepted: int = 0
    deliveries: int = 0
    errors: int = 0
    rejected_by_room_budget: int = 0
    shed_at_intake: int = 0  # chatroom messages dropped as read, the server being behind
    shed: ShedTotals = field(default_factory=ShedTotals)  # by full outboxes
    closed_slow: int = 0  # connections closed as slow consumers


@dataclass
class Context:
    config: Config
    store: Store
    committer: Committer
    presence: Presence = field(default_factory=Presence)
    clock: MessageClock = field(default_factory=MessageClock)
    object_ids: ObjectIds = field(default_factory=ObjectIds)
    tickets: dict[str, SessionTicket] = field(default_factory=dict)
    # Made on first use from ``config`` (conv_events.log_of, signing.verifier_of).
    conv_events: ConvEventLog | None = None
    verifier: Verifier | None = None
    moderation: ModerationBook | None = None  # made on first use (moderation.state_of)
    room_budgets: dict[str, RoomBudget] = field(default_factory=dict)
    user_budgets: UserBudgets = field(init=False)  # messages per client id
    intake: IntakeBacklog = field(default_factory=IntakeBacklog)  # for shed_at_intake
    loop_lag: float = 0.0  # seconds the event loop ran late at its last sample
    counters: Counters = field(default_factory=Counters)
    conversations: ConversationCache = field(init=False)
    dedupe: Dedupe = field(init=False)
    rooms: RoomBuffers = field(init=False)
    words: WordFilter = field(init=False)  # sensitive-word filter (chatroom/core/wordfilter.py)
    pusher: PushNotifier = field(init=False)  # offline push webhook (chatroom/http/push_webhook.py)
    receipts: ReceiptBook = field(init=False)  # messages waiting for a delivery receipt
    lasting: Lasting = field(init=False)  # what outlives a restart, written behind
    queued: QueuedBytes = field(init=False)  # bytes in every outbox (queued_bytes_budget)
    last_patch_ms: int = 0  # patch times are strictly increasing (lastPatchTime replay)

    def __post_init__(self) -> None:
        self.conversations = ConversationCache(self.store)
        self.dedupe = Dedupe(self.config.dedupe_cache)
        self.rooms = RoomBuffers(self.config.chatroom_buffer)
        config = self.config
        self.words = WordFilter(config.sensitive_words_file, config.sensitive_words_check_interval)
        self.pusher = PushNotifier(config.push_webhook, config.push_queue, config.push_timeout)
        self.lasting = Lasting(self.store, config.lasting_backlog)
        self.receipts = ReceiptBook(config.receipt_memory, self._receipt_changed)
        self.queued = QueuedBytes(config.queued_bytes_budget)
        self.user_budgets = UserBudgets(
            config.user_messages_per_second, config.user_message_burst, config.user_budget_clients
        )

    def _receipt_changed(self, cid: str, mid: str, waiting: Waiting | None) -> None:
        record = None
        if waiting is not None:
            until = waiting.timestamp + self.config.receipt_ttl * 1000
            record = PendingReceipt(cid, mid, waiting.timestamp, waiting.sender, until)
        self.lasting.receipt(cid, mid, record)

    def journal_ticket(self, token: str) -> None:
        """Have the store follow the ticket of ``token`` (gone: revoked)."""
        ticket = self.tickets.get(token)
        self.lasting.session(token, None if ticket is None else ticket.record(token))

    async def conversation(self, cid: str) -> Conversation:
        """The conversation, or 4303 CONVERSATION_NOT_FOUND (also once a temporary
        conversation has expired: 4323)."""
        if not cid:
            raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND, "cid is required")
        conv = await self.conversations.get(cid)
        if conv is None:
            raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND)
        if conv.expire_at is not None and conv.expire_at <= wall_ms():
            raise ChatError(ErrorCode.TEMPORARY_CONVERSATION_EXPIRED)
        return conv

    def deliver(
        self,
        prepared: Prepared,
        sessions: Iterable[Session],
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> int:
        """Push one encoded command to many sessions; never awaits."""
        count = 0
        for session in sessions:
            if session is not skip and not session.closed:
                # Session.push, inlined: this loop runs once per recipient.
                session.outlet.push(prepared, session.peer_id, priority)
                count += 1
        self.counters.deliveries += count
        return count

    def member_sessions(self, conv: Conversation) -> Iterable[Session]:
        if conv.kind is ConvType.TRANSIENT:
            return self.presence.room_sessions(conv.cid)
        return self.presence.sessions_of_all(conv.members)


# Returned by a handler that sent its reply itself, before pushes that must follow it.
SENT = pb.GenericCommand()


def require_session(link: Link, cmd: pb.GenericCommand) -> Session:
    session = link.session_for(cmd.peerId if cmd.HasField("peerId") else None)
    if session is None:
        raise ChatError(ErrorCode.SESSION_REQUIRED, "log in first (session open)")
    return session


def reply_to(cmd: pb.GenericCommand, op: int | None = None) -> pb.GenericCommand:
    """A reply of the same command type (``op`` given for the reply op)."""
    out = pb.GenericCommand(cmd=cmd.cmd)
    if op is not None:
        out.op = op  # type: ignore[assignment]
    return out


def valid_client_id(peer_id: str, max_length: int) -> bool:
    return 0 < len(peer_id) <= max_length and peer_id.strip() == peer_id
