"""What services are handed to reach outside the process: interfaces, not I/O modules.

The server (chatroom/net/server.py) constructs the concrete ones, the group committer
(net/committer.py), the lasting-state journal (net/journal.py) and the offline-push
webhook (http/push_webhook.py), and hands them in as ``Ports``; a test may hand in
fakes. Every method returns at once: the work is queued for a task of the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from chatroom.core.model import (
    JSON,
    ConvEventRecord,
    Message,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)

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


@dataclass(frozen=True, slots=True)
class Ports:
    """The services' ways out, constructed by the server."""

    committer: Committer
    journal: Journal
    pusher: OfflinePush
