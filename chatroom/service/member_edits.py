"""Changes of a conversation's members, as ``ConversationCache.change`` applies them:
again on the stored record after a compare-and-swap conflict, so each one decides what
it does from the record it is applied to."""

from __future__ import annotations

from dataclasses import dataclass, field

from chatroom.core.model import Conversation
from chatroom.service.caches import Edit, Unchanged


def members_edit(now: int | None, joined: list[str], left: list[str]) -> Edit:
    """The change of a conversation's members: ``joined`` in (sorted), ``left`` out,
    ``updated_at`` to ``now`` unless None (system conversations' subscribers)."""

    def edit(conv: Conversation) -> None:
        kept = [m for m in conv.members if m not in left]
        added = [m for m in joined if m not in kept]
        conv.members = sorted([*kept, *added]) if added else kept
        if now is not None:
            conv.updated_at = now

    return edit


@dataclass(slots=True)
class MembersAdded:
    """An ``Edit`` adding those of ``wanted`` not yet members, as many as fit under
    ``limit`` members, counted again on every application: a retry sees the members
    another node added meanwhile. What the last application did is in ``added`` and
    ``full`` (those that did not fit); it raises ``Unchanged`` when none was added."""

    now: int
    wanted: list[str]
    limit: int
    added: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)

    def __call__(self, conv: Conversation) -> None:
        new = [m for m in self.wanted if m not in conv.members]
        room = max(self.limit - len(conv.members), 0)
        self.added, self.full = new[:room], new[room:]
        if not self.added:
            raise Unchanged
        members_edit(self.now, self.added, [])(conv)
