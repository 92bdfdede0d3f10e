"""ConversationCache.change: a save that lost the compare and swap (another node saved
the conversation since it was read) is applied again to the stored record."""

from __future__ import annotations

import pytest
import trio
from fakes import FakeHub
from helpers import TIMEOUT
from store_examples import make_conv

from chatroom.core.model import Conversation
from chatroom.hub.base import CONVERSATION
from chatroom.service.caches import ConversationCache
from chatroom.service.member_edits import MembersAdded, members_edit
from chatroom.store.base import StoreError
from chatroom.store.memory import MemoryStore


async def _other_node_adds(store: MemoryStore, member: str) -> None:
    """What another node does meanwhile: read, change, save."""
    conv = await store.get_conversation("c1")
    assert conv is not None
    conv.members = sorted([*conv.members, member])
    await store.save_conversation(conv)


async def _cached(
    store: MemoryStore, cache: ConversationCache, cid: str, members: tuple[str, ...]
) -> Conversation:
    """A new conversation of ``members``, read through ``cache``."""
    await store.create_conversation(make_conv(cid, members))
    conv = await cache.get(cid)
    assert conv is not None
    return conv


async def test_a_change_made_meanwhile_is_kept_and_becomes_the_cached_record() -> None:
    store, hub = MemoryStore(), FakeHub()
    cache = ConversationCache(store, hub)
    with trio.fail_after(TIMEOUT):
        await store.open()
        conv = await _cached(store, cache, "c1", ("alice", "bob"))
        await _other_node_adds(store, "carol")
        await cache.change(conv, members_edit(5000, ["dave"], ["bob"]))
        stored = await store.get_conversation("c1")
    assert conv.members == ["alice", "carol", "dave"]
    assert (conv.updated_at, conv.version) == (5000, 2)
    assert stored == conv
    assert cache.peek("c1") is conv
    assert hub.changes == [(CONVERSATION, "c1", None)]


class _Contested(MemoryStore):
    """Another node saves the conversation just before each save of this one."""

    async def save_conversation(self, conv: Conversation) -> int:
        rival = await self.get_conversation(conv.cid)
        assert rival is not None
        rival.members.append(f"rival{rival.version}")
        await super().save_conversation(rival)
        return await super().save_conversation(conv)


async def test_a_change_that_keeps_losing_fails_and_is_forgotten() -> None:
    store, hub = _Contested(), FakeHub()
    cache = ConversationCache(store, hub)
    with trio.fail_after(TIMEOUT):
        await store.open()
        conv = await _cached(store, cache, "c1", ("alice",))
        with pytest.raises(StoreError, match="keeps changing"):
            await cache.change(conv, members_edit(5000, ["dave"], []))
        stored = await store.get_conversation("c1")
    assert stored is not None
    assert "dave" not in stored.members
    assert len(stored.members) == 1 + ConversationCache.SAVE_ATTEMPTS
    assert cache.peek("c1") is None  # read from the store next time
    assert hub.changes == []


async def test_members_added_meanwhile_count_against_the_limit_on_the_retry() -> None:
    store, hub = MemoryStore(), FakeHub()
    cache = ConversationCache(store, hub)
    with trio.fail_after(TIMEOUT):
        await store.open()
        conv = await _cached(store, cache, "c1", ("alice", "bob"))
        await _other_node_adds(store, "carol")  # the last place of three
        adding = MembersAdded(5000, ["dave", "erin"], limit=3)
        assert not await cache.change(conv, adding)  # both fitted the stale copy
        stored = await store.get_conversation("c1")
        assert stored is not None
        assert (adding.added, adding.full) == ([], ["dave", "erin"])
        assert stored.members == conv.members == ["alice", "bob", "carol"]
        assert stored.version == conv.version == 1
        assert hub.changes == []  # nothing stored, nothing to tell
        two = await _cached(store, cache, "c2", ("alice",))
        partly = MembersAdded(5000, ["bob", "dave", "erin"], limit=3)
        assert await cache.change(two, partly)
        assert (partly.added, partly.full) == (["bob", "dave"], ["erin"])
        assert two.members == ["alice", "bob", "dave"]
