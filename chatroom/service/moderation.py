"""Moderation commands: member roles, muting members (shut-up) and blacklists
(protocol.md 4.9-4.10). The state they change and the permission checks other
handlers call are chatroom/service/permissions.py; the matrix is chatroom/core/roles.py.

Commands, as the official SDK sends them:

- ``conv/member_info_update{cid, targetClientId, info:{pid, role}}`` ->
  ``member_info_updated``; every member gets ``member_info_changed{initBy, info}``.
- ``conv/add_shutup|remove_shutup{cid, m}`` -> ``shutup_added|shutup_removed{allowedPids,
  failedPids}``; each newly (un)muted member gets ``shutuped|unshutuped``, every member
  (a chatroom's viewers) ``members_shutuped|members_unshutuped{m}``.
- ``conv/query_shutup{cid, limit, next}`` -> ``shutup_result{m, next}``;
  ``conv/check_shutup{cid, m}`` -> ``check_result{m}`` (those of ``m`` muted now).
- ``blacklist/block|unblock{srcCid, toPids}`` -> ``blocked|unblocked{allowedPids,
  failedPids}``; a blocked member is removed at once (``blocked`` and ``left`` to it,
  ``members_blocked`` and ``members_left`` to the others; a chatroom viewer stops
  watching); ``members_unblocked`` tells the members of an unblock, ``unblocked`` the
  client.
- ``blacklist/query{srcCid, limit, next}`` -> ``query_result{blockedPids, next}``;
  ``blacklist/check_block{srcCid, toPids}`` -> ``check_result{blockedPids}``.

Refusals of a whole request: 4308 with reason ``CONVERSATION_OPERATION_UNAUTHORIZED``
(the caller's role), 4317 (not a member), 4301 (bad or too many ids), 5130 (role
Owner). Per id, in the partial-success reply: 4308 ``CONVERSATION_NEED_OWNER`` and
``CONVERSATION_OPERATION_UNAUTHORIZED``, 4317 (muting a non-member), 4304 (list full).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from chatroom.core.ids import iso
from chatroom.core.model import Conversation, ConvType
from chatroom.core.roles import Act, MemberChanges, Moderation, ModerationChanges, Role, outranks
from chatroom.hub.base import MODERATION
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.protocol.errors import ChatError, ErrorCode, Reason
from chatroom.service import signing
from chatroom.service.context import SENT, Context, Link, require_session, valid_client_id
from chatroom.service.conv_events import push
from chatroom.service.member_edits import members_edit
from chatroom.service.permissions import (
    Refusals,
    add_refusals,
    check_may,
    leave_room,
    refuse,
    state_of,
    target_role,
)

_DEFAULT_PAGE = 10  # the SDK documents "server default 10"
_MAX_PAGE = 100
_UNMUTE_OPS = (pb.unshutuped, pb.members_unshutuped)


# -- changes, and the clients told of them ------------------------------------------


async def _save(ctx: Context, conv: Conversation, changes: ModerationChanges) -> None:
    """Store ``changes``, then apply them to the state in memory (a failed write leaves
    both as they were)."""
    await ctx.store.save_moderation(conv.cid, changes)
    changes.apply(await state_of(ctx, conv.cid))
    ctx.hub.changed(MODERATION, conv.cid)
    await ctx.ports.cluster.published()  # the other nodes can know before any reply


# -- reaching clients: the one place that knows how (presence, delivery, event log) --


def _notify(
    ctx: Context, conv: Conversation, event: Prepared, now: int, peers: Iterable[str] | None
) -> None:
    """Push ``event`` to ``peers``' online sessions (logged for their replay), or with
    ``peers`` None to every member: a chatroom's viewers (not logged)."""
    if peers is not None:
        push(ctx, event, now, peers)
    elif conv.kind is ConvType.TRANSIENT:
        ctx.hub.to_members(event, conv)
    else:
        push(ctx, event, now, conv.members)


def _event(
    op: int, conv: Conversation, actor: str, now: int, members: Iterable[str] = ()
) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.conv, op=op, serverTs=now)  # type: ignore[arg-type]
    body = cmd.convMessage
    body.cid = conv.cid
    body.initBy = actor
    body.udate = iso(now)
    body.m.extend(members)
    return Prepared(cmd)


