"""A private PostgreSQL cluster: Debian's ``postgresql`` package, ``initdb`` into a
temporary folder, the server listening on a unix socket in that folder only (no TCP),
stopped by its PID. The tests use it through ``pg_server.py``; the bench's persist-pg
scenario too (durable there). No pytest here.

PostgreSQL refuses to run as root: as root, the server and ``initdb`` run as the
``postgres`` user the package creates.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

USER = "chatroom"  # the superuser initdb creates; trust authentication on the socket
START_TIMEOUT = 60  # seconds for initdb or a start; a hang fails, never waits forever


def postgres_bindir() -> Path | None:
    """The newest installed PostgreSQL's binaries, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


class PgServer:
    """One PostgreSQL cluster in ``root``, running as a child process of the tests."""

    def __init__(self, bindir: Path, root: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = 5432  # names the socket file only: the folder is private
        self.durable = durable
        self.process: subprocess.Popen[bytes] | None = None
        self._names = itertools.count()
        self._account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._account = pwd.getpwnam("postgres")
            os.chown(root, self._account.pw_uid, self._account.pw_gid)

    def _run_as(self) -> dict[str, Any]:
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": []}

    def initdb(self) -> None:
        command = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER]
        command += ["--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]
        subprocess.run(
            command, check=True, capture_output=True, timeout=START_TIMEOUT, **self._run_as()
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        settings = ["listen_addresses=", "max_connections=200", "shared_buffers=64MB"]
        if not self.durable:  # test data: a crash of the test machine may lose it
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        command = [str(self.bindir / "postgres"), "-D", str(self.data), "-k", str(self.root)]
        command += ["-p", str(self.port)]
        for setting in settings:
            command += ["-c", setting]
        log = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, **self._run_as()
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                text = (self.root / "server.log").read_text(errors="replace")
                raise RuntimeError(f"postgres exited at start:\n{text[-2000:]}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT: clients are disconnected), then reap it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def url(self, dbname: str) -> str:
        return f"postgresql://{USER}@/{dbname}?host={self.root}&port={self.port}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.encode())  # names made here, not input

    def create_database(self) -> str:
        """A new empty database; its name."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE template0")
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
