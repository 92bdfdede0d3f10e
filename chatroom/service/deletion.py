"""Deleting a message (the REST API's ``DELETE …/messages/{mid}``): the server's copy
goes, and nobody is told (LeanCloud's rule: clients keep what they have).

Deleting a conversation (the REST API's ``DELETE /{family}/{cid}``): its members
learn it as if they had all been removed (``conv/left``, the SDK's ``kicked`` event;
logged for those offline, replayed at their next login), a chatroom's viewers get the
same, and the conversation, its messages, marks and moderation go from the store and
from every cache. Sends racing the deletion get 4303 once it is done."""

from __future__ import annotations

from chatroom.core.model import ConvType
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import Context
from chatroom.service.conv_events import push
from chatroom.service.conversations import conv_event


async def delete_conversation(ctx: Context, cid: str, actor: str) -> None:
    """Delete ``cid`` as ``actor`` (who shows as ``initBy``); 4303 if there is none."""
    conv = await ctx.conversation(cid)
    deleted = await ctx.store.delete_conversation(cid)
    ctx.caches.forget_conversation(cid)
    if not deleted:
        raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND)
    now = ctx.clock.wall_ms()
    left = conv_event(pb.left, cid, actor, now)
    if conv.kind is ConvType.TRANSIENT:
        ctx.hub.to_room(left, cid)
    else:
        push(ctx, left, now, conv.members)


async def delete_message(ctx: Context, cid: str, mid: str, sender: str, timestamp: int) -> None:
    """Delete message ``mid`` of ``cid``, sent by ``sender`` at ``timestamp`` (ms): 4404
    if there is no such message, 4403 if ``sender`` did not send it."""
    conv = await ctx.conversation(cid)
    chatroom = conv.kind is ConvType.TRANSIENT  # its history is its buffer, in memory
    if chatroom:
        message = ctx.caches.rooms.find(cid, mid)
    else:
        message = await ctx.store.get_message(cid, mid)
    if message is None or message.timestamp != timestamp:
        raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
    if message.from_peer != sender:
        raise ChatError(ErrorCode.MESSAGE_OWNERSHIP_REQUIRED)
    if chatroom:
        ctx.caches.rooms.discard(cid, mid)
    elif not await ctx.store.delete_message(cid, mid):
        raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
