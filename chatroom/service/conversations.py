"""Conversations: create, members (add, remove, join, quit), attributes, mute, count
and queries (protocol.md sections 4.5-4.10).

Member events follow the matrix of protocol.md 4.6: every member's online sessions get
them, the reply comes first, and chatrooms send no member events at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson
import trio

from chatroom.core import hooks as names
from chatroom.core.ids import iso
from chatroom.core.model import JSON, Conversation, ConvFilter, ConvOrder, ConvType
from chatroom.core.presence import Session
from chatroom.core.roles import Act, Moderation
from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import hooks, lasting, permissions, signing
from chatroom.service.context import SENT, Context, Link, require_session, valid_client_id
from chatroom.service.conv_events import push
from chatroom.service.member_edits import MembersAdded, members_edit

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
# Live temporary conversations including a member set that a unique start looks at;
# past that many (supersets of the set), a new one may be created instead.
_UNIQUE_TEMP_SCAN = 100
# Module constants for a join's path: an Enum class attribute is looked up through
# EnumType.__getattr__'s slot (~0.9 k instructions each).
_SYSTEM = ConvType.SYSTEM
_TRANSIENT = ConvType.TRANSIENT
_NOT_ALLOWED = ErrorCode.CONVERSATION_NOT_ALLOWED


def _attrs(payload: pb.JsonObjectMessage, present: bool, max_name: int) -> dict[str, JSON]:
    """The attributes (or the changes) a request carries, checked key by key."""
    if not present:
        return {}
    try:
        value = orjson.loads(payload.data)
    except orjson.JSONDecodeError:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "attr is not JSON") from None
    if not isinstance(value, dict):
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "attr must be a JSON object")
    if ids.holds_nul(value):  # every store keeps attributes alike: PostgreSQL cannot
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, "attr holds a NUL (U+0000)")
    for key in value:
        if key.split(".", 1)[0] in _SYSTEM_KEYS:
            raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, f"{key!r} cannot be set")
        if not key or any(not part for part in key.split(".")):
            raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, f"bad attribute key {key!r}")
        if key.startswith("name."):  # would turn the name into an object
            raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, "name must be a string")
    # Names are strings (or null): queries on ``name`` rely on it (conversations_name).
    name = value.get("name", "")
    if not isinstance(name, (str, type(None))):
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_FAILED, "name must be a string")
    if name is not None and len(name.encode()) > max_name:
        raise ChatError(
            ErrorCode.CONVERSATION_UPDATE_FAILED, f"name over {max_name} bytes (max_name_bytes)"
        )
    return value


def _check_size(ctx: Context, attrs: dict[str, JSON], before: int = 0) -> None:
    """Refuse attributes whose JSON is over ``max_attr_bytes``, unless they shrink
    (attributes stored before the limit was lowered can still be trimmed): every
    query and fetch of the conversation returns them whole."""
    size, limit = len(orjson.dumps(attrs)), ctx.config.max_attr_bytes
    if size > limit and size > before:
        raise ChatError(
            ErrorCode.CONVERSATION_UPDATE_FAILED,
            f"attributes over {limit} bytes (max_attr_bytes)",
        )


def conv_event(op: int, cid: str, init_by: str, ms: int, members: Iterable[str] = ()) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.conv, op=op, serverTs=ms)  # type: ignore[arg-type]
    body = cmd.convMessage
    body.cid = cid
    body.initBy = init_by
    body.udate = iso(ms)
    body.m.extend(members)
    return Prepared(cmd)


def _check_members(ctx: Context, ids: Sequence[str]) -> list[str]:
    limit = ctx.config.max_client_id_length
    # ``ids[:]``: a list at once from a repeated field, which iterates by index until
    # an IndexError otherwise (a join's one member included).
    out = list(dict.fromkeys(ids[:]))
    for peer_id in out:
        if not valid_client_id(peer_id, limit):
            raise ChatError(ErrorCode.CONVERSATION_API_FAILED, f"invalid member id {peer_id!r}")
    return out


async def start(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    body = cmd.convMessage
    members = _check_members(ctx, [*body.m, session.peer_id])
    if not session.operator:  # the REST API holds the master key itself
        signing.check_start(ctx, session.peer_id, members, body)
    attrs = _attrs(body.attr, body.HasField("attr"), ctx.config.max_name_bytes)
    _check_size(ctx, attrs)
    params: dict[str, JSON] = {"initBy": session.peer_id, "members": list(members), "attr": attrs}
    await hooks.conversation_before(ctx, names.CONVERSATION_START, params)
    now = ctx.clock.wall_ms()
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.started)
    if body.transient:
        return await _start_chatroom(ctx, session, attrs, now, reply)
    members.sort()
    if len(members) > ctx.config.max_members:
        raise ChatError(ErrorCode.CONVERSATION_FULL, f"at most {ctx.config.max_members} members")
    temporary = body.tempConv
    unique = body.unique
    if unique:
        if temporary:
            existing = await _unique_temporary(ctx, members, now)
        else:
            existing = await ctx.store.find_unique_conversation(members)
        if existing is not None:
            reply.convMessage.cid = existing.cid
            reply.convMessage.cdate = iso(existing.created_at)
            if existing.unique_id:
                reply.convMessage.uniqueId = existing.unique_id
            if existing.expire_at is not None:
                # what is left of its life, rounded up: the SDK sets expiredAt from it
                reply.convMessage.tempConvTTL = -((now - existing.expire_at) // 1000)
            return reply
    cid = ctx.ids.conversation()
    conv = Conversation(
        cid=("_tmp:" + cid) if temporary else cid,
        kind=ConvType.TEMPORARY if temporary else ConvType.NORMAL,
        creator=session.peer_id,
        members=members,
        attrs=attrs,
        created_at=now,
        updated_at=now,
        unique=unique,
        unique_id=("u" + ctx.ids.conversation()) if unique and not temporary else None,
    )
    if temporary:
        ttl = body.tempConvTTL if body.tempConvTTL > 0 else ctx.config.temp_conv_ttl
        ttl = min(ttl, _MAX_TEMP_TTL)
        conv.expire_at = now + ttl * 1000
        reply.convMessage.tempConvTTL = ttl
    await ctx.store.create_conversation(conv)
    ctx.caches.conversations.put(conv)
    reply.convMessage.cid = conv.cid
    reply.convMessage.cdate = iso(now)
    if conv.unique_id:
        reply.convMessage.uniqueId = conv.unique_id
    link.send(_finish(reply, cmd))
    push(ctx, conv_event(pb.joined, conv.cid, session.peer_id, now), now, members)
    event = conv_event(pb.members_joined, conv.cid, session.peer_id, now, members)
    push(ctx, event, now, members)
    hooks.notify(ctx, names.CONVERSATION_STARTED, {"convId": conv.cid})
    return SENT


async def _unique_temporary(ctx: Context, members: list[str], now: int) -> Conversation | None:
    """The oldest live temporary conversation created with ``unique`` whose members are
    exactly ``members`` (sorted), among the first ``_UNIQUE_TEMP_SCAN`` live temporary
    ones that include them all: JS 5.0.0-rc.6 and later ask for ``unique`` on every
    temporary conversation and expect the same one back for the same members."""
    where = ConvFilter(
        members_all=tuple(members), kinds=frozenset({ConvType.TEMPORARY}), alive_at=now
    )
    found = await ctx.store.select_conversations(
        where, [ConvOrder("createdAt")], _UNIQUE_TEMP_SCAN, 0
    )
    return next((c for c in found if c.unique and sorted(c.members) == members), None)


async def _start_chatroom(
    ctx: Context, session: Session, attrs: dict[str, JSON], now: int, reply: pb.GenericCommand
) -> pb.GenericCommand:
    """A chatroom keeps no member list; its creator starts watching it."""
    conv = Conversation(
        cid=ctx.ids.conversation(),
        kind=ConvType.TRANSIENT,
        creator=session.peer_id,
        members=[],
        attrs=attrs,
        created_at=now,
        updated_at=now,
    )
    await ctx.store.create_conversation(conv)
    ctx.caches.conversations.put(conv)
    # A new room has no managers, mutes or blocks: its first viewers (a crowd, when a
    # live stream starts) do not each read that from the store.
    ctx.caches.moderation.put(conv.cid, Moderation())
    if not session.operator:  # made over the REST API: nobody watches it yet
        ctx.hub.join_room(conv.cid, session)
        lasting.follow_room(ctx, session)
        await ctx.ports.cluster.hearing(conv.cid)
    reply.convMessage.cid = conv.cid
    reply.convMessage.cdate = iso(now)
    hooks.notify(ctx, names.CONVERSATION_STARTED, {"convId": conv.cid})
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


async def _member_change(
    ctx: Context, link: Link, cmd: pb.GenericCommand, kick: bool
) -> tuple[Session, Conversation, list[str]]:
    """What add and remove share: the session, the conversation, the checked and
    signed target ids.

    Not a checkpoint when the conversation is in memory and no hook is asked: a viewer
    joining a chatroom then needs no reschedule (~30 k instructions each, in a crowd);
    the connection's reader is a checkpoint at every read."""
    session = require_session(link, cmd)
    body = cmd.convMessage
    cid = body.cid
    conv = ctx.conversation_now(cid) or await ctx.conversation(cid)
    targets = _check_members(ctx, body.m)
    if not targets:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "m is empty")
    if not session.operator:  # the REST API holds the master key itself
        signing.check_members(ctx, session.peer_id, conv.cid, targets, body, kick=kick)
    name = names.CONVERSATION_REMOVE if kick else names.CONVERSATION_ADD
    # No _conversationRemove for quitting; no parameters made when there is no hook.
    if (not kick or targets != [session.peer_id]) and ctx.ports.hooks.wants(name):
        params: dict[str, JSON] = {
            "initBy": session.peer_id,
            "members": list(targets),
            "convId": conv.cid,
        }
        await hooks.conversation_before(ctx, name, params)
    return session, conv, targets  # noqa: ASYNC910 (see above)


