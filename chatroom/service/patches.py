"""Recall and edit: ``patch/modify`` (protocol.md 4.15; features.md F43-F45).

- Only the sender of a stored message may patch it: someone else's message is 4403, an
  unknown one (or a chatroom message, never stored) 4404, and the switches
  ``allow_edit``/``allow_recall`` give 4406/4407. An edit must carry exactly one of
  ``data`` and ``binaryMsg`` within ``max_message_bytes``.
- The stored row is rewritten in place (same id, same timestamp) with the new content
  and mentions and a ``patchTimestamp``; a recall stores ``{"_lctype":-127}``. History,
  unread tuples and conversation queries then show the patched message.
- The reply is ``patch/modified{lastPatchTime}``; every other session of every member
  (the sender's other devices included) gets the ``patch/modify`` push of
  protocol.md 4.15. Patch times are strictly increasing across the server, so that a
  client's ``lastPatchTime`` never hides a patch made in the same millisecond.
- Edits are filtered like new messages (sensitive words), without telling anyone twice.
- ``filtered_notice``: when the word filter changed a new message, its sender's
  sessions get a ``patch/modify`` with ``patchCode`` 4408 and a ``patchReason``, which
  the SDK reports as ``messageupdate`` with a reason (features.md F45, seed 004).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import trio

from chatroom.core.model import Conversation, ConvType, Message, Patch, lctype_of
from chatroom.core.presence import Session
from chatroom.core.replybudget import Budget, item_size
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import hooks
from chatroom.service.context import Context, Link, require_session

RECALLED = '{"_lctype":-127}'
RECALLED_TYPE = -127
FILTERED_PATCH_CODE = 4408  # "changed by the content filter": next to 4401-4407
FILTERED_PATCH_REASON = "sensitive words replaced"


def filters_apply(conv: Conversation) -> bool:
    """Sensitive words are filtered in chatrooms, system conversations and groups of
    more than two members, not in one-to-one chats (features.md F45)."""
    if conv.kind in (ConvType.TRANSIENT, ConvType.SYSTEM):
        return True
    return len(conv.members) > 2


def set_stored_content(item: pb.PatchItem | pb.UnreadTuple, message: Message) -> None:
    """Copy what a stored message now says (sender, text or binary content, edit time)
    into a patch item or an unread tuple, which name these fields alike."""
    item.__setattr__("from", message.from_peer)
    if message.binary is not None:
        item.binaryMsg = message.binary
    else:
        item.data = message.data or ""
    if message.patch_timestamp is not None:
        item.patchTimestamp = message.patch_timestamp


def patch_item(message: Message, recall: bool = False) -> pb.PatchItem:
    """A ``PatchItem`` showing ``message`` as it is now stored."""
    item = pb.PatchItem(cid=message.cid, mid=message.mid, timestamp=message.timestamp)
    if recall:
        item.recall = True
    set_stored_content(item, message)
    if message.mention_all:
        item.mentionAll = True
    item.mentionPids.extend(message.mention_pids)
    return item


def patch_push(items: list[pb.PatchItem], last_patch_time: int, now: int) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.patch, op=pb.modify, serverTs=now)
    cmd.patchMessage.patches.extend(items)
    cmd.patchMessage.lastPatchTime = last_patch_time
    return Prepared(cmd)


def check_size(ctx: Context, content: int, mention_pids: Sequence[str]) -> None:
    """Refuse a message or an edit whose content and mention list together pass
    ``max_message_bytes`` with 4109: both are stored and come back in every history
    page, patch and push of it."""
    limit = ctx.config.max_message_bytes
    if content + sum(map(len, mention_pids)) > limit:
        raise ChatError(ErrorCode.FRAME_TOO_LONG, f"content and mentions over {limit} bytes")


def _new_content(ctx: Context, conv: Conversation, item: pb.PatchItem) -> Patch:
    """The validated new content of an edit or a recall (its time not yet set)."""
    if item.recall:
        if not ctx.config.allow_recall:
            raise ChatError(ErrorCode.MESSAGE_RECALL_DISABLED)
        return Patch(conv.cid, item.mid, 0, data=RECALLED, lctype=RECALLED_TYPE)
    if not ctx.config.allow_edit:
        raise ChatError(ErrorCode.MESSAGE_EDIT_DISABLED)
    has_text, has_binary = item.HasField("data"), item.HasField("binaryMsg")
    if has_text == has_binary:
        raise ChatError(
            ErrorCode.INVALID_COMMAND, "an edit needs exactly one of data and binaryMsg"
        )
    size = len(item.binaryMsg) if has_binary else len(item.data.encode())
    check_size(ctx, size, item.mentionPids)
    data = item.data if has_text else None
    if data is not None and filters_apply(conv):
        data = ctx.policies.words.apply(data)
    return Patch(
        conv.cid,
        item.mid,
        0,
        data=data,
        binary=item.binaryMsg if has_binary else None,
        mention_all=item.mentionAll,
        mention_pids=tuple(dict.fromkeys(item.mentionPids)),
        lctype=lctype_of(data) if data is not None else None,
    )


async def modify(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``patch/modify``: recall or edit the sender's own messages."""
    session = require_session(link, cmd)
    items = list(cmd.patchMessage.patches)
    if not items:
        raise ChatError(ErrorCode.INVALID_COMMAND, "no patches")
    checked: list[tuple[Conversation, Patch, bool]] = []
    for item in items:  # validate all before changing any
        conv = await ctx.conversation(item.cid)
        if conv.kind is ConvType.TRANSIENT:
            raise ChatError(ErrorCode.MESSAGE_NOT_FOUND, "chatroom messages are not stored")
        content = _new_content(ctx, conv, item)
        original = await ctx.store.get_message(conv.cid, item.mid)
        if original is None:
            raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
        if original.from_peer != session.peer_id:
            raise ChatError(ErrorCode.MESSAGE_OWNERSHIP_REQUIRED, "only the sender may")
        rewritten = await hooks.message_update(ctx, link, conv, original, content, item.recall)
        if rewritten is not None:
            lctype = lctype_of(rewritten.data) if rewritten.data is not None else None
            content = dataclasses.replace(rewritten, lctype=lctype)
        checked.append((conv, content, item.recall))
    last = 0
    for conv, content, recall in checked:
        at = ctx.ids.patch_time()
        patched = await ctx.store.patch_message(
            Patch(
                content.cid,
                content.mid,
                at,
                content.data,
                content.binary,
                content.mention_all,
                content.mention_pids,
                content.lctype,
            )
        )
        if patched is None:  # gone meanwhile: cannot happen with today's stores
            raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
        last = at
        push = patch_push([patch_item(patched, recall)], at, ctx.clock.wall_ms())
        ctx.hub.to_members(push, conv, skip=session)
    await trio.lowlevel.checkpoint()  # for flake8-async: the loops above always await
    reply = pb.GenericCommand(cmd=pb.patch, op=pb.modified)
    reply.patchMessage.lastPatchTime = last
    return reply


