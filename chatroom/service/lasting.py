"""What a restarted server brings back from the store, and the wills it keeps there.

The memory structures answer every request; the store (written behind by
``chatroom/net/journal.py``) is what they are rebuilt from after a restart:

- at start (``restore``): the nonces still in their window, so that a signature used
  before the restart is refused after it, and the newest pending receipts;
- on demand: a session token that memory does not know (``load_ticket``, before a
  resume is decided), with its chatroom to rejoin (``follow_room`` records it as the
  viewer joins and leaves) and the will its session had set;
  missed conversation events (service/conv_events.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from chatroom.core.model import WillRecord
from chatroom.core.presence import Session
from chatroom.core.receipt_book import Waiting
from chatroom.protocol import messages_pb2 as pb
from chatroom.service.caches import SessionTicket
from chatroom.service.context import Context

log = logging.getLogger(__name__)


async def restore(ctx: Context) -> None:
    """Load, at start, what memory must hold before the first request."""
    config, now = ctx.config, ctx.clock.wall_ms()
    nonces = await ctx.store.live_nonces(now, config.signature_nonces)
    ctx.policies.verifier.seed({nonce: ms // 1000 for nonce, ms in nonces.items()})
    pending = await ctx.store.pending_receipts(config.receipt_memory)
    ctx.caches.receipts.restore(
        (r.cid, Waiting(r.mid, r.timestamp, r.sender)) for r in pending if r.expires_ms > now
    )


async def load_ticket(ctx: Context, token: str, peer_id: str) -> None:
    """Bring a session token of ``peer_id`` from before a restart back into memory (with
    the will its session had set), unless memory knows it or its revocation is still
    being stored. Runs before the login is checked: another client's token is left in
    the store, and one that cannot be read is unknown (the reply is 4112, after which
    the SDK logs in afresh; it does not after any other error)."""
    tickets = ctx.caches.tickets
    if token in tickets or ctx.ports.journal.revoked(token) or tickets.revoked_elsewhere(token):
        await trio.lowlevel.checkpoint()
        return
    try:
        ticket = await _stored_ticket(ctx, token, peer_id)
    except Exception:
        log.exception("loading a session token of %s failed", peer_id)
        await trio.lowlevel.checkpoint()
        return
    if (
        ticket is not None
        and token not in tickets
        and not ctx.ports.journal.revoked(token)
        and not tickets.revoked_elsewhere(token)
    ):
        ctx.caches.tickets.restore(token, ticket)


async def _stored_ticket(ctx: Context, token: str, peer_id: str) -> SessionTicket | None:
    record = await ctx.store.get_session(token)
    if record is None or record.peer_id != peer_id or record.expires_ms <= ctx.clock.wall_ms():
        return None
    ticket = SessionTicket.of_record(record)
    will = await ctx.store.will_of(peer_id)
    if will is not None and will.token == token and will.expires_ms > ctx.clock.wall_ms():
        ticket.will = will.payload
        # send_wills reads cached conversations only (it runs as a connection ends).
        await ctx.caches.conversations.get(pb.DirectCommand.FromString(will.payload).cid)
    return ticket


def follow_room(ctx: Context, session: Session) -> None:
    """Have the session's ticket (in the store, and on the other nodes) follow the
    chatroom it watches now, as it joins or leaves one: a resume with its token, on any
    node, rejoins the room even when this node died without noticing the connection
    end. Recorded while the connection lives, it holds as long as the token; a
    connection that ends here narrows it to ``chatroom_rejoin_window``."""
    ticket = ctx.caches.tickets.get(session.token)
    if ticket is None or ticket.session is not session or ticket.room == session.room:
        return
    ticket.room = session.room
    ticket.room_until_ms = ticket.expires_ms if session.room is not None else 0
    ctx.caches.tickets.journal(session.token)


def follow_rooms(ctx: Context, sessions: Iterable[Session]) -> None:
    """``follow_room`` for each of ``sessions`` (another node kicked them out of their
    chatroom)."""
    for session in sessions:
        follow_room(ctx, session)


def save_will(ctx: Context, session: Session) -> None:
    """Have the store follow the session's will (it is the user's only one); it lasts
    as long as the session's token."""
    if session.will is None:
        ctx.ports.journal.will(session.peer_id, None)
        return
    ticket = ctx.caches.tickets.get(session.token)
    until = ticket.expires_ms if ticket is not None else ctx.clock.wall_ms()
    payload = session.will.SerializeToString()
    ctx.ports.journal.will(
        session.peer_id, WillRecord(session.peer_id, session.token, payload, until)
    )
