"""A Python client for chatroom's flat JSON protocol.

``connect`` gives an async ``Client`` on Trio; ``SyncClient`` is the same behind
blocking calls. Events (``Message``, ``ConvEvent``, ``Receipt``, ``Unread``,
``Patch``, ``Shed``, ``StateChange``, ``Other``) come from ``Client.events()``. See
``chatroom.client.trio_client`` for an example.
"""

from __future__ import annotations

from chatroom.client.events import (
    ConvEvent,
    Event,
    Message,
    Other,
    Patch,
    Receipt,
    Shed,
    StateChange,
    Unread,
    UnreadCount,
)
from chatroom.client.sync import SyncClient
from chatroom.client.trio_client import (
    Client,
    ConnectionLost,
    Options,
    RequestError,
    Sent,
    connect,
)

__all__ = [
    "Client",
    "ConnectionLost",
    "ConvEvent",
    "Event",
    "Message",
    "Options",
    "Other",
    "Patch",
    "Receipt",
    "RequestError",
    "Sent",
    "Shed",
    "StateChange",
    "SyncClient",
    "Unread",
    "UnreadCount",
    "connect",
]
