"""The read deadlines of connections, the login deadline (4108) and the idle deadline
(4107), kept by one task per server rather than by each connection's read scope.

A deadline in a connection's read scope is an entry in trio's heap, made when the
scope starts and made again whenever the deadline moves (every frame moves the idle
one); a flash crowd paid for it at every connection and login. Here a connection is
an entry in one of the server's *slots*, the instants ``grain`` apart at which the
task looks at the connections in it. A connection is put in the slot at or after the
time it is due (``due``: its idle deadline, or its login deadline while it has no
session, whichever comes first), and nothing moves as frames come: when its slot
comes, a connection that is not due yet (a frame came meanwhile) goes to the slot of
its new due time; one that is due is closed. So a connection is closed at its
deadline or at most ``grain`` later, never before; a frame costs no deadline move,
and a connection's entry moves once per idle timeout at most.

``grain`` is a sixty-fourth of the shorter timeout, and a second at most (the
defaults: a second). The task ends once no connection is watched, and the next one
starts it again.
"""

from __future__ import annotations

import math
from typing import Protocol

import trio

__all__ = ["Slot", "Watched", "forget", "sooner", "watch"]

_MAX_GRAIN = 1.0  # seconds between two slots, at most
_PARTS = 64  # slots per shorter timeout, at least
_MIN_GRAIN = 0.001  # (a timeout of 0: closed at the next slot, a millisecond later)
_TURN = 512  # connections looked at between two checkpoints (~0.5 ms)


class Watched(Protocol):
    """A connection with read deadlines. ``deadline_slot`` belongs to this module."""

    deadline_slot: Slot | None

    def due(self) -> float:
        """When it is to be closed, as things stand (trio's clock)."""

    def expired(self) -> None:
        """Its ``due`` time came: it closes (4107 or 4108, as it knows)."""


class Slot:
    """The connections the task looks at when ``at`` comes (trio's clock)."""

    __slots__ = ("at", "members", "watch")

    def __init__(self, watch: _Watch, at: float) -> None:
        self.watch = watch
        self.at = at
        self.members: dict[Watched, None] = {}


class _Watch:
    """The connections of one server (one nursery), by slot."""

    __slots__ = ("_grain", "_key", "_next", "_scope", "_slots")

    def __init__(self, nursery: trio.Nursery, key: int, grain: float) -> None:
        self._key = key
        self._grain = grain
        self._slots: dict[int, Slot] = {}
        self._next = 0  # the first slot not looked at yet: none is made before it
        # While the task sleeps until its first slot: that sleep's scope, whose
        # deadline an earlier new slot moves.
        self._scope: trio.CancelScope | None = None
        nursery.start_soon(self._run)

    def put(self, conn: Watched, due: float) -> None:
        """Watch ``conn`` (in no slot now) from the slot at or after ``due``."""
        if due == math.inf:  # both timeouts infinite: never closed
            return
        index = max(int(due / self._grain) + 1, self._next)
        slot = self._slots.get(index)
        if slot is None:
            slot = self._slots[index] = Slot(self, index * self._grain)
            scope = self._scope
            if scope is not None and slot.at < scope.deadline:
                scope.deadline = slot.at
        slot.members[conn] = None
        conn.deadline_slot = slot

    async def _run(self) -> None:  # noqa: ASYNC910 (it ends at once if nothing is watched)
        # It ends with no await between finding no slot and leaving the table of
        # watches: a connection watched after that starts a new one.
        try:
            slots = self._slots
            while slots:
                index = min(slots)
                slot = slots[index]
                if trio.current_time() < slot.at:
                    with trio.CancelScope(deadline=slot.at) as self._scope:
                        await trio.sleep_forever()
                    self._scope = None
                    continue
                del slots[index]
                self._next = index + 1
                now = trio.current_time()
                members = slot.members
                looked = 0
                while members:  # (one ending meanwhile is taken out of it)
                    conn = members.popitem()[0]
                    conn.deadline_slot = None
                    due = conn.due()
                    if due <= now:
                        conn.expired()
                    else:
                        self.put(conn, due)
                    looked += 1
                    if looked % _TURN == 0:
                        # A crowd that came in one second shares a slot: give way
                        # now and then, not one pass for all of them.
                        await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
        finally:
            watches = _WATCHES.get()
            if watches.get(self._key) is self:
                del watches[self._key]


# The watch of each nursery that serves connections, by the nursery's id, while its
# task runs (it removes itself as it ends, and before its nursery can be gone).
_WATCHES: trio.lowlevel.RunVar[dict[int, _Watch]] = trio.lowlevel.RunVar("read_deadlines")


def watch(conn: Watched, nursery: trio.Nursery, login_timeout: float, idle_timeout: float) -> None:
    """Close ``conn`` (watched by no server yet) when its ``due`` time comes (at most a
    sixty-fourth of the shorter timeout later), unless ``forget`` comes first.
    ``nursery`` is the server's: its connections share one watch, and one ``grain``."""
    try:
        watches = _WATCHES.get()
    except LookupError:
        watches = {}
        _WATCHES.set(watches)
    found = watches.get(id(nursery))
    if found is None:
        grain = max(_MIN_GRAIN, min(_MAX_GRAIN, min(login_timeout, idle_timeout) / _PARTS))
        found = watches[id(nursery)] = _Watch(nursery, id(nursery), grain)
    found.put(conn, conn.due())


def sooner(conn: Watched) -> None:
    """``conn``'s ``due`` time may have come nearer (its last session ended: the login
    deadline holds again): it is looked at by then."""
    slot = conn.deadline_slot
    if slot is None:
        return  # not watched (ended), or its slot is being looked at right now
    due = conn.due()
    if due < slot.at - slot.watch._grain:
        del slot.members[conn]
        slot.watch.put(conn, due)


def forget(conn: Watched) -> None:
    """``conn`` ended: no deadline closes it any more."""
    slot = conn.deadline_slot
    if slot is not None:
        conn.deadline_slot = None
        del slot.members[conn]
