"""What handlers remember between commands, in memory and bounded: conversations,
dedupe tokens, chatroom buffers, session tickets, receipts waiting, conversation events.

Each lasting part has the store behind it (service/lasting.py brings it back after a
restart; the journal port writes it behind).
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import partial
from itertools import islice

import trio

from chatroom.config import Config
from chatroom.core.convlog import ConvEventLog
from chatroom.core.model import Conversation, ConvEventRecord, PendingReceipt, SessionRecord
from chatroom.core.presence import Session
from chatroom.core.receipt_book import OnChange, ReceiptBook, Waiting
from chatroom.core.recent import Dedupe, Pending, RecentlyUsed, RoomBuffers
from chatroom.core.roles import ModerationBook
from chatroom.hub.base import (
    CONVERSATION,
    DEDUPE,
    EVERYTHING,
    MODERATION,
    RECEIPT,
    TICKET,
    Hub,
)
from chatroom.protocol.codec import Codec, Prepared
from chatroom.service.ports import Journal
from chatroom.store.base import ConflictError, NotFoundError, Store, StoreError

Edit = Callable[[Conversation], None]  # one change to a conversation, applied in place


class Unchanged(Exception):
    """Raised by an ``Edit`` that finds nothing to change (the members it would add no
    longer fit, for one): ``ConversationCache.change`` then stores nothing."""


_CONV_FIELDS = [f.name for f in fields(Conversation)]


class ConversationCache:
    """Conversations loaded from the store, most recently used kept (bounded).

    Handlers change a record through ``change``, which stores it by compare and swap
    on its version: a change made meanwhile elsewhere (another node of a cluster, or a
    handler here that saved first) is read back, and the change applied to it again,
    so concurrent changes to one conversation never get lost. Each save is told to
    the other nodes of a cluster (``Hub.changed``), which ``drop`` their copy.
    """

    SAVE_ATTEMPTS = 8  # compare-and-swap rounds of one change before giving up

    def __init__(self, store: Store, hub: Hub, size: int = 100_000):
        self._store = store
        self._hub = hub
        self._items: RecentlyUsed[Conversation] = RecentlyUsed(size)

    async def get(self, cid: str) -> Conversation | None:
        conv = self._items.get(cid)
        if conv is not None or not cid:
            # Always a checkpoint, so that every handler is one (flake8-async ASYNC910).
            await trio.lowlevel.checkpoint()
            return conv
        return await self._items.load(cid, partial(self._store.get_conversation, cid))

    def cached(self, cid: str) -> Conversation | None:
        """The conversation if memory holds it (now the most recently used), else None:
        ``get`` reads it from the store."""
        return self._items.get(cid) if cid else None

    def put(self, conv: Conversation) -> None:
        self._items.put(conv.cid, conv)

    def peek(self, cid: str) -> Conversation | None:
        return self._items.peek(cid)

    def newest(self, stored: Conversation) -> Conversation:
        """The freshest of ``stored`` (just read) and the copy here: the copy (a save
        may still be on its way to the store), with the stored ``last_message_at`` if
        later, which messages accepted on another node of a cluster move (only the
        store hears of those)."""
        conv = self._items.peek(stored.cid)
        if conv is None:
            return stored
        later = stored.last_message_at
        if later is not None and (conv.last_message_at is None or conv.last_message_at < later):
            conv.last_message_at = later
        return conv

    async def read(self, cid: str) -> Conversation | None:
        """The conversation read through the store (``newest``), for what shows
        ``last_message_at``; None when it does not exist."""
        stored = await self._store.get_conversation(cid)
        return None if stored is None else self.newest(stored)

    async def change(self, conv: Conversation, edit: Edit) -> bool:
        """Apply ``edit`` to ``conv`` and store it. ``edit`` changes only what it means
        to (add these members, set this attribute...): on a conflict it is applied again
        to the stored record, which ``conv`` becomes. False when ``edit`` raised
        ``Unchanged`` (then nothing is stored; ``conv`` is the stored record if that
        was found on a retry). StoreError when the store fails, or when other saves kept
        winning ``SAVE_ATTEMPTS`` times; ``conv`` is then forgotten here (read from the
        store next time)."""
        try:
            edit(conv)
        except Unchanged:
            await trio.lowlevel.checkpoint()
            return False
        try:
            merged, version, changed = await self._save(conv, edit)
        except StoreError:
            self.drop(conv.cid)
            raise
        if merged is not None:  # with a change made meanwhile: what is stored now
            for name in _CONV_FIELDS:
                setattr(conv, name, getattr(merged, name))
        conv.version = max(conv.version, version)
        if changed:
            self._hub.changed(CONVERSATION, conv.cid)
        return changed

    async def _save(self, conv: Conversation, edit: Edit) -> tuple[Conversation | None, int, bool]:
        """Store ``conv``, or else ``edit`` applied to the record stored meanwhile: that
        record (None: ``conv`` itself), its stored version, and whether it was saved
        (not when ``edit`` found nothing to change in it)."""
        attempt, merged = copy.deepcopy(conv), None
        for _ in range(self.SAVE_ATTEMPTS):
            try:
                return merged, await self._store.save_conversation(attempt), True
            except ConflictError:
                pass
            merged = await self._store.get_conversation(conv.cid)
            if merged is None:
                raise NotFoundError(f"conversation {conv.cid!r} is gone")
            try:
                edit(merged)
            except Unchanged:
                return merged, merged.version, False
            attempt = merged
        raise StoreError(f"conversation {conv.cid!r} keeps changing: try again")

    def drop(self, cid: str | None) -> None:
        """Forget ``cid`` (every conversation for None): read from the store next time."""
        self._items.drop(cid)


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


class Tickets:
    """Session tokens and what each resumes, followed by the store through the journal.

    Bounded by the logins within one token lifetime: ``expire`` drops a few expired
    tickets at every login. Every change of a ticket is told to the other nodes of a
    cluster (``Hub.changed``), which apply it (``elsewhere``): a client resumes on any
    node, and its token authorises REST calls there, without waiting for the journal.
    They remember the last ``GONE`` revoked, which the store may still hold until the
    journal wrote them.
    """

    GONE = 10_000

    __slots__ = ("_calm_of", "_calm_until", "_gone", "_hub", "_items", "_journal")

    def __init__(self, journal: Journal, hub: Hub) -> None:
        self._items: dict[str, SessionTicket] = {}
        self._journal = journal
        self._hub = hub
        self._gone: OrderedDict[str, None] = OrderedDict()
        # Until this time the ``_calm_of`` oldest tickets are those ``expire`` last
        # found all live: it has nothing to drop (0: it looks again). Any change but a
        # new token (which goes last) makes it look again.
        self._calm_until = 0
        self._calm_of = 0

    def __contains__(self, token: object) -> bool:
        return token in self._items

    def get(self, token: str) -> SessionTicket | None:
        return self._items.get(token)

    def issue(self, token: str, ticket: SessionTicket) -> None:
        """A new token: kept, and stored."""
        if self._items.setdefault(token, ticket) is not ticket:  # (never: tokens are new)
            self._items[token] = ticket
            self._calm_until = 0
        self.journal(token)

    def restore(self, token: str, ticket: SessionTicket) -> None:
        """A token read back from the store (not written again)."""
        self._items[token] = ticket
        self._calm_until = 0

    def pop(self, token: str) -> SessionTicket | None:
        """Forget a token here only (expired: the store purges it by itself)."""
        self._calm_until = 0
        return self._items.pop(token, None)

    def revoke(self, token: str) -> SessionTicket | None:
        """Forget a token here and in the store."""
        self._calm_until = 0
        ticket = self._items.pop(token, None)
        self.journal(token)
        return ticket

    def journal(self, token: str) -> None:
        """Have the store follow the ticket of ``token`` (gone: revoked)."""
        ticket = self._items.get(token)
        record = None if ticket is None else ticket.record(token)
        self._journal.session(token, record)
        if not self._hub.alone:  # else its state is not built at every login and join
            self._hub.changed(TICKET, token, None if record is None else record.state())

    def elsewhere(self, token: str, state: list[object] | None) -> None:
        """Another node issued, changed (``state``: the stored record) or revoked
        (``state`` None) ``token``."""
        self._calm_until = 0
        ticket = self._items.get(token)
        if state is None:
            self._items.pop(token, None)
            self._gone[token] = None
            while len(self._gone) > self.GONE:
                self._gone.popitem(last=False)
            return
        record = SessionRecord(*state)  # type: ignore[arg-type]
        if ticket is not None and ticket.session is not None:  # its session is here
            ticket.taken_over = ticket.taken_over or record.taken_over
            return
        fresh = SessionTicket.of_record(record)
        fresh.will = ticket.will if ticket is not None else None
        self._items[token] = fresh

    def revoked_elsewhere(self, token: str) -> bool:
        return token in self._gone

    def forget_idle(self) -> None:
        """Forget the tickets of no live session here: read from the store next time."""
        self._calm_until = 0
        for token in [t for t, ticket in self._items.items() if ticket.session is None]:
            del self._items[token]

    def expire(self, now_ms: int, at_most: int = 8) -> None:
        """Drop the expired among the ``at_most`` oldest tickets."""
        # The oldest only: copying every token each login made a crowd's logins
        # quadratic in the number of tickets. Not even those while the last look
        # found them all live and the first of them expires later still (nearly
        # every login: tokens are issued in order of their lifetimes).
        if now_ms < self._calm_until and at_most <= self._calm_of:
            return
        items = self._items
        soonest = 0
        dropped = False
        for token in list(islice(items, at_most)):
            expires_ms = items[token].expires_ms
            if expires_ms <= now_ms:
                del items[token]
                dropped = True
            elif not soonest or expires_ms < soonest:
                soonest = expires_ms
        # Newer tickets took the place of those dropped unseen; with fewer than
        # ``at_most``, the next new one would be among the oldest.
        calm = not dropped and len(items) >= at_most
        self._calm_until = soonest if calm else 0
        self._calm_of = at_most


class HookOrder:
    """Messages waiting on ``_messageReceived`` (service/hooks.py): per (sender, cid),
    the event set once the last of them went through, so that the next one follows it;
    per sender, how many wait, bounded by ``MAX_WAITING``."""

    MAX_WAITING = 100  # one sender's messages waiting on the hook; more are refused

    __slots__ = ("tails", "waiting")

    def __init__(self) -> None:
        self.tails: dict[tuple[str, str], trio.Event] = {}
        self.waiting: dict[str, int] = {}


class Caches:
    """The handlers' memory, each part bounded by its setting in ``Config``."""

    __slots__ = (
        "_hub",
        "conv_events",
        "conversations",
        "dedupe",
        "hook_order",
        "moderation",
        "moderation_loads",
        "receipts",
        "rooms",
        "tickets",
    )

    def __init__(
        self, config: Config, store: Store, journal: Journal, now_ms: int, hub: Hub
    ) -> None:
        self._hub = hub
        self.conversations = ConversationCache(store, hub)
        self.dedupe = Dedupe(config.dedupe_cache)
        self.rooms = RoomBuffers(config.chatroom_buffer)
        self.tickets = Tickets(journal, hub)
        self.receipts = ReceiptBook(config.receipt_memory, _follow_receipts(config, journal, hub))
        self.conv_events = _event_log(config, journal, now_ms)
        self.moderation = ModerationBook(config.moderation_cache)  # roles, mutes, blocks
        # Conversations whose moderation state is being read, and the event set after
        # (service/permissions.py ``state_of``: one read at a time per conversation).
        self.moderation_loads: dict[str, trio.Event] = {}
        self.hook_order = HookOrder()  # messages waiting on _messageReceived

    def forget_conversation(self, cid: str) -> None:
        """A deleted conversation: nothing of it is served from memory any more, here
        or (a cluster) on the other nodes."""
        self.conversations.drop(cid)
        self.moderation.drop(cid)
        self.rooms.forget(cid)
        self._hub.changed(CONVERSATION, cid)
        self._hub.changed(MODERATION, cid)

    def changed_elsewhere(self, kind: str, key: str, state: list[object] | None) -> None:
        """Another node of the cluster changed a record (``Hub.changed``): the copy
        here is forgotten, or updated, before that node's later pushes are handled."""
        if kind == CONVERSATION:
            self.conversations.drop(key)
        elif kind == MODERATION:
            self.moderation.drop(key)
        elif kind == TICKET:
            self.tickets.elsewhere(key, state)
        elif kind == RECEIPT and state:
            if len(state) == 3:
                mid, timestamp, sender = state
                self.receipts.restore([(key, Waiting(str(mid), int(str(timestamp)), str(sender)))])
            else:
                self.receipts.forget(key, str(state[0]))
        elif kind == DEDUPE and state and len(state) == 4:
            sender, token, mid, timestamp = map(str, state)
            self.dedupe.add((sender, key, token), Pending(mid, int(timestamp), waiting=None))
        elif kind == EVERYTHING:
            self.conversations.drop(None)
            self.moderation.drop(None)
            self.tickets.forget_idle()


