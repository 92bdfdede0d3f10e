"""What a client is told right after login (protocol.md 4.1, 4.13; features.md F48-F50).

Run once per login, after ``session/opened`` has been sent and before the next command
of that connection is handled:

1. **Missed patches**: edits and recalls with ``patchTimestamp`` after the login's
   ``lastPatchTime``, in the user's conversations, as one ``patch/modify`` push (at most
   ``patches_at_login``). Only for clients that announce patch support (configBitmap
   bit 0) and send ``lastPatchTime``.
2. **Protocol v3** (``lc.*.3`` and JSON): one ``unread{notifTime, convs}`` push. A first
   login (no ``lastUnreadNotifTime``) gets every conversation with unread messages; a
   later one those whose count changed since then, plus those with unread messages
   that no client of the user acknowledged (delivered-up-to older than the last
   change): this is how unacked messages are redelivered in v3, as counts the client
   then pulls from history. At most ``unread_conversations``, most recently changed
   first. Counts cover every stored message of others since the user's last read,
   online or not, and only a ``read`` lowers them.
3. **Protocol v1** (``lc.*.1``): no ``unread``; instead, for each conversation with
   messages of others newer than the user's delivered-up-to, the newest
   ``offline_messages_per_conversation`` of them as ``direct{offline: true}`` pushes,
   oldest first, ``hasMore`` set on all but the last of each conversation (and on the
   last too when older ones were left out). The client acks them like live messages,
   which moves delivered-up-to; unacked ones come again at the next login. The user's
   own messages from other devices are not pushed (the SDK never acks them).

The three share one byte budget per login (``login_budget``): patches stop at it (the
newer ones are seen in history), unread tuples past it carry their count and time but
not the last message, and v1 pushes keep the newest messages of the most recently
active conversations (``hasMore`` set where some were left out; the rest comes at a
later login).
"""

from __future__ import annotations

from typing import Literal

import trio

from chatroom.core.model import Bound, ConvType, Direction, HistoryQuery, MemberMarks, Message
from chatroom.core.presence import Session
from chatroom.core.replybudget import Budget, item_size
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.service import patches
from chatroom.service.context import Context
from chatroom.service.messages import push_command
from chatroom.store.common import INT64_MAX

_PATCH_CAPABLE = 1  # configBitmap bit 0
# What an unread tuple says about the last message, beyond its time.
_LAST_MESSAGE_FIELDS: tuple[Literal["mid", "from", "data", "binaryMsg", "patchTimestamp"], ...] = (
    "mid",
    "from",
    "data",
    "binaryMsg",
    "patchTimestamp",
)


async def tuples(
    ctx: Context, marks: list[MemberMarks], budget: Budget | None = None
) -> list[pb.UnreadTuple]:
    """One ``UnreadTuple`` per marks row, with the conversation's last message while
    ``budget`` lasts; after it, the count and the time of the last message only (the
    SDK then keeps the last message it knew)."""
    await trio.lowlevel.checkpoint()  # also when there are none
    out = []
    for k in marks:
        conv = await ctx.caches.conversations.get(k.cid)
        last = await ctx.store.last_message(k.cid)
        t = pb.UnreadTuple(cid=k.cid, unread=k.unread, mentioned=k.mentioned)
        if last is not None:
            t.timestamp = last.timestamp
            t.mid = last.mid
            patches.set_stored_content(t, last)
            if budget is not None and not budget.take(item_size(t)):
                for name in _LAST_MESSAGE_FIELDS:
                    t.ClearField(name)
        if conv is not None:
            t.convType = int(conv.kind)
        out.append(t)
    return out


def unread_command(convs: list[pb.UnreadTuple], notif_time: int) -> pb.GenericCommand:
    """The ``unread`` push (``notifTime`` comes back as ``lastUnreadNotifTime``)."""
    cmd = pb.GenericCommand(cmd=pb.unread, serverTs=notif_time)
    cmd.unreadMessage.notifTime = notif_time
    cmd.unreadMessage.convs.extend(convs)
    return cmd


