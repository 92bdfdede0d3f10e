"""The moderation state of a conversation (roles, mutes, blacklist; the matrix is
chatroom/core/roles.py) and the checks other handlers call before they act: who may
do what, who may send, who may be added or removed. The commands that change the
state are chatroom/service/moderation.py.

In a cluster a check that would refuse on this node's copy of the state first hears
what the other nodes published (``Cluster.settle``): a change made on another node
and told to a client is not refused here on the copy from before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

import trio

from chatroom.core.model import Conversation, ConvType
from chatroom.core.roles import (
    Act,
    MemberChanges,
    Moderation,
    Role,
    may,
    outranks,
    role_of,
)
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode, Reason
from chatroom.service import lasting
from chatroom.service.context import Context

# Per-id failures: (code, reason) -> client ids.
Refusals = dict[tuple[ErrorCode, str], list[str]]
_TRANSIENT = ConvType.TRANSIENT  # an Enum class attribute costs ~0.9 k instructions


# -- state --------------------------------------------------------------------------


async def state_of(ctx: Context, cid: str) -> Moderation:
    """The conversation's moderation state: from memory, else read once from the store.

    One read at a time per conversation: a crowd joining a room whose state is not in
    memory (after a restart) waits for the first one's read instead of each reading
    (and, in memory, copying) the same state."""
    book = ctx.caches.moderation
    state = book.get(cid)
    if state is not None:
        await trio.lowlevel.checkpoint()  # every handler is one (flake8-async ASYNC910)
        return state
    loads = ctx.caches.moderation_loads
    pending = loads.get(cid)
    if pending is not None:
        await pending.wait()
        state = book.get(cid)
        if state is not None:
            return state
        # That read failed, or a change came while it read (it was not kept): read anew.
    loads[cid] = done = trio.Event()
    try:
        loaded = await book.load(cid, partial(ctx.store.moderation_of, cid))
    finally:
        del loads[cid]
        done.set()
    assert loaded is not None  # the store has a state for every conversation
    return loaded


async def _agreed(ctx: Context, cid: str, refuses: Callable[[Moderation], bool]) -> Moderation:
    """The state, as the cluster has it when this node's copy would refuse: a change
    another node made and told its clients of (moderation.py publishes it first) is heard
    here before a refusal stands on the copy from before it (issue 11).

    Not a checkpoint when the state is in memory: every caller is a handler, and the
    connection's reader is a checkpoint at every read; one reschedule less per join,
    and per message sent."""
    state = ctx.caches.moderation.get(cid)
    if state is None:
        state = await state_of(ctx, cid)
    if ctx.ports.cluster.several and refuses(state):
        await ctx.ports.cluster.settle()
        state = await state_of(ctx, cid)
    return state  # noqa: ASYNC910 (see above)


def watching(ctx: Context, conv: Conversation, peer: str) -> bool:
    return conv.kind is ConvType.TRANSIENT and ctx.hub.in_room(conv.cid, peer)


def leave_room(ctx: Context, cid: str, peers: Iterable[str]) -> None:
    """Every session of ``peers`` watching chatroom ``cid`` stops watching it; so do
    their tickets, which a resume (on any node, after this one died) would otherwise
    rejoin the room by."""
    for peer in peers:
        lasting.follow_rooms(ctx, ctx.hub.leave_room(cid, peer))


# -- checks other handlers call -----------------------------------------------------


async def role(ctx: Context, conv: Conversation, peer: str) -> Role | None:
    """``peer``'s role in ``conv`` (None: not a member; of a chatroom: not watching it,
    unless owner or manager)."""
    state = await state_of(ctx, conv.cid)
    return role_of(conv, state, peer, watching(ctx, conv, peer))


def changes_by(ctx: Context) -> MemberChanges:
    return MemberChanges(ctx.config.member_changes_by)


async def check_may(
    ctx: Context,
    conv: Conversation,
    peer: str,
    act: Act,
    outsider: ErrorCode = ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED,
) -> Role:
    """``peer``'s role if it may do ``act``; else ``outsider`` for a non-member, 4308
    CONVERSATION_OPERATION_UNAUTHORIZED for a member whose role may not."""
    changes = changes_by(ctx)

    def refuses(state: Moderation) -> bool:
        found = role_of(conv, state, peer, watching(ctx, conv, peer))
        return found is None or not may(act, conv.kind, found, changes)

    state = await _agreed(ctx, conv.cid, refuses)
    found = role_of(conv, state, peer, watching(ctx, conv, peer))
    if found is None:
        raise ChatError(outsider, detail=f"only members may {act.value}")
    if not may(act, conv.kind, found, changes):
        raise ChatError(
            ErrorCode.CONVERSATION_NOT_ALLOWED,
            Reason.OPERATION_UNAUTHORIZED,
            f"a {found.value.lower()} may not {act.value} here",
        )
    return found


async def check_may_send(ctx: Context, conv: Conversation, peer: str) -> None:
    """4315 for a blocked client or one temporarily silenced, 4308
    CONVERSATION_MEMBER_SHUTUP for a muted one."""
    now = ctx.clock.wall_ms()

    def refuses(state: Moderation) -> bool:
        return peer in state.blocked or (bool(state.muted) and state.is_muted(peer, now))

    state = await _agreed(ctx, conv.cid, refuses)
    if peer in state.blocked:
        raise ChatError(ErrorCode.CONVERSATION_BLACKLISTED)
    if state.muted and state.is_muted(peer, now):
        if state.muted[peer] is not None:  # a temporary silence (REST temporary-silenceds)
            raise ChatError(ErrorCode.CONVERSATION_BLACKLISTED, "temporarily silenced")
        raise ChatError(
            ErrorCode.CONVERSATION_NOT_ALLOWED, Reason.MEMBER_SHUTUP, "you are muted here"
        )


async def screen_add(
    ctx: Context, conv: Conversation, actor: str, targets: list[str]
) -> tuple[list[str], Refusals]:
    """Of the clients ``actor`` adds (or, itself, joins): those it may add, and the
    refused ones: blocked (4315), or others added by a member who may not (4308)."""
    state = ctx.caches.moderation.get(conv.cid)
    if state is None or ctx.ports.cluster.several:  # (else _agreed returns it as it is)
        state = await _agreed(ctx, conv.cid, partial(_refuses_add, ctx, conv, actor, targets))
    refused: Refusals = {}
    others_ok = _others_may(ctx, conv, actor, state)
    kept = []
    for target in targets:
        if target in state.blocked:
            refuse(refused, ErrorCode.CONVERSATION_BLACKLISTED, target)
        elif target != actor and not others_ok:
            refuse(refused, ErrorCode.CONVERSATION_NOT_ALLOWED, target)
        else:
            kept.append(target)
    # Not a checkpoint when the state is in memory, as ``_agreed``.
    return kept, refused  # noqa: ASYNC910


def _others_may(ctx: Context, conv: Conversation, actor: str, state: Moderation) -> bool:
    """Whether ``actor`` may add others (a chatroom refuses others itself, per id)."""
    return conv.kind is _TRANSIENT or may(
        Act.ADD_OTHERS, conv.kind, role_of(conv, state, actor), changes_by(ctx)
    )


def _refuses_add(
    ctx: Context, conv: Conversation, actor: str, targets: list[str], state: Moderation
) -> bool:
    """Whether ``state`` refuses some of ``screen_add``'s targets."""
    others = _others_may(ctx, conv, actor, state) or all(target == actor for target in targets)
    return not others or any(target in state.blocked for target in targets)


