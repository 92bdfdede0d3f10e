"""A store in plain dicts: for tests and ``--db :memory:``.

It must be indistinguishable from ``SqliteStore`` through the ``Store`` interface (the
contract suite runs against both), so it copies records in and out as SQLite would, and
refuses exactly what SQLite's constraints refuse.

Every method checkpoints once, first, and then does all its work without awaiting: a
cancelled call changes nothing, and concurrent readers never see half of a batch. (One
read that finds nothing returns at once: ``changed_marks`` of a member of no
conversation, the login sync of a chatroom viewer.)
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections import defaultdict
from collections.abc import Sequence

import orjson
import trio

from chatroom.core import paging
from chatroom.core.model import (
    Conversation,
    ConvFilter,
    ConvOrder,
    ConvType,
    Direction,
    HistoryQuery,
    MemberMarks,
    Message,
    Patch,
)
from chatroom.core.paging import history_interval

from .base import ConflictError, IntegrityError, NotFoundError
from .common import (
    activity,
    check_int64,
    dump_json,
    is_unique_normal,
    members_key,
    passes,
    sort_conversations,
)
from .memory_lasting import MemoryLasting
from .memory_moderation import MemoryModeration
from .memory_retention import MemoryRetention


def _position(m: Message) -> tuple[int, str]:
    return (m.timestamp, m.mid)


class MemoryStore(MemoryLasting, MemoryModeration, MemoryRetention):
    """A ``Store`` that keeps everything in this process and forgets it on exit."""

    def __init__(self) -> None:
        MemoryLasting.__init__(self)
        MemoryModeration.__init__(self)
        self._convs: dict[str, Conversation] = {}
        self._of_member: defaultdict[str, set[str]] = defaultdict(set)
        self._unique: defaultdict[str, set[str]] = defaultdict(set)  # members_key -> cids
        # Per conversation, ascending by (timestamp, mid): history is two bisections.
        self._history: defaultdict[str, list[Message]] = defaultdict(list)
        self._by_mid: dict[tuple[str, str], Message] = {}
        self._by_token: dict[tuple[str, str, str], Message] = {}
        self._max_timestamp = 0
        self._marks: dict[tuple[str, str], MemberMarks] = {}  # (peer, cid)

    async def open(self) -> None:
        """Nothing to create."""
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Nothing to flush; the data stays readable until the object is dropped."""
        await trio.lowlevel.checkpoint()

    # conversations

    async def create_conversation(self, conv: Conversation) -> None:
        """Insert a new conversation; IntegrityError if its ``cid`` exists."""
        await trio.lowlevel.checkpoint()
        stored = _copy_in(conv)
        if stored.cid in self._convs:
            raise IntegrityError(f"conversation {stored.cid!r} already exists")
        self._convs[stored.cid] = stored
        self._index(stored)

    async def save_conversation(self, conv: Conversation) -> int:
        """Replace a stored conversation of the same version (see ``Store``).

        ``last_message_at`` never goes back: ``append_messages`` owns it, and a caller
        saving a copy read before the latest batch must not undo that batch's update.
        """
        await trio.lowlevel.checkpoint()
        stored = _copy_in(conv)
        old = self._convs.get(stored.cid)
        if old is None:
            raise NotFoundError(f"conversation {stored.cid!r} does not exist")
        if old.version != conv.version:
            raise ConflictError(f"conversation {stored.cid!r} was saved meanwhile")
        stored.version = old.version + 1
        if old.last_message_at is not None and (
            stored.last_message_at is None or stored.last_message_at < old.last_message_at
        ):
            stored.last_message_at = old.last_message_at
        self._unindex(old)
        self._convs[stored.cid] = stored
        self._index(stored)
        return stored.version

    async def get_conversation(self, cid: str) -> Conversation | None:
        """A copy of the stored conversation, or None."""
        await trio.lowlevel.checkpoint()
        conv = self._convs.get(cid)
        return None if conv is None else _copy_out(conv)

    async def find_unique_conversation(self, members: Sequence[str]) -> Conversation | None:
        """The oldest unique normal conversation with exactly this member set."""
        await trio.lowlevel.checkpoint()
        cids = self._unique.get(members_key(members))
        if not cids:
            return None
        oldest = min((self._convs[cid] for cid in cids), key=lambda c: (c.created_at, c.cid))
        return _copy_out(oldest)

    async def conversations_of(self, member: str, limit: int, skip: int) -> list[Conversation]:
        """The member's conversations, most recently active first, ties by ``cid``."""
        await trio.lowlevel.checkpoint()
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        convs = [self._convs[cid] for cid in self._of_member.get(member, ())]
        convs.sort(key=lambda c: (-activity(c), c.cid))
        return [_copy_out(c) for c in convs[skip : skip + limit]]

    async def select_conversations(
        self, where: ConvFilter, order: Sequence[ConvOrder], limit: int, skip: int
    ) -> list[Conversation]:
        """Conversations passing ``where``, sorted, one page (``Store`` has the rules)."""
        await trio.lowlevel.checkpoint()
        if limit < 0 or skip < 0:
            raise ValueError("limit and skip must not be negative")
        if where.cids is not None:
            pool = [self._convs[c] for c in dict.fromkeys(where.cids) if c in self._convs]
        elif where.members_all:
            pool = [self._convs[c] for c in self._of_member.get(where.members_all[0], ())]
        else:
            pool = list(self._convs.values())
        found = [c for c in pool if passes(c, where)]
        sort_conversations(found, order)
        return [_copy_out(c) for c in found[skip : skip + limit]]

    def _index(self, conv: Conversation) -> None:
        for member in conv.members:
            self._of_member[member].add(conv.cid)
        if is_unique_normal(conv):
            self._unique[members_key(conv.members)].add(conv.cid)

    def _unindex(self, conv: Conversation) -> None:
        for member in conv.members:
            self._of_member[member].discard(conv.cid)
        if is_unique_normal(conv):
            self._unique[members_key(conv.members)].discard(conv.cid)

    # messages

    async def append_messages(self, batch: Sequence[Message]) -> None:
        """Store the whole batch or, on IntegrityError, none of it."""
        await trio.lowlevel.checkpoint()
        # Validate everything before touching anything: all or nothing.
        rows = [_checked(m) for m in batch]
        seen: set[tuple[str, str]] = set()
        for m in rows:
            key = (m.cid, m.mid)
            if key in self._by_mid or key in seen:
                raise IntegrityError(f"message {m.mid!r} already exists in {m.cid!r}")
            seen.add(key)
        newest: dict[str, int] = {}
        for m in rows:
            self._insert(m)
            if m.timestamp > newest.get(m.cid, m.timestamp - 1):
                newest[m.cid] = m.timestamp
        for cid, timestamp in newest.items():
            conv = self._convs.get(cid)
            if conv is not None and (
                conv.last_message_at is None or conv.last_message_at < timestamp
            ):
                conv.last_message_at = timestamp
        for m in rows:
            self._count_unread(m)

    def _count_unread(self, m: Message) -> None:
        conv = self._convs.get(m.cid)
        if conv is None:
            return
        for member in conv.members:
            if member == m.from_peer:
                continue
            old = self._marks.get((member, m.cid)) or MemberMarks(member, m.cid)
            mentioned = old.mentioned or m.mention_all or member in m.mention_pids
            self._marks[(member, m.cid)] = dataclasses.replace(
                old,
                unread=old.unread + 1,
                mentioned=mentioned,
                changed_at=max(old.changed_at, m.timestamp),
            )

    def _insert(self, m: Message) -> None:
        history = self._history[m.cid]
        if not history or _position(history[-1]) < _position(m):
            history.append(m)  # the usual case: ids grow with time
        else:
            bisect.insort(history, m, key=_position)
        self._by_mid[(m.cid, m.mid)] = m
        if m.dedupe_token is not None:
            key = (m.cid, m.from_peer, m.dedupe_token)
            first = self._by_token.get(key)
            if first is None or _position(m) < _position(first):
                self._by_token[key] = m
        self._max_timestamp = max(self._max_timestamp, m.timestamp)

    async def find_by_dedupe_token(self, cid: str, from_peer: str, token: str) -> Message | None:
        """The oldest message ``from_peer`` sent to ``cid`` with this ``dt``."""
        await trio.lowlevel.checkpoint()
        return self._by_token.get((cid, from_peer, token))

    async def get_message(self, cid: str, mid: str) -> Message | None:
        """One message by conversation and id."""
        await trio.lowlevel.checkpoint()
        return self._by_mid.get((cid, mid))

    async def last_message(self, cid: str) -> Message | None:
        """The newest message of a conversation."""
        await trio.lowlevel.checkpoint()
        history = self._history.get(cid)
        return history[-1] if history else None

    async def query_messages(self, query: HistoryQuery) -> list[Message]:
        """A history page, ascending (see ``HistoryQuery``)."""
        await trio.lowlevel.checkpoint()
        history = self._history.get(query.cid)
        if not history:
            return []
        lower, upper = history_interval(query)
        lo, hi = 0, len(history)
        # A bound without mid sits before every mid of its millisecond ("" is the least
        # string) when it includes that millisecond, after all of them when not.
        if lower is not None:
            if lower.mid is None:
                key = (lower.timestamp if lower.inclusive else lower.timestamp + 1, "")
                lo = bisect.bisect_left(history, key, key=_position)
            elif lower.inclusive:
                lo = bisect.bisect_left(history, (lower.timestamp, lower.mid), key=_position)
            else:
                lo = bisect.bisect_right(history, (lower.timestamp, lower.mid), key=_position)
        if upper is not None:
            if upper.mid is None:
                key = (upper.timestamp + 1 if upper.inclusive else upper.timestamp, "")
                hi = bisect.bisect_left(history, key, key=_position)
            elif upper.inclusive:
                hi = bisect.bisect_right(history, (upper.timestamp, upper.mid), key=_position)
            else:
                hi = bisect.bisect_left(history, (upper.timestamp, upper.mid), key=_position)
        if query.lctype is None:
            if query.direction == Direction.NEW:
                return history[lo : min(hi, lo + query.limit)]
            return history[max(lo, hi - query.limit) : hi] if lo < hi else []
        return _filtered(history, lo, hi, query)

    async def query_all_messages(self, query: HistoryQuery) -> list[Message]:
        """A scan of every message (this store is for tests and small setups)."""
        await trio.lowlevel.checkpoint()
        return paging.select(itertools.chain.from_iterable(self._history.values()), query)

    async def patch_message(self, patch: Patch) -> Message | None:
        """Rewrite one message's content in place (same position, same id)."""
        await trio.lowlevel.checkpoint()
        old = self._by_mid.get((patch.cid, patch.mid))
        if old is None:
            return None
        new = _checked(
            dataclasses.replace(
                old,
                data=patch.data,
                binary=patch.binary,
                mention_all=patch.mention_all,
                mention_pids=tuple(patch.mention_pids),
                lctype=patch.lctype,
                patch_timestamp=patch.patch_timestamp,
            )
        )
        history = self._history[patch.cid]
        history[bisect.bisect_left(history, _position(old), key=_position)] = new
        self._by_mid[(patch.cid, patch.mid)] = new
        if old.dedupe_token is not None:
            key = (old.cid, old.from_peer, old.dedupe_token)
            if self._by_token.get(key) is old:
                self._by_token[key] = new
        return new

    async def patches_since(self, member: str, since: int, limit: int) -> list[Message]:
        """Patched messages of the member's conversations, oldest patch first."""
        await trio.lowlevel.checkpoint()
        found = [
            m
            for cid in self._of_member.get(member, ())
            for m in self._history.get(cid, ())
            if m.patch_timestamp is not None and m.patch_timestamp > since
        ]
        found.sort(key=lambda m: (m.patch_timestamp, m.cid, m.mid))
        return found[:limit]

    async def member_marks(self, cid: str) -> list[MemberMarks]:
        """Every member's marks in ``cid``."""
        await trio.lowlevel.checkpoint()
        return [k for (_, c), k in self._marks.items() if c == cid]

    async def changed_marks(self, member: str, since: int | None, limit: int) -> list[MemberMarks]:
        """Marks for the login's unread sync (see ``Store.changed_marks``). A member of
        no conversation (a chatroom viewer's login, as in a crowd) has none, told with
        no checkpoint: a login with nothing to sync costs no task step of its own."""
        cids = self._of_member.get(member)
        if not cids:
            return []  # noqa: ASYNC910 (nothing to read: see above)
        await trio.lowlevel.checkpoint()
        found = []
        for cid in cids:
            k = self._marks.get((member, cid))
            if k is None:
                continue
            if since is None:
                wanted = k.unread > 0
            else:
                wanted = k.changed_at > since or (k.unread > 0 and k.acked_at < k.changed_at)
            if wanted:
                found.append(k)
        found.sort(key=lambda k: (-k.changed_at, k.cid))
        return found[:limit]

    async def mark_acked(self, member: str, cid: str, timestamp: int) -> MemberMarks:
        """``acked_at`` = max(``acked_at``, ``timestamp``)."""
        await trio.lowlevel.checkpoint()
        check_int64(timestamp, "timestamp")
        marks = self._marks.get((member, cid)) or MemberMarks(member, cid)
        if timestamp > marks.acked_at:
            marks = self._marks[(member, cid)] = dataclasses.replace(marks, acked_at=timestamp)
        return marks

    async def mark_read(self, member: str, cid: str, timestamp: int, now: int) -> MemberMarks:
        """Read-up-to ``timestamp`` (see ``Store.mark_read``)."""
        await trio.lowlevel.checkpoint()
        check_int64(timestamp, "timestamp")
        old = self._marks.get((member, cid)) or MemberMarks(member, cid)
        read_at = max(old.read_at, timestamp)
        history = self._history.get(cid, [])
        start = bisect.bisect_left(history, (read_at + 1, ""), key=_position)
        left = [m for m in history[start:] if m.from_peer != member]
        mentioned = any(m.mention_all or member in m.mention_pids for m in left)
        marks = MemberMarks(
            member, cid, len(left), mentioned, now, max(old.acked_at, read_at), read_at
        )
        self._marks[(member, cid)] = marks
        return marks

    async def recent_dedupe_tokens(self, limit: int) -> list[Message]:
        """The last ``limit`` messages with a dedupe token, oldest first."""
        await trio.lowlevel.checkpoint()
        if limit <= 0:
            return []
        return list(self._by_token.values())[-limit:]

    async def max_message_timestamp(self) -> int:
        """The newest stored timestamp, 0 when there is none."""
        await trio.lowlevel.checkpoint()
        return self._max_timestamp


