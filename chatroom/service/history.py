"""History queries: ``logs`` (protocol.md 4.14). Results are always ascending.

Items show messages as stored now: edited or recalled ones with their new content and
``patchTimestamp``. In conversations of at most two members, items also carry
``ackAt``/``readAt``: the receiving member's delivered-up-to and read-up-to where they
cover the item (the SDK marks such messages delivered/read).

A page holds at most ``history_max_limit`` messages and stops before the one that would
take it past ``max_reply_bytes`` (``within_bytes``).
"""

from __future__ import annotations

from chatroom.core import paging as history
from chatroom.core.model import (
    Bound,
    Conversation,
    ConvType,
    Direction,
    HistoryQuery,
    Message,
)
from chatroom.core.receipt_book import receipts_apply
from chatroom.core.replybudget import fitting, item_size
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import Context, Link, require_session
from chatroom.service.messages import log_item
from chatroom.service.receipts import receipt_times


def build_query(ctx: Context, cid: str, q: pb.LogsCommand) -> HistoryQuery:
    """Validate a ``logs`` request. JS sends the limit as ``l``, Swift as ``limit``;
    0 or absent means the default, and more than the maximum is clamped."""
    limit = q.l if q.HasField("l") else q.limit
    if limit <= 0:
        limit = ctx.config.history_default_limit
    limit = min(limit, ctx.config.history_max_limit)
    start = end = None
    if q.HasField("t") or q.HasField("mid"):
        start = Bound(q.t, q.mid or None, q.tIncluded)
    if q.HasField("tt") or q.HasField("tmid"):
        end = Bound(q.tt, q.tmid or None, q.ttIncluded)
    direction = Direction(q.direction) if q.HasField("direction") else Direction.OLD
    lctype = q.lctype if q.HasField("lctype") else None
    return HistoryQuery(cid, limit, start, end, direction, lctype)


async def logs(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    q = cmd.logsMessage
    conv = await ctx.conversation(q.cid)
    if not (session.operator or conv.may_read(session.peer_id)):
        raise ChatError(ErrorCode.CONVERSATION_LOG_REJECTED, "not a member")
    query = build_query(ctx, conv.cid, q)
    items = await page(ctx, conv, query)
    reply = pb.GenericCommand(cmd=pb.logs)
    reply.logsMessage.SetInParent()
    reply.logsMessage.logs.extend(within_bytes(items, query.direction, ctx.config.reply_bytes))
    return reply


async def page(ctx: Context, conv: Conversation, query: HistoryQuery) -> list[pb.LogItem]:
    """The items ``query`` selects (``query.cid``: ``conv``, or a thread of it), ascending."""
    if conv.kind is ConvType.TRANSIENT:
        found = history.select(await room_messages(ctx, conv.cid), query)
    else:
        found = await ctx.store.query_messages(query)
    times: dict[str, tuple[int | None, int | None]] = {}
    if found and receipts_apply(conv):
        # ackAt/readAt: the other member's delivered/read-up-to (protocol.md 4.12, 5.4)
        times = receipt_times(conv, await ctx.store.member_marks(conv.cid), found)
    return [log_item(m, conv.kind, *times.get(m.mid, (None, None))) for m in found]


async def room_messages(ctx: Context, cid: str) -> list[Message]:
    """A chatroom's recent messages, oldest first: those the nodes of a cluster share
    (in Redis), or else those kept here (alone, or Redis does not answer)."""
    shared = await ctx.ports.cluster.kept(cid)
    return ctx.caches.rooms.messages(cid) if shared is None else shared


async def every_conversation(ctx: Context, q: pb.LogsCommand) -> list[tuple[str, pb.LogItem]]:
    """A page of the stored messages of every conversation (the REST API's ``GET
    /messages``; chatrooms keep none), ascending, each with its conversation's id."""
    query = build_query(ctx, "", q)
    found = await ctx.store.query_all_messages(query)
    items = [log_item(m, ConvType.NORMAL) for m in found]
    kept = within_bytes(items, query.direction, ctx.config.reply_bytes)
    first = len(items) - len(kept) if query.direction is Direction.OLD else 0
    return [(m.cid, item) for m, item in zip(found[first:], kept, strict=True)]


def within_bytes(items: list[pb.LogItem], direction: Direction, limit: int) -> list[pb.LogItem]:
    """The part of an ascending page that fits in ``limit`` bytes, taken from the end
    the query fills first: the newest for OLD, the oldest for NEW. The client pages on
    from the far edge of what it got (the SDK from the oldest item), so it misses
    nothing."""
    sizes = [item_size(item) for item in items]
    if direction is Direction.OLD:
        kept = fitting(sizes[::-1], limit)
        return items[len(items) - kept :]
    return items[: fitting(sizes, limit)]
