"""The ``Store`` contract for the state that outlives a process: session tokens, used
signature nonces, the conversation event log, pending receipts and wills
(``Store.save_lasting`` and its reads, ``purge_expired``), against both stores; and, for
SQLite, that it survives a reopen and that a version-1 file is upgraded in place.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from store_examples import old_sqlite_file

from chatroom.core.model import (
    ConvEventRecord,
    HistoryQuery,
    LastingChanges,
    Message,
    PendingReceipt,
    SessionRecord,
    WillRecord,
)
from chatroom.store.base import IntegrityError, Store
from chatroom.store.sqlite import SCHEMA_VERSION, SqliteStore
from chatroom.store.sqlite_schema import SCHEMA

TIMEOUT = 10


def session(token: str, expires_ms: int = 10_000, **kw: object) -> SessionRecord:
    fields: dict[str, object] = {"peer_id": "alice", "tag": "phone", "device_id": "d1"}
    fields.update(kw)
    return SessionRecord(token=token, expires_ms=expires_ms, **fields)  # type: ignore[arg-type]


def event(ts: int, peers: tuple[str, ...] = ("alice", "bob"), **kw: object) -> ConvEventRecord:
    fields: dict[str, object] = {"payload": f"event {ts}".encode(), "delivered": ("st-1",)}
    fields.update(kw)
    return ConvEventRecord(peers=peers, server_ts=ts, expires_ms=ts + 1000, **fields)  # type: ignore[arg-type]


def receipt(mid: str, timestamp: int, cid: str = "c1") -> PendingReceipt:
    return PendingReceipt(cid, mid, timestamp, "tom", expires_ms=timestamp + 1000)


def will(peer: str, token: str = "st-1", expires_ms: int = 10_000) -> WillRecord:
    return WillRecord(peer, token, b"\x0a\x02c1\x12\x03bye", expires_ms)


# session tokens


async def test_session_tokens_are_saved_replaced_and_deleted(store: Store) -> None:
    first = session("st-1")
    other = session("st-2", peer_id="bob", tag=None, device_id=None)
    await store.save_lasting(LastingChanges(sessions={"st-1": first, "st-2": other}))
    assert await store.get_session("st-1") == first
    assert await store.get_session("st-2") == other
    assert await store.get_session("st-3") is None
    dropped = session("st-1", taken_over=True, room="room-1", room_until_ms=5_000)
    await store.save_lasting(LastingChanges(sessions={"st-1": dropped, "st-2": None}))
    assert await store.get_session("st-1") == dropped
    assert await store.get_session("st-2") is None


async def test_a_bad_value_stores_nothing_of_its_batch(store: Store) -> None:
    changes = LastingChanges(
        sessions={"st-1": session("st-1")},
        wills={"alice": will("alice", expires_ms=2**63)},  # beyond 64 bits
    )
    with pytest.raises(IntegrityError):
        await store.save_lasting(changes)
    assert await store.get_session("st-1") is None
    assert await store.will_of("alice") is None


# nonces


async def test_a_nonce_keeps_its_first_expiry_and_only_live_ones_are_listed(store: Store) -> None:
    await store.save_lasting(LastingChanges(nonces={"n1": 2_000, "n2": 3_000, "old": 500}))
    await store.save_lasting(LastingChanges(nonces={"n1": 9_000, "n3": 4_000}))
    assert await store.live_nonces(1_000, 10) == {"n1": 2_000, "n2": 3_000, "n3": 4_000}
    assert await store.live_nonces(1_000, 2) == {"n3": 4_000, "n2": 3_000}  # latest-expiring
    assert await store.live_nonces(3_000, 10) == {"n3": 4_000}


# conversation event log


async def test_conv_events_per_client_newest_first_kept_ascending(store: Store) -> None:
    await store.save_lasting(
        LastingChanges(conv_events=[event(10), event(20, ("bob",)), event(30, delivered=())])
    )
    await store.save_lasting(LastingChanges(conv_events=[event(40, ("alice", "alice"))]))
    alice = await store.conv_events_for("alice", 0, None, 10)
    assert [(e.server_ts, e.peers) for e in alice] == [
        (10, ("alice",)),
        (30, ("alice",)),
        (40, ("alice",)),
    ]
    assert alice[0] == event(10, ("alice",))  # payload, delivered and expiry round-trip
    assert alice[1].delivered == ()
    assert [e.server_ts for e in await store.conv_events_for("bob", 10, None, 10)] == [20, 30]
    assert [e.server_ts for e in await store.conv_events_for("alice", 0, 40, 10)] == [10, 30]
    assert [e.server_ts for e in await store.conv_events_for("alice", 0, None, 2)] == [30, 40]
    assert await store.conv_events_for("carol", 0, None, 10) == []


# pending receipts


async def test_pending_receipts_are_added_taken_and_listed_newest(store: Store) -> None:
    a, b, c = receipt("a", 10), receipt("b", 20), receipt("c", 30, cid="c2")
    await store.save_lasting(LastingChanges(receipts={("c1", "a"): a, ("c1", "b"): b}))
    await store.save_lasting(LastingChanges(receipts={("c2", "c"): c, ("c1", "a"): None}))
    assert await store.pending_receipts(10) == [b, c]
    assert await store.pending_receipts(1) == [c]


# wills


async def test_one_will_per_user_replaced_and_deleted(store: Store) -> None:
    await store.save_lasting(LastingChanges(wills={"alice": will("alice"), "bob": will("bob")}))
    newer = will("alice", token="st-2")
    await store.save_lasting(LastingChanges(wills={"alice": newer, "bob": None}))
    assert await store.will_of("alice") == newer
    assert await store.will_of("bob") is None


# expiry


async def test_purge_deletes_what_expired_up_to_its_limit(store: Store) -> None:
    changes = LastingChanges(
        sessions={f"st-{i}": session(f"st-{i}", expires_ms=100 * i) for i in range(1, 5)},
        nonces={"n1": 100, "n2": 900},
        conv_events=[event(0), event(50), event(500)],  # expire at 1000, 1050, 1500
        receipts={("c1", "a"): receipt("a", 0), ("c1", "b"): receipt("b", 900)},
        wills={"alice": will("alice", expires_ms=100), "bob": will("bob", expires_ms=900)},
    )
    await store.save_lasting(changes)
    # At 1050: sessions 1-4, n1, n2, receipt a, both wills and two events are due.
    # One of each kind; an event is three rows (its own and its two peers').
    assert await store.purge_expired(1050, 1) == 1 + 1 + 1 + 1 + 3
    assert await store.get_session("st-1") is None
    assert await store.get_session("st-2") is not None
    assert await store.will_of("alice") is None
    assert await store.purge_expired(1050, 100) == 3 + 1 + 0 + 1 + 3
    assert await store.purge_expired(1050, 100) == 0
    assert [await store.get_session(f"st-{i}") for i in range(1, 5)] == [None] * 4
    assert await store.live_nonces(0, 10) == {}
    assert await store.pending_receipts(10) == [receipt("b", 900)]
    assert await store.will_of("bob") is None
    assert [e.server_ts for e in await store.conv_events_for("alice", -1, None, 10)] == [500]


async def test_purge_counts_the_peer_rows_of_events_toward_its_limit(store: Store) -> None:
    # A limit of events alone let one transaction delete limit x members rows.
    group = tuple(f"p{i}" for i in range(9))
    await store.save_lasting(LastingChanges(conv_events=[event(ts, group) for ts in range(5)]))
    assert await store.purge_expired(2000, 20) == 2 * 10  # two events of 1 + 9 rows
    assert [e.server_ts for e in await store.conv_events_for("p0", -1, None, 10)] == [2, 3, 4]
    assert await store.purge_expired(2000, 4) == 10  # at least one event, however large
    assert await store.purge_expired(2000, 100) == 2 * 10
    assert await store.conv_events_for("p0", -1, None, 10) == []


# SQLite: a reopen, and an upgrade from version 1


async def _save_every_kind(store: Store) -> LastingChanges:
    changes = LastingChanges(
        sessions={"st-1": session("st-1", room="r1", room_until_ms=9)},
        nonces={"n1": 5_000},
        conv_events=[event(10, ("alice",))],
        receipts={("c1", "a"): receipt("a", 10)},
        wills={"alice": will("alice")},
    )
    await store.save_lasting(changes)
    return changes


async def _assert_every_kind(store: Store, changes: LastingChanges) -> None:
    assert await store.get_session("st-1") == changes.sessions["st-1"]
    assert await store.live_nonces(0, 10) == changes.nonces
    assert await store.conv_events_for("alice", 0, None, 10) == changes.conv_events
    assert await store.pending_receipts(10) == list(changes.receipts.values())
    assert await store.will_of("alice") == changes.wills["alice"]


async def test_sqlite_lasting_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "chat.db")
    with trio.fail_after(TIMEOUT):
        first = SqliteStore(path)
        await first.open()
        changes = await _save_every_kind(first)
        await first.aclose()
        again = SqliteStore(path)
        await again.open()
        try:
            await _assert_every_kind(again, changes)
        finally:
            await again.aclose()


async def test_sqlite_upgrades_a_version_1_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    row = (  # what version 1 created, with one message
        "INSERT INTO messages (cid, mid, from_peer, timestamp, data, mention_all)"
        " VALUES ('c1', 'm1', 'alice', 7, 'kept', 0)"
    )
    old_sqlite_file(path, [*SCHEMA, row, "UPDATE meta SET max_timestamp = 7"], 1)
    assert SCHEMA_VERSION == 5
    with trio.fail_after(TIMEOUT):
        store = SqliteStore(str(path))
        await store.open()
        try:
            kept = Message("c1", "m1", "alice", 7, data="kept")
            assert await store.query_messages(HistoryQuery("c1")) == [kept]
            await _assert_every_kind(store, await _save_every_kind(store))
        finally:
            await store.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
