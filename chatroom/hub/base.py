"""The Hub: the one way services reach clients.

Services never walk sessions themselves: they ask the hub to deliver an encoded push
(``Prepared``) to a client (every device), to a list of clients, to the members of a
conversation or to a chatroom's viewers, and ask it who is online. A hub also ends
sessions for single-device login (``kick``) and keeps each session's will message
until the session ends.

``LocalHub`` (hub/local.py) holds everything in this process. A hub for several nodes
implements the same protocol: the methods that may reach other nodes take ids (client
ids, conversation ids); a ``Session`` appears only where it is the caller's own, local
session (the one a command arrived on, to attach, skip or give a will).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from chatroom.core.model import Conversation
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared

# Why a single-device login ends the older session (``session/closed`` detail).
CONFLICT_DETAIL = "logged in on another device with the same tag"

# What a node's caches hold that another node may change (``Hub.changed``): a
# conversation (key: its cid), its moderation state (cid), a session token (the token;
# the state is its stored record as a list, or None once revoked), a message waiting
# for its delivery receipt (cid; the state is [mid, timestamp, sender], or [mid] once
# delivered), a stored message's dedupe token (cid; [sender, token, mid, timestamp]);
# EVERYTHING (no key) when changes may have been missed (Redis was away, a node's
# presence was lost).
CONVERSATION, MODERATION, TICKET, RECEIPT, DEDUPE, EVERYTHING = "c", "m", "t", "r", "d", "*"


@dataclass(frozen=True, slots=True)
class HubStatistics:
    """Sessions and distinct clients online, chatrooms watched, pushes delivered."""

    sessions: int
    clients: int
    rooms: int
    deliveries: int


class Hub(Protocol):
    """Routing and fan-out. No method awaits: a push is queued or dropped at once."""

    # -- this node's sessions -----------------------------------------------------

    def attach(self, session: Session) -> None:
        """A session opened here: its client is online until it is detached."""

    def detach(self, session: Session) -> None:
        """The session ended (logout, takeover, connection gone): it is marked closed,
        leaves its chatroom and gets nothing more. Idempotent."""

    def join_room(self, cid: str, session: Session) -> str | None:
        """The session watches chatroom ``cid`` (one at a time); the room it left."""

    def leave_room(self, cid: str, peer_id: str) -> list[Session]:
        """Every session of ``peer_id`` watching ``cid`` on this node stops watching
        it; those sessions."""

    # -- queries --------------------------------------------------------------------

    def is_online(self, peer_id: str) -> bool:
        """Whether the client has at least one session."""

    def online_of(self, peer_ids: Iterable[str]) -> list[str]:
        """Those of ``peer_ids`` that are online, in the order given."""

    def online_count(self, cid: str) -> int:
        """Distinct clients watching chatroom ``cid`` (two devices count once)."""

    def in_room(self, cid: str, peer_id: str) -> bool:
        """Whether a session of ``peer_id`` watches chatroom ``cid``."""

    def others_online(self, session: Session) -> bool:
        """Whether the session's client has another session (another device)."""

    def holds_tag(self, peer_id: str, tag: str, keep: Session | None = None) -> bool:
        """Whether a session of ``peer_id`` other than ``keep`` has device ``tag``."""

    # -- delivery (the count or the tokens of the sessions reached) -----------------

    def to_session(
        self, prepared: Prepared, session: Session, priority: Priority = Priority.RELIABLE
    ) -> int:
        """Push to the caller's own session only."""

    def to_client(
        self,
        prepared: Prepared,
        peer_id: str,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> int:
        """Push to every session (every device) of one client, but ``skip``."""

    def to_clients(
        self,
        prepared: Prepared,
        peer_ids: Iterable[str],
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> list[str]:
        """Push to every session of these clients but ``skip``; the tokens of the
        sessions reached (the conversation event log records who has an event)."""

    def to_members(
        self,
        prepared: Prepared,
        conv: Conversation,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
    ) -> int:
        """Push to a conversation: a chatroom's viewers, else the members' sessions."""

    def to_room(
        self,
        prepared: Prepared,
        cid: str,
        priority: Priority = Priority.RELIABLE,
        skip: Session | None = None,
        skip_client: str | None = None,
    ) -> int:
        """Push to every session watching chatroom ``cid`` but ``skip`` and, given
        ``skip_client``, every session of that client (a REST send in its name)."""

    # -- single-device login ----------------------------------------------------------

    def kick(
        self,
        peer_id: str,
        tag: str | None,
        code: int,
        reason: str,
        detail: str,
        keep: Session | None,
    ) -> list[str]:
        """End the sessions of ``peer_id`` with device ``tag`` (every session for None)
        but ``keep``: each gets ``session/closed`` with ``code`` (4111 for single-device
        login, 4115 for the operator's kick) and is detached;
        its connection stays open for its other clients. The kicked sessions' tokens."""

    # -- wills ------------------------------------------------------------------------

    def register_will(self, session: Session, will: pb.DirectCommand) -> None:
        """The client's will is now ``will``, set on ``session``: one will per client,
        so any its other sessions held is cancelled."""

    def cancel_will(self, session: Session) -> None:
        """The session's will is not sent (a logout)."""

    def take_will(self, session: Session) -> pb.DirectCommand | None:
        """The will to fire now that ``session`` ended without a logout (then none)."""

    # -- the other nodes' caches ----------------------------------------------------

    @property
    def alone(self) -> bool:
        """Whether this node is the only one (no cluster): nobody hears ``changed``,
        so a caller need not build the state it would carry."""

    def changed(self, kind: str, key: str, state: list[object] | None = None) -> None:
        """A record of ``kind`` cached by the services changed here and is stored: other
        nodes forget (or update) their copy before they handle this node's later pushes.
        Alone, a node has nobody to tell."""

    def statistics(self) -> HubStatistics: ...
