"""The moderation part of the ``Store`` contract (both stores), and the SQLite
upgrade of a version 2 file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from chatroom.core.roles import Moderation, ModerationChanges, Role
from chatroom.store.base import IntegrityError, Store
from chatroom.store.sqlite import SCHEMA_VERSION, SqliteStore
from chatroom.store.sqlite_schema import LASTING_SCHEMA, SCHEMA


async def test_empty_then_every_change_round_trips(store: Store) -> None:
    assert await store.moderation_of("c1") == Moderation()
    changes = ModerationChanges(
        roles={"m1": Role.MANAGER, "m2": Role.MANAGER},
        muted={"a": None, "b": 1_700_000_000_000, "ü": 2**62},
        blocked={"x": 5, "y": 6},
    )
    await store.save_moderation("c1", changes)
    expected = Moderation(
        {"m1", "m2"}, {"a": None, "b": 1_700_000_000_000, "ü": 2**62}, {"x": 5, "y": 6}
    )
    assert await store.moderation_of("c1") == expected
    assert await store.moderation_of("c2") == Moderation()  # per conversation
    # Lifting, demoting, re-muting with another end; blocking again keeps the first time.
    again = ModerationChanges(
        roles={"m1": Role.MEMBER, "nobody": Role.MEMBER},
        muted={"b": None},
        unmuted=["a", "never-muted"],
        blocked={"x": 99, "z": 7},
        unblocked=["y"],
    )
    await store.save_moderation("c1", again)
    after = Moderation({"m2"}, {"b": None, "ü": 2**62}, {"x": 5, "z": 7})
    assert await store.moderation_of("c1") == after


async def test_a_read_state_is_a_copy(store: Store) -> None:
    await store.save_moderation("c1", ModerationChanges(blocked={"x": 1}))
    state = await store.moderation_of("c1")
    state.blocked.clear()
    assert (await store.moderation_of("c1")).blocked == {"x": 1}


@pytest.mark.parametrize(
    "bad",
    [
        ModerationChanges(muted={"a": 2**63}),
        ModerationChanges(blocked={"a": -(2**63) - 1}),
        ModerationChanges(muted={"ok": None}, blocked={"\ud800": 1}),
    ],
)
async def test_values_a_store_cannot_hold_change_nothing(
    store: Store, bad: ModerationChanges
) -> None:
    with pytest.raises(IntegrityError):
        await store.save_moderation("c1", bad)
    assert await store.moderation_of("c1") == Moderation()


async def test_a_version_2_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as db:
        for statement in [*SCHEMA, *LASTING_SCHEMA]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
    db.close()
    assert SCHEMA_VERSION == 5
    with trio.fail_after(10):
        store = SqliteStore(str(path))
        await store.open()
        try:
            await store.save_moderation("c", ModerationChanges(roles={"m": Role.MANAGER}))
            assert (await store.moderation_of("c")).managers == {"m"}
        finally:
            await store.aclose()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
