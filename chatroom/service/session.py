"""Login, logout, resume, single sign-on, online queries and keepalive.

Rules (protocol.md sections 4.1-4.4 and 6, features.md F01-F07):

- A user-initiated login (``r`` false) with a device ``tag`` kicks the client's older
  sessions with the same tag: they get ``session/closed{code: 4111}``. The tag
  ``default`` and an absent tag never conflict.
- An automatic re-login (``r`` true) never kicks: if another device took the tag over,
  it fails with 4111. C#'s ``Open(false)`` is the same flag, so it fails the same way.
- ``r`` true with a session token (``st``) resumes that device; an unknown or expired
  token is answered with ``error{4112}``, after which the SDK logs in again with ``r``
  true and no token, which is accepted.
- Tokens outlive a restart (the store keeps them, service/lasting.py loads one on
  demand): a resume after it is ``opened``, with the chatroom to rejoin and the will
  the session had set.
"""

from __future__ import annotations

import logging

import trio

from chatroom.core.ids import session_token
from chatroom.core.presence import Session
from chatroom.hub.base import CONFLICT_DETAIL
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import hooks, lasting, permissions, signing, unread
from chatroom.service.caches import SessionTicket
from chatroom.service.context import (
    SENT,
    Context,
    Link,
    require_session,
    valid_client_id,
)

log = logging.getLogger(__name__)

_RESERVED_TAG = "default"


