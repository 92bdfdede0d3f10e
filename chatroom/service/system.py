"""System conversations (features.md F30): made and written by the operator.

Clients subscribe and unsubscribe themselves (``conv/add`` / ``conv/remove`` with their
own id, which is what ``ServiceConversation.subscribe`` sends in the JS SDK 4.3.1), get
every message the operator sends while online, and may not send (4307) or change the
conversation (4308). The operator acts through ``chatroom/http/admin.py``.
"""

from __future__ import annotations

import trio

from chatroom.core.model import JSON, Conversation, ConvType, Message
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import Context
from chatroom.service.messages import lctype_of, push_command


def new_system_conversation(
    cid: str, name: str, attrs: dict[str, JSON], creator: str, now: int
) -> Conversation:
    """The record of a new system conversation (no subscribers yet)."""
    return Conversation(
        cid=cid,
        kind=ConvType.SYSTEM,
        creator=creator,
        members=[],
        attrs={**attrs, "name": name},
        created_at=now,
        updated_at=now,
    )


async def create(ctx: Context, name: str, attrs: dict[str, JSON], creator: str) -> Conversation:
    """Store a new system conversation and cache it."""
    now = ctx.clock.wall_ms()
    conv = new_system_conversation(ctx.ids.conversation(), name, attrs, creator, now)
    await ctx.store.create_conversation(conv)
    ctx.caches.conversations.put(conv)
    return conv


async def broadcast(ctx: Context, cid: str, content: str, sender: str | None) -> Message:
    """Store one message from the operator and push it to every online subscriber
    once stored. 4303 for an unknown id, 4313 for a conversation that is not a system
    one, 4200 when the store fails."""
    conv = await ctx.conversation(cid)
    if conv.kind is not ConvType.SYSTEM:
        raise ChatError(ErrorCode.SYSTEM_CONVERSATION_REQUIRED, "not a system conversation")
    timestamp, mid = ctx.ids.message()
    message = Message(
        cid=cid,
        mid=mid,
        from_peer=sender or conv.creator,
        timestamp=timestamp,
        data=content,
        lctype=lctype_of(content),
    )
    done = trio.Event()
    failure: list[BaseException] = []

    def committed(error: BaseException | None) -> None:
        if error is not None:
            failure.append(error)
        else:
            if conv.last_message_at is None or conv.last_message_at < timestamp:
                conv.last_message_at = timestamp
            ctx.hub.to_members(push_command(message, conv.kind), conv)
        done.set()

    await ctx.ports.committer.submit(message, committed)
    await done.wait()
    if failure:
        raise ChatError(ErrorCode.INTERNAL_ERROR, "the message could not be stored")
    return message
