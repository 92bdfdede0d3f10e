"""System conversations (features.md F30): made and written by the operator.

Clients subscribe and unsubscribe themselves (``conv/add`` / ``conv/remove`` with their
own id, which is what ``ServiceConversation.subscribe`` sends in the JS SDK 4.3.1), get
every message the operator sends while online, and may not change the conversation
(4308). A subscriber may write to the operator (seed 002): such a message is kept in
that subscriber's thread (``chatroom.core.ids.thread_cid``) and reaches no other
subscriber (service/messages.py). The operator acts through the REST API
(``chatroom/http/rest``) and ``chatroom/http/admin.py``; what it sends to some
subscribers only (``send_to``) goes to their threads too.
"""

from __future__ import annotations

import dataclasses

import trio

from chatroom.core.ids import thread_cid
from chatroom.core.model import JSON, Conversation, ConvType, Direction, Message, lctype_of
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import history
from chatroom.service.context import Context
from chatroom.service.messages import push_command


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
    conv = await _system(ctx, cid)
    message = _message(ctx, conv, cid, content, sender)
    await _store(ctx, [message])
    if conv.last_message_at is None or conv.last_message_at < message.timestamp:
        conv.last_message_at = message.timestamp
    ctx.hub.to_members(push_command(message, conv.kind), conv)
    return message


async def send_to(
    ctx: Context, cid: str, content: str, sender: str | None, clients: list[str]
) -> Message:
    """One message from the operator to some subscribers only: kept in each one's thread
    (``thread_cid``, with one id and timestamp), pushed to their online sessions once
    stored. Errors as ``broadcast``; 4401 when one of ``clients`` is no subscriber."""
    conv = await _system(ctx, cid)
    strangers = [c for c in clients if c not in conv.members]
    if strangers:
        raise ChatError(ErrorCode.INVALID_MESSAGING_TARGET, f"not subscribed: {strangers[0]}")
    message = _message(ctx, conv, cid, content, sender)
    copies = [dataclasses.replace(message, cid=thread_cid(cid, c)) for c in clients]
    await _store(ctx, copies)
    ctx.hub.to_clients(push_command(message, conv.kind), clients)
    return message


async def _system(ctx: Context, cid: str) -> Conversation:
    conv = await ctx.conversation(cid)
    if conv.kind is not ConvType.SYSTEM:
        raise ChatError(ErrorCode.SYSTEM_CONVERSATION_REQUIRED, "not a system conversation")
    return conv


def _message(
    ctx: Context, conv: Conversation, cid: str, content: str, sender: str | None
) -> Message:
    timestamp, mid = ctx.ids.message()
    return Message(
        cid=cid,
        mid=mid,
        from_peer=sender or conv.creator,
        timestamp=timestamp,
        data=content,
        lctype=lctype_of(content),
    )


async def _store(ctx: Context, messages: list[Message]) -> None:
    """Commit ``messages`` and wait until they are: 4200 if one could not be stored."""
    left = len(messages)
    done = trio.Event()
    failure: list[BaseException] = []

    def committed(error: BaseException | None) -> None:
        nonlocal left
        if error is not None:
            failure.append(error)
        left -= 1
        if left == 0:
            done.set()

    for message in messages:
        await ctx.ports.committer.submit(message, committed)
    await done.wait()
    if failure:
        raise ChatError(ErrorCode.INTERNAL_ERROR, "the message could not be stored")


async def subscriber_history(
    ctx: Context, cid: str, client: str, q: pb.LogsCommand
) -> list[pb.LogItem]:
    """One page of what ``client`` shares with the operator of system conversation
    ``cid``: its thread (both ways) and the broadcasts, merged with the paging of
    ``logs`` (``q``), ascending."""
    conv = await _system(ctx, cid)
    query = history.build_query(ctx, cid, q)
    thread = dataclasses.replace(query, cid=thread_cid(cid, client))
    items = [*await history.page(ctx, conv, query), *await history.page(ctx, conv, thread)]
    items.sort(key=lambda item: (item.timestamp, item.msgId))
    old = query.direction is Direction.OLD
    items = items[-query.limit :] if old else items[: query.limit]
    return history.within_bytes(items, query.direction, ctx.config.reply_bytes)
