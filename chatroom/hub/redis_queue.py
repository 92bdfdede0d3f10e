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
they go with; a chatroom message's ``KEEP`` and its PUBLISH are kept or shed together
(a message in the list that no viewer saw live, or the reverse, would be neither a
live message nor the recent history).
"""

from __future__ import annotations

from collections import deque

from chatroom.core.outbox import Priority

PUBLISH, KEEP, UNKEEP, FORGET = "publish", "keep", "unkeep", "forget"


class Entry:
    """One record for one channel (``op``: what the link does with it)."""

    __slots__ = ("channel", "op", "partner", "record", "sheddable")

    def __init__(
        self, channel: str, record: bytes, sheddable: bool, op: str, partner: Entry | None
    ) -> None:
        self.channel = channel
        self.record = record
        self.sheddable = sheddable
        self.op = op
        self.partner = partner  # kept or shed with this one (a message's KEEP and PUBLISH)


class Outgoing:
    __slots__ = ("_entries", "capacity", "lost", "patient", "queued", "shed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: deque[Entry] = deque()
        self.queued = 0  # entries accepted
        self.shed = 0  # sheddable chatroom pushes dropped at the bound
        self.lost = 0  # others dropped: the queue held nothing sheddable
        # Every entry queued since the last ``take`` may wait for this node's next
        # busy flush (``offer``'s ``patient``): the link may then hold them.
        self.patient = True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def last(self) -> Entry | None:
        """The entry queued last, if it is still queued."""
        return self._entries[-1] if self._entries else None

    def offer(
        self,
        channel: str,
        record: bytes,
        priority: Priority,
        op: str = PUBLISH,
        partner: Entry | None = None,
        *,
        patient: bool = False,
    ) -> Entry | None:
        """Queue a record; None when it was dropped (see the module docstring). With
        ``partner`` (queued last, of the same priority), the two are kept or shed
        together: this one dropped takes the partner out of the queue too.
        ``patient``: a chatroom's record that this node's own viewers read no sooner
        than its next flush (net/redis_link.py holds such records until then)."""
        self.patient &= patient
        sheddable = priority >= Priority.NORMAL
        entries = self._entries
        if len(entries) >= self.capacity:
            if sheddable:
                self.shed += 1
                if partner is not None and entries and entries[-1] is partner:
                    entries.pop()
                    self.shed += 1
                return None
            victim = next((e for e in entries if e.sheddable), None)
            if victim is None:
                self.lost += 1
                return None
            entries.remove(victim)
            self.shed += 1
            if victim.partner is not None and victim.partner in entries:
                entries.remove(victim.partner)
                self.shed += 1
        entry = Entry(channel, record, sheddable, op, partner)
        if partner is not None:
            partner.partner = entry
        entries.append(entry)
        self.queued += 1
        return entry

    def take(self) -> list[Entry]:
        taken = list(self._entries)
        self._entries.clear()
        self.patient = True
        return taken

    def drop_all(self) -> int:
        """Forget everything queued (Redis is gone); how many entries that was."""
        count = len(self._entries)
        self._entries.clear()
        self.patient = True
        self.lost += count
        return count
