"""Sending messages (protocol.md 4.11).

- Normal, temporary conversations: the message gets its id and timestamp at once, goes
  to the group commit, and only once it is durable is the sender acked and the message
  pushed to every online session of every member but the sending one (the sender's
  other devices included). A resend with the same ``dt`` is acked with the first id.
- Chatrooms: pushed at once with the sender's priority, kept in the room's bounded
  buffer for history, never stored.
- ``transient`` messages: pushed at once to online members only, never stored, shed
  first when a viewer falls behind.
- ``will`` messages: one per user, the last one set (from any device, in any
  conversation) replacing the others; sent when the connection of the session that set
  it drops without a logout (a keepalive timeout included), to the members online
  then; never stored as a message, never counted as unread (see ``send_wills``). The
  store keeps it so that a session resumed after a restart has it again.
- Sensitive words (``chatroom/core/wordfilter.py``) are masked before a message is stored or
  pushed in groups of more than two, chatrooms and system conversations; the sender's
  sessions then get a ``patch/modify`` with ``patchCode`` (service/patches.py).
- ``r: true`` in a conversation of at most two members: the message waits in
  ``ctx.caches.receipts`` for the receiver's ack (service/receipts.py).
- Offline push: after the commit, members of a normal or temporary conversation with no
  session who have not muted it are handed to the push webhook (``chatroom/http/push_webhook.py``).
JS awaits an ack for every ``direct``, transient and will ones included.
"""

from __future__ import annotations

import base64
import dataclasses

import trio

from chatroom.core.ids import thread_cid
from chatroom.core.model import JSON, Conversation, ConvType, Message, lctype_of
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.core.push_payload import payload_for
from chatroom.core.ratelimit import shed_at_intake
from chatroom.core.receipt_book import receipts_apply
from chatroom.core.recent import Pending
from chatroom.hub.base import DEDUPE
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, told_priority
from chatroom.protocol.errors import NOT_STORED, ChatError, ErrorCode
from chatroom.service import hooks, lasting, permissions
from chatroom.service.context import SENT, Context, Link, require_session
from chatroom.service.patches import check_size, filtered_notice, filters_apply


def push_command(
    message: Message, kind: ConvType, transient: bool = False, priority: int | None = None
) -> Prepared:
    """The ``direct`` push every recipient gets (peerId added per recipient).

    ``priority``, the one the sender gave a chatroom message, is told to flat JSON
    recipients only (a top-level ``priority``, as in the request), so that a page can
    mark HIGH from the push itself; the protobuf push stays the SDK's."""
    cmd = pb.GenericCommand(cmd=pb.direct, serverTs=message.timestamp)
    body = cmd.directMessage
    if message.binary is not None:
        body.binaryMsg = message.binary
    else:
        body.msg = message.data or ""
    body.fromPeerId = message.from_peer
    body.timestamp = message.timestamp
    body.cid = message.cid
    body.id = message.mid
    body.mentionAll = message.mention_all
    body.mentionPids.extend(message.mention_pids)
    body.convType = int(kind)
    if transient:
        body.transient = True
    if message.patch_timestamp is not None:
        body.patchTimestamp = message.patch_timestamp
    if priority is None:
        return Prepared(cmd)
    return Prepared(cmd, told_priority(priority))


def _ack(cmd: pb.GenericCommand, mid: str, timestamp: int) -> pb.GenericCommand:
    reply = pb.GenericCommand(cmd=pb.ack)
    if cmd.HasField("i"):
        reply.i = cmd.i
    reply.ackMessage.uid = mid
    reply.ackMessage.t = timestamp
    return reply


def _ack_for(i: int | None, mid: str, timestamp: int) -> pb.GenericCommand:
    reply = pb.GenericCommand(cmd=pb.ack)
    if i is not None:
        reply.i = i
    reply.ackMessage.uid = mid
    reply.ackMessage.t = timestamp
    return reply


def _build(ctx: Context, session: Session, body: pb.DirectCommand) -> Message:
    has_text, has_binary = body.HasField("msg"), body.HasField("binaryMsg")
    if has_text == has_binary:
        raise ChatError(ErrorCode.INVALID_MESSAGING_TARGET, "exactly one of msg and binaryMsg")
    size = len(body.binaryMsg) if has_binary else len(body.msg.encode())
    check_size(ctx, size, body.mentionPids)
    timestamp, mid = ctx.ids.message()
    return Message(
        cid=body.cid,
        mid=mid,
        from_peer=session.peer_id,
        timestamp=timestamp,
        data=body.msg if has_text else None,
        binary=body.binaryMsg if has_binary else None,
        mention_all=body.mentionAll,
        mention_pids=tuple(dict.fromkeys(body.mentionPids)),
        dedupe_token=body.dt or None,
        lctype=lctype_of(body.msg) if has_text else None,
    )


