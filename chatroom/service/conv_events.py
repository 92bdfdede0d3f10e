"""Missed conversation events, pushed again after an automatic re-login.

The JS SDK 4.3.1 recovers ``joined``/``left``/``members_joined``/``members_left``/
``updated`` missed while offline only through an HTTPS REST call; protocol.md section 6
item 9 (option 2) has the server push them over the WebSocket right after ``opened``
instead, which the SDK handles like live pushes. Events are not stored otherwise
(features.md F12, F16): this is a bounded log of recent ones per client, in memory and
(for ``conv_event_ttl`` seconds, across restarts) in the store.

Which events a re-login gets: those recorded after the client's ``lastPatchTime`` (the
SDK sends its previous ``opened.serverTs`` or a newer patch time), except those already
delivered to the session being resumed (the ``st`` it sends). A re-login without ``st``
can therefore see again an event it received live after its previous login.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable
from typing import cast

import trio

from chatroom.core.presence import Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared
from chatroom.service.context import SENT, Context, Handler, Link, SyncHandler

log = logging.getLogger(__name__)


async def missed(ctx: Context, peer: str, since: int, token: str | None) -> list[Prepared]:
    """The events ``peer`` missed after ``since`` (not delivered to session ``token``):
    from the store for the time before memory holds them all (a restart; in a cluster,
    always: other nodes recorded some), then memory."""
    events = ctx.caches.conv_events
    until = events.complete_since(peer)
    if ctx.ports.cluster.several:  # other nodes record this client's events too
        until = ctx.clock.wall_ms() + 1
    if events.per_client <= 0 or until <= since:
        await trio.lowlevel.checkpoint()
        return events.missed(peer, since, token)
    try:
        records = await ctx.store.conv_events_for(peer, since, until, events.per_client)
    except Exception:
        # The login stands; the client sees the state on its next fetch.
        log.exception("reading missed conversation events of %s failed", peer)
        await trio.lowlevel.checkpoint()
        records = []
    older = [
        (r.server_ts, Prepared(pb.GenericCommand.FromString(r.payload)), r.delivered)
        for r in records
    ]
    return events.missed(peer, since, token, older)


def push(
    ctx: Context,
    prepared: Prepared,
    server_ts: int,
    peers: Iterable[str],
    skip: Session | None = None,
) -> None:
    """Deliver a conversation event to the peers' online sessions (except ``skip``, the
    one that caused it) and log it for their sessions that are offline now."""
    peers = list(peers)
    known = ctx.hub.to_clients(prepared, peers, skip=skip)
    if skip is not None:
        known.append(skip.token)
    ctx.caches.conv_events.record(peers, server_ts, prepared, known)


def replaying(inner: SyncHandler | Handler) -> Handler:
    """The ``session/open`` handler ``inner``, followed for an automatic re-login
    (``r``) by the conversation events the client missed."""

    # Decided once, not at every login (inspect.isawaitable of each result).
    is_async = inspect.iscoroutinefunction(inner)

    async def handler(ctx: Context, link: Link, cmd: pb.GenericCommand) -> pb.GenericCommand:
        if is_async:
            reply = await cast(Handler, inner)(ctx, link, cmd)  # a checkpoint: no reschedule more
        else:
            reply = cast(SyncHandler, inner)(ctx, link, cmd)
            await trio.lowlevel.checkpoint()
        msg = cmd.sessionMessage
        if not msg.r:  # a first login (a crowd's): nothing was missed
            return reply or SENT
        session = link.session_for(cmd.peerId)
        if session is None:
            return reply or SENT
        old_token = msg.st if msg.HasField("st") and msg.st else None
        events = await missed(ctx, cmd.peerId, msg.lastPatchTime, old_token)
        if reply is not None and reply is not SENT:
            # opened first: the SDK ignores pushes for a client that is not open yet.
            if cmd.HasField("i"):
                reply.i = cmd.i
            link.send(reply)
        for prepared in events:
            ctx.hub.to_session(prepared, session)
        return SENT

    return handler