async def screen_remove(
    ctx: Context, conv: Conversation, actor: str, targets: list[str]
) -> tuple[list[str], Refusals]:
    """Of the clients ``actor`` removes (or, itself, quits): those it may remove, and the
    refused ones (4308: the owner, CONVERSATION_NEED_OWNER; a member it does not
    outrank, CONVERSATION_OPERATION_UNAUTHORIZED). Anyone may leave a chatroom."""
    state = await state_of(ctx, conv.cid)
    mine = role_of(conv, state, actor, watching(ctx, conv, actor))
    changes = changes_by(ctx)
    allowed = mine is not None and may(Act.REMOVE_OTHERS, conv.kind, mine, changes)
    refused: Refusals = {}
    kept = []
    for target in targets:
        if target == actor and (conv.kind is ConvType.TRANSIENT or target != conv.creator):
            kept.append(target)
        elif target == conv.creator and conv.kind is not ConvType.TRANSIENT:
            refuse(refused, ErrorCode.CONVERSATION_NOT_ALLOWED, target, Reason.NEED_OWNER)
        elif (
            allowed
            and mine is not None
            and outranks(mine, target_role(conv, state, target), changes)
        ):
            kept.append(target)
        else:
            refuse(refused, ErrorCode.CONVERSATION_NOT_ALLOWED, target)
    return kept, refused


def target_role(conv: Conversation, state: Moderation, peer: str) -> Role | None:
    # A chatroom target counts as a viewer: kicking needs no proof it is watching.
    return role_of(conv, state, peer, watching=True)


def refuse(
    refused: Refusals, code: ErrorCode, peer: str, reason: str = Reason.OPERATION_UNAUTHORIZED
) -> None:
    if code is not ErrorCode.CONVERSATION_NOT_ALLOWED:
        reason = code.name
    refused.setdefault((code, str(reason)), []).append(peer)


def add_refusals(body: pb.ConvCommand | pb.BlacklistCommand, refused: Refusals) -> None:
    """Append ``refused`` to a partial-success reply's ``failedPids``."""
    body.SetInParent()
    for (code, reason), pids in refused.items():
        body.failedPids.add(code=code, reason=reason).pids.extend(pids)
