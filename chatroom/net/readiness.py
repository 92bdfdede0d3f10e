"""Waiting for the connections' sockets to be readable: one edge-triggered epoll set
per trio run, each socket added once for its life.

``trio.lowlevel.wait_readable`` arms the socket in trio's epoll set at every wait
(``EPOLL_CTL_MOD`` with ``EPOLLONESHOT``, which fails with ENOENT on a new socket, then
``EPOLL_CTL_ADD``) and keeps a waiters record and an abort closure per waiting
socket. A login and a chatroom join wait three times: in a flash crowd these
system calls were a twentieth of the server's time. Here a socket is added once
(``EPOLLET``: an event each time data, the end or an error comes) and a wait is a
dict entry; one system task waits on this set's own descriptor (in trio's set) and
wakes the tasks whose sockets had events. An event that comes while nobody waits
is remembered (``_ready``), so that the next wait returns at once: edge-triggered,
it would not come again.

Linux only (``select.epoll``); elsewhere ``current()`` is None and the transport
waits through trio.
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

__all__ = ["Abort", "Readiness", "current"]

Abort = Callable[[Any], trio.lowlevel.Abort]  # what wait_task_rescheduled calls to cancel

_EVENTS = (select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET) if hasattr(select, "epoll") else 0
_BATCH = 1024  # events taken per wake of the system task


class Readiness:
    """The epoll set of one trio run, and who waits on which of its sockets."""

    __slots__ = ("_epoll", "_ready", "_waiting")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._waiting: dict[int, trio.lowlevel.Task] = {}
        # Sockets with an event since their last wait (or since they were added).
        self._ready: set[int] = set()

    def add(self, fd: int) -> bool:
        """Watch ``fd`` (a new socket) until it is closed; False if epoll refuses it."""
        self.forget(fd)  # a number reused: nothing of the closed socket's stays
        try:
            self._epoll.register(fd, _EVENTS)
        except FileExistsError:  # still in the set (a descriptor of it outlived it)
            self._epoll.modify(fd, _EVENTS)
        except OSError:
            return False
        return True

    def forget(self, fd: int) -> None:
        """``fd`` is about to close: a task waiting for it is woken with
        ``trio.ClosedResourceError`` (as ``trio.lowlevel.notify_closing`` does). Closing
        takes it out of the epoll set."""
        self._ready.discard(fd)
        task = self._waiting.pop(fd, None)
        if task is not None:
            error = trio.ClosedResourceError("another task closed this socket")
            trio.lowlevel.reschedule(task, outcome.Error(error))

    def wait_readable(self, fd: int, abort: Abort) -> Awaitable[None]:
        """Until ``fd`` (added) has had an event since the last wait returned: a
        checkpoint. ``abort``, called if the wait is cancelled, calls ``cancelled(fd)``
        (a bound method of the caller's, not a closure made at every wait: ~150 bytes
        less per idle connection). ``trio.BusyResourceError`` if another task waits
        for ``fd``. Not a coroutine of its own (one frame less while a connection
        waits, and at every wake): the caller awaits what it returns at once."""
        if fd in self._ready:
            return self._ready_now(fd)
        if fd in self._waiting:
            raise trio.BusyResourceError("another task is already reading this socket")
        self._waiting[fd] = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(abort)  # noqa: ASYNC105 (see above)

    async def _ready_now(self, fd: int) -> None:
        await trio.lowlevel.checkpoint()
        self._ready.discard(fd)  # after it: a cancelled wait keeps the event

    def interrupt(self, fd: int) -> bool:
        """Wake the task waiting for ``fd``, if one does, as if the socket had an event
        (a connection that closes stops its reader so, without a cancel scope): whether
        one did. What the reader finds in the socket then is its own to read; an event
        that comes later is kept for the next wait, as any."""
        task = self._waiting.pop(fd, None)
        if task is None:
            return False
        trio.lowlevel.reschedule(task)
        return True

    def cancelled(self, fd: int) -> trio.lowlevel.Abort:
        """The wait for ``fd`` was cancelled (its ``abort``)."""
        self._waiting.pop(fd, None)
        return trio.lowlevel.Abort.SUCCEEDED

    def _wake(self) -> None:
        waiting = self._waiting
        ready = self._ready
        for fd, _ in self._epoll.poll(0, _BATCH):
            task = waiting.pop(fd, None)
            if task is None:
                ready.add(fd)
            else:
                trio.lowlevel.reschedule(task)

    async def _run(self) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
                self._wake()
        finally:
            trio.lowlevel.notify_closing(self._epoll.fileno())
            self._epoll.close()


# On. It was off for a day (be12adc): one overload run (bench/ scenario `overload`)
# delivered half as much with it. That did not come again: on a quiet machine three
# paired runs each way gave the same 2.99M deliveries/s and HIGH p99 of 28-40 ms,
# and under a busy loop on the server's core both collapsed alike (0.4-2.6M/s). A
# watchdog that looked every 200 ms for a connection waiting here with bytes unread
# found none (2026-12-04, bench/README.md). False: every wait goes through trio's.
ENABLED = True

_CURRENT: trio.lowlevel.RunVar[Readiness | None] = trio.lowlevel.RunVar("readiness")


def current() -> Readiness | None:
    """This run's set (made, with its system task, at the first call), or None where
    there is no epoll or it is not ``ENABLED``."""
    try:
        return _CURRENT.get()
    except LookupError:
        pass
    readiness = Readiness() if _EVENTS and ENABLED else None
    _CURRENT.set(readiness)
    if readiness is not None:
        trio.lowlevel.spawn_system_task(readiness._run, name="chatroom.net.readiness")
    return readiness
