"""Fixtures of the SDK tests: servers started per test, each stopped with SIGTERM and
checked to exit 0."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_harness import Server, StartServer


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """Start servers with extra ``CHATROOM_*`` settings; each must exit 0 on SIGTERM."""
    servers: list[Server] = []

    def start(**settings: str) -> Server:
        env = {**os.environ, **{f"CHATROOM_{k.upper()}": v for k, v in settings.items()}}
        server = Server(tmp_path / f"chat{len(servers)}.db", env)
        servers.append(server)
        server.start()
        return server

    yield start
    failures = []
    for server in servers:
        code = server.stop()
        if code != 0:
            failures.append(f"server exited {code} on SIGTERM:\n{server.log_tail()}")
    assert not failures, "\n".join(failures)


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server()