def _follow_receipts(config: Config, journal: Journal, hub: Hub) -> OnChange:
    """The store and the other nodes of a cluster follow the receipts waiting here."""

    def changed(cid: str, mid: str, waiting: Waiting | None) -> None:
        record = None
        if waiting is not None:
            until = waiting.timestamp + config.receipt_ttl * 1000
            record = PendingReceipt(cid, mid, waiting.timestamp, waiting.sender, until)
            hub.changed(RECEIPT, cid, [mid, waiting.timestamp, waiting.sender])
        else:
            hub.changed(RECEIPT, cid, [mid])
        journal.receipt(cid, mid, record)

    return changed


def _event_log(config: Config, journal: Journal, now_ms: int) -> ConvEventLog:
    """The conversation event log; it holds every event from ``now_ms`` on (earlier
    ones are in the store)."""

    def stored(peers: list[str], ts: int, prepared: Prepared, live: frozenset[str]) -> None:
        payload = prepared.payload(Codec.PROTOBUF, None)  # cached once delivered
        until = ts + config.conv_event_ttl * 1000
        journal.conv_event(ConvEventRecord(tuple(peers), ts, payload, tuple(live), until))

    return ConvEventLog(
        config.conv_event_log, config.conv_event_clients, stored, complete_from=now_ms
    )