async def add(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session, conv, targets = await _member_change(ctx, link, cmd, kick=False)
    actor = session.peer_id
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.added)
    kind = conv.kind
    if kind is _SYSTEM:
        return await _subscribe(ctx, actor, conv, targets, reply, subscribe=True)
    if kind is not _TRANSIENT and actor not in conv.members and targets != [actor]:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can add others")
    targets, refused = await permissions.screen_add(ctx, conv, actor, targets)
    permissions.add_refusals(reply.convMessage, refused)
    if kind is _TRANSIENT:
        return await _join_chatroom(ctx, session, conv, targets, reply)
    now = ctx.clock.wall_ms()
    adding = MembersAdded(now, targets, ctx.config.max_members)
    await ctx.caches.conversations.change(conv, adding)
    accepted, full = adding.added, adding.full
    _outcome(reply, [t for t in targets if t not in full], {ErrorCode.CONVERSATION_FULL: full})
    if accepted:
        link.send(_finish(reply, cmd))
        _members_joined(ctx, conv, actor, accepted, now)
        return SENT
    return reply


def _members_joined(ctx: Context, conv: Conversation, actor: str, new: list[str], now: int) -> None:
    push(ctx, conv_event(pb.joined, conv.cid, actor, now), now, new)
    push(ctx, conv_event(pb.members_joined, conv.cid, actor, now, new), now, conv.members)
    hooks.notify(
        ctx, names.CONVERSATION_ADDED, {"initBy": actor, "convId": conv.cid, "members": list(new)}
    )


