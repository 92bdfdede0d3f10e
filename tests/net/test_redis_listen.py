"""chatroom.net.redis_listen: what one read of the node's Redis connection brought is
fanned out with the node's flusher held, and written by the reading task itself when
the flusher is idle. No Redis: a connection that hands out prepared reads, a hub that
marks a recording connection per message, under ``autojump_clock``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import trio
import trio.testing

from chatroom.net import resp
from chatroom.net.flusher import Flusher
from chatroom.net.redis_listen import Listener


class Viewer:
    """A connection of node B: the frames it was handed, and each flush's share."""

    def __init__(self, flusher: Flusher) -> None:
        self.flusher = flusher
        self.queued: list[bytes] = []
        self.writes: list[list[bytes]] = []

    def push(self, frame: bytes) -> None:
        if not self.queued:
            self.flusher.mark(self)
        self.queued.append(frame)

    def flush_nowait(self) -> int:
        self.writes.append(self.queued)
        self.queued = []
        return len(self.writes[-1])


class Hub:
    """What the listener needs of a RedisHub: each message heard goes to the viewer; one
    that ends with ``|`` was paced by its sender (redis_wire.PACED)."""

    connected = True

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.paced = False

    def channel(self, kind: str, name: str) -> str:
        return f"chatroom:0:{kind}:{name}"

    def receive(self, data: bytes, now: float) -> None:
        self.viewer.push(data)
        self.paced |= data.endswith(b"|")


class Reads:
    """A connection whose every read brings the next list of replies; notes how many
    writes the viewer had got as each read began."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer
        self.send, self.receive = trio.open_memory_channel[list[resp.Reply]](10)
        self.writes_before: list[int] = []

    async def read_all(self) -> list[resp.Reply]:
        self.writes_before.append(len(self.viewer.writes))
        return await self.receive.receive()


def message(text: str) -> resp.Reply:
    return [b"message", b"chatroom:0:room:r1", text.encode()]


@asynccontextmanager
async def _reading(flusher: Flusher) -> AsyncIterator[tuple[Listener, Viewer, Reads]]:
    """Node B's flusher and a listener reading ``Reads``, both running; stopped after."""
    viewer = Viewer(flusher)
    listener = Listener(cast(Any, Hub(viewer)), lambda: None)
    listener.flusher = flusher
    reads = Reads(viewer)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        nursery.start_soon(listener.read, cast(Any, reads))
        await trio.testing.wait_all_tasks_blocked()
        yield listener, viewer, reads
        nursery.cancel_scope.cancel()


async def test_what_one_read_brings_is_written_by_the_reader_in_one_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flusher = Flusher(write_delay=0.005, busy_threshold=100)
    async with _reading(flusher) as (_, viewer, reads):
        reads.send.send_nowait([message("a"), message("b")])
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.writes == [[b"a", b"b"]]  # both messages, one write
        reads.send.send_nowait([message("c")])
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.writes == [[b"a", b"b"], [b"c"]]
        # Each read's messages were written before the reader read again: by the reader.
        assert reads.writes_before == [0, 1, 2]


async def test_a_read_paced_by_its_sender_is_written_at_once_in_a_pause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # After a busy write the node pauses 10 ms; a message read meanwhile waits for the
    # pause's end, unless a PUBLISH of the read was paced by the sending node (held
    # until its own flush): then all of it is written at once.
    flusher = Flusher(write_delay=0.01, busy_threshold=1)
    written: list[int] = []
    async with _reading(flusher) as (listener, viewer, reads):
        start = trio.current_time()
        for replies in ([message("a")], [message("b")], [message("c|")]):
            reads.send.send_nowait(replies)
            await trio.testing.wait_all_tasks_blocked()
            written.append(len(viewer.writes))
        assert written == [1, 1, 2]  # "b" waits for the pause; "c|" takes it along
        assert viewer.writes == [[b"a"], [b"b", b"c|"]]
        assert trio.current_time() == start  # no time passed: at once
        assert listener.hub.paced is False  # the reader took it
