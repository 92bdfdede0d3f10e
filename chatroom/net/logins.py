"""The login deadline (4108) of connections without a session, kept by one task per
server rather than by each connection's read scope.

A connection's read scope has its idle deadline only (net/inbound.py): were the login
deadline its deadline until the login, every login would move it (a trio deadline
move, its heap entry and the collector's work on it: about 20 k instructions a login
in a flash crowd). Here a connection waiting for its login is an entry in a dict, in
the order they started waiting (their deadlines are now plus the same timeout, so that
is their order too); one task sleeps until the first deadline and closes the
connections whose deadline came. A login removes the entry (a dict deletion); the
task ends once nothing waits when it wakes, and the next connection starts it again.
"""

from __future__ import annotations

from typing import Protocol

import trio

__all__ = ["Waiting", "logged_in", "waiting"]


class Waiting(Protocol):
    """A connection without a session, closed at its login deadline."""

    @property
    def login_deadline(self) -> float: ...

    def login_expired(self) -> None:
        """Its deadline came with no session: it closes (4108)."""


class _Watch:
    """The connections of one server (one nursery) waiting for their login."""

    __slots__ = ("_key", "_nursery", "waiting")

    def __init__(self, nursery: trio.Nursery, key: int) -> None:
        self._nursery = nursery
        self._key = key
        self.waiting: dict[Waiting, None] = {}
        nursery.start_soon(self._run)

    async def _run(self) -> None:  # noqa: ASYNC910 (it waits whenever a connection does)
        # It ends with no await between finding nothing waiting and leaving the table
        # of watches: a connection that starts waiting after that starts a new one.
        try:
            waiting = self.waiting
            while waiting:
                first = next(iter(waiting))
                if trio.current_time() >= first.login_deadline:
                    del waiting[first]
                    first.login_expired()
                else:
                    await trio.sleep_until(first.login_deadline)
        finally:
            watches = _WATCHES.get()
            if watches.get(self._key) is self:
                del watches[self._key]


# The watch of each nursery that serves connections, by the nursery's id, while its
# task runs (it removes itself as it ends, and before its nursery can be gone).
_WATCHES: trio.lowlevel.RunVar[dict[int, _Watch]] = trio.lowlevel.RunVar("login_watches")


def _watches() -> dict[int, _Watch]:
    try:
        return _WATCHES.get()
    except LookupError:
        watches: dict[int, _Watch] = {}
        _WATCHES.set(watches)
        return watches


def waiting(conn: Waiting, nursery: trio.Nursery) -> None:
    """``conn`` has no session (it just opened, or its last session ended): it is closed
    at its ``login_deadline`` unless ``logged_in`` comes first. Its deadline is the
    latest of all: it goes last."""
    watches = _watches()
    watch = watches.get(id(nursery))
    if watch is None:
        watch = watches[id(nursery)] = _Watch(nursery, id(nursery))
    watch.waiting.pop(conn, None)
    watch.waiting[conn] = None


def logged_in(conn: Waiting, nursery: trio.Nursery | None) -> None:
    """``conn`` no longer waits for a login (it has a session, or it ended)."""
    if nursery is None:
        return
    try:
        watches = _WATCHES.get()
    except (LookupError, RuntimeError):  # none yet, or not in a run: nothing waits
        return
    watch = watches.get(id(nursery))
    if watch is not None:
        watch.waiting.pop(conn, None)