async def push_missed(ctx: Context, session: Session, since: int, budget: Budget) -> None:
    """After login: the patches newer than the client's ``lastPatchTime``, oldest first,
    as many as ``budget`` allows. Those left out are newer; the client sees them in
    history (the SDK moves its ``lastPatchTime`` to the login's time anyway)."""
    found = await ctx.store.patches_since(session.peer_id, since, ctx.config.patches_at_login)
    items: list[pb.PatchItem] = []
    latest = 0
    for m in found:
        item = patch_item(m, recall=m.lctype == RECALLED_TYPE and m.data == RECALLED)
        if not budget.take(item_size(item)):
            break
        items.append(item)
        latest = max(latest, m.patch_timestamp or 0)
    if items:
        ctx.hub.to_session(patch_push(items, latest, ctx.clock.wall_ms()), session)


def filtered_notice(message: Message, now: int, by_filter: bool = True) -> Prepared:
    """The ``patch/modify`` that tells a sender the filter (or a hook, ``by_filter``
    False: no patch code) changed their message."""
    item = patch_item(message)
    item.patchTimestamp = message.timestamp
    if by_filter:
        item.patchCode = FILTERED_PATCH_CODE
        item.patchReason = FILTERED_PATCH_REASON
    return patch_push([item], message.timestamp, now)
