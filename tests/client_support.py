"""What the Python client's tests share: fast reconnection options and waiting for the
next message among a client's events."""

from __future__ import annotations

from chatroom.client import (
    Event,
    Message,
    Options,
)
from chatroom.client.trio_client import Client

FAST = Options(first_backoff=0.01, max_backoff=0.05, request_timeout=5, connect_timeout=5)


async def next_message(client: Client) -> Message:
    event = await next_of(client, Message)
    assert isinstance(event, Message)
    return event


async def next_of(client: Client, kind: type[Event]) -> Event:
    """The next event of type ``kind`` (the others before it are skipped)."""
    while True:
        event = await client.next_event()
        if isinstance(event, kind):
            return event
