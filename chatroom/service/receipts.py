"""Delivery acks, read marks, receipts and ``conv/max_read`` (protocol.md 4.11-4.12).

- ``ack{cid, fromts, tots}`` (JS) or ``ack{cid, mid}`` (Swift, Java): the receiver's
  delivered-up-to (``MemberMarks.acked_at``) moves to ``tots`` (or the message's time).
  In a conversation of at most two members, every message from the other member up to
  there that was sent with ``r: true`` gets ``rcp{id, cid, t, from}`` pushed to its
  sender's sessions (``t`` is when the server saw the ack).
- ``read{convs:[{cid, timestamp, mid}]}`` (or ``cid``/``cids``, meaning "up to now"):
  the reader's ``read_at`` moves there and their unread count is recounted (0 unless
  a message arrived meanwhile). In a conversation of at most two members the other
  member gets ``rcp{id: mid, cid, t: timestamp, read: true, from: reader}``: read
  receipts do not need ``r: true`` (the SDK only needs unread notifications on). The
  reader's other sessions get an ``unread`` push with the new count (cross-device sync).
- ``conv/max_read{cid}``: the newest ``acked_at``/``read_at`` over the *other* members;
  with ``queryAllMembers`` one ``maxReadTuple`` per other member that has any.

Acks and reads carry no ``i``: their errors (not a member, no such conversation) reach
only JSON clients, as every ``i``-less error does (connection.py).
"""

from __future__ import annotations

import trio

from chatroom.core.model import Conversation, ConvType, MemberMarks, Message
from chatroom.core.presence import Session
from chatroom.core.receipt_book import receipts_apply
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import unread
from chatroom.service.context import Context, Link, require_session


async def _member_conversation(ctx: Context, session: Session, cid: str) -> Conversation:
    conv = await ctx.conversation(cid)
    if conv.kind is ConvType.TRANSIENT or session.peer_id not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED, "not a member")
    return conv


def _rcp(cid: str, mid: str | None, t: int, reader: str, read: bool, now: int) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.rcp, serverTs=now)
    body = cmd.rcpMessage
    if mid:
        body.id = mid
    body.cid = cid
    body.t = t
    if read:
        body.read = True
    body.__setattr__("from", reader)
    return Prepared(cmd)


async def client_ack(ctx: Context, link: Link, cmd: pb.GenericCommand) -> None:
    """A receiver's delivery ack: delivered-up-to, then delivery receipts."""
    session = require_session(link, cmd)
    ack = cmd.ackMessage
    conv = await _member_conversation(ctx, session, ack.cid)
    if ack.HasField("tots"):
        up_to = ack.tots
    elif ack.mid:
        known = ctx.caches.receipts.timestamp_of(conv.cid, ack.mid)
        if known is None:
            message = await ctx.store.get_message(conv.cid, ack.mid)
            if message is None:
                raise ChatError(ErrorCode.MESSAGE_NOT_FOUND)
            known = message.timestamp
        up_to = known
    else:
        raise ChatError(ErrorCode.INVALID_COMMAND, "ack needs tots or mid")
    # Never ahead of the server: later messages stay unacked.
    up_to = min(up_to, ctx.clock.wall_ms())
    await ctx.store.mark_acked(session.peer_id, conv.cid, up_to)
    if not receipts_apply(conv):
        return
    now = ctx.clock.wall_ms()
    for waiting in ctx.caches.receipts.delivered(conv.cid, session.peer_id, up_to):
        ctx.hub.to_client(
            _rcp(conv.cid, waiting.mid, now, session.peer_id, False, now), waiting.sender
        )


async def read(ctx: Context, link: Link, cmd: pb.GenericCommand) -> None:
    """Read marks for one or more conversations (every form the SDKs send)."""
    session = require_session(link, cmd)
    body = cmd.readMessage
    now = ctx.clock.wall_ms()
    marks: list[tuple[str, int, str | None]] = [
        (t.cid, t.timestamp if t.HasField("timestamp") else now, t.mid or None) for t in body.convs
    ]
    marks += [(cid, now, None) for cid in [body.cid] if body.HasField("cid") and cid]
    marks += [(cid, now, None) for cid in body.cids]
    if not marks:
        raise ChatError(ErrorCode.INVALID_COMMAND, "read needs convs, cid or cids")
    failure: ChatError | None = None
    for cid, timestamp, mid in marks:
        try:
            await _read_one(ctx, session, cid, max(0, min(timestamp, now)), mid, now)
        except ChatError as err:
            failure = failure or err  # the others still count
    await trio.lowlevel.checkpoint()  # for flake8-async: the loop above always awaits
    if failure is not None:
        raise failure


async def _read_one(
    ctx: Context, session: Session, cid: str, timestamp: int, mid: str | None, now: int
) -> None:
    conv = await _member_conversation(ctx, session, cid)
    marks = await ctx.store.mark_read(session.peer_id, conv.cid, timestamp, now)
    if receipts_apply(conv):
        others = [m for m in conv.members if m != session.peer_id]
        receipt = _rcp(conv.cid, mid, timestamp, session.peer_id, True, ctx.clock.wall_ms())
        ctx.hub.to_clients(receipt, others)
    if ctx.hub.others_online(session):
        tuples = await unread.tuples(ctx, [marks])
        # The client's other devices: their unread counts changed.
        ctx.hub.to_client(
            Prepared(unread.unread_command(tuples, now)), session.peer_id, skip=session
        )


async def max_read(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``conv/max_read``: receipt times of the other members."""
    session = require_session(link, cmd)
    q = cmd.convMessage
    conv = await _member_conversation(ctx, session, q.cid)
    others = [k for k in await ctx.store.member_marks(conv.cid) if k.peer != session.peer_id]
    others = [k for k in others if k.peer in conv.members]
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.max_read)
    body = reply.convMessage
    body.SetInParent()
    body.maxAckTimestamp = max((k.acked_at for k in others), default=0)
    body.maxReadTimestamp = max((k.read_at for k in others), default=0)
    if q.queryAllMembers:
        for k in sorted(others, key=lambda k: k.peer):
            body.maxReadTuples.add(
                pid=k.peer, maxAckTimestamp=k.acked_at, maxReadTimestamp=k.read_at
            )
    return reply


def receipt_times(
    conv: Conversation, marks: list[MemberMarks], messages: list[Message]
) -> dict[str, tuple[int | None, int | None]]:
    """``mid -> (ackAt, readAt)`` for history items of a two-member conversation: the
    other member's delivered/read-up-to, where it covers the message."""
    if not receipts_apply(conv):
        return {}
    by_peer = {k.peer: k for k in marks}
    out: dict[str, tuple[int | None, int | None]] = {}
    for m in messages:
        receiver = next((p for p in conv.members if p != m.from_peer), None)
        k = by_peer.get(receiver) if receiver is not None else None
        if k is None:
            continue
        acked = k.acked_at if k.acked_at >= m.timestamp else None
        read_at = k.read_at if k.read_at >= m.timestamp else None
        if acked is not None or read_at is not None:
            out[m.mid] = (acked, read_at)
    return out