def open_session(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    peer_id = cmd.peerId
    msg = cmd.sessionMessage
    if not valid_client_id(peer_id, ctx.config.max_client_id_length):
        raise ChatError(
            ErrorCode.INVALID_LOGIN,
            f"client id must be 1 to {ctx.config.max_client_id_length} characters",
        )
    if ctx.config.app_id and cmd.appId != ctx.config.app_id:
        raise ChatError(ErrorCode.APP_NOT_AVAILABLE, "unknown appId")
    signing.check_login(ctx, cmd)  # 4102 when login signatures are on
    existing = link.session_for(peer_id)  # (a link holds one session per client id)
    if existing is not None and existing.peer_id == peer_id:
        # The same client logging in twice on one socket: replace it quietly.
        _end_session(ctx, link, existing)
    resuming = msg.r
    tag = msg.tag if msg.HasField("tag") and msg.tag else None
    device_id = msg.deviceId or None
    previous: Session | None = None
    rejoin: str | None = None
    will: bytes | None = None
    if msg.HasField("st") and msg.st:
        ticket = _valid_ticket(ctx, msg.st, peer_id)
        tag, device_id, previous = ticket.tag, ticket.device_id, ticket.session
        if ticket.room is not None and ticket.room_until_ms > ctx.clock.wall_ms():
            rejoin = ticket.room
        will, ticket.will = ticket.will, None
    if tag is not None and exclusive_tag(tag):
        if resuming and ctx.hub.holds_tag(peer_id, tag, keep=previous):
            raise ChatError(ErrorCode.SESSION_CONFLICT, "another device holds this tag")
        _kick(ctx, peer_id, tag, previous)
    if previous is not None and not previous.closed:
        # The same device came back before its old socket was noticed dead: the old
        # session ends quietly (its socket may carry other clients, so it stays open).
        ctx.hub.detach(previous)
        previous.outlet.detach(previous)
    session = Session(peer_id, link, tag=tag, device_id=device_id)
    _issue_token(ctx, session)
    link.attach(session)
    ctx.hub.attach(session)
    if rejoin is not None:
        ctx.hub.join_room(rejoin, session)  # a viewer back within the window
        lasting.follow_room(ctx, session)  # the new token rejoins it too
    if will is not None:
        # Set before a restart: it now fires when this session's connection drops.
        ctx.hub.register_will(session, pb.DirectCommand.FromString(will))
        lasting.save_will(ctx, session)
    ctx.counters.logins += 1
    hooks.client_online(ctx, session, resuming)
    now = ctx.clock.wall_ms()
    reply = pb.GenericCommand(cmd=pb.session, op=pb.opened, peerId=peer_id, serverTs=now)
    body = reply.sessionMessage  # (each read of it makes its wrapper anew)
    body.st = session.token
    body.stTtl = ctx.config.session_token_ttl
    return reply


async def open_and_sync(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """Login, then, once ``opened`` is on its way, the post-login sync of
    service/unread.py (missed patches; unread counts in v3, stored messages in v1).
    The connection handles its next command only after the sync has been queued, so
    the client sees the sync before any later reply."""
    # Held for the whole login: each read of it would make its wrapper anew.
    msg = cmd.sessionMessage
    token = msg.st
    if token:
        await lasting.load_ticket(ctx, token, cmd.peerId)  # known from before a restart?
        await _unless_blocked(ctx, token, cmd.peerId)
    reply = open_session(ctx, link, cmd)
    if ctx.ports.cluster.several:
        # Answered once the other nodes can know of the session, so that a push another
        # node makes for this client after the login reaches it. (Alone: no wait, and
        # nothing can come before ``opened``.)
        await ctx.ports.cluster.published()
    if cmd.HasField("i"):
        reply.i = cmd.i
    link.send(reply)
    session = link.session_for(cmd.peerId)
    if session is None:
        await trio.lowlevel.checkpoint()  # a login is one even when there is nothing to sync
        return SENT
    try:
        # It asks the store: a checkpoint, unless the store knows at once that there is
        # nothing to sync (the memory store, for a client in no conversation). A login
        # need not be one: the reader gives way after a streak of commands.
        await unread.after_login(ctx, session, msg, link.subprotocol.version)
    except Exception:
        # The login stands: the client still has history and later pushes.
        log.exception("post-login sync failed for %s", session.peer_id)
    return SENT  # noqa: ASYNC910 (see above)


def _valid_ticket(ctx: Context, token: str, peer_id: str) -> SessionTicket:
    ticket = ctx.caches.tickets.get(token)
    if ticket is not None and ticket.expires_ms <= ctx.clock.wall_ms():
        ctx.caches.tickets.pop(token)
        ticket = None
    if ticket is None or ticket.peer_id != peer_id:
        # Someone else's token is refused without revoking it for its owner.
        raise ChatError(ErrorCode.SESSION_TOKEN_EXPIRED)
    if ticket.taken_over:
        raise ChatError(ErrorCode.SESSION_CONFLICT, "another device holds this tag")
    return ticket


def _issue_token(ctx: Context, session: Session) -> None:
    # A few expired tickets go at every login: the table stays bounded by the logins
    # within one token lifetime.
    tickets = ctx.caches.tickets
    now = ctx.clock.wall_ms()
    tickets.expire(now)
    session.token = token = session_token()
    expires_ms = now + ctx.config.session_token_ttl * 1000
    # (positional: peer_id, tag, device_id, expires_ms, session)
    tickets.issue(
        token, SessionTicket(session.peer_id, session.tag, session.device_id, expires_ms, session)
    )


def exclusive_tag(tag: str) -> bool:
    """Whether two sessions of one client with this device tag cannot coexist."""
    return tag != _RESERVED_TAG


def _kick(ctx: Context, peer_id: str, tag: str, keep: Session | None) -> None:
    """Single sign-on: the older devices with this tag are told (4111) and their
    sessions end."""
    code = ErrorCode.SESSION_CONFLICT
    end_sessions(ctx, peer_id, tag, keep, code, code.name, CONFLICT_DETAIL)


def end_sessions(
    ctx: Context,
    peer_id: str,
    tag: str | None,
    keep: Session | None,
    code: ErrorCode,
    reason: str,
    detail: str,
) -> int:
    """End the sessions of ``peer_id`` with device ``tag`` (all for None) but ``keep``:
    each is told ``code``, ``reason`` (what the SDK's ``close`` event carries) and
    ``detail`` (``session/closed``), and their tokens no longer resume. The operator's
    kick (4115, POST /1.2/rtm/clients/{id}/kick) ends them all. How many ended."""
    kicked = ctx.hub.kick(peer_id, tag, int(code), reason, detail, keep)
    if code is ErrorCode.SESSION_CONFLICT:
        offline = (hooks.KICKED_BY_TAG, "same tag logged in")
    else:
        offline = (hooks.KICKED_BY_API, reason)
    for _ in kicked:
        hooks.client_offline(ctx, peer_id, tag, *offline, None)
    taken_over(ctx, kicked)
    return len(kicked)


def taken_over(ctx: Context, tokens: list[str]) -> None:
    """The sessions of ``tokens`` were ended by a login elsewhere (on this node or,
    in a cluster, another) or by the operator: their tokens no longer resume."""
    for token in tokens:
        ticket = ctx.caches.tickets.get(token)
        if ticket is not None:
            ticket.taken_over = True
            ticket.session = None
            ctx.caches.tickets.journal(token)


def _end_session(ctx: Context, link: Link, session: Session) -> None:
    ticket = ctx.caches.tickets.pop(session.token)
    if ticket is not None:
        ticket.session = None
        ctx.caches.tickets.journal(session.token)  # revoked
    ctx.hub.detach(session)
    link.detach(session)


async def close_session(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    """Logout: no will message, token revoked (protocol.md 4.3: no ``code`` in the reply)."""
    session = require_session(link, cmd)
    if session.will is not None:
        ctx.hub.cancel_will(session)
        lasting.save_will(ctx, session)
    _end_session(ctx, link, session)
    hooks.client_offline(ctx, session.peer_id, session.tag, hooks.LOGGED_OUT, "logout", link)
    # As for a login: answered once the other nodes can know the client left, so that
    # a ``session query`` made anywhere after the reply finds it offline.
    await ctx.ports.cluster.published()
    reply = pb.GenericCommand(cmd=pb.session, op=pb.closed, peerId=session.peer_id)
    reply.sessionMessage.SetInParent()
    return reply


async def query_online(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    require_session(link, cmd)
    asked = list(cmd.sessionMessage.sessionPeerIds)
    if len(asked) > 20:
        raise ChatError(ErrorCode.INVALID_COMMAND, "at most 20 client ids per query")
    # In a cluster: after the logins and logouts on other nodes the asker knows of.
    await ctx.ports.cluster.settle()
    reply = pb.GenericCommand(cmd=pb.session, op=pb.query_result)
    reply.sessionMessage.onlineSessionPeerIds.extend(ctx.hub.online_of(dict.fromkeys(asked)))
    return reply


def refresh_token(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    session = require_session(link, cmd)
    ctx.caches.tickets.revoke(session.token)
    _issue_token(ctx, session)
    lasting.follow_room(ctx, session)  # the new token rejoins the room watched
    if session.will is not None:
        lasting.save_will(ctx, session)  # now resumed with the new token
    reply = pb.GenericCommand(cmd=pb.session, op=pb.refreshed)
    reply.sessionMessage.st = session.token
    reply.sessionMessage.stTtl = ctx.config.session_token_ttl
    return reply


async def _unless_blocked(ctx: Context, token: str, peer_id: str) -> None:
    """A ticket recorded as its viewer joined a chatroom does not rejoin it once the
    viewer was blocked there (on any node: the block is stored)."""
    ticket = ctx.caches.tickets.get(token)
    if ticket is None or ticket.room is None or ticket.peer_id != peer_id:
        await trio.lowlevel.checkpoint()
        return
    try:
        blocked = peer_id in (await permissions.state_of(ctx, ticket.room)).blocked
    except Exception:  # the store cannot tell: the login goes on without the room
        log.warning("resume of %s: the moderation of %s could not be read", peer_id, ticket.room)
        await trio.lowlevel.checkpoint()
        blocked = True
    if blocked:
        ticket.room = None


def echo(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
    return pb.GenericCommand(cmd=pb.echo)


def disconnected(ctx: Context, sessions: list[Session]) -> list[Session]:
    """The connection ended without a logout for these sessions. Returns those that
    were still live, so that their will messages can be sent."""
    live = [s for s in sessions if not s.closed]
    for session in live:
        ticket = ctx.caches.tickets.get(session.token)
        if ticket is not None and ticket.session is session:
            ticket.session = None  # the token stays valid: the device may resume
            ticket.room = session.room
            window_ms = int(ctx.config.chatroom_rejoin_window * 1000)
            ticket.room_until_ms = ctx.clock.wall_ms() + window_ms
            ctx.caches.tickets.journal(session.token)
        ctx.hub.detach(session)
        hooks.client_offline(
            ctx, session.peer_id, session.tag, hooks.CONNECTION_LOST, "connection lost", None
        )
    return live
