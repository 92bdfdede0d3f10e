"""chatroom.net.redis_listen: what one read of the node's Redis connection brought is
fanned out with the node's flusher held, and written by the reading task itself when
the flusher is idle. No Redis: a connection that hands out prepared reads, a hub that
marks a recording connection per message, under ``autojump_clock``."""

from __future__ import annotations

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
    """What the listener needs of a RedisHub: each message heard goes to the viewer."""

    connected = True

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    def channel(self, kind: str, name: str) -> str:
        return f"chatroom:0:{kind}:{name}"

    def receive(self, data: bytes, now: float) -> None:
        self.viewer.push(data)


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


async def test_what_one_read_brings_is_written_by_the_reader_in_one_write(
    autojump_clock: trio.testing.MockClock,
) -> None:
    flusher = Flusher(write_delay=0.005, busy_threshold=100)
    viewer = Viewer(flusher)
    listener = Listener(cast(Any, Hub(viewer)), lambda: None)
    listener.flusher = flusher
    reads = Reads(viewer)
    async with trio.open_nursery() as nursery:
        await nursery.start(flusher.run)
        nursery.start_soon(listener.read, cast(Any, reads))
        await trio.testing.wait_all_tasks_blocked()
        reads.send.send_nowait([message("a"), message("b")])
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.writes == [[b"a", b"b"]]  # both messages, one write
        reads.send.send_nowait([message("c")])
        await trio.testing.wait_all_tasks_blocked()
        assert viewer.writes == [[b"a", b"b"], [b"c"]]
        # Each read's messages were written before the reader read again: by the reader.
        assert reads.writes_before == [0, 1, 2]
        nursery.cancel_scope.cancel()
