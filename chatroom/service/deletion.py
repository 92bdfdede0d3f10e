"""Deleting a message (the REST API's ``DELETE …/messages/{mid}``): the server's copy
goes, and nobody is told (LeanCloud's rule: clients keep what they have).

Deleting a conversation (the REST API's ``DELETE /{family}/{cid}``): its members
learn it as if they had all been removed (``conv/left``, the SDK's ``kicked`` event;
logged for those offline, replayed at their next login), a chatroom's viewers get the
same, and the conversation, its messages, marks and moderation go from the store and
from every cache. Sends racing the deletion get 4303 once it is done.

Purging inactive conversations (issue 13's retention; the REST API's ``POST
/purge-inactive-conversations``) deletes each of them the same way."""

from __future__ import annotations

from chatroom.core.ids import thread_cid
from chatroom.core.model import Conversation, ConvFilter, ConvOrder, ConvType
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import Context
from chatroom.service.conv_events import push
from chatroom.service.conversations import conv_event
from chatroom.service.history import room_messages

_PURGE_PAGE = 100  # candidates read per store query
_PURGE_PAGES = 20  # store queries per purge call at most


async def delete_conversation(ctx: Context, conv: Conversation, actor: str) -> None:
    """Delete ``conv`` as ``actor`` (who shows as ``initBy``); 4303 if it is gone."""
    deleted = await ctx.store.delete_conversation(conv.cid)
    ctx.caches.forget_conversation(conv.cid)
    ctx.ports.cluster.forget_kept(conv.cid)
    if not deleted:
        raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND)
    now = ctx.clock.wall_ms()
    left = conv_event(pb.left, conv.cid, actor, now)
    if conv.kind is ConvType.TRANSIENT:
        ctx.hub.to_room(left, conv.cid)
    else:
        push(ctx, left, now, conv.members)


async def purge_inactive(ctx: Context, before_ms: int, at_most: int) -> tuple[int, bool]:
    """Delete at most ``at_most`` conversations with neither a message nor an update
    since ``before_ms`` (each as ``delete_conversation``, by its owner), reading at most
    ``_PURGE_PAGES`` pages of candidates: how many went, and whether more may be left."""
    where = ConvFilter(ranges=(("updatedAt", "<", before_ms),))
    order = (ConvOrder("updatedAt"),)
    deleted = kept = pages = 0
    while pages < _PURGE_PAGES:
        pages += 1
        page = await ctx.store.select_conversations(where, order, _PURGE_PAGE, kept)
        for stored in page:
            conv = ctx.caches.conversations.newest(stored)
            if conv.updated_at >= before_ms or (conv.last_message_at or 0) >= before_ms:
                kept += 1  # it stays, and sorts before those not read yet
                continue
            if deleted == at_most:
                return deleted, True
            try:
                await delete_conversation(ctx, conv, conv.creator)
            except ChatError:  # deleted meanwhile
                continue
            deleted += 1
        if len(page) < _PURGE_PAGE:
            return deleted, False
    return deleted, True  # noqa: ASYNC910 - the loop's first pass awaited the store


async def delete_message(
    ctx: Context, cid: str, mid: str, sender: str, timestamp: int, subscriber: str | None = None
) -> None:
    """Delete message ``mid`` of ``cid``, sent by ``sender`` at ``timestamp`` (ms): 4404
    if there is no such message, 4403 if ``sender`` did not send it. With ``subscriber``
    (a service conversation): a message of that subscriber's thread (sent to it alone,
    or written by it); the broadcasts every subscriber shares are not deleted so."""
    conv = await ctx.conversation(cid)
    chatroom = conv.kind is ConvType.TRANSIENT  # its history is its buffer, in memory
    where = cid if subscriber is None else thread_cid(cid, subscriber)
    if chatroom:
        message = next((m for m in await room_messages(ctx, cid) if m.mid == mid), None)
    else:
        message = await ctx.store.get_message(where, mid)
    if message is None or message.timestamp != timestamp:
        raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
    if message.from_peer != sender:
        raise ChatError(ErrorCode.MESSAGE_OWNERSHIP_REQUIRED)
    if chatroom:
        ctx.caches.rooms.discard(cid, mid)
        ctx.ports.cluster.unkeep(message)
    elif not await ctx.store.delete_message(where, mid):
        raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
