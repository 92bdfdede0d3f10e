"""A real ``redis-server`` for the cluster tests, on a private unix socket.

``RedisServer`` starts Debian's ``redis-server`` (nothing saved, no TCP port) in a
temporary folder and stops it by its PID; ``restart`` brings it back on the same
socket. Tests that need it skip when the binary is missing, unless the environment
has CHATROOM_REQUIRE_REDIS set (.ci/run sets it), where they fail instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_START_TIMEOUT = 10.0  # seconds redis-server gets to open its socket


class RedisServer:
    def __init__(self, folder: Path, settings: tuple[str, ...] = ()) -> None:
        self.folder = folder
        self.settings = settings  # more command-line settings, as "--name", "value"
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        args = [binary, "--port", "0", "--unixsocket", str(self.socket), "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.folder), *self.settings]
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + _START_TIMEOUT
        # The socket's file appears at bind(), before listen(): until a connection is
        # accepted, a client may still be refused.
        while not self._accepts():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: see {self.folder}/redis.log")
            time.sleep(0.01)

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:  # not there yet, or not listening yet
                return False
        return True

    def stop(self) -> None:
        """Kill it (SIGKILL: a crash, not a shutdown) and wait for it to be gone."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(_START_TIMEOUT)
            self.process = None
            self.socket.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start()


def require_binary() -> None:
    if shutil.which("redis-server") is None:
        if os.environ.get("CHATROOM_REQUIRE_REDIS"):
            pytest.fail("redis-server is required (CHATROOM_REQUIRE_REDIS is set)")
        pytest.skip("redis-server is not installed")


def redis_server(*settings: str) -> Iterator[RedisServer]:
    """A started server (with more command-line ``settings``), stopped at the end (for
    a fixture)."""
    require_binary()
    with tempfile.TemporaryDirectory(prefix="chatroom-redis-") as folder:
        server = RedisServer(Path(folder), settings)
        server.start()
        try:
            yield server
        finally:
            server.stop()
