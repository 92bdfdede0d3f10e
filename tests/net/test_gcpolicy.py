"""chatroom.net.gcpolicy: long-lived objects are frozen out of the automatic collections,
and their reference cycles are still freed by the policy's own full passes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio
import trio.testing
from helpers import running_server

from chatroom.net.gcpolicy import GcPolicy, _glibc_malloc_trim


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@contextmanager
def _no_automatic_collection() -> Iterator[None]:
    """Only explicit collections (the policy's, the test's) while the block runs; the
    collector as it was after it."""
    automatic = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if automatic:
            gc.enable()


async def test_frozen_cycles_survive_collections_until_a_full_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = GcPolicy(freeze_interval=1.0, full_after_closes=3, full_interval=0)
    # No automatic pass may free the cycle before the round freezes it: one ran now and
    # then when the tests before left the young generation near its threshold.
    with _no_automatic_collection():
        ref = _cycle()  # unreachable already: a plain collection would free it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(policy.run)
            await trio.sleep(1.5)  # one round: frozen
            assert gc.get_freeze_count() > 0
            gc.collect()
            assert ref() is not None  # the collector no longer walks it
            for _ in range(3):
                policy.connection_closed()
            await trio.sleep(1.0)  # the next round is a full pass
            assert policy.full_passes == 1
            assert ref() is None
            nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0  # everything handed back when the server stops


async def test_full_pass_after_the_interval_without_closes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = GcPolicy(freeze_interval=1.0, full_after_closes=1000, full_interval=10.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run)
        await trio.sleep(9.5)
        assert policy.full_passes == 0
        await trio.sleep(1.0)
        assert policy.full_passes == 1
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0


async def test_zero_interval_leaves_the_collector_alone() -> None:
    policy = GcPolicy(freeze_interval=0, full_after_closes=1, full_interval=1.0)
    assert not policy.enabled
    with trio.fail_after(1):
        await policy.run()  # returns at once
    assert gc.get_freeze_count() == 0


glibc_only = pytest.mark.skipif(_glibc_malloc_trim() is None, reason="malloc_trim is glibc's")


@glibc_only
@pytest.mark.parametrize("freeze_interval", [1.0, 0.0])
async def test_memory_is_returned_once_after_enough_closes(
    autojump_clock: trio.testing.MockClock, freeze_interval: float
) -> None:
    policy = GcPolicy(freeze_interval, full_after_closes=1000, full_interval=0, trim_after_closes=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run)
        await trio.sleep(1.5)
        for _ in range(2):
            policy.connection_closed()
        await trio.sleep(1.0)
        assert policy.trims == 0  # two closes are not worth it
        policy.connection_closed()
        await trio.sleep(1.0)
        assert policy.trims == 1
        await trio.sleep(10.0)
        assert policy.trims == 1  # nothing closed since
        nursery.cancel_scope.cancel()
    assert gc.get_freeze_count() == 0


async def test_no_trimming_when_turned_off() -> None:
    policy = GcPolicy(
        freeze_interval=0, full_after_closes=1, full_interval=1.0, trim_after_closes=0
    )
    policy.connection_closed()
    assert not policy.trim_due()
    with trio.fail_after(1):
        await policy.run()  # returns at once: nothing to do


@glibc_only
async def test_half_open_handshakes_that_close_get_their_memory_returned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Connections that never finish their handshake are memory to return like any
    # other: a burst of them must not stay in the heap until served ones close.
    async with running_server({"malloc_trim_after_closes": 5, "handshake_timeout": 30}) as running:
        policy = running.server.gc
        streams = []
        for _ in range(5):
            stream = await trio.open_tcp_stream("127.0.0.1", running.ws_port)
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            streams.append(stream)
        await trio.sleep(2.0)
        assert policy.trims == 0  # none closed yet
        for stream in streams:
            await stream.aclose()
        await trio.sleep(2.0)
        assert policy.trims == 1
        assert policy.full_passes == 0  # they left no cycles to collect


@glibc_only
async def test_a_trim_also_frees_what_is_not_frozen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The trim runs a collection of the unfrozen objects (it empties the interpreter's
    # free lists, which keep arenas from being returned); garbage made since the last
    # round goes with it, even with the automatic collector off.
    policy = GcPolicy(1.0, full_after_closes=1000, full_interval=0, trim_after_closes=1)
    with _no_automatic_collection():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(policy.run)
            await trio.sleep(1.5)
            ref = _cycle()
            policy.unserved_closed()
            await trio.sleep(1.0)
            assert policy.trims == 1
            assert ref() is None
            nursery.cancel_scope.cancel()


def _passes_while(generation: int, build: list[list[int]], keep_garbage: bool = True) -> int:
    """Automatic collections of ``generation`` while 300,000 containers that stay
    alive are made (a crowd of connections, in effect); after a full collection
    unless ``keep_garbage`` (no garbage left from before, which a pass would find)."""
    passes: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == generation:
            passes.append(1)

    if not keep_garbage:
        gc.collect()
    gc.callbacks.append(seen)
    try:
        build.extend([k] for k in range(300_000))
    finally:
        gc.callbacks.remove(seen)
    return len(passes)


async def test_the_collector_never_walks_a_crowd_of_new_connections_while_the_policy_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert _passes_while(2, []) > 0  # what the collector does on its own
    thresholds = gc.get_threshold()
    policy = GcPolicy(freeze_interval=100.0, full_after_closes=1000, full_interval=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run)
        await trio.sleep(1.0)  # running, before its first round
        assert _passes_while(2, []) == 0
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == thresholds  # handed back when the server stops


async def test_a_crowd_of_new_connections_is_walked_by_one_middle_pass_a_round(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert _passes_while(1, [], keep_garbage=False) > 10  # what the collector does on its own
    thresholds = gc.get_threshold()
    policy = GcPolicy(freeze_interval=1.0, full_after_closes=1000, full_interval=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run)
        await trio.sleep(0.5)  # running, before its first round
        # The first middle pass freed nothing: none more until the next round.
        assert _passes_while(1, [], keep_garbage=False) == 1
        await trio.sleep(1.0)  # a round: on again
        assert _passes_while(1, [], keep_garbage=False) == 1
        nursery.cancel_scope.cancel()
    assert gc.get_threshold() == thresholds  # handed back when the server stops


async def test_a_cycle_that_outlived_a_young_pass_is_freed_by_a_middle_pass_meanwhile(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = GcPolicy(freeze_interval=100.0, full_after_closes=1000, full_interval=0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(policy.run)
        await trio.sleep(0.5)  # running, before its first round
        held = [_cycle() for _ in range(10)]
        cycles = [ref() for ref in held]
        gc.collect(0)  # a young pass: they are in the middle generation now
        del cycles  # garbage there
        assert _passes_while(1, []) >= 1
        assert all(ref() is None for ref in held)  # freed, not left to the freeze
        nursery.cancel_scope.cancel()
