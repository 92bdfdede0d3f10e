"""``MemoryStore.sweep``: the retention sweep over the in-memory store (see
``Store.sweep``), ``delete_message`` and ``delete_conversation``; a mixin over
``MemoryStore``'s own indexes."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import TYPE_CHECKING

import trio

from chatroom.core.model import Conversation, ConvType, MemberMarks, Message
from chatroom.core.roles import Moderation

from .common import threads_of


class MemoryRetention:
    _convs: dict[str, Conversation]
    _history: defaultdict[str, list[Message]]
    _by_mid: dict[tuple[str, str], Message]
    _by_token: dict[tuple[str, str, str], Message]
    _marks: dict[tuple[str, str], MemberMarks]
    _moderation: dict[str, Moderation]

    if TYPE_CHECKING:

        def _unindex(self, conv: Conversation) -> None: ...

    async def sweep(self, cutoff_ms: int, now_ms: int, limit: int) -> int:
        """At most ``limit`` old messages, then one expired temporary conversation."""
        await trio.lowlevel.checkpoint()
        deleted = 0
        if cutoff_ms > 0:
            for cid in list(self._history):
                history = self._history[cid]
                old = bisect.bisect_left(history, cutoff_ms, key=lambda m: m.timestamp)
                deleted += self._drop_oldest(cid, min(old, limit - deleted))
                if deleted >= limit:
                    return deleted
        expired = next(
            (
                c
                for c in self._convs.values()
                if c.kind is ConvType.TEMPORARY
                and c.expire_at is not None
                and c.expire_at <= now_ms
            ),
            None,
        )
        if expired is None:
            return deleted
        room = limit - deleted
        gone = self._drop_oldest(expired.cid, room)
        deleted += gone
        if gone < room:
            deleted += 1
            self._forget(expired)
        return deleted

    async def delete_message(self, cid: str, mid: str) -> bool:
        """Out of the history and every index."""
        await trio.lowlevel.checkpoint()
        found = self._by_mid.pop((cid, mid), None)
        if found is None:
            return False
        history = self._history[cid]
        at = bisect.bisect_left(history, (found.timestamp, mid), key=lambda m: (m.timestamp, m.mid))
        del history[at]
        if not history:
            del self._history[cid]
        self._unindex_token(found)
        return True

    async def delete_conversation(self, cid: str) -> bool:
        """The conversation and everything kept with it, at once."""
        await trio.lowlevel.checkpoint()
        conv = self._convs.get(cid)
        for kept in (*threads_of(conv), cid):
            self._drop_oldest(kept, len(self._history.get(kept, ())))
        if conv is not None:
            self._forget(conv)
        return conv is not None

    def _forget(self, conv: Conversation) -> None:
        del self._convs[conv.cid]
        self._unindex(conv)
        self._moderation.pop(conv.cid, None)
        for key in [k for k in self._marks if k[1] == conv.cid]:
            del self._marks[key]

    def _drop_oldest(self, cid: str, count: int) -> int:
        history = self._history.get(cid)
        if not history or count <= 0:
            return 0
        dropped = history[:count]
        del history[:count]
        if not history:
            del self._history[cid]
        for m in dropped:
            self._by_mid.pop((m.cid, m.mid), None)
            self._unindex_token(m)
        return len(dropped)

    def _unindex_token(self, m: Message) -> None:
        if m.dedupe_token is not None:
            key = (m.cid, m.from_peer, m.dedupe_token)
            if self._by_token.get(key) is m:
                del self._by_token[key]
