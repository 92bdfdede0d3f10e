"""A chatroom's frame log: each broadcast appended once, written to the viewers that
keep up in one sweep over their sockets.

A viewer whose connection keeps up (nothing of its own queued, its socket taking what
it is given, pushes without ``peerId``) *follows* the room: the hub does not touch it
per message at all. The room's next flush (net/roomwriter.py) joins the frames
appended since the last one into one bytes object per codec and writes it to every
follower's socket in a tight loop; after it every follower is at the log's end and the
frames are dropped. A broadcast thus costs one append, and each flush one system
call per follower.

The other viewers, *stragglers*, are pushed each frame into their own outbox as any
connection (priority shedding applies there): a connection whose socket refused part
of a write, one that has a reply or another push queued, a JSON or SDK 3.x client
that needs its ``peerId``. A straggler follows again at the first push that finds it
caught up; a follower that gets anything else to send first leaves with the frames it
was not written yet, queued in order before the new one (``unfollow``).

Followers are kept in groups by codec and first unwritten frame, so each group shares
one joined write: a straggler that caught up in the middle of a flush interval joins
at its frame, and a room with more followers than a flush slice is written a slice at
a time, with new frames appended in between for the followers not reached yet. Once
written to the end, the followers of a codec are one group again.

The log is generic in the session type (the hub's); it holds no sockets, only the
numbers the writer writes to.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from chatroom.protocol.codec import Codec, Prepared

S = TypeVar("S", bound=Hashable)

Frames = list[tuple["Prepared", int]]  # (push, priority)


class Follower(Protocol):
    """A connection the room writes (a ``Connection``)."""

    def left_room(self) -> None:
        """The room stops writing to it: it queues what it was not written yet."""

    def fell_behind(self, data: bytes, written: int) -> None:
        """The room's flush wrote ``written`` bytes of ``data`` to it (-1: its socket
        failed); it is no longer a follower once this returns."""


class RoomLog(Generic[S]):
    """The frames of one chatroom (``cid``) not yet written to its followers, and its
    viewers."""

    __slots__ = (
        "cid",
        "followers",
        "following",
        "frames",
        "groups",
        "marked",
        "stragglers",
        "wake",
    )

    def __init__(self, cid: str = "") -> None:
        self.cid = cid
        self.frames: Frames = []
        # (codec, index of the first frame not written yet) -> {follower: socket}
        self.groups: dict[tuple[Codec, int], dict[Follower, int]] = {}
        self.followers: dict[Follower, S] = {}  # -> the session it is written for
        self.following: dict[S, Follower] = {}  # the other way round
        self.stragglers: dict[S, None] = {}  # viewers pushed one by one (a set, ordered)
        # Asks for a flush (net/roomwriter.py sets it at the first follower); ``marked``
        # once asked, until the flush.
        self.wake: Callable[[], None] | None = None
        self.marked = False

    def __len__(self) -> int:
        return len(self.followers) + len(self.stragglers)

    def append(self, prepared: Prepared, priority: int) -> int:
        """Add a frame; its index. Asks for a flush if anyone follows."""
        frames = self.frames
        if not self.groups:  # nobody to write them to: what is here is read
            frames.clear()
        frames.append((prepared, priority))
        if self.groups and not self.marked:
            self._ask()
        return len(frames) - 1

    def follow(self, follower: Follower, session: S, codec: Codec, fd: int, at: int) -> None:
        """``follower`` (the connection of straggler ``session``) is written frame
        ``at`` and every later one by the room's flushes, instead of its own queue."""
        self.stragglers.pop(session, None)
        self.followers[follower] = session
        self.following[session] = follower
        group = self.groups.get((codec, at))
        if group is None:
            group = self.groups[(codec, at)] = {}
        group[follower] = fd
        if not self.marked:
            self._ask()

    def unfollow(self, follower: Follower) -> Frames:
        """Stop writing ``follower``; its session is a straggler again. The frames
        it was not written yet, in order, for its own queue."""
        session = self.followers.pop(follower)
        del self.following[session]
        self.stragglers[session] = None
        for key, group in self.groups.items():
            if group.pop(follower, None) is not None:
                if not group:
                    del self.groups[key]
                return self.frames[key[1] :]
        return []

    def leave(self, session: S) -> None:
        """``session`` no longer watches the room; if it followed, its connection is
        told first, and queues what it was not written yet."""
        self.exclude(session)
        self.stragglers.pop(session, None)

    def exclude(self, session: S) -> None:
        """The next frame must not reach ``session``: a follower becomes a straggler."""
        follower = self.following.get(session)
        if follower is not None:
            follower.left_room()

    def trim(self) -> None:
        """Drop the frames every follower was written (between two flushes: the
        indices move)."""
        if not self.groups:
            self.frames = []
            return
        low = min(start for _, start in self.groups)
        if low:
            del self.frames[:low]
            self.groups = {(codec, at - low): group for (codec, at), group in self.groups.items()}

    def _ask(self) -> None:
        if self.wake is not None:
            self.marked = True
            self.wake()
