"""The tests' private PostgreSQL (``pg_cluster.PgServer``): one per session (the
``pg_server`` fixture); each test gets a fresh database of its own
(``create_database``), dropped after it. Without PostgreSQL the fixture skips, unless
``CHATROOM_REQUIRE_PG`` is set (CI sets it), when it fails: CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pg_cluster import PgServer, postgres_bindir

__all__ = ["PgServer", "own_pg_server", "pg_server", "start_pg_server"]


def start_pg_server(*, durable: bool = False) -> PgServer:
    """A started private server, or skip (fail with ``CHATROOM_REQUIRE_PG``) without
    PostgreSQL."""
    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (apt-get install postgresql)"
        if os.environ.get("CHATROOM_REQUIRE_PG"):
            pytest.fail(f"{message}, and CHATROOM_REQUIRE_PG is set")
        pytest.skip(message)
    server = PgServer(bindir, Path(tempfile.mkdtemp(prefix="chatroom-pg-")), durable=durable)
    try:
        server.initdb()
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
        raise
    return server


@contextmanager
def private_pg_server() -> Iterator[PgServer]:
    """A started server, stopped by PID and removed at the end."""
    server = start_pg_server()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL; a test takes a database of its own on it."""
    with private_pg_server() as server:
        yield server


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A PostgreSQL of this test alone, which it may stop and start."""
    with private_pg_server() as server:
        yield server
