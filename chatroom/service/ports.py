"""What services are handed to reach outside the process: interfaces, not I/O modules.

The server (chatroom/net/server.py) constructs the concrete ones, the group committer
(net/committer.py), the lasting-state journal (net/journal.py) and the offline-push
webhook (http/push_webhook.py), and hands them in as ``Ports``; a test may hand in
fakes. Every method returns at once: the work is queued for a task of the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import trio

from chatroom.core.hooks import HookStats
from chatroom.core.model import (
    JSON,
    ConvEventRecord,
    Message,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.core.outbox import Priority

# Called once the message's batch is committed: None, or why it could not be stored.
Committed = Callable[[BaseException | None], None]


class Committer(Protocol):
    """Stores messages in batches and says when each one is durable."""

    async def submit(self, message: Message, callback: Committed) -> None:
        """Queue ``message`` (waits only while the queue is full); ``callback`` runs
        once it is stored or failed."""


class Journal(Protocol):
    """What must outlive a restart, written behind (a ``None`` record deletes)."""

    def session(self, token: str, record: SessionRecord | None) -> None: ...

    def nonce(self, nonce: str, expires_ms: int) -> None: ...

    def conv_event(self, record: ConvEventRecord) -> None: ...

    def receipt(self, cid: str, mid: str, record: PendingReceipt | None) -> None: ...

    def will(self, peer_id: str, record: WillRecord | None) -> None: ...

    def revoked(self, token: str) -> bool:
        """Whether the token's deletion is still waiting to be stored."""


class OfflinePush(Protocol):
    """Notifications for members without a session, best effort."""

    @property
    def enabled(self) -> bool: ...

    def offer(self, notification: dict[str, JSON]) -> bool:
        """Queue one notification; False when it was dropped (queue full)."""


class Hooks(Protocol):
    """The operator's hook endpoints (chatroom/net/hooks.py; docs/hooks.md)."""

    @property
    def stats(self) -> dict[str, HookStats]:
        """Counters per configured hook."""

    def wants(self, name: str) -> bool:
        """Whether hook ``name`` is configured."""

    async def call(self, name: str, params: dict[str, JSON]) -> dict[str, JSON]:
        """Ask the hook; its ``result`` (``{}`` for "unchanged"). A failed call gives
        ``{}`` under the ``pass`` policy and raises ``HookFailed`` under ``refuse``.
        Never waits longer than the hook's timeout."""

    def notify(self, name: str, params: dict[str, JSON]) -> None:
        """Queue a notification hook, if configured; never blocks (a full queue drops)."""

    def start_soon(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` in the hooks' own nursery, so that a request waiting for a hook
        does not hold up the connection it came on."""


class NoHooks:
    """No hook configured (tests, and a server whose operator set none)."""

    stats: dict[str, HookStats] = {}

    def wants(self, name: str) -> bool:
        return False

    async def call(self, name: str, params: dict[str, JSON]) -> dict[str, JSON]:
        raise AssertionError(f"hook {name} is not configured")

    def notify(self, name: str, params: dict[str, JSON]) -> None:
        pass

    def start_soon(self, work: Callable[[], Awaitable[None]]) -> None:
        raise AssertionError("no hooks, no hook tasks")


class Cluster(Protocol):
    """The other nodes of a cluster (chatroom/net/redis_link.py), as far as a command
    must wait for them."""

    @property
    def several(self) -> bool:
        """Whether other nodes may serve this app (and keep what they record in the
        store, not in this node's memory)."""

    async def settle(self) -> None:
        """Until what other nodes published before now has been heard here (a round
        trip to Redis, bounded by a deadline): a presence question is answered after
        a change the asker already knows of."""

    async def published(self) -> None:
        """Until what this node queued for the others so far is in Redis (bounded by a
        deadline): a login is answered once the other nodes can know of it."""

    async def hearing(self, cid: str) -> None:
        """Until this node hears chatroom ``cid``'s pushes from every node (bounded by
        a deadline): a join is answered once a message sent after it, on any node,
        reaches the viewer."""

    # A chatroom's recent messages, shared by the nodes (docs/cluster.md): each node
    # also keeps those it accepted (``caches.rooms``), for when Redis does not answer.

    def keep(self, message: Message, priority: Priority) -> None:
        """Keep a chatroom message, with the push queued next (sent with it)."""

    def unkeep(self, message: Message) -> None:
        """Remove a kept chatroom message (deleted)."""

    def forget_kept(self, cid: str) -> None:
        """Remove every kept message of a chatroom (deleted)."""

    async def kept(self, cid: str) -> list[Message] | None:
        """Chatroom ``cid``'s kept messages, oldest first, after every change this node
        made; None when there are none shared (alone, or Redis did not answer)."""


class Alone:
    """No other node: nothing to wait for."""

    several = False

    async def settle(self) -> None:
        await trio.lowlevel.checkpoint()

    async def published(self) -> None:
        await trio.lowlevel.checkpoint()

    async def hearing(self, cid: str) -> None:
        # A cancel point, not a reschedule: a join has just passed the conversation
        # lookup's checkpoint, and one more reschedule per join is what a crowd of
        # viewers coming in at once pays for it (~30 k instructions each).
        await trio.lowlevel.checkpoint_if_cancelled()

    def keep(self, message: Message, priority: Priority) -> None:
        pass

    def unkeep(self, message: Message) -> None:
        pass

    def forget_kept(self, cid: str) -> None:
        pass

    async def kept(self, cid: str) -> list[Message] | None:
        await trio.lowlevel.checkpoint()
        return None


@dataclass(frozen=True, slots=True)
class Ports:
    """The services' ways out, constructed by the server."""

    committer: Committer
    journal: Journal
    pusher: OfflinePush
    hooks: Hooks = field(default_factory=NoHooks)
    cluster: Cluster = field(default_factory=Alone)
