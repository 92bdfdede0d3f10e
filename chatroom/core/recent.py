"""Bounded memories of recent things: message dedupe keys and chatroom messages. Pure."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatroom.core.model import Message
from chatroom.core.presence import Outlet

V = TypeVar("V")


class RecentlyUsed(Generic[V]):
    """Records by key, the most recently used kept (bounded: the least recently used
    is forgotten first). ``drops`` counts ``drop`` calls: a load from the store that
    began before a drop is stale, and its caller does not ``keep`` it."""

    def __init__(self, size: int) -> None:
        self._size = max(size, 1)
        self._items: OrderedDict[str, V] = OrderedDict()
        self.drops = 0

    def get(self, key: str) -> V | None:
        """The record, now the most recently used."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def peek(self, key: str) -> V | None:
        """The record, its place in the order unchanged."""
        return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        self._trim()

    def keep(self, key: str, value: V) -> V:
        """Remember ``value`` unless another one was remembered meanwhile (a concurrent
        load): the one to use."""
        kept = self._items.setdefault(key, value)
        self._items.move_to_end(key)
        self._trim()
        return kept

    async def load(self, key: str, read: Callable[[], Awaitable[V | None]]) -> V | None:
        """What ``read()`` (from the store) gives for ``key``, remembered unless a
        ``drop`` came while it read (the record may have changed after the read: it is
        used once, not kept), or a concurrent load remembered one first (that one)."""
        drops = self.drops
        loaded = await read()
        if loaded is None or drops != self.drops:
            return loaded
        return self.keep(key, loaded)

    def drop(self, key: str | None) -> None:
        """Forget ``key`` (everything for None): read from the store next time."""
        self.drops += 1
        if key is None:
            self._items.clear()
        else:
            self._items.pop(key, None)

    def _trim(self) -> None:
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class Pending:
    """A dedupe entry: the first message with a ``dt``, and resends waiting for it."""

    mid: str
    timestamp: int
    waiting: list[tuple[Outlet, int | None]] | None = field(default_factory=list)


class Dedupe:
    """Recent ``(sender, conversation, dt)`` keys, bounded (oldest forgotten)."""

    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[tuple[str, str, str], Pending] = OrderedDict()

    def get(self, key: tuple[str, str, str]) -> Pending | None:
        return self._items.get(key)

    def add(self, key: tuple[str, str, str], entry: Pending) -> None:
        self._items[key] = entry
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def remember(self, message: Message) -> None:
        """A stored message's key, already committed (nothing waits for it)."""
        if message.dedupe_token:
            key = (message.from_peer, message.cid, message.dedupe_token)
            self.add(key, Pending(message.mid, message.timestamp, waiting=None))

    def discard(self, key: tuple[str, str, str]) -> None:
        self._items.pop(key, None)


class RoomBuffers:
    """The last messages of each chatroom, for ``logs`` (bounded per room)."""

    def __init__(self, size: int):
        self._size = size
        self._rooms: dict[str, deque[Message]] = {}

    def add(self, message: Message) -> None:
        buffer = self._rooms.get(message.cid)
        if buffer is None:
            buffer = self._rooms[message.cid] = deque(maxlen=self._size)
        buffer.append(message)

    def messages(self, cid: str) -> list[Message]:
        return list(self._rooms.get(cid, ()))

    def forget(self, cid: str) -> None:
        self._rooms.pop(cid, None)

    def find(self, cid: str, mid: str) -> Message | None:
        return next((m for m in self._rooms.get(cid, ()) if m.mid == mid), None)

    def discard(self, cid: str, mid: str) -> None:
        buffer = self._rooms.get(cid)
        message = self.find(cid, mid)
        if buffer is not None and message is not None:
            buffer.remove(message)