async def _subscribe(
    ctx: Context,
    actor: str,
    conv: Conversation,
    targets: list[str],
    reply: pb.GenericCommand,
    subscribe: bool,
) -> pb.GenericCommand:
    """System conversations: a client subscribes (``add``) or unsubscribes (``remove``)
    itself only; no member limit, and no member events (subscribers have no member
    list to keep in sync)."""
    others = [t for t in targets if t != actor]
    if actor in targets and (actor in conv.members) != subscribe:
        joined, left = ([actor], []) if subscribe else ([], [actor])
        await ctx.caches.conversations.change(conv, members_edit(None, joined, left))
    else:
        await trio.lowlevel.checkpoint()  # every handler is one (flake8-async)
    allowed = [actor] if actor in targets else []
    _outcome(reply, allowed, {ErrorCode.CONVERSATION_NOT_ALLOWED: others})
    return reply


async def _join_chatroom(
    ctx: Context, session: Session, conv: Conversation, targets: list[str], reply: pb.GenericCommand
) -> pb.GenericCommand:
    """Joining a chatroom watches it (and leaves the room watched before); others
    cannot be put into a chatroom by this command. On a cluster the reply waits until
    this node hears the room: a message sent after it, from any node, reaches the
    viewer."""
    actor = session.peer_id
    joining = actor in targets
    if joining:
        ctx.hub.join_room(conv.cid, session)
        lasting.follow_room(ctx, session)
        await ctx.ports.cluster.hearing(conv.cid)
    else:
        await trio.lowlevel.checkpoint()
    if joining and len(targets) == 1:  # the viewer alone (as nearly always): no others
        _outcome(reply, targets, {})
        return reply
    others = [t for t in targets if t != actor]
    _outcome(reply, [actor] if joining else [], {_NOT_ALLOWED: others})
    return reply


