"""Messages sent with ``r: true`` that wait for their delivery receipt. Pure.

Delivery is in order, so a receiver's ack up to time T covers every earlier message of
the conversation: ``delivered`` hands back (and forgets) all of them from other senders.
Bounded: beyond ``size`` entries the oldest are forgotten (their receipt is never sent;
``lastDeliveredAt`` from ``conv/max_read`` still covers them).
``on_change`` hears of every entry added or delivered, so that the store keeps a copy
which ``restore`` brings back after a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from chatroom.core.model import Conversation, ConvType

RECEIPT_MEMBERS = 2  # receipts only where a conversation has at most this many members


def receipts_apply(conv: Conversation) -> bool:
    """Whether receipts are sent in ``conv``: normal or temporary, at most two members."""
    return (
        conv.kind in (ConvType.NORMAL, ConvType.TEMPORARY) and len(conv.members) <= RECEIPT_MEMBERS
    )


class Waiting(NamedTuple):
    mid: str
    timestamp: int
    sender: str


# Told of every change, to keep a copy that outlives the process: a message now waits
# (cid, mid, entry), or no longer does (cid, mid, None).
OnChange = Callable[[str, str, "Waiting | None"], None]


class ReceiptBook:
    def __init__(self, size: int, on_change: OnChange | None = None) -> None:
        self._size = size
        self._on_change = on_change
        # cid -> mid -> entry, in acceptance (= time) order
        self._by_cid: dict[str, dict[str, Waiting]] = {}
        self._order: deque[tuple[str, str]] = deque()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def want(self, cid: str, mid: str, timestamp: int, sender: str) -> None:
        """Remember a message whose sender asked for a receipt."""
        waiting = Waiting(mid, timestamp, sender)
        if self._add(cid, waiting) and self._on_change is not None:
            self._on_change(cid, mid, waiting)

    def restore(self, entries: Iterable[tuple[str, Waiting]]) -> None:
        """Entries that were waiting before a restart, oldest first (not told again)."""
        for cid, waiting in entries:
            self._add(cid, waiting)

    def _add(self, cid: str, waiting: Waiting) -> bool:
        if self._size <= 0:
            return False
        entries = self._by_cid.setdefault(cid, {})
        if waiting.mid in entries:
            return False
        entries[waiting.mid] = waiting
        mid = waiting.mid
        self._order.append((cid, mid))
        self._count += 1
        while self._count > self._size:
            self._forget_oldest()
        if len(self._order) > 2 * self._size + 16:
            # Entries removed by acks stay in the deque until here: compact.
            self._order = deque(k for k in self._order if k[1] in self._by_cid.get(k[0], {}))
        return True

    def delivered(self, cid: str, receiver: str, up_to: int) -> list[Waiting]:
        """Forget and return the waiting messages of ``cid`` from others, up to ``up_to``."""
        entries = self._by_cid.get(cid)
        if not entries:
            return []
        done = [w for w in entries.values() if w.timestamp <= up_to and w.sender != receiver]
        for w in done:
            del entries[w.mid]
            if self._on_change is not None:
                self._on_change(cid, w.mid, None)
        self._count -= len(done)
        if not entries:
            del self._by_cid[cid]
        return done

    def forget(self, cid: str, mid: str) -> None:
        """Another node delivered the receipt of ``mid`` (not told again)."""
        entries = self._by_cid.get(cid)
        if entries is not None and entries.pop(mid, None) is not None:
            self._count -= 1
            if not entries:
                del self._by_cid[cid]

    def timestamp_of(self, cid: str, mid: str) -> int | None:
        """The time of a waiting message (for acks that name a ``mid``)."""
        w = self._by_cid.get(cid, {}).get(mid)
        return None if w is None else w.timestamp

    def _forget_oldest(self) -> None:
        while self._order:
            cid, mid = self._order.popleft()
            entries = self._by_cid.get(cid)
            if entries is not None and mid in entries:
                del entries[mid]
                self._count -= 1
                if not entries:
                    del self._by_cid[cid]
                return
