"""``MemoryStore``'s member moderation: the rules of ``sqlite_moderation.py`` in dicts,
checked by the same contract suite."""

from __future__ import annotations

import copy

import trio

from chatroom.core.roles import Moderation, ModerationChanges

from .base import IntegrityError
from .common import check_int64


class MemoryModeration:
    """Managers, mutes and blocks by conversation. Every method checkpoints first and
    then never awaits."""

    def __init__(self) -> None:
        self._moderation: dict[str, Moderation] = {}

    async def moderation_of(self, cid: str) -> Moderation:
        """A copy of the conversation's state (empty when it has none)."""
        await trio.lowlevel.checkpoint()
        return copy.deepcopy(self._moderation.get(cid, Moderation()))

    async def save_moderation(self, cid: str, changes: ModerationChanges) -> None:
        """Apply every change, or (IntegrityError) none of them."""
        await trio.lowlevel.checkpoint()
        _check(cid, changes)
        state = self._moderation.setdefault(cid, Moderation())
        blocked = {p: t for p, t in changes.blocked.items() if p not in state.blocked}
        ModerationChanges(
            changes.roles, changes.muted, changes.unmuted, blocked, changes.unblocked
        ).apply(state)
        if not (state.managers or state.muted or state.blocked):
            del self._moderation[cid]


def _check(cid: str, changes: ModerationChanges) -> None:
    """IntegrityError where SQLite would refuse a value."""
    texts = [cid, *changes.roles, *changes.muted, *changes.unmuted]
    texts += [*changes.blocked, *changes.unblocked]
    for text in texts:
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise IntegrityError("a client id is not valid Unicode text") from exc
    for until in changes.muted.values():
        check_int64(until, "mute end")
    for since in changes.blocked.values():
        check_int64(since, "block time")
