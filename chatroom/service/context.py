"""What every command handler is handed, and the small helpers they have in common.

Handlers are plain functions ``handler(ctx, link, cmd) -> reply | None`` grouped by
command family in the sibling modules. They hold the business rules and never touch a
socket: replies are returned, pushes go through the hub.

``Context`` is a few named parts: ``config`` (read-only settings), ``store``, ``hub``
(the one way to reach clients), ``ports`` (committer, journal, offline push: interfaces
the server hands in), ``clock`` (wall time, injected), ``ids`` (message and conversation
ids, patch times), ``caches`` (handlers' memory), ``policies`` (word filter, signatures,
budgets, overload) and ``counters``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from chatroom.config import Config
from chatroom.core.clock import Clock, SystemClock
from chatroom.core.hooks import HookStats
from chatroom.core.ids import Ids
from chatroom.core.model import Conversation
from chatroom.core.outbox import ShedTotals
from chatroom.core.presence import Outlet, Session
from chatroom.hub.base import Hub
from chatroom.hub.local import LocalHub
from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Subprotocol
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service.caches import Caches
from chatroom.service.policies import Policies
from chatroom.service.ports import Ports
from chatroom.store.base import Store


class Link(Outlet, Protocol):
    """What handlers may do with the connection a command arrived on."""

    @property
    def subprotocol(self) -> Subprotocol: ...

    def session_for(self, peer_id: str | None) -> Session | None:
        """The session a command is for: by ``peerId``, else the first one."""

    def attach(self, session: Session) -> None: ...

    def sessions(self) -> list[Session]: ...

    def backlog(self) -> int:
        """Messages received on this connection and not yet processed."""


# Handlers that need no I/O are plain functions; the others are coroutines.
SyncHandler = Callable[["Context", Link, pb.GenericCommand], pb.GenericCommand | None]
Handler = Callable[["Context", Link, pb.GenericCommand], Awaitable[pb.GenericCommand | None]]


@dataclass(slots=True)
class Counters:
    """Plain integers on the hot path; exported by ``statistics()``."""

    logins: int = 0
    messages_accepted: int = 0
    errors: int = 0
    rejected_by_room_budget: int = 0
    shed_at_intake: int = 0  # chatroom messages dropped as read, the server being behind
    shed_at_intake_lag: int = 0  # of those, for the event loop's lag (else the backlog)
    shed: ShedTotals = field(default_factory=ShedTotals)  # by full outboxes
    closed_slow: int = 0  # connections closed as slow consumers
    refused_requests: int = 0  # over a connection's request budget (4113)
    refused_messages: int = 0  # over a client's message budget (4116)
    # Messages accepted, by conversation kind: the index is ConvType's value.
    accepted_by_kind: list[int] = field(default_factory=lambda: [0] * 5)
    hooks: dict[str, HookStats] = field(default_factory=dict)  # per hook: the runner's


@dataclass(slots=True)
class Context:
    """The parts handed to every handler (see the module docstring); ``build`` makes
    them from the configuration."""

    config: Config
    store: Store
    hub: Hub
    ports: Ports
    clock: Clock
    ids: Ids
    caches: Caches
    policies: Policies
    counters: Counters = field(default_factory=Counters)

    @classmethod
    def build(
        cls,
        config: Config,
        store: Store,
        ports: Ports,
        *,
        hub: Hub | None = None,
        clock: Clock | None = None,
        not_before: int = 0,
        id_suffix: str = "",
    ) -> Context:
        """A context over ``store`` and ``ports``; message timestamps come after
        ``not_before`` (the newest stored one); message ids end with ``id_suffix`` (a
        node's own in a cluster)."""
        clock = clock if clock is not None else SystemClock()
        now = clock.wall_ms
        hub = hub if hub is not None else LocalHub()
        return cls(
            config,
            store,
            hub,
            ports,
            clock,
            Ids(now, not_before, id_suffix),
            Caches(config, store, ports.journal, now(), hub),
            Policies(config, ports.journal),
            Counters(hooks=ports.hooks.stats),
        )

    async def conversation(self, cid: str) -> Conversation:
        """The conversation, or 4303 CONVERSATION_NOT_FOUND (also once a temporary
        conversation has expired: 4323)."""
        if not cid:
            raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND, "cid is required")
        conv = await self.caches.conversations.get(cid)
        if conv is None:
            raise ChatError(ErrorCode.CONVERSATION_NOT_FOUND)
        if conv.expire_at is not None and conv.expire_at <= self.clock.wall_ms():
            raise ChatError(ErrorCode.TEMPORARY_CONVERSATION_EXPIRED)
        return conv

    def conversation_now(self, cid: str) -> Conversation | None:
        """The conversation when memory holds it, with no await (4323 once a temporary
        one has expired); None: ask ``conversation``. For a handler that may then end
        without a checkpoint: the connection's reader is one at every read."""
        conv = self.caches.conversations.cached(cid)
        expire_at = None if conv is None else conv.expire_at
        if expire_at is not None and expire_at <= self.clock.wall_ms():
            raise ChatError(ErrorCode.TEMPORARY_CONVERSATION_EXPIRED)
        return conv


# Returned by a handler that sent its reply itself, before pushes that must follow it.
SENT = pb.GenericCommand()


def require_session(link: Link, cmd: pb.GenericCommand) -> Session:
    session = link.session_for(cmd.peerId if cmd.HasField("peerId") else None)
    if session is None:
        raise ChatError(ErrorCode.SESSION_REQUIRED, "log in first (session open)")
    return session


def reply_to(cmd: pb.GenericCommand, op: int | None = None) -> pb.GenericCommand:
    """A reply of the same command type (``op`` given for the reply op)."""
    out = pb.GenericCommand(cmd=cmd.cmd)
    if op is not None:
        out.op = op  # type: ignore[assignment]
    return out


def failure_reply(cmd: pb.GenericCommand, err: ChatError) -> pb.GenericCommand:
    """The reply of a request that failed: an ``ack`` with the code for a message (and
    the app's ``appCode``/``appMsg``), an ``error`` otherwise. Without ``i``."""
    if cmd.cmd == pb.direct:
        reply = pb.GenericCommand(cmd=pb.ack)
        ack = reply.ackMessage
        ack.code = int(err.code)
        ack.reason = err.reason
        if err.app_code is not None:
            ack.appCode = err.app_code
        if err.detail:
            ack.appMsg = err.detail
        return reply
    reply = pb.GenericCommand(cmd=pb.error)
    body = reply.errorMessage
    body.code = int(err.code)
    body.reason = err.reason
    if err.detail:
        body.detail = err.detail
    if err.app_code is not None:
        body.appCode = err.app_code
    return reply


def valid_client_id(peer_id: str, max_length: int) -> bool:
    """1 to ``max_length`` characters, no surrounding spaces, no control characters."""
    # A printable id (nearly every one) holds no control character: ``isprintable``
    # says so for less than the search (C0, DEL and C1 are all unprintable).
    return (
        0 < len(peer_id) <= max_length
        and peer_id.strip() == peer_id
        and (peer_id.isprintable() or not ids.has_control(peer_id))
    )
