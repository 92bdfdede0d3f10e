"""The ``store`` fixture of the store contract suites: every test that takes it runs
against each implementation, so that they cannot drift apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from helpers import TIMEOUT

from chatroom.store.base import Store
from chatroom.store.memory import MemoryStore
from chatroom.store.sqlite import SqliteStore


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An opened store of each kind (SQLite on a file under ``tmp_path``), closed after
    the test, which fails rather than hangs after ``TIMEOUT`` seconds."""
    opened: Store
    opened = MemoryStore() if request.param == "memory" else SqliteStore(str(tmp_path / "chat.db"))
    await opened.open()
    try:
        with trio.fail_after(TIMEOUT):
            yield opened
    finally:
        await opened.aclose()
