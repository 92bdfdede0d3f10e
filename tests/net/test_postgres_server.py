"""The server on PostgreSQL, end to end: a real ``chatroom serve --db postgresql://...``
process whose messages, sent by the official SDK, are read back after a restart; and a
server whose database goes away: sends are refused with a clear error, nothing is
acknowledged that was not stored, and it carries on when the database returns.
"""

from __future__ import annotations

import os

import pytest
import trio
from helpers import Client, fail_after, running_server, users
from pg_server import PgServer
from sdk_harness import Server


def test_sdk_messages_stored_in_postgresql_survive_a_restart(pg_server: PgServer) -> None:
    url = pg_server.url(pg_server.create_database())
    first = Server(url, dict(os.environ))
    first.start()
    try:
        sent = first.run("stored_then_read", {"cid": None})
    finally:
        assert first.stop() == 0, first.log_tail()
    second = Server(url, dict(os.environ))
    second.start()
    try:
        read = second.run("stored_then_read", {"cid": sent["cid"]})
    finally:
        assert second.stop() == 0, second.log_tail()
    assert read["name"] == "kept"
    assert read["ids"] == sent["ids"]
    assert read["texts"] == [f"kept {n}" for n in range(5)]
    assert read["from"] == ["tom"] * 5


def test_serve_reports_an_unreachable_database_and_exits(tmp_path: object) -> None:
    server = Server(f"postgresql://nobody@/chat?host={tmp_path}&port=1", dict(os.environ))
    with pytest.raises(pytest.fail.Exception, match="cannot connect to PostgreSQL"):
        server.start()
    assert server.proc is not None
    assert server.proc.returncode == 1


async def texts(client: Client, cid: str) -> list[object]:
    return [item["data"] for item in await client.logs(cid)]


@fail_after(60)
async def test_sends_fail_clearly_while_the_database_is_down(own_pg_server: PgServer) -> None:
    url = own_pg_server.url(own_pg_server.create_database())
    async with running_server({"db": url}) as running, users(running, "alice", "bob") as people:
        alice, bob = people
        cid = await alice.start(["bob"])
        await alice.say(cid, "before")
        await bob.next_push("direct")
        # content holding a NUL, which PostgreSQL's text cannot, is kept all the same
        await alice.say(cid, "nul \u0000 inside")
        assert (await bob.next_push("direct"))["msg"] == "nul \u0000 inside"
        await trio.to_thread.run_sync(own_pg_server.stop)
        refused = await alice.request({"cmd": "direct", "cid": cid, "msg": "lost"})
        assert (refused["cmd"], refused["code"]) == ("ack", 4200), refused
        assert refused["reason"] == "message could not be stored"
        await bob.sync()
        assert not [p for p in await bob.take_pushes() if p.get("cmd") == "direct"]
        await trio.to_thread.run_sync(own_pg_server.start)
        await alice.say(cid, "after")
        assert (await bob.next_push("direct"))["msg"] == "after"
        assert await texts(bob, cid) == ["before", "nul \u0000 inside", "after"]