async def _target(ctx: Context, session: Session, cid: str) -> Conversation:
    conv = await ctx.caches.conversations.get(cid)
    if conv is None:
        raise ChatError(ErrorCode.INVALID_MESSAGING_TARGET, "no such conversation")
    if conv.expire_at is not None and conv.expire_at <= ctx.clock.wall_ms():
        raise ChatError(ErrorCode.TEMPORARY_CONVERSATION_EXPIRED)
    if conv.kind is ConvType.SYSTEM:
        # The operator writes to every subscriber over REST; a subscriber writes to the
        # operator only (seed 002): kept in its thread, pushed to nobody.
        if session.operator or session.peer_id not in conv.members:
            raise ChatError(ErrorCode.CONVERSATION_READ_ONLY, "subscribers only write here")
        return conv
    if session.operator:  # the REST API: any client may be the sender (LeanCloud's rule)
        return conv
    if conv.kind is ConvType.TRANSIENT:
        if session.room != cid:
            raise ChatError(ErrorCode.INVALID_MESSAGING_TARGET, "join the chatroom first")
    elif session.peer_id not in conv.members:
        raise ChatError(ErrorCode.INVALID_MESSAGING_TARGET, "not a member")
    return conv


async def send(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    body = cmd.directMessage
    conv = await _target(ctx, session, body.cid)
    if not session.operator:
        await permissions.check_may_send(ctx, conv, session.peer_id)
    if body.will and conv.kind is not ConvType.SYSTEM:
        message = _build(ctx, session, body)
        # One will per user: the last one set wins, whichever device set it.
        ctx.hub.register_will(session, body)
        lasting.save_will(ctx, session)  # a will set before a restart outlives it
        return _ack(cmd, message.mid, message.timestamp)
    key = (session.peer_id, conv.cid, body.dt) if body.dt else None
    if key is not None and (seen := ctx.caches.dedupe.get(key)) is not None:
        return _resent(seen, link, cmd)
    message = _build(ctx, session, body)
    if conv.kind is ConvType.SYSTEM:
        message = dataclasses.replace(message, cid=thread_cid(conv.cid, session.peer_id))
    filtered = False
    if message.data is not None and ctx.policies.words.enabled and filters_apply(conv):
        masked = ctx.policies.words.apply(message.data)
        if masked is not message.data:
            filtered = True
            message = dataclasses.replace(message, data=masked, lctype=lctype_of(masked))

    async def accept(message: Message, to: list[str] | None, rewritten: bool) -> pb.GenericCommand:
        notice = None  # the sender's patch/modify when the content was changed
        if rewritten:
            lctype = lctype_of(message.data) if message.data is not None else None
            message = dataclasses.replace(message, lctype=lctype)
        if filtered or rewritten:
            notice = filtered_notice(message, ctx.clock.wall_ms(), by_filter=not rewritten)
        return await _accept(ctx, link, cmd, session, conv, message, notice, to)

    if hooks.wants_message_hook(ctx, conv):
        hooks.hold_message(ctx, link, cmd, session, conv, message, accept)  # replies itself
        return SENT
    return await accept(message, None, False)


async def _accept(
    ctx: Context,
    link: Link,
    cmd: pb.GenericCommand,
    session: Session,
    conv: Conversation,
    message: Message,
    notice: Prepared | None,
    to: list[str] | None,
) -> pb.GenericCommand:
    """Send a built (filtered, hooked) message: ``to`` the members it is pushed to
    (None: all of them); ``notice`` tells the sender its content was changed."""
    body = cmd.directMessage
    ctx.counters.messages_accepted += 1
    ctx.counters.accepted_by_kind[conv.kind] += 1
    live = body.transient and conv.kind is not ConvType.SYSTEM
    if live or conv.kind is ConvType.TRANSIENT:
        _send_live(ctx, link, session, conv, message, cmd, body.transient, to)
        if notice is not None:
            link.send(_ack(cmd, message.mid, message.timestamp))
            ctx.hub.to_client(notice, session.peer_id)
            return SENT  # noqa: ASYNC910 - send() awaited the conversation first
        return _ack(cmd, message.mid, message.timestamp)  # noqa: ASYNC910 - as above
    key = (session.peer_id, conv.cid, body.dt) if body.dt else None
    entry = Pending(message.mid, message.timestamp)
    if key is not None:
        ctx.caches.dedupe.add(key, entry)
    i = cmd.i if cmd.HasField("i") else None

    def committed(error: BaseException | None) -> None:
        waiting = entry.waiting or []
        entry.waiting = None
        if error is not None:
            if key is not None:
                ctx.caches.dedupe.discard(key)
            for target, n in [(link, i), *waiting]:
                target.send(_failed(n))
            return
        for target, n in [(link, i), *waiting]:
            target.send(_ack_for(n, message.mid, message.timestamp))
        if key is not None:  # a resend on another node of a cluster is known there
            ctx.hub.changed(DEDUPE, conv.cid, [key[0], key[2], message.mid, message.timestamp])
        if conv.kind is ConvType.SYSTEM:
            return  # to the operator: stored in the thread, readable over REST
        if conv.last_message_at is None or conv.last_message_at < message.timestamp:
            conv.last_message_at = message.timestamp
        if notice is not None:
            ctx.hub.to_client(notice, session.peer_id)
        if body.r and receipts_apply(conv):
            ctx.caches.receipts.want(conv.cid, message.mid, message.timestamp, session.peer_id)
        _push(ctx, push_command(message, conv.kind), conv, Priority.RELIABLE, session, to)
        if ctx.ports.pusher.enabled:
            _offline_push(ctx, conv, message, body.pushData or None, to)
        hooks.message_sent(ctx, conv, message, _recipients(conv, message, to), False)

    await ctx.ports.committer.submit(message, committed)
    return SENT


def _recipients(conv: Conversation, message: Message, to: list[str] | None) -> list[str]:
    """Who a message is for: ``to`` (a hook's ``toPeers``), else the other members."""
    return [m for m in (conv.members if to is None else to) if m != message.from_peer]


def _push(
    ctx: Context,
    prepared: Prepared,
    conv: Conversation,
    priority: Priority,
    session: Session,
    to: list[str] | None,
) -> None:
    if session.no_sync and conv.kind is not ConvType.TRANSIENT:  # REST's no_sync
        others = [m for m in (conv.members if to is None else to) if m != session.peer_id]
        ctx.hub.to_clients(prepared, others, priority, session)
    elif session.operator and conv.kind is ConvType.TRANSIENT:
        # A chatroom message sent over REST in a client's name reaches none of that
        # client's own sessions (LeanCloud's REST page: no sync to from_client).
        ctx.hub.to_room(prepared, conv.cid, priority, session, skip_client=session.peer_id)
    elif to is None:
        ctx.hub.to_members(prepared, conv, priority, session)
    else:  # the sender's other devices too, as to_members does
        ctx.hub.to_clients(prepared, dict.fromkeys([*to, session.peer_id]), priority, session)


def _offline_push(
    ctx: Context, conv: Conversation, message: Message, push_data: str | None, to: list[str] | None
) -> None:
    """Hand the offline, unmuted members of a normal conversation to the webhook, or
    to ``_receiversOffline`` first (service/hooks.py)."""
    if conv.kind not in (ConvType.NORMAL, ConvType.TEMPORARY):
        return
    muted = set(conv.muted)
    offline = [m for m in _recipients(conv, message, to) if not ctx.hub.is_online(m)]
    payload = payload_for(
        push_data, ctx.config.push_template, conv.cid, message.from_peer, message.timestamp
    )

    def offer(recipients: list[str], payload: JSON) -> None:
        ctx.ports.pusher.offer(
            {
                "conversation": conv.cid,
                "recipients": list(recipients),
                "payload": payload,
                "from": message.from_peer,
                "messageId": message.mid,
                "timestamp": message.timestamp,
            }
        )

    unmuted = [m for m in offline if m not in muted]
    hooks.offline_push(ctx, message, unmuted, [m for m in offline if m in muted], payload, offer)


def _resent(seen: Pending, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    if seen.waiting is None:
        return _ack(cmd, seen.mid, seen.timestamp)
    seen.waiting.append((link, cmd.i if cmd.HasField("i") else None))
    return SENT


def _failed(i: int | None) -> pb.GenericCommand:
    reply = pb.GenericCommand(cmd=pb.ack)
    if i is not None:
        reply.i = i
    reply.ackMessage.code = int(ErrorCode.INTERNAL_ERROR)
    reply.ackMessage.reason = NOT_STORED
    return reply


def _send_live(
    ctx: Context,
    link: Link,
    session: Session,
    conv: Conversation,
    message: Message,
    cmd: pb.GenericCommand,
    transient: bool,
    to: list[str] | None = None,
) -> None:
    told = None  # the priority JSON viewers are told: the sender's, if given
    if conv.kind is ConvType.TRANSIENT:
        # The sender's explicit priority wins; a transient message without one
        # (typing...) is shed first.
        if cmd.HasField("priority"):
            priority = Priority.from_wire(cmd.priority)
            told = int(priority)
        else:
            priority = Priority.LOW if transient else Priority.NORMAL
        if not ctx.policies.room_admits(conv.cid, priority is Priority.HIGH):
            ctx.counters.rejected_by_room_budget += 1
            raise ChatError(ErrorCode.MESSAGE_SENT_QUOTA_EXCEEDED, "chatroom is too busy")
        config = ctx.config
        limits = (
            config.shed_backlog_low,
            config.shed_backlog_normal,
            config.shed_lag_low,
            config.shed_lag_normal,
        )
        # HIGH is never shed: it does not even ask for the backlog (a system call).
        intake = ctx.policies.intake
        reason = priority is not Priority.HIGH and shed_at_intake(
            priority,
            intake.sample(link, link.backlog(), trio.current_time()),
            intake.earlier,
            ctx.policies.loop_lag,
            limits,
        )
        if reason:
            # Accepted (acked) but delivered to nobody: the room is overloaded and
            # this is what priorities are for.
            counters = ctx.counters
            counters.shed_at_intake += 1
            if reason == "lag":
                counters.shed_at_intake_lag += 1
            return
        if not transient:
            ctx.caches.rooms.add(message)
            ctx.ports.cluster.keep(message, priority)
    else:
        priority = Priority.LOW if transient else Priority.RELIABLE
    _push(ctx, push_command(message, conv.kind, transient, told), conv, priority, session, to)
    if conv.kind is not ConvType.TRANSIENT:
        hooks.message_sent(ctx, conv, message, _recipients(conv, message, to), True)


def send_wills(ctx: Context, sessions: list[Session]) -> None:
    """Deliver the will messages of sessions whose connection dropped."""
    for session in sessions:
        body = ctx.hub.take_will(session)
        if body is None:
            continue
        ctx.ports.journal.will(session.peer_id, None)  # the user's only will: sent now
        conv = ctx.caches.conversations.peek(body.cid)
        if conv is None:
            continue
        timestamp, mid = ctx.ids.message()
        message = Message(
            cid=body.cid,
            mid=mid,
            from_peer=session.peer_id,
            timestamp=timestamp,
            data=body.msg if body.HasField("msg") else None,
            binary=body.binaryMsg if body.HasField("binaryMsg") else None,
            mention_all=body.mentionAll,
            mention_pids=tuple(body.mentionPids),
        )
        if message.data is None and message.binary is None:
            continue
        if message.data is not None and ctx.policies.words.enabled and filters_apply(conv):
            message = dataclasses.replace(message, data=ctx.policies.words.apply(message.data))
        ctx.hub.to_members(push_command(message, conv.kind), conv, skip=session)


def log_item(
    message: Message, kind: ConvType, ack_at: int | None = None, read_at: int | None = None
) -> pb.LogItem:
    """A history item; ``ack_at``/``read_at`` as the receipts of 2-member conversations."""
    item = pb.LogItem()
    item.__setattr__("from", message.from_peer)
    if message.binary is not None:
        item.data = base64.b64encode(message.binary).decode()
        item.bin = True
    else:
        item.data = message.data or ""
    item.timestamp = message.timestamp
    item.msgId = message.mid
    item.mentionAll = message.mention_all
    item.mentionPids.extend(message.mention_pids)
    if message.patch_timestamp is not None:
        item.patchTimestamp = message.patch_timestamp
    if ack_at is not None:
        item.ackAt = ack_at
    if read_at is not None:
        item.readAt = read_at
    item.convType = int(kind)
    return item
