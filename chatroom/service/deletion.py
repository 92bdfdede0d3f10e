"""Deleting a conversation (the REST API's ``DELETE /{family}/{cid}``): its members
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
