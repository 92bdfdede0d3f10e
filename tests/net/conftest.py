"""The session's private PostgreSQL (tests/pg_server.py) for the server tests on it."""

from __future__ import annotations

from pg_server import own_pg_server, pg_server

__all__ = ["own_pg_server", "pg_server"]
