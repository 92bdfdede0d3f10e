"""The flush of one chatroom's followers (protocol/roomlog.py): the frames appended
since they were last written, joined once per group, written to every follower's
socket.

This loop is the fan-out's hot path: per follower it is one non-blocking ``write``
and a comparison, nothing else (no per-connection object is touched). A follower
whose socket took less than everything (or failed) is handed the rest after the loop,
and becomes a straggler with a writer task of its own (``Connection.fell_behind``).

A room with more followers than the flusher's slice is written a slice per call: the
writer asks the flusher for another turn in the same cycle (``Flusher.again``), after
the other tasks ran, and the followers not reached yet then get the frames appended
meanwhile too. The groups to write are fixed when a cycle reaches the room; a frame
appended after that asks for the next cycle, as for any connection.
"""

from __future__ import annotations

import itertools
import os
import sys
from typing import TYPE_CHECKING, Any

from chatroom.protocol.roomlog import Follower, RoomLog

if TYPE_CHECKING:
    from chatroom.net.flusher import Flusher
    from chatroom.protocol.codec import Codec

_write = os.write


class RoomWriter:
    """Flushes one room's followers; the flusher holds it among its dirty connections."""

    __slots__ = ("_flusher", "_log", "_todo")

    def __init__(self, log: RoomLog[Any], flusher: Flusher) -> None:
        self._log = log
        self._flusher = flusher
        self._todo: list[tuple[Codec, int]] = []  # groups still to write this cycle
        log.wake = self.mark

    def mark(self) -> None:
        self._flusher.mark(self)

    def flush_nowait(self) -> int:
        """Write followers the frames they were not written, a slice at most; the
        number of frames written (one per follower and frame). Counts its sockets
        with the flusher."""
        log = self._log
        frames = log.frames
        end = len(frames)
        todo = self._todo
        if not todo:  # the cycle reaches the room
            log.marked = False  # a frame appended from now on is for the next cycle
            # Taken from the end: the group written longest ago first, so that each
            # follower keeps its place in the room's sweep from one cycle to the next
            # and waits one cycle between writes, never nearly two.
            todo.extend(key for key in reversed(log.groups) if key[1] < end)
        budget = self._flusher.slice_size or sys.maxsize
        behind: list[tuple[Follower, bytes, int]] = []
        sockets = count = 0
        while todo and budget > 0:
            key = todo[-1]
            group = log.groups.get(key)
            if group is None:  # they all left
                todo.pop()
                continue
            if len(group) <= budget:
                todo.pop()
                del log.groups[key]
                batch = group
            else:  # the rest of the group waits for the writer's next turn
                batch = dict(itertools.islice(group.items(), budget))
                for follower in batch:
                    del group[follower]
            codec, start = key
            data = b"".join([prepared.frame(codec, None) for prepared, _ in frames[start:end]])
            size = len(data)
            for follower, fd in batch.items():
                try:
                    written = _write(fd, data)
                except BlockingIOError:
                    written = 0
                except OSError:
                    written = -1
                if written != size:
                    behind.append((follower, data, written))
            budget -= len(batch)
            sockets += len(batch)
            count += len(batch) * (end - start)
            done = log.groups.get((codec, end))
            if done is None:
                log.groups[(codec, end)] = batch
            else:
                done.update(batch)
        if todo:
            self._flusher.again(self)
        else:
            log.trim()
        for follower, data, written in behind:
            follower.fell_behind(data, written)
        share = self._flusher.elsewhere
        self._flusher.wrote(sockets, 0.0 if share is None else share(log) * sockets)
        return count
