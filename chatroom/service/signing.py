"""Where signatures are checked (chatroom/core/signature.py has the scheme).

Switched on per kind by the ``signatures`` setting; the signed texts use the configured
``app_id`` (or, for a login, the ``appId`` the client sent when none is configured).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from chatroom.core.signature import (
    ACTIONS,
    BLACKLIST,
    BLOCK_ACTIONS,
    CONVERSATION,
    LOGIN,
    login_text,
    members_text,
    start_text,
)
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.context import Context


@functools.lru_cache(maxsize=8)
def _kinds(signatures: str) -> frozenset[str]:
    """The kinds a ``signatures`` setting names (parsed once, not at every login)."""
    return frozenset(k.strip() for k in signatures.split(","))


def enabled(ctx: Context, kind: str) -> bool:
    return kind in _kinds(ctx.config.signatures)


def check_login(ctx: Context, cmd: pb.GenericCommand) -> None:
    """4102 unless the login is signed, or resumes a session with its token (checked
    by the login itself). The SDK signs fresh logins only: with login signatures on, an
    automatic re-login whose token is gone must log in afresh."""
    if not enabled(ctx, LOGIN):
        return  # (before reading the sub-message: each read builds its wrapper anew)
    msg = cmd.sessionMessage
    if msg.HasField("st") and msg.st:
        return
    app_id = ctx.config.app_id or cmd.appId
    text = login_text(app_id, cmd.peerId, msg.t, msg.n)
    reason = ctx.policies.verifier.check([text], msg.s, msg.t, msg.n, ctx.clock.wall_ms())
    if reason is not None:
        raise ChatError(ErrorCode.SIGNATURE_FAILED, f"login signature: {reason}")


def check_start(ctx: Context, actor: str, members: Sequence[str], body: pb.ConvCommand) -> None:
    """4302 unless ``conv/start`` is signed over the member list (creator included)."""
    if not enabled(ctx, CONVERSATION):
        return
    text = start_text(ctx.config.app_id, actor, members, body.t, body.n)
    _check(ctx, [text], body)


def check_members(
    ctx: Context, actor: str, cid: str, targets: Sequence[str], body: pb.ConvCommand, kick: bool
) -> None:
    """4302 unless ``add`` (``invite``/``add``) or ``remove`` (``kick``/``remove``) is
    signed over the target ids."""
    if not enabled(ctx, CONVERSATION):
        return
    app_id = ctx.config.app_id
    actions = ACTIONS["kick" if kick else "invite"]
    texts = [members_text(app_id, actor, cid, targets, body.t, body.n, a) for a in actions]
    _check(ctx, texts, body)


def check_blacklist(
    ctx: Context,
    actor: str,
    cid: str,
    targets: Sequence[str],
    body: pb.BlacklistCommand,
    block: bool,
) -> None:
    """4546 unless ``blacklist/block`` (``block``) or ``unblock`` is signed over the
    target ids (the SDK's ``blacklistSignatureFactory``)."""
    if not enabled(ctx, BLACKLIST):
        return
    action = BLOCK_ACTIONS[block]
    text = members_text(ctx.config.app_id, actor, cid, targets, body.t, body.n, action)
    _check(ctx, [text], body, ErrorCode.BLACKLIST_SIGNATURE_FAILED)


def _check(
    ctx: Context,
    texts: list[str],
    body: pb.ConvCommand | pb.BlacklistCommand,
    code: ErrorCode = ErrorCode.CONVERSATION_SIGNATURE_FAILED,
) -> None:
    reason = ctx.policies.verifier.check(texts, body.s, body.t, body.n, ctx.clock.wall_ms())
    if reason is not None:
        raise ChatError(code, f"signature: {reason}")
