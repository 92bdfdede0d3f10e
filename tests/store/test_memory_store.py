"""What only the memory store does (the contract suite covers what every store does)."""

from __future__ import annotations

import trio

from chatroom.core.model import Conversation, ConvType, MemberMarks
from chatroom.store.memory import MemoryStore


async def test_a_member_of_no_conversation_has_no_marks_without_a_checkpoint() -> None:
    # A chatroom viewer's login asks for its marks: with nothing to read, the answer
    # comes at once, even in a cancelled scope (no checkpoint, no task step).
    store = MemoryStore()
    await store.open()
    conv = Conversation("c1", ConvType.NORMAL, "bob", ["bob"], {}, 1, 1)
    await store.create_conversation(conv)
    found: list[MemberMarks] | None = None
    with trio.CancelScope() as scope:
        scope.cancel()
        found = await store.changed_marks("viewer", None, 50)
    assert found == []
    # A member of a conversation is read after a checkpoint, as every other call.
    found = None
    with trio.CancelScope() as scope:
        scope.cancel()
        found = await store.changed_marks("bob", None, 50)
    assert found is None
    assert scope.cancelled_caught
    await store.aclose()