async def remove(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session, conv, targets = await _member_change(ctx, link, cmd, kick=True)
    actor = session.peer_id
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.removed)
    if conv.kind is ConvType.SYSTEM:
        return await _subscribe(ctx, actor, conv, targets, reply, subscribe=False)
    if conv.kind is not ConvType.TRANSIENT and actor not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can remove")
    targets, refused = await permissions.screen_remove(ctx, conv, actor, targets)
    permissions.add_refusals(reply.convMessage, refused)
    if conv.kind is ConvType.TRANSIENT:
        permissions.leave_room(ctx, conv.cid, targets)
        lasting.follow_room(ctx, session)  # the actor may have left
        _outcome(reply, targets, {})
        return reply
    gone = [t for t in targets if t in conv.members]
    now = ctx.clock.wall_ms()
    before = list(conv.members)
    if gone:
        await ctx.caches.conversations.change(conv, members_edit(now, [], gone))
    _outcome(reply, targets, {})
    if not gone:
        return reply
    link.send(_finish(reply, cmd))
    push(ctx, conv_event(pb.left, conv.cid, actor, now), now, gone)
    stayed = [m for m in before if m not in gone]
    push(ctx, conv_event(pb.members_left, conv.cid, actor, now, gone), now, stayed)
    hooks.notify(
        ctx,
        names.CONVERSATION_REMOVED,
        {"initBy": actor, "convId": conv.cid, "members": list(gone)},
    )
    return SENT


def _finish(reply: pb.GenericCommand, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """A reply sent before the pushes that follow it (protocol.md 4.6: reply first)."""
    if cmd.HasField("i"):
        reply.i = cmd.i
    return reply


async def count(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """Members of a conversation, for its members only (4317); viewers of a chatroom
    and subscribers of a system conversation, for anyone."""
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.result)
    if conv.kind is ConvType.TRANSIENT:
        await ctx.ports.cluster.settle()  # after joins elsewhere the asker knows of
        reply.convMessage.count = ctx.hub.online_count(conv.cid)
        return reply
    if conv.kind is not ConvType.SYSTEM:
        _require_member(conv, session.peer_id)
    reply.convMessage.count = len(conv.members)
    return reply


def _require_member(conv: Conversation, peer_id: str) -> None:
    if peer_id not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED, "not a member")


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


