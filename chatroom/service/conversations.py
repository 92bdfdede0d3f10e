"""Conversations: create, members (add, remove, join, quit), attributes, mute, count
and queries (protocol.md sections 4.5-4.10).

Member events follow the matrix of protocol.md 4.6: every member's online sessions get
them, the reply comes first, and chatrooms send no member events at all.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

import orjson
import trio

from chatroom.ids import iso, wall_ms
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.query import Doc, bad_query, matches, sort_docs
from chatroom.service.context import SENT, Context, Link, require_session, valid_client_id
from chatroom.session import Session
from chatroom.store.base import JSON, Conversation, ConvType, Message

# Keys a client cannot set: the server owns them.
_SYSTEM_KEYS = frozenset(
    {
        "objectId",
        "c",
        "m",
        "mu",
        "tr",
        "sys",
        "lm",
        "createdAt",
        "updatedAt",
        "unique",
        "uniqueId",
        "ttl",
        "msg",
        "msg_from",
        "msg_mid",
        "msg_timestamp",
        "patch_timestamp",
        "bin",
        "tempConv",
        "conv_type",
    }
)
_MAX_TEMP_TTL = 30 * 86400
_DEFAULT_TEMP_TTL = 86400
FLAG_COMPACT = 1
FLAG_LAST_MESSAGE = 2


def _attrs(payload: pb.JsonObjectMessage, present: bool) -> dict[str, JSON]:
    if not present:
        return {}
    try:
        value = orjson.loads(payload.data)
    except orjson.JSONDecodeError:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "attr is not JSON") from None
    if not isinstance(value, dict):
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "attr must be a JSON object")
    for key in value:
        if key.split(".", 1)[0] in _SYSTEM_KEYS:
            raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, f"{key!r} cannot be set")
    return value


def _event(op: int, cid: str, init_by: str, ms: int, members: Iterable[str] = ()) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.conv, op=op, serverTs=ms)  # type: ignore[arg-type]
    body = cmd.convMessage
    body.cid = cid
    body.initBy = init_by
    body.udate = iso(ms)
    body.m.extend(members)
    return Prepared(cmd)


def _check_members(ctx: Context, ids: Iterable[str]) -> list[str]:
    limit = ctx.config.max_client_id_length
    out = list(dict.fromkeys(ids))
    for peer_id in out:
        if not valid_client_id(peer_id, limit):
            raise ChatError(ErrorCode.CONVERSATION_API_FAILED, f"invalid member id {peer_id!r}")
    return out


async def start(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    body = cmd.convMessage
    members = _check_members(ctx, [*body.m, session.peer_id])
    attrs = _attrs(body.attr, body.HasField("attr"))
    now = wall_ms()
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.started)
    if body.transient:
        return await _start_chatroom(ctx, session, attrs, now, reply)
    members.sort()
    if len(members) > ctx.config.max_members:
        raise ChatError(ErrorCode.CONVERSATION_FULL, f"at most {ctx.config.max_members} members")
    temporary = body.tempConv
    unique = body.unique and not temporary
    if unique:
        existing = await ctx.store.find_unique_conversation(members)
        if existing is not None:
            reply.convMessage.cid = existing.cid
            reply.convMessage.cdate = iso(existing.created_at)
            if existing.unique_id:
                reply.convMessage.uniqueId = existing.unique_id
            return reply
    cid = ctx.object_ids.next()
    conv = Conversation(
        cid=("_tmp:" + cid) if temporary else cid,
        kind=ConvType.TEMPORARY if temporary else ConvType.NORMAL,
        creator=session.peer_id,
        members=members,
        attrs=attrs,
        created_at=now,
        updated_at=now,
        unique=unique,
        unique_id=("u" + ctx.object_ids.next()) if unique else None,
    )
    if temporary:
        ttl = body.tempConvTTL if body.tempConvTTL > 0 else _DEFAULT_TEMP_TTL
        ttl = min(ttl, _MAX_TEMP_TTL)
        conv.expire_at = now + ttl * 1000
        reply.convMessage.tempConvTTL = ttl
    await ctx.store.create_conversation(conv)
    ctx.conversations.put(conv)
    reply.convMessage.cid = conv.cid
    reply.convMessage.cdate = iso(now)
    if conv.unique_id:
        reply.convMessage.uniqueId = conv.unique_id
    link.send(_finish(reply, cmd))
    sessions = list(ctx.presence.sessions_of_all(members))
    ctx.deliver(_event(pb.joined, conv.cid, session.peer_id, now), sessions)
    ctx.deliver(_event(pb.members_joined, conv.cid, session.peer_id, now, members), sessions)
    return SENT


async def _start_chatroom(
    ctx: Context, session: Session, attrs: dict[str, JSON], now: int, reply: pb.GenericCommand
) -> pb.GenericCommand:
    """A chatroom keeps no member list; its creator starts watching it."""
    conv = Conversation(
        cid=ctx.object_ids.next(),
        kind=ConvType.TRANSIENT,
        creator=session.peer_id,
        members=[],
        attrs=attrs,
        created_at=now,
        updated_at=now,
    )
    await ctx.store.create_conversation(conv)
    ctx.conversations.put(conv)
    ctx.presence.join_room(conv.cid, session)
    reply.convMessage.cid = conv.cid
    reply.convMessage.cdate = iso(now)
    return reply


def _outcome(
    reply: pb.GenericCommand, allowed: Iterable[str], failed: dict[int, list[str]]
) -> None:
    body = reply.convMessage
    body.SetInParent()
    body.allowedPids.extend(allowed)
    for code, pids in failed.items():
        if pids:
            err = body.failedPids.add(code=code, reason=ErrorCode(code).name)
            err.pids.extend(pids)


async def add(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    actor = session.peer_id
    targets = _check_members(ctx, cmd.convMessage.m)
    if not targets:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "m is empty")
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.added)
    if conv.kind is ConvType.TRANSIENT:
        return _join_chatroom(ctx, session, conv, targets, reply)
    if actor not in conv.members and targets != [actor]:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can add others")
    new = [t for t in targets if t not in conv.members]
    room = ctx.config.max_members - len(conv.members)
    accepted, full = new[: max(room, 0)], new[max(room, 0) :]
    now = wall_ms()
    if accepted:
        conv.members = sorted([*conv.members, *accepted])
        conv.updated_at = now
        await ctx.conversations.save(conv)
    _outcome(reply, [t for t in targets if t not in full], {ErrorCode.CONVERSATION_FULL: full})
    if accepted:
        link.send(_finish(reply, cmd))
        _members_joined(ctx, conv, actor, accepted, now)
        return SENT
    return reply


def _members_joined(ctx: Context, conv: Conversation, actor: str, new: list[str], now: int) -> None:
    joined = _event(pb.joined, conv.cid, actor, now)
    ctx.deliver(joined, ctx.presence.sessions_of_all(new))
    event = _event(pb.members_joined, conv.cid, actor, now, new)
    ctx.deliver(event, ctx.presence.sessions_of_all(conv.members))


def _join_chatroom(
    ctx: Context, session: Session, conv: Conversation, targets: list[str], reply: pb.GenericCommand
) -> pb.GenericCommand:
    """Joining a chatroom watches it (and leaves the room watched before); others
    cannot be put into a chatroom by this command."""
    if session.peer_id in targets:
        ctx.presence.join_room(conv.cid, session)
    others = [t for t in targets if t != session.peer_id]
    allowed = [session.peer_id] if session.peer_id in targets else []
    _outcome(reply, allowed, {ErrorCode.CONVERSATION_NOT_ALLOWED: others})
    return reply


async def remove(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    actor = session.peer_id
    targets = _check_members(ctx, cmd.convMessage.m)
    if not targets:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "m is empty")
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.removed)
    if conv.kind is ConvType.TRANSIENT:
        for target in targets:
            for s in list(ctx.presence.sessions_of(target)):
                if s.room == conv.cid:
                    ctx.presence.leave_room(s)
        _outcome(reply, targets, {})
        return reply
    if actor not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can remove")
    gone = [t for t in targets if t in conv.members]
    now = wall_ms()
    before = list(conv.members)
    if gone:
        conv.members = [m for m in conv.members if m not in gone]
        conv.updated_at = now
        await ctx.conversations.save(conv)
    _outcome(reply, targets, {})
    if not gone:
        return reply
    link.send(_finish(reply, cmd))
    left = _event(pb.left, conv.cid, actor, now)
    ctx.deliver(left, ctx.presence.sessions_of_all(gone))
    stayed = [m for m in before if m not in gone]
    event = _event(pb.members_left, conv.cid, actor, now, gone)
    ctx.deliver(event, ctx.presence.sessions_of_all(stayed))
    return SENT


def _finish(reply: pb.GenericCommand, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """A reply sent before the pushes that follow it (protocol.md 4.6: reply first)."""
    if cmd.HasField("i"):
        reply.i = cmd.i
    return reply


async def count(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.result)
    if conv.kind is ConvType.TRANSIENT:
        reply.convMessage.count = ctx.presence.room_count(conv.cid)
    else:
        reply.convMessage.count = len(conv.members)
    return reply


def _set_path(attrs: dict[str, JSON], path: str, value: JSON) -> None:
    parts = path.split(".")
    node = attrs
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


async def update(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    if conv.kind is not ConvType.TRANSIENT and session.peer_id not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can update")
    changes = _attrs(cmd.convMessage.attr, cmd.convMessage.HasField("attr"))
    now = wall_ms()
    for path, value in changes.items():
        _set_path(conv.attrs, path, value)
    conv.updated_at = now
    await ctx.conversations.save(conv)
    modified = orjson.dumps(changes).decode()
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.updated)
    reply.convMessage.udate = iso(now)
    reply.convMessage.attrModified.data = modified
    push = pb.GenericCommand(cmd=pb.conv, op=pb.updated, serverTs=now)
    push.convMessage.cid = conv.cid
    push.convMessage.initBy = session.peer_id
    push.convMessage.udate = iso(now)
    push.convMessage.attr.data = modified
    push.convMessage.attrModified.data = modified
    link.send(_finish(reply, cmd))
    ctx.deliver(Prepared(push), ctx.member_sessions(conv), skip=session)
    return SENT


async def mute(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    muting = cmd.op == pb.mute
    if muting and session.peer_id not in conv.muted:
        conv.muted = [*conv.muted, session.peer_id]
    elif not muting:
        conv.muted = [m for m in conv.muted if m != session.peer_id]
    now = wall_ms()
    conv.updated_at = now
    await ctx.conversations.save(conv)
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.updated)
    reply.convMessage.udate = iso(now)
    return reply


# ---------------------------------------------------------------------------
# queries


def conversation_doc(conv: Conversation, now: int, flag: int, last: Message | None) -> Doc:
    """The JSON object the SDK expects for one conversation (protocol.md 3.4)."""
    doc: Doc = dict(conv.attrs)
    doc.update(
        objectId=conv.cid,
        c=conv.creator,
        tr=conv.kind is ConvType.TRANSIENT,
        sys=conv.kind is ConvType.SYSTEM,
        mu=list(conv.muted),
        unique=conv.unique,
        createdAt=iso(conv.created_at),
        updatedAt=iso(conv.updated_at),
        conv_type=int(conv.kind),
    )
    if conv.kind is not ConvType.TRANSIENT and not flag & FLAG_COMPACT:
        doc["m"] = list(conv.members)
    if conv.unique_id:
        doc["uniqueId"] = conv.unique_id
    if conv.last_message_at is not None:
        doc["lm"] = {"__type": "Date", "iso": iso(conv.last_message_at)}
    if conv.expire_at is not None:
        doc["ttl"] = max(0, (conv.expire_at - now) // 1000)
        doc["tempConv"] = True
    if flag & FLAG_LAST_MESSAGE and last is not None:
        doc.update(
            msg=last.data if last.binary is None else _b64(last.binary),
            msg_from=last.from_peer,
            msg_mid=last.mid,
            msg_timestamp=last.timestamp,
            patch_timestamp=last.patch_timestamp,
            bin=last.binary is not None,
        )
    return doc


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _ids_in(where: dict[str, object]) -> list[str] | None:
    """Conversation ids that ``where`` names directly, or None."""
    target = where.get("objectId")
    if isinstance(target, str):
        return [target]
    if isinstance(target, dict) and isinstance(target.get("$in"), list):
        return [t for t in target["$in"] if isinstance(t, str)]
    return None


async def query(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    body = cmd.convMessage
    where: dict[str, object] = {}
    if body.HasField("where"):
        try:
            parsed = orjson.loads(body.where.data)
        except orjson.JSONDecodeError:
            raise bad_query("not JSON") from None
        if not isinstance(parsed, dict):
            raise bad_query("a condition is a JSON object")
        where = parsed
    limit = body.limit if body.HasField("limit") and body.limit > 0 else 10
    limit = min(limit, 1000)
    skip = max(body.skip, 0)
    ids = list(body.tempConvIds) or _ids_in(where)
    await trio.lowlevel.checkpoint()
    if ids is not None:
        candidates = [c for c in [await ctx.conversations.get(i) for i in ids[:1000]] if c]
    else:
        candidates = await ctx.store.conversations_of(session.peer_id, 1000, 0)
    now = wall_ms()
    docs: list[Doc] = []
    for conv in candidates:
        cached = ctx.conversations.peek(conv.cid) or conv
        last = await ctx.store.last_message(conv.cid) if body.flag & FLAG_LAST_MESSAGE else None
        doc = conversation_doc(cached, now, body.flag, last)
        if matches(doc, where):
            docs.append(doc)
    docs = sort_docs(docs, body.sort or "-lm,-createdAt")[skip : skip + limit]
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.results)
    reply.convMessage.results.data = orjson.dumps(docs).decode()
    return reply
