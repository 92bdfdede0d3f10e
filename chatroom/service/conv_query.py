"""Conversation queries: ``conv/query`` (protocol.md 4.7, features.md F17, F23-F25).

A query runs in two steps so that it stays fast however many conversations are stored:

1. ``plan`` turns the indexable part of ``where`` into a ``ConvFilter`` (ids, members,
   type, creator, time ranges, attribute equalities), which the store answers with its
   indexes, in the requested order, a batch at a time;
2. every candidate is then checked against the whole ``where`` by ``chatroom.core.matcher``,
   until a page is full. The filter may let through more than ``where`` accepts, never
   less, so the result is the same as matching every stored conversation.

A query with no condition returns the caller's own conversations (seed 002's rule), and
no query returns a temporary conversation that has expired.
"""

from __future__ import annotations

import base64
import dataclasses
import re
import time
from datetime import datetime

import orjson
import trio

from chatroom.core.ids import iso
from chatroom.core.matcher import Doc, bad_query, matches, sort_docs, sort_keys, validate
from chatroom.core.model import RANGE_FIELDS, Conversation, ConvFilter, ConvOrder, ConvType, Message
from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.service.context import Context, Link, require_session
from chatroom.store.common import json_path

FLAG_COMPACT = 1
FLAG_LAST_MESSAGE = 2
DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
# Candidates fetched by the first store round trip: twice the page, so that a page is
# usually one round trip. Each further one fetches twice as many as the one before: a
# condition the store cannot narrow (a regex, $or) reads the table in about log2(n)
# round trips, and re-skipping the rows already seen costs at most as much again.
_FIRST_BATCH = 20

