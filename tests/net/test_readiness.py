"""chatroom.net.readiness: waiting for sockets in one edge-triggered epoll set, over
real socket pairs. Every test under ``fail_after``."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from helpers import fail_after

from chatroom.net import readiness
from chatroom.net.readiness import Readiness

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux's")

Pair = tuple[socket.socket, socket.socket]


@pytest.fixture
def pair() -> Iterator[Pair]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


@pytest.fixture(autouse=True)
def _enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readiness, "ENABLED", True)  # (whatever the default)


def _current() -> Readiness:
    found = readiness.current()
    assert found is not None
    return found


async def _wait(ready: Readiness, sock: socket.socket) -> None:
    fd = sock.fileno()
    await ready.wait_readable(fd, lambda _: ready.cancelled(fd))


@fail_after()
async def test_a_wait_returns_once_bytes_come(pair: Pair) -> None:
    ours, theirs = pair
    ready = _current()
    assert ready.add(ours.fileno())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait, ready, ours)
        await trio.testing.wait_all_tasks_blocked()
        theirs.send(b"x")
    assert ours.recv(10) == b"x"


@fail_after()
async def test_an_event_while_nobody_waits_is_kept_for_the_next_wait(pair: Pair) -> None:
    # Edge-triggered: the bytes came before the wait, and no event would come again.
    ours, theirs = pair
    ready = _current()
    ready.add(ours.fileno())
    theirs.send(b"x")
    await trio.testing.wait_all_tasks_blocked()  # the set's task took the event
    await _wait(ready, ours)
    # A wait cancelled before it returned keeps the event for the next one.
    theirs.send(b"y")
    await trio.testing.wait_all_tasks_blocked()
    with trio.CancelScope() as scope:
        scope.cancel()
        await _wait(ready, ours)
    assert scope.cancelled_caught
    await _wait(ready, ours)


@fail_after()
async def test_a_cancelled_wait_leaves_the_socket_to_the_next(
    pair: Pair, autojump_clock: trio.testing.MockClock
) -> None:
    ours, theirs = pair
    ready = _current()
    ready.add(ours.fileno())
    with trio.move_on_after(1) as scope:
        await _wait(ready, ours)  # nothing comes
    assert scope.cancelled_caught
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait, ready, ours)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await _wait(ready, ours)
        theirs.send(b"x")


@fail_after()
async def test_forgetting_a_socket_wakes_its_waiter_with_closed_resource_error(
    pair: Pair,
) -> None:
    ours, _ = pair
    ready = _current()
    ready.add(ours.fileno())
    failed: list[BaseException] = []

    async def wait() -> None:
        try:
            await _wait(ready, ours)
        except trio.ClosedResourceError as exc:
            failed.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        ready.forget(ours.fileno())
    assert len(failed) == 1


@fail_after()
async def test_an_interrupted_wait_returns_and_a_later_event_is_kept_for_the_next(
    pair: Pair,
) -> None:
    ours, theirs = pair
    ready = _current()
    ready.add(ours.fileno())
    assert not ready.interrupt(ours.fileno())  # nobody waits
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_wait, ready, ours)
        await trio.testing.wait_all_tasks_blocked()
        assert ready.interrupt(ours.fileno())  # it returns, with nothing to read
    theirs.send(b"x")
    await trio.testing.wait_all_tasks_blocked()  # the event comes while nobody waits
    await _wait(ready, ours)  # returns at once
    assert ours.recv(10) == b"x"


@fail_after()
async def test_a_reused_descriptor_starts_with_no_event_of_the_closed_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ready = _current()
    a, b = socket.socketpair()
    ready.add(a.fileno())
    b.send(b"x")
    await trio.testing.wait_all_tasks_blocked()  # an event is kept for a's number
    a.close()  # without forget: nothing told the set
    b.close()
    c, d = socket.socketpair()
    try:
        ready.add(c.fileno())
        with trio.move_on_after(1) as scope:
            await _wait(ready, c)  # nothing came for the new socket
        assert scope.cancelled_caught
    finally:
        c.close()
        d.close()