def _filtered(history: list[Message], lo: int, hi: int, query: HistoryQuery) -> list[Message]:
    """The page among ``history[lo:hi]`` for a query with an ``lctype`` filter."""
    found: list[Message] = []
    indexes = range(lo, hi) if query.direction == Direction.NEW else range(hi - 1, lo - 1, -1)
    for i in indexes:
        if history[i].lctype == query.lctype:
            found.append(history[i])
            if len(found) == query.limit:
                break
    if query.direction != Direction.NEW:
        found.reverse()
    return found


def _check_text(value: str | None, what: str) -> None:
    """IntegrityError for text SQLite cannot store (lone surrogates are not UTF-8)."""
    if value is not None:
        try:
            value.encode()
        except UnicodeEncodeError as exc:
            raise IntegrityError(f"{what} is not valid Unicode text") from exc


def _checked(m: Message) -> Message:
    """``m`` as SQLite would return it, or IntegrityError where SQLite would refuse it."""
    if (m.data is None) == (m.binary is None):
        raise IntegrityError(f"message {m.mid!r} must have exactly one of data and binary")
    for text, what in ((m.cid, "cid"), (m.mid, "mid"), (m.from_peer, "from_peer")):
        _check_text(text, what)
    _check_text(m.data, "data")
    _check_text(m.dedupe_token, "dedupe_token")
    check_int64(m.timestamp, "timestamp")
    check_int64(m.lctype, "lctype")
    check_int64(m.patch_timestamp, "patch_timestamp")
    if m.mention_pids:
        dump_json(list(m.mention_pids), "mention_pids")
    if (
        type(m.mention_pids) is tuple
        and type(m.mention_all) is bool
        and (m.binary is None or type(m.binary) is bytes)
    ):
        return m  # frozen and already in stored form: share it
    return dataclasses.replace(
        m,
        mention_pids=tuple(m.mention_pids),
        mention_all=bool(m.mention_all),
        binary=None if m.binary is None else bytes(m.binary),
    )