# Keys of a conversation document that are not custom attributes.
DOC_KEYS = frozenset(
    {
        "objectId", "c", "m", "mu", "tr", "sys", "lm", "createdAt", "updatedAt", "unique",
        "uniqueId", "ttl", "msg", "msg_from", "msg_mid", "msg_timestamp", "patch_timestamp",
        "bin", "tempConv", "conv_type",
    }
)  # fmt: skip
_ORDER_KEYS = {"lm": "lm", "createdAt": "createdAt", "updatedAt": "updatedAt"}
_ORDER_KEYS |= {"objectId": "objectId", "c": "c"}
_RANGES = {"$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
# Client ISO texts may differ from ours in precision; ranges are widened by this much
# in the filter and decided exactly by the matcher.
_RANGE_SLACK_MS = 1000


def conversation_doc(conv: Conversation, now: int) -> Doc:
    """The JSON object the SDK expects for one conversation (protocol.md 3.4), with
    every field (``present`` trims it for a reply)."""
    doc: Doc = dict(conv.attrs)
    doc.update(
        objectId=conv.cid,
        c=conv.creator,
        tr=conv.kind is ConvType.TRANSIENT,
        sys=conv.kind is ConvType.SYSTEM,
        mu=list(conv.muted),
        unique=conv.unique,
        createdAt=iso(conv.created_at),
        updatedAt=iso(conv.updated_at),
        conv_type=int(conv.kind),
    )
    if conv.kind in (ConvType.NORMAL, ConvType.TEMPORARY):
        # Chatrooms and system conversations have no member list (features.md F17).
        doc["m"] = list(conv.members)
    if conv.unique_id:
        doc["uniqueId"] = conv.unique_id
    if conv.last_message_at is not None:
        doc["lm"] = {"__type": "Date", "iso": iso(conv.last_message_at)}
    if conv.expire_at is not None:
        doc["ttl"] = max(0, (conv.expire_at - now) // 1000)
        doc["tempConv"] = True
    return doc


def present(doc: Doc, flag: int, last: Message | None) -> Doc:
    """``doc`` as a reply carries it: no ``m`` in compact mode, the last message with
    flag 2 (withLastMessagesRefreshed)."""
    if flag & FLAG_COMPACT:
        doc.pop("m", None)
    if flag & FLAG_LAST_MESSAGE and last is not None:
        binary = last.binary
        doc.update(
            msg=last.data if binary is None else base64.b64encode(binary).decode(),
            msg_from=last.from_peer,
            msg_mid=last.mid,
            msg_timestamp=last.timestamp,
            bin=binary is not None,
        )
        if last.patch_timestamp is not None:
            doc["patch_timestamp"] = last.patch_timestamp
    return doc


# ---------------------------------------------------------------------------
# planning


class _Plan:
    """A ``ConvFilter`` being built from the AND-ed conditions of a ``where``."""

    def __init__(self) -> None:
        self.cids: set[str] | None = None
        self.members_all: list[str] = []
        self.members_any: tuple[str, ...] | None = None
        self.kinds: set[ConvType] | None = None
        self.creator: str | None = None
        self.ranges: list[tuple[str, str, int]] = []
        self.attrs: list[tuple[str, str | int | float]] = []
        self.any_of: tuple[ConvFilter, ...] = ()
        self.name_prefix: str | None = None
        self.regexes: list[tuple[str, str, str]] = []

    def ids(self, values: set[str]) -> None:
        self.cids = values if self.cids is None else self.cids & values

    def kind(self, allowed: set[ConvType]) -> None:
        self.kinds = allowed if self.kinds is None else self.kinds & allowed

    def build(self, now: int | None) -> ConvFilter:
        return ConvFilter(
            cids=None if self.cids is None else tuple(sorted(self.cids)),
            members_all=tuple(dict.fromkeys(self.members_all)),
            members_any=self.members_any,
            kinds=None if self.kinds is None else frozenset(self.kinds),
            creator=self.creator,
            ranges=tuple(self.ranges),
            attr_equals=tuple(self.attrs),
            alive_at=now,
            any_of=self.any_of,
            name_prefix=self.name_prefix,
            attr_regex=tuple(self.regexes),
        )


def plan(where: dict[str, object], now: int | None) -> ConvFilter:
    """The indexable part of a validated ``where`` (see the module docstring)."""
    p = _Plan()
    _plan_into(p, where)
    return p.build(now)


def _plan_into(p: _Plan, where: dict[str, object]) -> None:
    for key, cond in where.items():
        if key == "$and" and isinstance(cond, list):
            for clause in cond:
                if isinstance(clause, dict):
                    _plan_into(p, clause)
        elif key == "$or" and isinstance(cond, list) and not p.any_of:
            branches = [plan(c, None) for c in cond if isinstance(c, dict)]
            # A branch the store cannot narrow would make the union the whole table.
            if branches and all(b != ConvFilter() for b in branches):
                p.any_of = tuple(branches)
        elif not key.startswith("$"):
            _plan_key(p, key, cond)


def _strings(value: object) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return None


def _plan_key(p: _Plan, key: str, cond: object) -> None:
    ops = cond if isinstance(cond, dict) and any(str(k).startswith("$") for k in cond) else None
    if key == "objectId":
        if isinstance(cond, str):
            p.ids({cond})
        elif ops is not None and (ids := _strings(ops.get("$in"))) is not None:
            p.ids(set(ids))
    elif key == "m":
        if isinstance(cond, str):
            p.members_all.append(cond)
        elif ops is not None:
            p.members_all += _strings(ops.get("$all")) or []
            if (any_of := _strings(ops.get("$in"))) is not None and p.members_any is None:
                p.members_any = tuple(any_of)
    elif key in ("tr", "sys") and isinstance(cond, bool):
        flagged = ConvType.TRANSIENT if key == "tr" else ConvType.SYSTEM
        p.kind({flagged} if cond else set(ConvType) - {flagged})
    elif key.split(".", 1)[0] not in DOC_KEYS and ops is not None and "$regex" in ops:
        if key == "name" and (prefix := _literal_prefix(ops)) is not None:
            p.name_prefix = prefix
        p.regexes.append((key, str(ops["$regex"]), str(ops.get("$options", ""))))
    elif key == "c" and isinstance(cond, str):
        p.creator = cond
    elif key in RANGE_FIELDS and ops is not None:
        for op, arg in ops.items():
            ms = _time_ms(arg)
            if op in _RANGES and ms is not None:
                slack = _RANGE_SLACK_MS if _RANGES[op].startswith(">") else -_RANGE_SLACK_MS
                p.ranges.append((key, ">=" if slack > 0 else "<=", ms - slack))
    elif key.split(".", 1)[0] not in DOC_KEYS and _scalar(cond):
        p.attrs.append((key, cond))  # type: ignore[arg-type]


# What startsWith sends (``^\Q...\E``) or a plain ``^literal`` regex.
_PREFIX = re.compile(r"\^(?:\\Q(?P<quoted>[^\\]*)(?:\\E)?|(?P<plain>[\w \-]*))")


def _literal_prefix(ops: dict[str, object]) -> str | None:
    """The literal text a case-sensitive ``$regex`` anchored at the start requires."""
    pattern, options = ops.get("$regex"), ops.get("$options", "")
    # An alternation or a multiline ^ would not require the prefix of every match.
    if not isinstance(pattern, str) or options != "" or "|" in pattern:
        return None
    match = _PREFIX.match(pattern)
    if match is None or pattern[match.end() : match.end() + 1] in ("?", "*", "+", "{"):
        return None  # a quantifier would make the prefix's last character optional
    prefix = match.group("quoted") if match.group("quoted") is not None else match.group("plain")
    return prefix or None


def _scalar(value: object) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _time_ms(value: object) -> int | None:
    """Epoch ms of a Date (``{"__type": "Date", "iso": ...}``) or an ISO text."""
    if isinstance(value, dict) and value.get("__type") == "Date":
        value = value.get("iso")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp() * 1000)


def parse_sort(keys: list[str]) -> list[ConvOrder] | None:
    """The store order for the keys of a ``sort`` (``sort_keys``), or None when a key
    can only be sorted in Python (``tr``, ``m`` ...)."""
    order = []
    for key in keys:
        name = key.lstrip("-+")
        field = _ORDER_KEYS.get(name)
        if field is None and (name.split(".", 1)[0] in DOC_KEYS or json_path(name) is None):
            return None  # not a column, nor a path SQLite can address
        order.append(ConvOrder(field or name, key.startswith("-")))
    return order


# ---------------------------------------------------------------------------
# the command


def _where(body: pb.ConvCommand) -> dict[str, object]:
    if not body.HasField("where"):
        return {}
    try:
        parsed = orjson.loads(body.where.data) if body.where.data else {}
    except orjson.JSONDecodeError:
        raise bad_query("not JSON") from None
    if not isinstance(parsed, dict):
        raise bad_query("a condition is a JSON object")
    validate(parsed)  # keys with control characters included
    if ids.holds_nul(parsed):
        raise bad_query("a NUL character (U+0000) in a value matches nothing")
    return parsed


async def query(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``conv/query`` -> ``conv/results`` (an empty result is ``"[]"``)."""
    session = require_session(link, cmd)
    page = await run_query(ctx, session.peer_id, cmd.convMessage)
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.results)
    reply.convMessage.results.data = orjson.dumps(page).decode()
    return reply


async def run_query(ctx: Context, caller: str, body: pb.ConvCommand) -> list[Doc]:
    """The documents a ``conv/query`` body selects, as the reply carries them."""
    where = _where(body)
    limit = body.limit if body.HasField("limit") and body.limit > 0 else DEFAULT_LIMIT
    limit, skip = min(limit, MAX_LIMIT), max(body.skip, 0)
    if skip > MAX_SKIP:
        raise bad_query(f"more than {MAX_SKIP}", "skip")
    now = ctx.clock.wall_ms()
    if body.tempConvIds:
        conv_filter = ConvFilter(cids=tuple(body.tempConvIds[:MAX_LIMIT]), alive_at=now)
    elif not where:
        conv_filter = ConvFilter(members_all=(caller,), alive_at=now)
    else:
        conv_filter = plan(where, now)
    sort = body.sort if body.HasField("sort") else ""
    keys = sort_keys(sort)
    order = parse_sort(keys) if keys else [ConvOrder("activity", descending=True)]
    search = _Search(ctx, caller, where, now)
    docs = await search.run(conv_filter, order, skip + limit)
    if order is None:
        if len(docs) > MAX_PYTHON_SORT:
            raise bad_query(f"{sort!r} needs a where matching at most {MAX_PYTHON_SORT}", "sort")
        docs = sort_docs(docs, keys)
    page = docs[skip : skip + limit]
    return await _presented(ctx, search.readable, body.flag, page, ctx.config.reply_bytes)


async def _presented(
    ctx: Context, readable: set[object], flag: int, page: list[Doc], max_bytes: int
) -> list[Doc]:
    """``page`` as the reply carries it, stopped before the conversation that would take
    the results' JSON past ``max_bytes`` (always one at least): up to ``limit``
    conversations of 64 KiB of attributes and a last message each could otherwise make
    a reply of hundreds of MiB. The client pages on with ``skip``."""
    kept: list[Doc] = []
    size = 2  # the brackets around the results
    for doc in page:
        last = None
        if flag & FLAG_LAST_MESSAGE and doc["objectId"] in readable:
            last = await ctx.store.last_message(str(doc["objectId"]))
        size += len(orjson.dumps(present(doc, flag, last))) + 1  # and its comma
        if kept and size > max_bytes:
            break
        kept.append(doc)
    await trio.lowlevel.checkpoint()  # without flag 2 nothing above awaited
    return kept


# ---------------------------------------------------------------------------
# who sees what

PUBLIC_ATTR = "public"
"""The attribute (``true``) that shows a conversation to everyone's queries under the
``members`` scope."""
_OPEN_KINDS = frozenset({ConvType.TRANSIENT, ConvType.SYSTEM})


def visible(conv: Conversation, caller: str, scope: str) -> bool:
    """Whether a query by ``caller`` may return ``conv``: always under the ``open``
    scope; under ``members``, when ``caller`` is a member, ``conv`` is a chatroom or a
    system conversation, or its ``public`` attribute is ``true``."""
    if scope == "open" or conv.kind in _OPEN_KINDS or caller in conv.members:
        return True
    return conv.attrs.get(PUBLIC_ATTR) is True


def _scoped(conv_filter: ConvFilter, caller: str, scope: str) -> ConvFilter:
    """``conv_filter`` narrowed in the store to what ``visible`` lets through, unless it
    already narrows by its own ``$or`` or to the caller's conversations (``visible``
    decides on every candidate anyway)."""
    if scope == "open" or conv_filter.any_of or caller in conv_filter.members_all:
        return conv_filter
    either = (
        ConvFilter(members_all=(caller,)),
        ConvFilter(kinds=_OPEN_KINDS),
        ConvFilter(attr_equals=((PUBLIC_ATTR, True),)),
    )
    return dataclasses.replace(conv_filter, any_of=either)


# ---------------------------------------------------------------------------
# matching, a batch of candidates at a time, giving the loop back as it goes

MAX_PYTHON_SORT = 1000
"""Most matches sorted in Python (``sort`` by a key the store cannot order by, such as
``tr``): a sort is one step that cannot yield, this keeps it within a millisecond or
two. More: 4310."""
MAX_SKIP = 10_000
"""Most matches skipped (``skip``): each one skipped is read and matched, and held until
the page is cut. More: 4310."""
_YIELD_EVERY = 128  # candidates matched between checkpoints, at most
_YIELD_AFTER = 0.002  # seconds of matching between checkpoints, at most


class _Search:
    """One query's candidates checked against its ``where`` and the caller's scope."""

    def __init__(self, ctx: Context, caller: str, where: dict[str, object], now: int) -> None:
        self.ctx, self.caller, self.where, self.now = ctx, caller, where, now
        self.scope = ctx.config.conv_query_scope
        self.readable: set[object] = set()  # ids of matches whose messages caller may see
        self._count, self._since = 0, time.perf_counter()

    async def run(
        self, conv_filter: ConvFilter, order: list[ConvOrder] | None, wanted: int
    ) -> list[Doc]:
        """Documents of stored conversations that match, in ``order``: at least
        ``wanted`` of them when there are (all of them when ``order`` is None)."""
        docs: list[Doc] = []
        offset, batch = 0, max(_FIRST_BATCH, wanted * 2)
        conv_filter = _scoped(conv_filter, self.caller, self.scope)
        store = self.ctx.store
        while True:
            convs = await store.select_conversations(conv_filter, order or [], batch, offset)
            self._since = time.perf_counter()  # the store's time was not the loop's
            count = len(convs)
            # Taken off the end one at a time, so that each is freed as the next is
            # examined: freeing a batch of tens of thousands at once held the loop.
            convs.reverse()
            while convs:
                if self._due():
                    await trio.lowlevel.checkpoint()
                stored = convs.pop()
                doc = self._check(self.ctx.caches.conversations.newest(stored))
                if doc is not None:
                    docs.append(doc)
                    if order is None and len(docs) > MAX_PYTHON_SORT:
                        return docs  # refused by the caller: no need to go on
            if count < batch or (order is not None and len(docs) >= wanted):
                return docs
            offset += batch
            batch *= 2

    def _check(self, conv: Conversation) -> Doc | None:
        if not visible(conv, self.caller, self.scope):
            return None
        doc = conversation_doc(conv, self.now)
        if not matches(doc, self.where):
            return None
        if conv.may_read(self.caller):
            self.readable.add(conv.cid)
        return doc

    def _due(self) -> bool:
        """Whether to checkpoint now: every ``_YIELD_EVERY`` candidates or
        ``_YIELD_AFTER`` seconds, whichever comes first, so that a query over many
        rows never holds the event loop."""
        self._count += 1
        if self._count < _YIELD_EVERY and time.perf_counter() - self._since <= _YIELD_AFTER:
            return False
        self._count, self._since = 0, time.perf_counter()
        return True
