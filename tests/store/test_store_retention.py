"""``Store.sweep`` (retention), against every store: old messages go in batches, newer
ones and their conversations stay; expired temporary conversations go whole."""

from __future__ import annotations

from store_examples import make_conv, make_msg

from chatroom.core.ids import thread_cid
from chatroom.core.model import ConvType, HistoryQuery
from chatroom.core.roles import ModerationChanges
from chatroom.store.base import Store


async def sweep_all(store: Store, cutoff: int, now: int, limit: int) -> list[int]:
    """Every batch's count until a sweep deletes nothing (that last 0 included)."""
    counts = [await store.sweep(cutoff, now, limit)]
    while counts[-1]:
        assert counts[-1] <= limit + 6  # a batch, plus one conversation's own rows
        counts.append(await store.sweep(cutoff, now, limit))
    return counts


async def test_messages_older_than_the_cutoff_go_in_batches(store: Store) -> None:
    for cid in ("c1", "c2"):
        await store.create_conversation(make_conv(cid))
    batch = [
        make_msg("c1" if t % 2 else "c2", t, f"m{t:03}", dedupe_token=f"t{t}")
        for t in range(100, 130)
    ]
    await store.append_messages(batch)
    counts = await sweep_all(store, cutoff=120, now=0, limit=7)
    assert sum(counts) == 20
    assert max(counts) <= 7
    kept = await store.query_messages(HistoryQuery("c1", limit=100))
    kept += await store.query_messages(HistoryQuery("c2", limit=100))
    assert sorted(m.timestamp for m in kept) == list(range(120, 130))
    assert await store.get_message("c1", "m101") is None
    assert await store.find_by_dedupe_token("c1", "alice", "t101") is None
    assert await store.get_message("c1", "m121") is not None
    assert await store.get_conversation("c1") is not None  # conversations stay


async def test_a_zero_cutoff_keeps_every_message(store: Store) -> None:
    await store.create_conversation(make_conv("c1"))
    await store.append_messages([make_msg("c1", 100, "m1")])
    assert await store.sweep(0, 10**13, 100) == 0
    assert await store.get_message("c1", "m1") is not None


async def test_expired_temporary_conversations_go_with_their_messages(store: Store) -> None:
    temp = make_conv("t1", kind=ConvType.TEMPORARY, expire_at=5000)
    alive = make_conv("t2", kind=ConvType.TEMPORARY, expire_at=9000)
    for conv in (temp, alive):
        await store.create_conversation(conv)
        await store.append_messages(
            [make_msg(conv.cid, 2000 + i, f"{conv.cid}-{i}") for i in range(12)]
        )
    await store.save_moderation("t1", ModerationChanges(muted={"bob": None}))
    counts = await sweep_all(store, cutoff=0, now=6000, limit=5)
    assert len(counts) >= 3  # twelve messages, five at a time
    assert await store.get_conversation("t1") is None
    assert await store.query_messages(HistoryQuery("t1", limit=100)) == []
    assert [c.cid for c in await store.conversations_of("alice", 10, 0)] == ["t2"]
    assert (await store.moderation_of("t1")).muted == {}
    assert len(await store.query_messages(HistoryQuery("t2", limit=100))) == 12


async def test_delete_conversation_takes_everything_kept_with_it(store: Store) -> None:
    for cid in ("c1", "c2"):
        await store.create_conversation(make_conv(cid))
    # More messages than one batch of the SQL stores, and some in the other conversation.
    await store.append_messages([make_msg("c1", 1000 + i, f"m{i}") for i in range(1500)])
    await store.append_messages([make_msg("c2", 5000, "keep", dedupe_token="t")])
    await store.save_moderation("c1", ModerationChanges(muted={"bob": None}))
    await store.mark_read("bob", "c1", 1100, 6000)
    assert await store.delete_conversation("c1") is True
    assert await store.get_conversation("c1") is None
    assert await store.query_messages(HistoryQuery("c1", limit=1000)) == []
    assert await store.get_message("c1", "m0") is None
    assert (await store.moderation_of("c1")).muted == {}
    assert await store.member_marks("c1") == []
    assert [k.cid for k in await store.changed_marks("bob", 0, 10)] == ["c2"]
    assert [c.cid for c in await store.conversations_of("alice", 10, 0)] == ["c2"]
    # The other conversation is untouched; a second delete finds nothing.
    assert [m.mid for m in await store.query_messages(HistoryQuery("c2", limit=10))] == ["keep"]
    assert await store.find_by_dedupe_token("c2", "alice", "t") is not None
    assert await store.delete_conversation("c1") is False


async def test_deleting_a_system_conversation_takes_its_subscribers_threads(
    store: Store,
) -> None:
    await store.create_conversation(make_conv("s1", ("sys", "ann", "ben"), kind=ConvType.SYSTEM))
    await store.create_conversation(make_conv("s2", ("sys", "ann"), kind=ConvType.SYSTEM))
    threads = {c: thread_cid("s1", c) for c in ("sys", "ann", "ben")}
    # Over one batch in ann's thread; the same subscriber's thread of s2 stays.
    await store.append_messages(
        [make_msg(threads["ann"], 2000 + i, f"a{i}", from_peer="ann") for i in range(1100)]
    )
    await store.append_messages([make_msg(threads["ben"], 2000, "b0", from_peer="ben")])
    await store.append_messages([make_msg("s1", 1500, "all")])
    await store.append_messages([make_msg(thread_cid("s2", "ann"), 2000, "other")])
    assert await store.delete_conversation("s1") is True
    for thread in (*threads.values(), "s1"):
        assert await store.query_messages(HistoryQuery(thread, limit=1000)) == []
    assert await store.get_message(threads["ann"], "a0") is None
    kept = await store.query_messages(HistoryQuery(thread_cid("s2", "ann"), limit=10))
    assert [m.mid for m in kept] == ["other"]


async def test_delete_message_takes_one_message_only(store: Store) -> None:
    await store.create_conversation(make_conv("c1"))
    await store.append_messages(
        [make_msg("c1", 100 + i, f"m{i}", dedupe_token=f"t{i}") for i in range(3)]
    )
    assert await store.delete_message("c1", "m1") is True
    assert await store.get_message("c1", "m1") is None
    assert await store.find_by_dedupe_token("c1", "alice", "t1") is None
    kept = await store.query_messages(HistoryQuery("c1", limit=10))
    assert [m.mid for m in kept] == ["m0", "m2"]
    assert await store.delete_message("c1", "m1") is False
    assert await store.delete_message("c2", "m0") is False  # ids are per conversation
    assert await store.get_message("c1", "m0") is not None
