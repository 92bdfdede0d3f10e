"""What tests using the Python client share: fast reconnection options, logged-in
clients, a conversation of them, and waiting for (or collecting) their messages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from chatroom.client import (
    Event,
    Message,
    Options,
    connect,
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


async def messages_so_far(client: Client) -> list[Message]:
    """An echo round trip, then every message pushed before it, not read yet (other
    events are dropped)."""
    await client.echo()
    return [event for event in client.pending() if isinstance(event, Message)]


@asynccontextmanager
async def clients(url: str, *peer_ids: str) -> AsyncIterator[list[Client]]:
    """One logged-in ``chatroom.client`` per peer id."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(connect(url, p, FAST)) for p in peer_ids]


async def conversation_of(creator: Client, *others: Client) -> str:
    """A normal conversation of every client, its member events read; its cid."""
    cid = await creator.create_conversation([c.peer_id for c in others])
    for client in (creator, *others):
        await client.echo()
        client.pending()
    return cid
