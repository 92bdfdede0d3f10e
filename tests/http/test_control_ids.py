"""Ids holding control characters (a NUL above all, which PostgreSQL cannot store) are
refused at the boundary with a clear error, on the WebSocket and over REST, on both SQL
stores: never an internal error, never a logged traceback, and the server goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from helpers import Client, Cmd, fail_after, running_server
from pg_server import PgServer, pg_server
from rest_support import MASTER, rest

__all__ = ["pg_server"]

NUL = "a\x00b"
INVALID_ARGUMENT = 4201


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        pg: PgServer = request.getfixturevalue("pg_server")
        return str(pg.url(pg.create_database()))
    return str(tmp_path / "chat.db")


def _code(reply: dict[str, object]) -> object:
    return reply.get("code")


async def _refused(client: Client, cmd: Cmd) -> None:
    reply = await client.request(cmd)
    assert _code(reply) == INVALID_ARGUMENT, (cmd, reply)
    assert "control character" in str(reply.get("reason")), reply


@fail_after(30)
async def test_control_characters_in_ids_are_refused_everywhere(
    db: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    config = {"db": db, "master_key": MASTER}
    async with (
        running_server(config) as running,
        running.user("alice") as alice,
        running.client() as stranger,
    ):
        cid = await alice.start(["bob"])
        ack = await alice.say(cid, "hello")
        mid, t = ack["uid"], ack["t"]
        commands: list[Cmd] = [
            {"cmd": "direct", "cid": NUL, "msg": "x"},
            {"cmd": "logs", "cid": NUL},
            {"cmd": "logs", "cid": cid, "mid": NUL, "t": t},
            {"cmd": "logs", "cid": cid, "tmid": NUL, "tt": 1},
            {"cmd": "conv", "op": "query", "cids": [NUL]},
            {"cmd": "conv", "op": "add", "cid": NUL, "m": ["carol"]},
            {"cmd": "conv", "op": "add", "cid": cid, "m": [NUL]},
            {"cmd": "ack", "cid": cid, "mid": NUL},
            {"cmd": "read", "cid": NUL},
            {"cmd": "patch", "op": "modify",
             "patches": [{"cid": cid, "mid": NUL, "timestamp": t, "data": "y"}]},
            {"cmd": "blacklist", "op": "query", "srcCid": NUL},
        ]  # fmt: skip
        for cmd in commands:
            await _refused(alice, cmd)
        # A session token with a NUL, and a client id with one (INVALID_LOGIN).
        await _refused(
            stranger,
            {"cmd": "session", "op": "open", "appId": "test", "peerId": "bob",
             "r": True, "st": NUL},
        )  # fmt: skip
        opened = await stranger.request(
            {"cmd": "session", "op": "open", "appId": "test", "peerId": NUL}
        )
        assert _code(opened) == 4103, opened
        # Over REST: ids of the path, of the query, of the body, the IM session token.
        for method, path, body, query, headers in (
            ("GET", "/conversations/a%00b", None, None, None),
            ("GET", f"/conversations/{cid}/messages", None,
             {"msgid": NUL, "timestamp": "1"}, None),
            ("PUT", f"/conversations/{cid}/messages/a%00b", {"from_client": "alice",
             "timestamp": t, "message": "z"}, None, None),
            ("GET", "/clients/a%01b/unread-count", None, None, None),
            ("GET", "/1.1/classes/_ConversationMemberInfo", None,
             {"client_id": "alice", "where": '{"cid":"x"}'}, {"X-LC-IM-Session-Token": "a\tb"}),
        ):  # fmt: skip
            status, found = await rest(running, method, path, body, query=query, headers=headers)
            assert (status, found["code"]) == (400, INVALID_ARGUMENT), (path, found)
            assert "control character" in found["error"]
        status, found = await rest(
            running, "POST", f"/conversations/{cid}/messages",
            {"from_client": NUL, "message": "x"},
        )  # fmt: skip
        assert status == 400, found
        assert "client id" in found["error"]
        # A NUL in a query's or an attribute's string: the query's and the update's codes.
        for where in ('{"objectId": "a\\u0000b"}', '{"m": "a\\u0000"}', '{"attr.k": "\\u0000"}'):
            found = await alice.request({"cmd": "conv", "op": "query", "where": where})
            assert found.get("code") == 4310, (where, found)
        started = await alice.request({"cmd": "conv", "op": "start", "m": ["bob"],
                                       "attr": {"name": NUL}})  # fmt: skip
        assert started.get("code") == 4306, started
        updated = await alice.request({"cmd": "conv", "op": "update", "cid": cid,
                                       "attr": {"x": {"y": [NUL]}}})  # fmt: skip
        assert updated.get("code") == 4306, updated
        # Nothing changed, and the server still serves.
        assert [m["msgId"] for m in await alice.logs(cid)] == [mid]
        await alice.say(cid, "still here")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@fail_after(30)
async def test_content_holding_a_nul_is_kept_byte_exact(db: str) -> None:
    """Content is no id: on either store it is stored, pushed and read back as sent."""
    config = {"db": db, "master_key": MASTER}
    async with (
        running_server(config) as running,
        running.user("alice") as alice,
        running.user("bob") as bob,
    ):
        cid = await alice.start(["bob"])
        ack = await alice.say(cid, NUL)
        pushed = await bob.next_push("direct")
        assert pushed["msg"] == NUL
        sent = {"from_client": "bob", "message": "\x00\uffff0"}
        assert (await rest(running, "POST", f"/conversations/{cid}/messages", sent))[0] == 200
        edit = {"from_client": "alice", "timestamp": ack["t"], "message": "edited \x00"}
        path = f"/conversations/{cid}/messages/{ack['uid']}"
        assert (await rest(running, "PUT", path, edit))[0] == 200
        assert [m["data"] for m in await alice.logs(cid)] == ["edited \x00", "\x00\uffff0"]
        status, history = await rest(running, "GET", f"/conversations/{cid}/messages")
        assert status == 200
        assert [m["data"] for m in history] == ["\x00\uffff0", "edited \x00"]
