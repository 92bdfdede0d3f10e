"""Fixtures of the SDK tests: servers started per test, each stopped with SIGTERM and
checked to exit 0.

Every SDK test runs twice: against one server (``[one]``, its own SQLite file) and
against a cluster of two nodes (``[cluster]``: tests/sdk_harness.py ``Cluster``, one
PostgreSQL database of its own on the session's private PostgreSQL, one Redis
database number of its own on the session's private redis-server), with the
scenario's clients spread over both nodes.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import PgServer, private_pg_server
from redis_server import RedisServer, redis_server
from sdk_harness import Cluster, Server, StartServer

REDIS_DATABASES = 4096  # one per cluster test of a session, so none hears another's


class ClusterBacking:
    """The session's redis-server and PostgreSQL; each cluster gets fresh databases."""

    def __init__(self, redis: RedisServer, pg: PgServer) -> None:
        self.redis = redis
        self.pg = pg
        self._numbers = itertools.count(1)
        self.databases: list[str] = []

    def cluster(self, env: dict[str, str]) -> Cluster:
        name = self.pg.create_database()
        self.databases.append(name)
        number = next(self._numbers) % REDIS_DATABASES
        return Cluster(self.pg.url(name), env, f"{self.redis.url}?db={number}")

    def drop_databases(self) -> None:
        while self.databases:
            self.pg.drop_database(self.databases.pop())


@pytest.fixture(scope="session")
def cluster_backing() -> Iterator[ClusterBacking]:
    for redis in redis_server("--databases", str(REDIS_DATABASES)):
        with private_pg_server() as pg:
            yield ClusterBacking(redis, pg)


@pytest.fixture(params=["one", "cluster"])
def start_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartServer]:
    """Start servers (or clusters) with extra ``CHATROOM_*`` settings and, for TLS, the
    CA that signed their certificate; each must exit 0 on SIGTERM."""
    backing = request.getfixturevalue("cluster_backing") if request.param == "cluster" else None
    servers: list[Server] = []

    def start(ca_file: Path | None = None, **settings: str) -> Server:
        env = {**os.environ, **{f"CHATROOM_{k.upper()}": v for k, v in settings.items()}}
        if backing is None:
            server = Server(tmp_path / f"chat{len(servers)}.db", env)
        else:
            server = backing.cluster(env)
        server.ca_file = ca_file
        servers.append(server)
        server.start()
        return server

    yield start
    failures = []
    for server in servers:
        code = server.stop()
        if code != 0:
            failures.append(f"server exited {code} on SIGTERM:\n{server.log_tail()}")
    if backing is not None:
        backing.drop_databases()
    assert not failures, "\n".join(failures)


@pytest.fixture
def server(start_server: StartServer) -> Server:
    return start_server()