def _with_changes(attrs: dict[str, JSON], changes: dict[str, JSON]) -> dict[str, JSON]:
    """A copy of ``attrs`` with ``changes`` (dotted paths) set."""
    changed: dict[str, JSON] = orjson.loads(orjson.dumps(attrs))
    for path, value in changes.items():
        _set_path(changed, path, value)
    return changed


async def _check_may_update(ctx: Context, conv: Conversation, peer_id: str) -> None:
    if conv.kind is ConvType.SYSTEM:
        raise ChatError(ErrorCode.CONVERSATION_NOT_ALLOWED, "only the operator changes it")
    if conv.kind is not ConvType.TRANSIENT and peer_id not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_UPDATE_REJECTED, "only members can update")
    if conv.kind is ConvType.TRANSIENT:
        outsider = ErrorCode.CONVERSATION_UPDATE_REJECTED
        await permissions.check_may(ctx, conv, peer_id, Act.UPDATE, outsider)
    else:
        await trio.lowlevel.checkpoint()


async def update(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    if not session.operator:  # the REST API changes any conversation
        await _check_may_update(ctx, conv, session.peer_id)
    changes = _attrs(
        cmd.convMessage.attr, cmd.convMessage.HasField("attr"), ctx.config.max_name_bytes
    )
    params: dict[str, JSON] = {"initBy": session.peer_id, "convId": conv.cid, "attr": changes}
    result = await hooks.conversation_before(ctx, names.CONVERSATION_UPDATE, params)
    if isinstance(result.get("attr"), dict):  # the hook's replacement, checked the same way
        replaced = pb.JsonObjectMessage(data=orjson.dumps(result["attr"]).decode())
        changes = _attrs(replaced, True, ctx.config.max_name_bytes)
    now = ctx.clock.wall_ms()

    attrs = _with_changes(conv.attrs, changes)  # refused, the conversation stays as it was
    _check_size(ctx, attrs, before=len(orjson.dumps(conv.attrs)))

    def edit(c: Conversation) -> None:
        c.attrs, c.updated_at = _with_changes(c.attrs, changes), now

    await ctx.caches.conversations.change(conv, edit)
    modified = orjson.dumps(changes).decode()
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.updated)
    reply.convMessage.udate = iso(now)
    reply.convMessage.attrModified.data = modified
    event = pb.GenericCommand(cmd=pb.conv, op=pb.updated, serverTs=now)
    event.convMessage.cid = conv.cid
    event.convMessage.initBy = session.peer_id
    event.convMessage.udate = iso(now)
    event.convMessage.attr.data = modified
    event.convMessage.attrModified.data = modified
    link.send(_finish(reply, cmd))
    if conv.kind is ConvType.TRANSIENT:
        ctx.hub.to_members(Prepared(event), conv, skip=session)
    else:
        push(ctx, Prepared(event), now, conv.members, skip=session)
    return SENT


async def mute(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``mute``/``unmute``: the caller's own entry in ``mu``, for members (subscribers
    of a system conversation) only, 4317 otherwise; anyone may (un)mute a chatroom."""
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    if conv.kind is not ConvType.TRANSIENT:
        _require_member(conv, session.peer_id)
    else:  # a chatroom's own "mu" list: for its viewers and staff only
        await permissions.check_may(ctx, conv, session.peer_id, Act.SELF_MUTE)
    muting = cmd.op == pb.mute
    params: dict[str, JSON] = {"initBy": session.peer_id, "convId": conv.cid, "mute": muting}
    result = await hooks.conversation_before(ctx, names.CONVERSATION_UPDATE, params)
    if isinstance(result.get("mute"), bool):
        muting = bool(result["mute"])
    now, peer = ctx.clock.wall_ms(), session.peer_id

    def edit(c: Conversation) -> None:
        if muting and peer not in c.muted:
            c.muted = [*c.muted, peer]
        elif not muting:
            c.muted = [m for m in c.muted if m != peer]
        c.updated_at = now

    await ctx.caches.conversations.change(conv, edit)
    reply = pb.GenericCommand(cmd=pb.conv, op=pb.updated)
    reply.convMessage.udate = iso(now)
    return reply