def login_budget(ctx: Context) -> Budget:
    """Bytes of stored content one login may push: ``max_reply_bytes``, and at most
    half the outbox, since these pushes are queued back to back and a reliable frame
    that does not fit closes the connection (which would then log in and overflow
    again)."""
    config = ctx.config
    return Budget(min(config.max_reply_bytes, config.outbox_max_bytes // 2))


async def after_login(ctx: Context, session: Session, msg: pb.SessionCommand, version: int) -> None:
    """Missed patches, then unread counts (v3) or stored messages (v1)."""
    budget = None  # made when something is pushed: a client with nothing has no use for it
    if msg.HasField("lastPatchTime") and msg.configBitmap & _PATCH_CAPABLE:
        budget = login_budget(ctx)
        await patches.push_missed(ctx, session, msg.lastPatchTime, budget)
    if version == 1:
        await push_offline(ctx, session, budget if budget is not None else login_budget(ctx))
    else:
        since = msg.lastUnreadNotifTime if msg.HasField("lastUnreadNotifTime") else None
        await push_unread(ctx, session, since, budget)


async def push_unread(
    ctx: Context, session: Session, since: int | None, budget: Budget | None
) -> None:
    """The v3 ``unread`` push (nothing when no conversation qualifies); ``budget``
    None: the login's whole budget."""
    now = ctx.clock.wall_ms()
    marks = await ctx.store.changed_marks(session.peer_id, since, ctx.config.unread_conversations)
    if marks:
        if budget is None:
            budget = login_budget(ctx)
        command = unread_command(await tuples(ctx, marks, budget), now)
        ctx.hub.to_session(Prepared(command), session)


async def push_offline(ctx: Context, session: Session, budget: Budget) -> None:
    """The v1 offline-message push. The most recently active conversations and their
    newest messages get ``budget`` first; the pushes then go oldest first."""
    per = ctx.config.offline_messages_per_conversation
    await trio.lowlevel.checkpoint()  # also when turned off
    if per <= 0:
        return
    # since = the far future: only rows with unread messages newer than acked_at
    marks = await ctx.store.changed_marks(
        session.peer_id, INT64_MAX, ctx.config.unread_conversations
    )
    chosen: list[list[Prepared]] = []
    for k in marks:  # the most recently active conversation first
        conv = await ctx.caches.conversations.get(k.cid)
        if conv is None:
            continue
        limit = min(2 * per + 1, 1000)  # room for the user's own messages, skipped
        query = HistoryQuery(k.cid, limit, end=Bound(k.acked_at), direction=Direction.OLD)
        found = await ctx.store.query_messages(query)
        others = [m for m in found if m.from_peer != session.peer_id]
        truncated = len(others) > per or len(found) == limit
        newest = others[-per:]  # empty when the window holds only the user's own
        pushes = _offline_pushes(newest, conv.kind, truncated, budget)
        if pushes:
            chosen.append(pushes)
        if len(pushes) < len(newest):
            break  # the budget is spent: the other conversations at a later login
    for pushes in reversed(chosen):
        for prepared in pushes:
            ctx.hub.to_session(prepared, session)


def _offline_pushes(
    messages: list[Message], kind: ConvType, truncated: bool, budget: Budget
) -> list[Prepared]:
    """The ``direct{offline}`` pushes of one conversation's ``messages`` (ascending)
    that ``budget`` allows, the newest kept; ``hasMore`` on all but the last unless
    older ones were left out."""
    kept: list[Prepared] = []
    for message in reversed(messages):
        prepared = push_command(message, kind)
        if not budget.take(item_size(prepared.command)):
            break
        kept.append(prepared)
    kept.reverse()
    truncated = truncated or len(kept) < len(messages)
    for n, prepared in enumerate(kept):
        body = prepared.command.directMessage
        body.offline = True
        body.hasMore = truncated or n < len(kept) - 1
    return kept