# -- request parsing ------------------------------------------------------------------


def _ids(ctx: Context, ids: Iterable[str]) -> list[str]:
    """The distinct client ids of a request: 4301 when empty, over ``moderation_batch``
    or invalid (nothing changes then)."""
    out = list(dict.fromkeys(ids))
    if not out:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "no client ids given")
    limit = ctx.config.moderation_batch
    if len(out) > limit:
        raise ChatError(
            ErrorCode.CONVERSATION_API_FAILED, f"at most {limit} ids per request (moderation_batch)"
        )
    for peer in out:
        if not valid_client_id(peer, ctx.config.max_client_id_length):
            raise ChatError(ErrorCode.CONVERSATION_API_FAILED, f"invalid client id {peer[:64]!r}")
    return out


def _page(ids: list[str], limit: int, after: str) -> tuple[list[str], str | None]:
    """One page of sorted ``ids`` after the cursor ``after`` (the last id of the page
    before); the cursor of the next page, None at the end."""
    size = _DEFAULT_PAGE if limit <= 0 else min(limit, _MAX_PAGE)
    rest = [p for p in ids if p > after] if after else ids
    page = rest[:size]
    return page, (page[-1] if len(rest) > size else None)


def _reply(cmd: pb.GenericCommand, op: int) -> pb.GenericCommand:
    out = pb.GenericCommand(cmd=cmd.cmd, op=op)  # type: ignore[arg-type]
    if cmd.HasField("i"):
        out.i = cmd.i
    return out


# -- roles ----------------------------------------------------------------------------


