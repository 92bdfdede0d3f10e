"""Bounded memories of recent things: message dedupe keys and chatroom messages. Pure."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

from chatroom.core.model import Message
from chatroom.core.presence import Outlet


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
