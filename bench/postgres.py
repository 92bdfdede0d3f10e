"""The PostgreSQL of the persist-pg scenario: the tests' private cluster
(tests/pg_cluster.py), here durable (fsync and synchronous commit on, as a production
server would run), on every core: the harness runs on the generator's core only, and the
database should not be squeezed onto it."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pg_cluster import PgServer, postgres_bindir  # after tests/ joined the path

__all__ = ["PgServer", "running_postgres"]


@contextmanager
def running_postgres(wanted: bool) -> Iterator[PgServer | None]:
    """A started durable server if ``wanted`` and installed (else None), stopped by PID
    and removed at the end."""
    bindir = postgres_bindir() if wanted else None
    if bindir is None:
        yield None
        return
    server = PgServer(bindir, Path(tempfile.mkdtemp(prefix="chatroom-bench-pg-")), durable=True)
    try:
        server.initdb()
        server.start()
        assert server.process is not None
        all_cores = set(range(os.cpu_count() or 1))
        os.sched_setaffinity(server.process.pid, all_cores)  # its backends inherit it
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
