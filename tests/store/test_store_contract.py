"""The ``Store`` contract: one suite, run against every implementation.

Each test gets a freshly opened store through the ``store`` fixture (conftest.py:
``MemoryStore``, and ``SqliteStore`` on a file under ``tmp_path``), so the two cannot
drift apart. Tests that only make sense for a file (reopening, schema versions) use
``SqliteStore`` alone. Every test runs under ``trio.fail_after`` so that a hang fails
fast.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
import trio
from store_examples import (
    EXAMPLES,
    FIVE,
    make_conv,
    make_msg,
    old_sqlite_file,
    positions,
    reference_page,
    stamps,
)

from chatroom.core.model import (
    JSON,
    Bound,
    Conversation,
    ConvFilter,
    ConvOrder,
    ConvType,
    Direction,
    HistoryQuery,
    Message,
    Patch,
)
from chatroom.store.base import ConflictError, IntegrityError, NotFoundError, Store, StoreError
from chatroom.store.sqlite import SCHEMA_VERSION, SqliteStore
from chatroom.store.sqlite_schema import (
    LASTING_SCHEMA,
    MODERATION_SCHEMA,
    SCHEMA,
    TIME_INDEX,
)

TIMEOUT = 10


# conversations


async def test_conversation_round_trip_keeps_every_field(store: Store) -> None:
    attrs: dict[str, JSON] = {
        "name": "茶话会 🍵",
        "color": None,
        "nested": {"list": [1, 2.5, "three", True, None, {"deep": ["ü"]}], "n": -7},
        "big": 2**62,
    }
    conv = make_conv(
        "conv-ü",
        ("alice", "bob", "Zoë"),
        kind=ConvType.TEMPORARY,
        attrs=attrs,
        created_at=1_700_000_000_000,
        updated_at=1_700_000_000_123,
        unique=False,
        unique_id="u-1",
        muted=["bob"],
        last_message_at=1_700_000_000_200,
        expire_at=1_700_086_400_000,
    )
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(conv)
        got = await store.get_conversation("conv-ü")
    assert got == conv
    assert got is not None
    assert type(got.kind) is ConvType


async def test_unknown_conversation_is_none(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        assert await store.get_conversation("nope") is None


async def test_every_conversation_type_round_trips(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for kind in ConvType:
            await store.create_conversation(make_conv(f"c{kind.value}", kind=kind))
        for kind in ConvType:
            got = await store.get_conversation(f"c{kind.value}")
            assert got is not None
            assert got.kind is kind


async def test_creating_an_existing_cid_is_refused(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", attrs={"name": "first"}))
        with pytest.raises(IntegrityError):
            await store.create_conversation(make_conv("c1", ("carol",), attrs={"name": "2"}))
        got = await store.get_conversation("c1")
        assert got is not None
        assert got.attrs == {"name": "first"}
        assert await store.conversations_of("carol", 10, 0) == []


async def test_save_replaces_the_record_and_member_index(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", ("alice", "bob")))
        changed = make_conv(
            "c1", ("alice", "carol"), attrs={"name": "new", "x": [1]}, updated_at=2000
        )
        changed.muted = ["carol"]
        await store.save_conversation(changed)
        assert await store.get_conversation("c1") == changed
        assert [c.cid for c in await store.conversations_of("carol", 10, 0)] == ["c1"]
        assert await store.conversations_of("bob", 10, 0) == []
        assert [c.cid for c in await store.conversations_of("alice", 10, 0)] == ["c1"]


async def test_saving_an_unknown_conversation_is_refused(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(NotFoundError):
            await store.save_conversation(make_conv("ghost"))
        assert await store.get_conversation("ghost") is None
        assert await store.conversations_of("alice", 10, 0) == []


async def test_stored_conversations_are_copies(store: Store) -> None:
    conv = make_conv("c1", attrs={"name": "n", "tags": ["a"]})
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(conv)
        conv.members.append("mallory")
        conv.attrs["name"] = "changed"
        got = await store.get_conversation("c1")
        assert got is not None
        got.members.append("eve")
        tags = got.attrs["tags"]
        assert isinstance(tags, list)
        tags.append("b")
        again = await store.get_conversation("c1")
    assert again == make_conv("c1", attrs={"name": "n", "tags": ["a"]})


async def test_saving_a_stale_copy_keeps_last_message_at(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        stale = await store.get_conversation("c1")
        assert stale is not None
        await store.append_messages([make_msg("c1", 5000, "m1")])
        stale.attrs = {"name": "renamed"}
        await store.save_conversation(stale)
        got = await store.get_conversation("c1")
    assert got is not None
    assert got.last_message_at == 5000
    assert got.attrs == {"name": "renamed"}


async def test_a_save_from_an_older_version_is_refused_and_changes_nothing(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", ("alice", "bob")))
        first, second = await store.get_conversation("c1"), await store.get_conversation("c1")
        assert first is not None
        assert second is not None
        first.attrs = {"name": "renamed"}
        assert await store.save_conversation(first) == 1
        second.members = ["alice", "bob", "carol"]
        with pytest.raises(ConflictError):
            await store.save_conversation(second)
        got = await store.get_conversation("c1")
        assert got is not None
        assert (got.members, got.attrs, got.version) == (["alice", "bob"], {"name": "renamed"}, 1)
        assert await store.conversations_of("carol", 10, 0) == []
        got.members = ["alice", "bob", "carol"]  # read again, changed again: stored
        assert await store.save_conversation(got) == 2
        again = await store.get_conversation("c1")
    assert again is not None
    assert (again.members, again.attrs, again.version) == (got.members, {"name": "renamed"}, 2)


async def test_concurrent_read_change_save_rounds_lose_no_change(store: Store) -> None:
    """Ten writers at once (PostgreSQL: on several pooled connections), each adding
    its own member by read, change, save, and again after a conflict."""
    members = [f"m{i}" for i in range(10)]
    conflicts = 0

    async def join(member: str) -> None:
        nonlocal conflicts
        while True:
            conv = await store.get_conversation("c1")
            assert conv is not None
            conv.members = sorted([*conv.members, member])
            try:
                await store.save_conversation(conv)
                return
            except ConflictError:
                conflicts += 1

    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", ("alice",)))
        async with trio.open_nursery() as nursery:
            for member in members:
                nursery.start_soon(join, member)
        got = await store.get_conversation("c1")
        assert got is not None
        assert got.members == sorted(["alice", *members])
        assert got.version == len(members)
        for member in members:
            assert [c.cid for c in await store.conversations_of(member, 10, 0)] == ["c1"]


async def test_a_save_keeps_a_newer_last_message_at_committed_meanwhile(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", last_message_at=10))
        conv = await store.get_conversation("c1")
        assert conv is not None
        conv.last_message_at = 20  # a message this node sent, not yet committed
        await store.append_messages([make_msg("c1", 30, "m1")])
        await store.save_conversation(conv)
        got = await store.get_conversation("c1")
    assert got is not None
    assert got.last_message_at == 30


async def test_find_unique_conversation_ignores_member_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("u1", ("bob", "alice", "carol"), unique=True))
        for members in (
            ["alice", "bob", "carol"],
            ["carol", "bob", "alice"],
            ("bob", "carol", "alice"),
        ):
            found = await store.find_unique_conversation(members)
            assert found is not None
            assert found.cid == "u1"


async def test_find_unique_conversation_needs_exactly_the_same_unique_one(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("plain", ("alice", "bob")))
        await store.create_conversation(
            make_conv("room", ("alice", "bob"), kind=ConvType.TRANSIENT, unique=True)
        )
        await store.create_conversation(make_conv("trio", ("alice", "bob", "carol"), unique=True))
        assert await store.find_unique_conversation(["alice", "bob"]) is None
        assert await store.find_unique_conversation(["alice"]) is None
        assert await store.find_unique_conversation(["alice", "bob", "carol", "dan"]) is None
        await store.create_conversation(make_conv("pair", ("bob", "alice"), unique=True))
        found = await store.find_unique_conversation(["alice", "bob"])
        assert found is not None
        assert found.cid == "pair"


async def test_find_unique_conversation_follows_saved_members(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("u1", ("alice", "bob"), unique=True))
        await store.save_conversation(make_conv("u1", ("alice", "carol"), unique=True))
        assert await store.find_unique_conversation(["alice", "bob"]) is None
        found = await store.find_unique_conversation(["carol", "alice"])
        assert found is not None
        assert found.cid == "u1"


async def test_member_ids_cannot_collide_in_the_unique_key(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("u1", ("a\x1fb",), unique=True))
        assert await store.find_unique_conversation(["a", "b"]) is None
        found = await store.find_unique_conversation(["a\x1fb"])
        assert found is not None
        assert found.cid == "u1"


async def test_conversations_of_puts_the_most_recently_active_first(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("old", created_at=100))
        await store.create_conversation(make_conv("new", created_at=300))
        await store.create_conversation(make_conv("talked", created_at=50))
        await store.create_conversation(make_conv("tie-b", created_at=200))
        await store.create_conversation(make_conv("tie-a", created_at=200))
        await store.create_conversation(make_conv("others", ("carol", "dan"), created_at=999))
        await store.append_messages([make_msg("talked", 250, "m1")])
        convs = await store.conversations_of("alice", 10, 0)
    # activity: new 300, talked 250 (its message), tie-a/tie-b 200 (by cid), old 100
    assert [c.cid for c in convs] == ["new", "talked", "tie-a", "tie-b", "old"]
    assert convs[1].last_message_at == 250


async def test_conversations_of_limit_and_skip(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for i in range(7):
            await store.create_conversation(make_conv(f"c{i}", created_at=1000 + i))
        first = await store.conversations_of("bob", 3, 0)
        second = await store.conversations_of("bob", 3, 3)
        rest = await store.conversations_of("bob", 3, 6)
        beyond = await store.conversations_of("bob", 3, 7)
        none = await store.conversations_of("bob", 0, 0)
    assert [c.cid for c in first + second + rest] == [f"c{i}" for i in range(6, -1, -1)]
    assert beyond == []
    assert none == []


# messages


async def test_append_commits_the_batch_and_sets_last_message_at(store: Store) -> None:
    batch = [
        make_msg("c1", 10, "a"),
        make_msg("c2", 12, "b"),
        make_msg("c1", 11, "c"),
        make_msg("c2", 11, "d"),
    ]
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.create_conversation(make_conv("c2"))
        await store.create_conversation(make_conv("c3"))
        await store.append_messages(batch)
        c1, c2, c3 = [await store.get_conversation(c) for c in ("c1", "c2", "c3")]
        page1 = await store.query_messages(HistoryQuery("c1"))
        page2 = await store.query_messages(HistoryQuery("c2"))
    assert c1 is not None
    assert c1.last_message_at == 11
    assert c2 is not None
    assert c2.last_message_at == 12
    assert c3 is not None
    assert c3.last_message_at is None
    assert page1 == [batch[0], batch[2]]
    assert page2 == [batch[3], batch[1]]


async def test_messages_to_unknown_conversations_are_stored(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages([make_msg("nowhere", 5, "m1")])
        assert await store.get_message("nowhere", "m1") == make_msg("nowhere", 5, "m1")
        assert await store.get_conversation("nowhere") is None


async def test_empty_batch_changes_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages([])
        assert await store.max_message_timestamp() == 0


async def test_text_and_binary_messages_round_trip(store: Store) -> None:
    payload = bytes(range(256)) + b"\x00"
    text = make_msg("c1", 1, "t", data='{"_lctype":-1,"_lctext":"hé 😀"}', lctype=-1)
    binary = make_msg("c1", 2, "b", binary=payload)
    empty = make_msg("c1", 3, "e", binary=b"")
    with trio.fail_after(TIMEOUT):
        await store.append_messages([text, binary, empty])
        got = [await store.get_message("c1", mid) for mid in ("t", "b", "e")]
    assert got == [text, binary, empty]
    assert got[1] is not None
    assert type(got[1].binary) is bytes
    assert got[1].data is None
    assert got[2] is not None
    assert got[2].binary == b""
    assert got[2].data is None
    assert got[0] is not None
    assert got[0].binary is None


# U+0000 and the marker PostgreSQL's escaping uses (postgres_sql.NUL_MARK), in every place.
_NUL_TEXTS = ["a\0b", "\0", "\0\0end", "\uffff", "\uffff0", "x\uffff0", "\uffff\0\uffff\uffff0"]


async def test_content_with_nul_is_kept_byte_exact(store: Store) -> None:
    sent = [make_msg("c1", 10 + i, f"m{i}", data=text) for i, text in enumerate(_NUL_TEXTS)]
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.append_messages(sent)
        assert [await store.get_message("c1", m.mid) for m in sent] == sent
        assert await store.query_messages(HistoryQuery("c1", limit=100)) == sent
        assert await store.query_all_messages(HistoryQuery("", limit=100)) == sent
        assert await store.last_message("c1") == sent[-1]
        patched = await store.patch_message(Patch("c1", "m0", 500, data="now \0 \uffff0"))
        assert patched is not None
        assert patched.data == "now \0 \uffff0"
        assert await store.get_message("c1", "m0") == patched
        assert [m.data for m in await store.patches_since("bob", 0, 10)] == ["now \0 \uffff0"]


@pytest.mark.parametrize(
    "bad",
    [
        make_msg("c1", 1, "m", data=None),
        make_msg("c1", 1, "m", data="x", binary=b"x"),
        make_msg("c1", 2**63, "m"),
        make_msg("c1", -(2**63) - 1, "m"),
        make_msg("c1", 1, "m", lctype=2**64),
        make_msg("c1", 1, "m", data="lone \ud800"),
        make_msg("c1", 1, "m", mention_pids=("ok", "\udfff")),
    ],
    ids=["neither", "both", "ts-high", "ts-low", "lctype", "surrogate", "mention"],
)
async def test_bad_message_fails_its_whole_batch(store: Store, bad: Message) -> None:
    good = make_msg("c1", 0, "good")
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        with pytest.raises(IntegrityError):
            await store.append_messages([good, bad])
        assert await store.get_message("c1", "good") is None
        assert await store.max_message_timestamp() == 0
        conv = await store.get_conversation("c1")
        assert conv is not None
        assert conv.last_message_at is None
        await store.append_messages([good])
        assert await store.get_message("c1", "good") == good


async def test_mentions_round_trip(store: Store) -> None:
    msgs = [
        make_msg("c1", 1, "a", mention_all=True),
        make_msg("c1", 2, "b", mention_pids=("bob", "Zoë")),
        make_msg("c1", 3, "c", mention_all=True, mention_pids=("carol",)),
        make_msg("c1", 4, "d"),
    ]
    with trio.fail_after(TIMEOUT):
        await store.append_messages(msgs)
        got = await store.query_messages(HistoryQuery("c1"))
    assert got == msgs
    assert [type(m.mention_pids) for m in got] == [tuple] * 4


async def test_every_message_field_round_trips(store: Store) -> None:
    msg = Message(
        cid="c1",
        mid="m1",
        from_peer="Zoë",
        timestamp=1_700_000_000_000,
        data="hi",
        mention_all=True,
        mention_pids=("a", "b"),
        dedupe_token="dt-1",
        lctype=-2,
        patch_timestamp=1_700_000_000_999,
    )
    with trio.fail_after(TIMEOUT):
        await store.append_messages([msg])
        assert await store.get_message("c1", "m1") == msg
        assert await store.last_message("c1") == msg


async def test_find_by_dedupe_token(store: Store) -> None:
    first = make_msg("c1", 1, "a", dedupe_token="dt1")
    with trio.fail_after(TIMEOUT):
        await store.append_messages(
            [
                first,
                make_msg("c1", 2, "b", dedupe_token="dt2"),
                make_msg("c1", 3, "c", from_peer="bob", dedupe_token="dt3"),
                make_msg("c2", 4, "d", dedupe_token="dt4"),
                make_msg("c1", 5, "e"),
            ]
        )
        assert await store.find_by_dedupe_token("c1", "alice", "dt1") == first
        assert await store.find_by_dedupe_token("c1", "bob", "dt1") is None
        assert await store.find_by_dedupe_token("c2", "alice", "dt1") is None
        assert await store.find_by_dedupe_token("c1", "alice", "dt3") is None
        found = await store.find_by_dedupe_token("c1", "bob", "dt3")
        assert found is not None
        assert found.mid == "c"
        assert await store.find_by_dedupe_token("c1", "alice", "nope") is None


async def test_get_message(store: Store) -> None:
    msgs = [make_msg("c1", 1, "a"), make_msg("c2", 1, "a", data="other")]
    with trio.fail_after(TIMEOUT):
        await store.append_messages(msgs)
        assert await store.get_message("c1", "a") == msgs[0]
        assert await store.get_message("c2", "a") == msgs[1]
        assert await store.get_message("c1", "b") is None
        assert await store.get_message("c3", "a") is None


async def test_last_message_breaks_millisecond_ties_by_mid(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.last_message("c1") is None
        await store.append_messages(
            [make_msg("c1", 7, "b"), make_msg("c1", 7, "c"), make_msg("c1", 7, "a")]
        )
        await store.append_messages([make_msg("c2", 9, "z")])
        last = await store.last_message("c1")
    assert last is not None
    assert (last.timestamp, last.mid) == (7, "c")


async def test_max_message_timestamp(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.max_message_timestamp() == 0
        await store.append_messages([make_msg("c1", 50, "a"), make_msg("c2", 70, "b")])
        await store.append_messages([make_msg("c3", 60, "c")])
        assert await store.max_message_timestamp() == 70


async def test_duplicate_in_one_batch_stores_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.append_messages([make_msg("c1", 1, "a")])
        batch = [make_msg("c1", 2, "b"), make_msg("c2", 9, "x"), make_msg("c1", 2, "b")]
        with pytest.raises(IntegrityError):
            await store.append_messages(batch)
        assert positions(await store.query_messages(HistoryQuery("c1"))) == [(1, "a")]
        assert await store.get_message("c2", "x") is None
        assert await store.max_message_timestamp() == 1
        conv = await store.get_conversation("c1")
        assert conv is not None
        assert conv.last_message_at == 1
        # still usable
        await store.append_messages([make_msg("c1", 2, "b")])
        assert positions(await store.query_messages(HistoryQuery("c1"))) == [(1, "a"), (2, "b")]


async def test_stored_message_id_cannot_be_reused(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages([make_msg("c1", 1, "a")])
        with pytest.raises(IntegrityError):
            await store.append_messages([make_msg("c1", 5, "a")])
        with pytest.raises(IntegrityError):
            await store.append_messages([make_msg("c1", 1, "a")])
        await store.append_messages([make_msg("c2", 1, "a")])  # ids are per conversation
        assert positions(await store.query_messages(HistoryQuery("c1"))) == [(1, "a")]


@pytest.mark.parametrize(
    "conv",
    [
        make_conv(attrs={"bad": {1, 2}}),
        make_conv(attrs={"big": 2**64}),
        make_conv(attrs={"name": "lone \ud800"}),
        make_conv(created_at=2**63),
        make_conv(expire_at=-(2**63) - 1),
        make_conv(kind=9),
        make_conv(members=("alice", "\udc00")),
    ],
    ids=["set", "bigint", "surrogate", "created", "expire", "kind", "member"],
)
async def test_bad_conversation_is_refused(store: Store, conv: Conversation) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(IntegrityError):
            await store.create_conversation(conv)
        assert await store.get_conversation(conv.cid) is None
        await store.create_conversation(make_conv(conv.cid))
        with pytest.raises(IntegrityError):
            await store.save_conversation(conv)
        assert await store.get_conversation(conv.cid) == make_conv(conv.cid)


# history


@pytest.mark.parametrize(("query", "expected"), EXAMPLES)
async def test_history_examples(store: Store, query: HistoryQuery, expected: list[int]) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages(FIVE)
        assert stamps(await store.query_messages(query)) == expected


async def test_history_breaks_millisecond_ties_by_mid(store: Store) -> None:
    # Several messages in one millisecond: the mid decides, and a bound with a mid cuts
    # inside the millisecond while a bound without one takes or leaves all of it. The
    # timestamp still comes first: (3, "a") is after (2, "d").
    x, b, c, d, a = (1, "x"), (2, "b"), (2, "c"), (2, "d"), (3, "a")
    msgs = [make_msg("c1", ts, mid) for ts, mid in (x, b, c, d, a)]
    new = Direction.NEW
    with trio.fail_after(TIMEOUT):
        await store.append_messages(list(reversed(msgs)))  # insertion order must not matter

        async def page(**kw: object) -> list[tuple[int, str]]:
            query = HistoryQuery("c1", **kw)  # type: ignore[arg-type]
            return positions(await store.query_messages(query))

        assert await page() == [x, b, c, d, a]
        assert await page(limit=2) == [d, a]
        assert await page(start=Bound(*c)) == [x, b]
        assert await page(start=Bound(*c, inclusive=True), limit=2) == [b, c]
        assert await page(start=Bound(2)) == [x]
        assert await page(start=Bound(2, inclusive=True)) == [x, b, c, d]
        assert await page(start=Bound(*c), direction=new) == [d, a]
        assert await page(start=Bound(2), direction=new) == [a]
        assert await page(start=Bound(2, inclusive=True), direction=new, limit=2) == [b, c]
        assert await page(start=Bound(*b), end=Bound(*d), direction=new) == [c]
        assert await page(start=Bound(*d), end=Bound(*b)) == [c]
        assert await page(start=Bound(3), end=Bound(1), limit=2) == [c, d]
        assert await page(start=Bound(1), end=Bound(3), direction=new, limit=2) == [b, c]
        assert await page(start=Bound(2, "zz"), end=Bound(2, "a")) == [b, c, d]


async def test_history_swaps_bounds_given_in_the_wrong_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages(FIVE)
        old = HistoryQuery("c1", start=Bound(2), end=Bound(5, inclusive=True))
        new = HistoryQuery(
            "c1", start=Bound(5, inclusive=True), end=Bound(2), direction=Direction.NEW
        )
        assert stamps(await store.query_messages(old)) == [3, 4, 5]
        assert stamps(await store.query_messages(new)) == [3, 4, 5]


async def test_history_filters_by_lctype(store: Store) -> None:
    msgs = [make_msg("c1", ts, f"m{ts}", lctype=-1 if ts % 3 else -2) for ts in range(1, 13)]
    msgs.append(make_msg("c1", 13, "m13"))
    with trio.fail_after(TIMEOUT):
        await store.append_messages(msgs)
        images = await store.query_messages(HistoryQuery("c1", limit=3, lctype=-2))
        first = await store.query_messages(
            HistoryQuery("c1", limit=2, lctype=-2, direction=Direction.NEW)
        )
        before = await store.query_messages(HistoryQuery("c1", start=Bound(9), lctype=-2))
        none = await store.query_messages(HistoryQuery("c1", lctype=-5))
    assert stamps(images) == [6, 9, 12]
    assert stamps(first) == [3, 6]
    assert stamps(before) == [3, 6]
    assert none == []


async def test_history_accepts_bounds_beyond_64_bits(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_messages(FIVE)
        huge, tiny = 2**70, -(2**70)
        assert stamps(await store.query_messages(HistoryQuery("c1", start=Bound(huge)))) == [
            1,
            2,
            3,
            4,
            5,
        ]
        new = Direction.NEW
        assert (
            await store.query_messages(HistoryQuery("c1", start=Bound(huge), direction=new)) == []
        )
        assert await store.query_messages(HistoryQuery("c1", start=Bound(tiny))) == []
        page = await store.query_messages(HistoryQuery("c1", start=Bound(tiny), direction=new))
        assert stamps(page) == [1, 2, 3, 4, 5]
        both = HistoryQuery("c1", start=Bound(huge), end=Bound(tiny), limit=2)
        assert stamps(await store.query_messages(both)) == [4, 5]


async def test_history_matches_the_reference_on_random_queries(store: Store) -> None:
    rng = random.Random(20261121)
    mids = rng.sample([f"{a}{b}" for a in "abcdefghij" for b in "0123456789"], 100)
    msgs = [
        make_msg("c1", rng.randint(1, 30), mid, lctype=rng.choice([None, -1, -2])) for mid in mids
    ]
    msgs.append(make_msg("c2", 15, "zz"))

    def bound() -> Bound | None:
        if rng.random() < 0.25:
            return None
        if rng.random() < 0.5:
            m = rng.choice(msgs)
            ts, mid = m.timestamp, m.mid
        else:
            ts, mid = rng.randint(0, 31), rng.choice(mids)
        return Bound(ts, mid if rng.random() < 0.6 else None, inclusive=rng.random() < 0.5)

    with trio.fail_after(TIMEOUT):
        for i in range(0, len(msgs), 17):
            await store.append_messages(msgs[i : i + 17])
        for _ in range(400):
            query = HistoryQuery(
                "c1",
                limit=rng.choice([1, 2, 3, 5, 20, 1000]),
                start=bound(),
                end=bound(),
                direction=rng.choice(list(Direction)),
                lctype=rng.choice([None, None, -1, -2]),
            )
            assert await store.query_messages(query) == reference_page(msgs, query), query


# concurrency and durability


async def test_readers_never_see_half_a_batch(store: Store) -> None:
    # The batch is written in ascending order, so a reader that could see part of it
    # would find an older last message, a short or shifted page, or an early maximum.
    count = 20_000
    batch = [make_msg("c1", ts, f"m{ts:06d}") for ts in range(1, count + 1)]
    newest_page = list(range(count - 999, count + 1))
    seen: dict[str, set[object]] = {"last": set(), "conv": set(), "page": set(), "max": set()}
    writing = trio.Event()
    written = trio.Event()

    async def read_until_written() -> None:
        await writing.wait()
        while not written.is_set():
            last = await store.last_message("c1")
            seen["last"].add(None if last is None else last.timestamp)
            conv = await store.get_conversation("c1")
            assert conv is not None
            seen["conv"].add(conv.last_message_at)
            page = stamps(await store.query_messages(HistoryQuery("c1", limit=1000)))
            seen["page"].add("none" if not page else "all" if page == newest_page else "part")
            seen["max"].add(await store.max_message_timestamp())

    async def write() -> None:
        writing.set()
        await store.append_messages(batch)
        written.set()

    with trio.fail_after(TIMEOUT * 3):
        await store.create_conversation(make_conv("c1"))
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(read_until_written)
            nursery.start_soon(write)
        last = await store.last_message("c1")
    assert seen["last"] <= {None, count}
    assert seen["conv"] <= {None, count}
    assert seen["page"] <= {"none", "all"}
    assert seen["max"] <= {0, count}
    assert last is not None
    assert last.timestamp == count


async def test_sqlite_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    conv = make_conv("c1", attrs={"name": "persisted", "n": [1, {"x": None}]}, unique=True)
    msgs = [make_msg("c1", 5, "a", dedupe_token="dt"), make_msg("c1", 6, "b", binary=b"\x00\xff")]
    with trio.fail_after(TIMEOUT):
        first = SqliteStore(path)
        await first.open()
        await first.create_conversation(conv)
        await first.append_messages(msgs)
        await first.aclose()
        again = SqliteStore(path)
        await again.open()
        try:
            conv.last_message_at = 6
            assert await again.get_conversation("c1") == conv
            assert await again.find_unique_conversation(["bob", "alice"]) == conv
            assert await again.query_messages(HistoryQuery("c1")) == msgs
            assert await again.find_by_dedupe_token("c1", "alice", "dt") == msgs[0]
            assert await again.max_message_timestamp() == 6
            assert [c.cid for c in await again.conversations_of("alice", 10, 0)] == ["c1"]
        finally:
            await again.aclose()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    with trio.fail_after(TIMEOUT):
        store = SqliteStore(path)
        await store.open()
        await store.aclose()
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.close()
        with pytest.raises(StoreError, match="newer"):
            await SqliteStore(path).open()


async def test_sqlite_refuses_files_it_did_not_create(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 200)
    with trio.fail_after(TIMEOUT):
        with pytest.raises(StoreError, match="not a chatroom database"):
            await SqliteStore(str(foreign)).open()
        with pytest.raises(StoreError, match="not a usable SQLite database"):
            await SqliteStore(str(garbage)).open()
    assert garbage.read_bytes() == b"this is not a database at all" * 200


def test_sqlite_refuses_in_memory_paths() -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SqliteStore(":memory:")


# unread counts, receipts and patches (MemberMarks, Patch)


async def test_append_counts_unread_for_every_other_member_in_the_same_commit(
    store: Store,
) -> None:
    from chatroom.core.model import MemberMarks

    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1", ("alice", "bob", "carol")))
        await store.append_messages(
            [
                make_msg("c1", 10, "a", from_peer="alice"),
                make_msg("c1", 11, "b", from_peer="bob", mention_pids=("carol", "bob")),
                make_msg("c1", 12, "c", from_peer="alice"),
                make_msg("nowhere", 13, "d"),
            ]
        )
        marks = {k.peer: k for k in await store.member_marks("c1")}
        assert marks == {
            "alice": MemberMarks("alice", "c1", 1, False, 11),
            "bob": MemberMarks("bob", "c1", 2, False, 12),
            "carol": MemberMarks("carol", "c1", 3, True, 12),
        }
        await store.append_messages([make_msg("c1", 20, "e", from_peer="bob", mention_all=True)])
        marks = {k.peer: k for k in await store.member_marks("c1")}
        assert (marks["alice"].unread, marks["alice"].mentioned) == (2, True)
        assert marks["bob"].unread == 2  # own messages never count
        assert await store.member_marks("nowhere") == []


async def test_mark_read_recounts_and_mark_acked_only_moves_forward(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.append_messages(
            [make_msg("c1", t, f"m{t}", mention_all=t == 30) for t in (10, 20, 30)]
        )
        acked = await store.mark_acked("bob", "c1", 20)
        assert (acked.acked_at, acked.unread) == (20, 3)
        assert (await store.mark_acked("bob", "c1", 5)).acked_at == 20
        read = await store.mark_read("bob", "c1", 20, now=99)
        assert (read.unread, read.mentioned, read.read_at, read.changed_at) == (1, True, 20, 99)
        read = await store.mark_read("bob", "c1", 15, now=100)  # never backwards
        assert (read.unread, read.read_at) == (1, 20)
        read = await store.mark_read("bob", "c1", 30, now=101)
        assert (read.unread, read.mentioned, read.acked_at) == (0, False, 30)
        fresh = await store.mark_read("carol", "c1", 10, now=5)  # no row yet: created
        assert (fresh.unread, fresh.read_at) == (2, 10)


async def test_changed_marks_for_the_login_sync(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for cid in ("c1", "c2", "c3"):
            await store.create_conversation(make_conv(cid))
        await store.append_messages([make_msg("c1", 10, "a"), make_msg("c2", 20, "b")])
        await store.append_messages([make_msg("c3", 30, "c")])
        first = await store.changed_marks("bob", None, 50)
        assert [k.cid for k in first] == ["c3", "c2", "c1"]
        assert [k.cid for k in await store.changed_marks("bob", None, 2)] == ["c3", "c2"]
        await store.mark_acked("bob", "c1", 10)
        await store.mark_acked("bob", "c2", 20)
        await store.mark_acked("bob", "c3", 30)
        assert [k.cid for k in await store.changed_marks("bob", 15, 50)] == ["c3", "c2"]
        await store.mark_read("bob", "c3", 30, now=40)
        assert [k.cid for k in await store.changed_marks("bob", None, 50)] == ["c2", "c1"]
        assert [k.cid for k in await store.changed_marks("bob", 35, 50)] == ["c3"]
        await store.mark_acked("bob", "c1", 5)
        # unread and not delivered: always included
        await store.append_messages([make_msg("c1", 50, "d")])
        assert [k.cid for k in await store.changed_marks("bob", 60, 50)] == ["c1"]
        conv = await store.get_conversation("c1")
        assert conv is not None
        conv.members = ["alice"]
        await store.save_conversation(conv)  # bob left c1: no longer his business
        assert await store.changed_marks("bob", 60, 50) == []
        assert await store.changed_marks("nobody", None, 50) == []


async def test_patch_message_rewrites_in_place_and_patches_since(store: Store) -> None:
    from chatroom.core.model import Patch

    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.create_conversation(make_conv("c2", ("carol", "dave")))
        original = make_msg("c1", 10, "a", dedupe_token="dt", mention_pids=("bob",))
        await store.append_messages([original, make_msg("c1", 11, "b"), make_msg("c2", 5, "z")])
        assert await store.patch_message(Patch("c1", "nope", 100, data="x")) is None
        patched = await store.patch_message(
            Patch("c1", "a", 100, binary=b"\x00\x01", mention_all=True)
        )
        assert patched == make_msg(
            "c1", 10, "a", binary=b"\x00\x01", mention_all=True, dedupe_token="dt",
            patch_timestamp=100,
        )  # fmt: skip
        assert await store.get_message("c1", "a") == patched
        assert await store.find_by_dedupe_token("c1", "alice", "dt") == patched
        assert (await store.query_messages(HistoryQuery("c1")))[0] == patched
        recalled = await store.patch_message(
            Patch("c1", "b", 200, data='{"_lctype":-127}', lctype=-127)
        )
        assert recalled is not None
        assert (recalled.lctype, recalled.timestamp) == (-127, 11)
        assert await store.query_messages(HistoryQuery("c1", lctype=-127)) == [recalled]
        await store.patch_message(Patch("c2", "z", 150, data="z2"))
        assert [m.mid for m in await store.patches_since("bob", 0, 10)] == ["a", "b"]
        assert [m.mid for m in await store.patches_since("bob", 100, 10)] == ["b"]
        assert [m.mid for m in await store.patches_since("bob", 0, 1)] == ["a"]
        assert [m.mid for m in await store.patches_since("carol", 0, 10)] == ["z"]
        assert await store.last_message("c1") == recalled


# select_conversations (ConvFilter / ConvOrder)


async def _five(store: Store) -> None:
    """c1..c5 with members, kinds, creators, times and attributes to select on."""
    specs = [
        ("c1", ("alice", "bob"), ConvType.NORMAL, {"name": "one", "n": 1, "t": ["x"]}, 50),
        ("c2", ("bob", "carol"), ConvType.NORMAL, {"name": "two", "n": 2, "o": {"k": 1}}, None),
        ("c3", (), ConvType.TRANSIENT, {"name": "three", "n": 3}, 70),
        ("c4", ("alice",), ConvType.SYSTEM, {"name": "four", "n": 2}, None),
        ("c5", ("alice", "carol"), ConvType.TEMPORARY, {"name": "five"}, None),
    ]
    for i, (cid, members, kind, attrs, lm) in enumerate(specs):
        conv = make_conv(
            cid,
            members,
            kind=kind,
            attrs=attrs,
            creator="op" if kind is ConvType.SYSTEM else "alice",
            created_at=10 * (i + 1),
            updated_at=100 - i,
            last_message_at=lm,
            expire_at=1000 if kind is ConvType.TEMPORARY else None,
        )
        await store.create_conversation(conv)


async def _select(store: Store, order: tuple[ConvOrder, ...] = (), **where: object) -> list[str]:
    with trio.fail_after(TIMEOUT):
        found = await store.select_conversations(ConvFilter(**where), order, 100, 0)  # type: ignore[arg-type]
    return [c.cid for c in found]


async def test_select_conversations_filters(store: Store) -> None:
    await _five(store)
    by_cid = (ConvOrder("objectId"),)
    assert await _select(store, by_cid) == ["c1", "c2", "c3", "c4", "c5"]
    assert await _select(store, by_cid, cids=("c2", "c9", "c4")) == ["c2", "c4"]
    assert await _select(store, by_cid, cids=()) == []
    assert await _select(store, by_cid, members_all=("alice",)) == ["c1", "c4", "c5"]
    assert await _select(store, by_cid, members_all=("alice", "carol")) == ["c5"]
    assert await _select(store, by_cid, members_any=("bob", "carol")) == ["c1", "c2", "c5"]
    kinds = frozenset({ConvType.TRANSIENT, ConvType.SYSTEM})
    assert await _select(store, by_cid, kinds=kinds) == ["c3", "c4"]
    assert await _select(store, by_cid, creator="op") == ["c4"]
    assert await _select(store, by_cid, ranges=(("lm", ">", 50),)) == ["c3"]
    assert await _select(store, by_cid, ranges=(("lm", "<=", 70),)) == ["c1", "c3"]
    assert await _select(store, by_cid, ranges=(("createdAt", ">=", 40),)) == ["c4", "c5"]
    assert await _select(store, by_cid, ranges=(("updatedAt", "<", 98),)) == ["c4", "c5"]
    assert await _select(store, by_cid, attr_equals=(("name", "two"),)) == ["c2"]
    assert await _select(store, by_cid, attr_equals=(("n", 2),)) == ["c2", "c4"]
    # arrays and objects pass an equality (the caller's matcher decides on them)
    assert await _select(store, by_cid, attr_equals=(("t", "y"),)) == ["c1"]
    assert await _select(store, by_cid, attr_equals=(("o", 5),)) == ["c2"]
    assert await _select(store, by_cid, attr_equals=(("o.k", 1),)) == ["c2"]
    assert await _select(store, by_cid, alive_at=999) == ["c1", "c2", "c3", "c4", "c5"]
    assert await _select(store, by_cid, alive_at=1000) == ["c1", "c2", "c3", "c4"]
    branches = (ConvFilter(creator="op"), ConvFilter(attr_equals=(("name", "one"),)))
    assert await _select(store, by_cid, any_of=branches) == ["c1", "c4"]


async def test_select_conversations_order_limit_skip(store: Store) -> None:
    await _five(store)
    # activity: the last message, else the creation time
    assert await _select(store, (ConvOrder("activity", True),)) == ["c3", "c5", "c1", "c4", "c2"]
    # missing values last in both directions
    assert (await _select(store, (ConvOrder("lm"),)))[:2] == ["c1", "c3"]
    assert (await _select(store, (ConvOrder("lm", True),)))[:2] == ["c3", "c1"]
    assert await _select(store, (ConvOrder("n", True), ConvOrder("name"))) == [
        "c3",
        "c4",
        "c2",
        "c1",
        "c5",
    ]
    # ties by cid in the first key's direction
    assert await _select(store, (ConvOrder("c", True),)) == ["c4", "c5", "c3", "c2", "c1"]
    assert await _select(store, (ConvOrder("c"),)) == ["c1", "c2", "c3", "c5", "c4"]
    page = await store.select_conversations(ConvFilter(), (ConvOrder("createdAt"),), 2, 1)
    assert [c.cid for c in page] == ["c2", "c3"]
    assert page[0].attrs == {"name": "two", "n": 2, "o": {"k": 1}}
    with pytest.raises(ValueError, match="negative"):
        await store.select_conversations(ConvFilter(), (), -1, 0)


async def test_select_conversations_follows_saved_members(store: Store) -> None:
    await _five(store)
    conv = await store.get_conversation("c2")
    assert conv is not None
    conv.members = ["dave"]
    await store.save_conversation(conv)
    assert await _select(store, members_all=("dave",)) == ["c2"]
    assert await _select(store, members_any=("bob",)) == ["c1"]


async def test_a_refused_batch_counts_nothing_unread(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.create_conversation(make_conv("c1"))
        await store.append_messages([make_msg("c1", 10, "a")])
        with pytest.raises(IntegrityError):
            await store.append_messages([make_msg("c1", 11, "b"), make_msg("c1", 12, "a")])
        (bob,) = [k for k in await store.member_marks("c1") if k.peer == "bob"]
        assert (bob.unread, bob.changed_at) == (1, 10)  # same transaction as the messages


async def test_recent_dedupe_tokens_are_the_newest_tokened_messages_oldest_first(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        batch = [
            make_msg("c1", 1000 + i, f"m{i:02d}", dedupe_token=f"dt{i}" if i % 2 else None)
            for i in range(10)
        ]
        await store.append_messages(batch)
        recent = await store.recent_dedupe_tokens(3)
        assert [m.dedupe_token for m in recent] == ["dt5", "dt7", "dt9"]
        assert [m.mid for m in recent] == ["m05", "m07", "m09"]
        assert await store.recent_dedupe_tokens(0) == []
        assert len(await store.recent_dedupe_tokens(100)) == 5


async def test_select_conversations_name_prefix(store: Store) -> None:
    await _five(store)
    assert await _select(store, (ConvOrder("objectId"),), name_prefix="t") == ["c2", "c3"]
    assert await _select(store, name_prefix="three") == ["c3"]
    assert await _select(store, name_prefix="x") == []


async def test_select_conversations_attr_regex(store: Store) -> None:
    await _five(store)
    by_cid = (ConvOrder("objectId"),)
    assert await _select(store, by_cid, attr_regex=(("name", "^T", "i"),)) == ["c2", "c3"]
    assert await _select(store, by_cid, attr_regex=(("name", "\\Qe\\E$", ""),)) == [
        "c1",
        "c3",
        "c5",
    ]
    # arrays and objects pass (the caller decides); numbers and missing values do not
    assert await _select(store, by_cid, attr_regex=(("t", "nothing", ""),)) == ["c1"]
    assert await _select(store, by_cid, attr_regex=(("n", "1", ""),)) == []


async def test_a_version_4_file_gets_conversation_versions_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    row = (
        "INSERT INTO conversations (cid, kind, creator, members, attrs, created_at,"
        " updated_at, is_unique, muted) VALUES ('c1', 1, 'alice', '[\"alice\"]',"
        " '{\"name\": \"old\"}', 1, 1, 0, '[]')"
    )
    old_sqlite_file(path, [*SCHEMA, *LASTING_SCHEMA, *MODERATION_SCHEMA, *TIME_INDEX, row], 4)
    assert SCHEMA_VERSION == 5
    with trio.fail_after(TIMEOUT):
        store = SqliteStore(str(path))
        await store.open()
        try:
            conv = await store.get_conversation("c1")
            assert conv is not None
            assert (conv.attrs, conv.version) == ({"name": "old"}, 0)
            conv.members.append("bob")
            assert await store.save_conversation(conv) == 1
            assert [c.cid for c in await store.conversations_of("bob", 10, 0)] == ["c1"]
        finally:
            await store.aclose()
