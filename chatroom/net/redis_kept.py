"""Chatrooms' kept messages (their Redis lists, docs/cluster.md): the commands that
change a list (``kept_commands``, in the link's transaction), and reading them for
``logs``.

A ``logs`` of a chatroom asks for its list (``ask``); the link's next drain sends one
LRANGE per chatroom asked for, however many asked (a crowd joining a live room reads it
once), after that drain's transaction, and hands back the reply (``answer``). Each asker
then turns the entries into messages: decoded once per node while an entry stays in the
list (a map per chatroom, for the ``ROOMS`` chatrooms read last), with a checkpoint
every ``SLICE`` decodings, so that reading a full list never holds the event loop long.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

import trio

from chatroom.core.model import Message
from chatroom.hub import redis_wire as wire
from chatroom.hub.redis_queue import KEEP, UNKEEP
from chatroom.net import resp

log = logging.getLogger(__name__)

Command = tuple[resp.Arg, ...]
TTL = 24 * 3600  # seconds a chatroom's kept messages outlive its last message
ROOMS = 100  # chatrooms whose decoded entries a node remembers
SLICE = 100  # decodings between checkpoints
WAITING = 1_000  # chatrooms asked for at once; more are answered from this node alone


def kept_commands(op: str, key: str, records: list[bytes], cap: int) -> list[Command]:
    """``KEEP``: append ``records``, keep the newest ``cap``, and live ``TTL`` seconds
    more; ``UNKEEP``: remove each of them; ``FORGET``: remove the list."""
    if op == KEEP:
        return [("RPUSH", key, *records), ("LTRIM", key, -cap, -1), ("EXPIRE", key, TTL)]
    if op == UNKEEP:
        return [("LREM", key, 0, record) for record in records]
    return [("DEL", key)]


@dataclass(slots=True)
class Read:
    """One chatroom's list asked for: read by the next drain."""

    key: str
    done: trio.Event = field(default_factory=trio.Event)
    entries: list[bytes] | None = None  # the reply (None: Redis did not answer)


class KeptReader:
    def __init__(self) -> None:
        self._asked: dict[str, Read] = {}  # by key, for the next drain
        self._decoded: OrderedDict[str, dict[bytes, Message | None]] = OrderedDict()
        self.bad = 0  # unreadable entries met

    def ask(self, key: str) -> Read | None:
        """The read of ``key`` by the next drain (shared by every asker meanwhile);
        None when too many chatrooms are waiting."""
        read = self._asked.get(key)
        if read is None:
            if len(self._asked) >= WAITING:
                return None
            read = self._asked[key] = Read(key)
        return read

    @property
    def waiting(self) -> bool:
        """Some chatroom's list is asked for (the next drain reads it)."""
        return bool(self._asked)

    def take(self) -> list[Read]:
        """What the drain now reads (LRANGE of each, in this order)."""
        reads = list(self._asked.values())
        self._asked.clear()
        return reads

    @staticmethod
    def answer(reads: list[Read], replies: list[resp.Reply] | None) -> None:
        """The drain's replies to ``reads`` (None: the connection failed): every asker
        goes on."""
        for n, read in enumerate(reads):
            reply = replies[n] if replies is not None else None
            if isinstance(reply, list):
                read.entries = [raw for raw in reply if isinstance(raw, bytes)]
            read.done.set()

    def abandon(self) -> None:
        """The connection is gone: whoever waits goes on without an answer."""
        self.answer(self.take(), None)

    async def messages(self, read: Read) -> list[Message] | None:
        """The messages of an answered read, oldest first; unreadable entries are left
        out (and logged once per node while they stay in the list)."""
        if read.entries is None:
            await trio.lowlevel.checkpoint()
            return None
        known = self._decoded.pop(read.key, None) or {}
        self._decoded[read.key] = known  # the most recently read
        while len(self._decoded) > ROOMS:
            self._decoded.popitem(last=False)
        found: list[Message] = []
        fresh: dict[bytes, Message | None] = {}
        decoded = 0
        for raw in read.entries:
            if raw in known:
                message = known[raw]
            else:
                message = known[raw] = self._decode(raw)
                decoded += 1
                if decoded % SLICE == 0:
                    await trio.lowlevel.checkpoint()
            fresh[raw] = message
            if message is not None:
                found.append(message)
        if self._decoded.get(read.key) is known:
            self._decoded[read.key] = fresh  # what left the list is forgotten
        await trio.lowlevel.checkpoint()
        return found

    def _decode(self, raw: bytes) -> Message | None:
        try:
            return wire.unkept(raw)
        except wire.WireError as exc:
            self.bad += 1
            log.warning("cluster: a kept chatroom message is unreadable (%s)", exc)
            return None
