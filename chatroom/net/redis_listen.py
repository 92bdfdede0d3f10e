"""The subscribing side of a node's link to Redis (redis_link.py): what it hears and
who waits for it.

``Listener.read`` reads the node's one connection to Redis (RESP3: the pushes of its
subscriptions come on the connection that sends its commands, in the order Redis
produced them, and the replies read meanwhile go to the commands that wait for them):
messages go to the hub, Redis's confirmations of chatroom subscriptions to the hub's
``subscribed`` (and whoever waits in ``hearing``). The link's drain asks for the
subscriptions the listener wants sent (``follow_rooms``): they follow the chatrooms
this node has viewers in.

What one read brought is fanned out with the node's flusher held (``Flusher.hold``):
when the flusher is idle and would write at once, this task writes the viewers itself
after the read, instead of waking the flusher's task for a pass of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from chatroom.hub.redis import RedisHub
from chatroom.net import resp

if TYPE_CHECKING:
    from chatroom.net.flusher import Flusher

DEADLINE = 5.0  # seconds any one call to Redis may take
SETTLE_DEADLINE = 1.0  # seconds a presence question waits for Redis at most


def pulse(event: trio.Event) -> trio.Event:
    """Wake whoever waits on ``event``; the event the next waiters wait on."""
    event.set()
    return trio.Event()


class Listener:
    def __init__(self, hub: RedisHub, poke: Callable[[], None]) -> None:
        self.hub = hub
        self._poke = poke  # the link's next drain, soon
        self.received = 0  # messages heard
        self._asked: set[str] = set()  # chatrooms subscribed to, not yet confirmed
        self._confirmed = trio.Event()  # set (and replaced) as Redis confirms some
        self._room = hub.channel("room", "-")[:-1]  # the prefix of every room channel
        self.flusher: Flusher | None = None  # the node's, held while a read fans out

    async def hearing(self, cid: str) -> None:
        """Until Redis confirmed this node's subscription to the chatroom (asked for by
        the next drain, as its first viewer here joined)."""
        await trio.lowlevel.checkpoint()
        hub = self.hub
        if not hub.connected or cid in hub.subscribed:
            return
        self._poke()
        with trio.move_on_after(SETTLE_DEADLINE):
            while hub.connected and cid not in hub.subscribed and hub.watched_here(cid):
                await self._confirmed.wait()

    def lost(self) -> None:
        """The connection is gone: whoever waits goes on, no subscription is asked for."""
        self._asked.clear()
        self._confirmed = pulse(self._confirmed)  # no subscription comes now

    async def read(self, connection: resp.Connection) -> None:
        """Messages to the hub; subscriptions confirmed, to the hub's ``subscribed``;
        the replies met to the commands they answer (the connection is
        ``read_by_task``). Everything
        one read from the socket brought is handled in one go (a read is 64 KiB at
        most): no pass through the scheduler per message. What a read brings is
        written at once when a PUBLISH in it was paced by its sender (``hub.paced``:
        ``Flusher.release``'s ``prompt``)."""
        while True:
            replies = await connection.read_all()
            flusher = self.flusher
            if flusher is not None:
                flusher.hold()
            try:
                for reply in replies:
                    if isinstance(reply, resp.RespError):
                        raise reply
                    self._heard(reply)
            finally:
                paced, self.hub.paced = self.hub.paced, False
                if flusher is not None:
                    flusher.release(paced)

    def _heard(self, reply: resp.Reply) -> None:
        hub = self.hub
        if not isinstance(reply, list) or len(reply) < 3:
            return
        kind, channel, data = reply[0], reply[1], reply[2]
        if kind == b"message" and isinstance(data, bytes):
            self.received += 1
            hub.receive(data, trio.current_time())
        elif kind == b"subscribe" and isinstance(channel, bytes):
            room = self._room
            cid = channel.decode()[len(room) :]
            if channel.startswith(room.encode()) and cid in self._asked:
                self._asked.discard(cid)
                hub.subscribed.add(cid)  # from now on its pushes come back here
                self._confirmed = pulse(self._confirmed)

    async def follow_rooms(self, connection: resp.Connection) -> None:
        """Subscribe to the chatrooms this node has viewers in, and only to those; the
        reader marks a chatroom subscribed once Redis confirms it."""
        await trio.lowlevel.checkpoint()
        hub = self.hub
        if not hub.rooms_changed:
            return
        hub.rooms_changed = False
        wanted = hub.local_rooms()
        joined = wanted - hub.subscribed - self._asked
        gone = (hub.subscribed | self._asked) - wanted
        hub.subscribed -= gone
        self._asked = (self._asked | joined) - gone
        commands: list[tuple[resp.Arg, ...]] = []
        if joined:
            commands.append(("SUBSCRIBE", *(hub.channel("room", cid) for cid in joined)))
        if gone:
            commands.append(("UNSUBSCRIBE", *(hub.channel("room", cid) for cid in gone)))
        if commands:
            with trio.fail_after(DEADLINE):
                await connection.send(*commands)
