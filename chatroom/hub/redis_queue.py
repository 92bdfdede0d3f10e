"""The bounded queue of what a node has to PUBLISH. Pure.

Hub methods never wait: they append here, and the node's link to Redis takes the
whole queue at its next drain. Each entry is one channel and one record; entries of
one push that must reach several nodes share a drain (and so one MULTI/EXEC).

At ``capacity`` entries, what gives is defined and counted:

- a sheddable chatroom push (NORMAL or LOW) that arrives is dropped (``shed``);
- anything else (a HIGH chatroom push, a reliable push, a kick, a will) takes the
  place of the oldest queued sheddable entry (``shed`` again); only when none is
  left is it dropped itself (``lost``), which Redis not keeping up at all causes.

HIGH is never dropped to make room for anything else.

Most entries are PUBLISHes (``PUBLISH``); the others change a chatroom's kept messages
(its Redis list, docs/cluster.md): ``KEEP`` appends a message, ``UNKEEP`` removes one,
``FORGET`` deletes the list. They share the queue, and so the transaction, of the push
they go with.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from chatroom.core.outbox import Priority

PUBLISH, KEEP, UNKEEP, FORGET = "publish", "keep", "unkeep", "forget"


@dataclass(frozen=True, slots=True)
class Entry:
    channel: str
    record: bytes
    sheddable: bool
    op: str = PUBLISH


class Outgoing:
    __slots__ = ("_entries", "capacity", "lost", "queued", "shed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: deque[Entry] = deque()
        self.queued = 0  # entries accepted
        self.shed = 0  # sheddable chatroom pushes dropped at the bound
        self.lost = 0  # others dropped: the queue held nothing sheddable

    def __len__(self) -> int:
        return len(self._entries)

    def offer(self, channel: str, record: bytes, priority: Priority, op: str = PUBLISH) -> bool:
        """Queue a record; False when it was dropped (see the module docstring)."""
        sheddable = priority >= Priority.NORMAL
        entries = self._entries
        if len(entries) >= self.capacity:
            if sheddable:
                self.shed += 1
                return False
            victim = next((e for e in entries if e.sheddable), None)
            if victim is None:
                self.lost += 1
                return False
            entries.remove(victim)
            self.shed += 1
        entries.append(Entry(channel, record, sheddable, op))
        self.queued += 1
        return True

    def take(self) -> list[Entry]:
        taken = list(self._entries)
        self._entries.clear()
        return taken

    def drop_all(self) -> int:
        """Forget everything queued (Redis is gone); how many entries that was."""
        count = len(self._entries)
        self._entries.clear()
        self.lost += count
        return count