async def update_role(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``member_info_update``: the owner makes a member a manager or a member again."""
    session = require_session(link, cmd)
    body = cmd.convMessage
    conv = await ctx.conversation(body.cid)
    target = body.info.pid or body.targetClientId
    if body.targetClientId and body.info.pid and body.targetClientId != body.info.pid:
        raise ChatError(ErrorCode.CONVERSATION_API_FAILED, "targetClientId and info.pid differ")
    wanted = _wanted_role(body.info.role)
    if conv.kind in (ConvType.SYSTEM, ConvType.TEMPORARY):
        raise ChatError(ErrorCode.NORMAL_CONVERSATION_REQUIRED, "no roles in this conversation")
    await check_may(ctx, conv, session.peer_id, Act.SET_ROLE)
    _ids(ctx, [target])
    if target == conv.creator:
        raise ChatError(ErrorCode.CONVERSATION_NOT_ALLOWED, Reason.NEED_OWNER, "owner stays owner")
    if conv.kind is not ConvType.TRANSIENT and target not in conv.members:
        raise ChatError(ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED, detail=f"{target} is no member")
    await _save(ctx, conv, ModerationChanges(roles={target: wanted}))
    now = ctx.clock.wall_ms()
    link.send(_reply(cmd, pb.member_info_updated))
    event = pb.GenericCommand(cmd=pb.conv, op=pb.member_info_changed, serverTs=now)
    event.convMessage.cid = conv.cid
    event.convMessage.initBy = session.peer_id
    event.convMessage.info.pid = target
    event.convMessage.info.role = wanted.value
    _notify(ctx, conv, Prepared(event), now, None)
    return SENT


def _wanted_role(name: str) -> Role:
    if name == Role.OWNER:
        raise ChatError(ErrorCode.OWNER_PROMOTION_NOT_ALLOWED)
    if name not in (Role.MANAGER, Role.MEMBER):
        raise ChatError(
            ErrorCode.CONVERSATION_API_FAILED, f"unknown role {name[:64]!r} (Manager or Member)"
        )
    return Role(name)


# -- mutes ----------------------------------------------------------------------------


async def shutup(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``add_shutup`` / ``remove_shutup``: owner and managers mute or unmute members."""
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    muting = cmd.op == pb.add_shutup
    reply = _reply(cmd, pb.shutup_added if muting else pb.shutup_removed)

    def answer(kept: list[str], refused: Refusals) -> None:
        reply.convMessage.allowedPids.extend(kept)
        add_refusals(reply.convMessage, refused)
        link.send(reply)

    await change_mutes(ctx, conv, session.peer_id, cmd.convMessage.m, muting, None, answer)
    return SENT


async def change_mutes(
    ctx: Context,
    conv: Conversation,
    actor: str,
    ids: Iterable[str],
    muting: bool,
    until: int | None,
    answer: Callable[[list[str], Refusals], None],
) -> None:
    """Mute ``ids`` until ``until`` (epoch ms; None: until lifted; a new duration
    replaces the one before), or unmute them, as ``actor``. ``answer`` gets the ids
    acted on and the refused ones before the members hear of it."""
    mine = await check_may(ctx, conv, actor, Act.MODERATE)
    targets = _ids(ctx, ids)
    state = await state_of(ctx, conv.cid)
    now = ctx.clock.wall_ms()
    kept, refused = _screen_moderated(ctx, conv, state, mine, targets, check_members=muting)
    changed = [p for p in kept if state.is_muted(p, now) != muting]
    if muting:
        if until is not None:  # a duration is set again even for those muted already
            changed = list(kept)
        changed, full = _within_limit(ctx, changed, len(state.muted))
        kept = [p for p in kept if p not in full]
        if full:
            refused[(ErrorCode.CONVERSATION_FULL, "muted list is full")] = full
        changes = ModerationChanges(muted=dict.fromkeys(changed, until))
    else:
        changes = ModerationChanges(unmuted=[p for p in kept if p in state.muted])
    await _save(ctx, conv, changes)
    answer(kept, refused)
    if changed:
        own, all_ = (pb.shutuped, pb.members_shutuped) if muting else _UNMUTE_OPS
        _notify(ctx, conv, _event(own, conv, actor, now), now, changed)
        _notify(ctx, conv, _event(all_, conv, actor, now, changed), now, None)


def _screen_moderated(
    ctx: Context,
    conv: Conversation,
    state: Moderation,
    mine: Role,
    targets: list[str],
    check_members: bool,
) -> tuple[list[str], Refusals]:
    """Of the targets of a mute or block: those ``mine`` may act on, and the refused
    ones (the owner; managers unless by the owner; with ``check_members``, 4317 for
    non-members of a conversation that keeps a member list)."""
    refused: Refusals = {}
    kept = []
    for target in targets:
        role = target_role(conv, state, target)
        if target == conv.creator:
            refuse(refused, ErrorCode.CONVERSATION_NOT_ALLOWED, target, Reason.NEED_OWNER)
        elif check_members and role is None:
            refuse(refused, ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED, target)
        elif not outranks(mine, role, MemberChanges.MANAGERS):
            refuse(refused, ErrorCode.CONVERSATION_NOT_ALLOWED, target)
        else:
            kept.append(target)
    return kept, refused


def _within_limit(ctx: Context, new: list[str], held: int) -> tuple[list[str], list[str]]:
    """``new`` split at what a list holding ``held`` ids may still take."""
    room = max(ctx.config.moderation_list_limit - held, 0)
    return new[:room], new[room:]


async def query_shutup(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``query_shutup{limit, next}``: the muted members, a page at a time, for members."""
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    await check_may(ctx, conv, session.peer_id, Act.QUERY_MODERATION)
    state = await state_of(ctx, conv.cid)
    body = cmd.convMessage
    page, after = _page(state.muted_ids(ctx.clock.wall_ms()), body.limit, body.next)
    reply = _reply(cmd, pb.shutup_result)
    reply.convMessage.SetInParent()
    reply.convMessage.m.extend(page)
    if after is not None:
        reply.convMessage.next = after
    return reply


async def check_shutup(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """``check_shutup{m}``: which of ``m`` (default: the caller) are muted now."""
    session = require_session(link, cmd)
    conv = await ctx.conversation(cmd.convMessage.cid)
    asked = _ids(ctx, cmd.convMessage.m or [session.peer_id])
    if asked != [session.peer_id]:
        await check_may(ctx, conv, session.peer_id, Act.QUERY_MODERATION)
    state = await state_of(ctx, conv.cid)
    now = ctx.clock.wall_ms()
    reply = _reply(cmd, pb.check_result)
    reply.convMessage.SetInParent()
    reply.convMessage.m.extend(p for p in asked if state.is_muted(p, now))
    return reply


# -- blacklist ------------------------------------------------------------------------


async def blacklist(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """The ``blacklist`` command, by op: block, unblock, query (the default), check_block."""
    session = require_session(link, cmd)
    body = cmd.blacklistMessage
    if body.toCids or body.srcPid:
        # A client's own blacklist of conversations (client-block-conversations).
        raise ChatError(ErrorCode.INVALID_COMMAND, "only conversation blacklists (srcCid)")
    conv = await ctx.conversation(body.srcCid)
    if cmd.op in (pb.block, pb.unblock):
        if not session.operator:  # the REST API holds the master key itself
            targets = list(body.toPids)
            signing.check_blacklist(
                ctx, session.peer_id, conv.cid, targets, body, cmd.op == pb.block
            )
        return await _block(ctx, link, cmd, session.peer_id, conv)
    if cmd.op == pb.check_block:
        asked = _ids(ctx, body.toPids or [session.peer_id])
        if asked != [session.peer_id]:
            await check_may(ctx, conv, session.peer_id, Act.QUERY_MODERATION)
        state = await state_of(ctx, conv.cid)
        reply = _reply(cmd, pb.check_result)
        reply.blacklistMessage.SetInParent()
        reply.blacklistMessage.blockedPids.extend(p for p in asked if p in state.blocked)
        return reply
    await check_may(ctx, conv, session.peer_id, Act.QUERY_MODERATION)
    state = await state_of(ctx, conv.cid)
    page, after = _page(sorted(state.blocked), body.limit, body.next)
    reply = _reply(cmd, pb.query_result)
    reply.blacklistMessage.SetInParent()
    reply.blacklistMessage.blockedPids.extend(page)
    if after is not None:
        reply.blacklistMessage.next = after
    return reply


async def _block(
    ctx: Context, link: Link, cmd: pb.GenericCommand, actor: str, conv: Conversation
) -> pb.GenericCommand:
    mine = await check_may(ctx, conv, actor, Act.MODERATE)
    targets = _ids(ctx, cmd.blacklistMessage.toPids)
    blocking = cmd.op == pb.block
    state = await state_of(ctx, conv.cid)
    kept, refused = _screen_moderated(ctx, conv, state, mine, targets, check_members=False)
    now = ctx.clock.wall_ms()
    changed = [p for p in kept if (p in state.blocked) != blocking]
    if blocking:
        changed, full = _within_limit(ctx, changed, len(state.blocked))
        kept = [p for p in kept if p not in full]
        if full:
            refused[(ErrorCode.CONVERSATION_FULL, "blacklist is full")] = full
        changes = ModerationChanges(blocked=dict.fromkeys(changed, now))
    else:
        changes = ModerationChanges(unblocked=changed)
    await _save(ctx, conv, changes)
    reply = _reply(cmd, pb.blocked if blocking else pb.unblocked)
    reply.blacklistMessage.allowedPids.extend(kept)
    add_refusals(reply.blacklistMessage, refused)
    link.send(reply)
    if changed and blocking:
        await _remove_blocked(ctx, conv, actor, changed, now)
    elif changed:
        _notify(ctx, conv, _event(pb.unblocked, conv, actor, now), now, changed)
        _notify(ctx, conv, _event(pb.members_unblocked, conv, actor, now, changed), now, None)
    return SENT


async def _remove_blocked(
    ctx: Context, conv: Conversation, actor: str, blocked: list[str], now: int
) -> None:
    """Blocked clients leave at once: ``blocked`` (and ``left``, if they were members)
    to them, ``members_blocked`` (and ``members_left``) to the members who stay."""
    room = conv.kind is ConvType.TRANSIENT
    gone = [] if room else [p for p in blocked if p in conv.members]
    if gone:
        await ctx.caches.conversations.change(conv, members_edit(now, [], gone))
    else:
        await trio.lowlevel.checkpoint()
    if room:
        leave_room(ctx, conv.cid, blocked)
    _notify(ctx, conv, _event(pb.blocked, conv, actor, now), now, blocked)
    _notify(ctx, conv, _event(pb.members_blocked, conv, actor, now, blocked), now, None)
    if gone:
        _notify(ctx, conv, _event(pb.left, conv, actor, now), now, gone)
        _notify(ctx, conv, _event(pb.members_left, conv, actor, now, gone), now, None)