def _copy_in(conv: Conversation) -> Conversation:
    """A private copy of ``conv`` as SQLite would store it (JSON round trip of the
    mutable parts), or IntegrityError where SQLite would refuse it."""
    for text, what in ((conv.cid, "cid"), (conv.creator, "creator")):
        _check_text(text, what)
    _check_text(conv.unique_id, "unique_id")
    for value, what in (
        (conv.created_at, "created_at"),
        (conv.updated_at, "updated_at"),
        (conv.last_message_at, "last_message_at"),
        (conv.expire_at, "expire_at"),
    ):
        check_int64(value, what)
    try:
        kind = ConvType(conv.kind)
    except ValueError as exc:
        raise IntegrityError(f"unknown conversation type {conv.kind!r}") from exc
    return Conversation(
        cid=conv.cid,
        kind=kind,
        creator=conv.creator,
        members=orjson.loads(dump_json(list(conv.members), "members")),
        attrs=orjson.loads(dump_json(conv.attrs, "attrs")),
        created_at=conv.created_at,
        updated_at=conv.updated_at,
        unique=bool(conv.unique),
        unique_id=conv.unique_id,
        muted=orjson.loads(dump_json(list(conv.muted), "muted")),
        last_message_at=conv.last_message_at,
        expire_at=conv.expire_at,
        version=conv.version,
    )


def _copy_out(conv: Conversation) -> Conversation:
    """A copy the caller may mutate without touching the store."""
    return dataclasses.replace(
        conv,
        members=list(conv.members),
        attrs=orjson.loads(orjson.dumps(conv.attrs)),
        muted=list(conv.muted),
    )
