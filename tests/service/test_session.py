"""Sessions over real WebSockets: login, logout, several clients on one connection,
device tags and single sign-on, resume with a session token, online queries
(protocol.md sections 2.5, 4.1-4.4 and 6; chatroom/service/session.py).
"""

from __future__ import annotations

import pytest
from helpers import ALL_SUBS, Client, Cmd, fail_after, ops, running_server, users


def code_of(reply: Cmd) -> object:
    assert reply["cmd"] in ("error", "ack"), reply
    return reply.get("code")


async def open_session(client: Client, peer_id: str, **fields: object) -> Cmd:
    return await client.request(
        {"cmd": "session", "op": "open", "appId": "test", "peerId": peer_id, **fields}
    )


async def online(client: Client, *peer_ids: str) -> list[object]:
    reply = await client.request(
        {"cmd": "session", "op": "query", "sessionPeerIds": list(peer_ids)}
    )
    assert reply.get("op") == "query-result", reply
    return list(reply.get("onlineSessionPeerIds", []))


# login and logout


@pytest.mark.parametrize("subprotocol", [*ALL_SUBS, None])
@fail_after()
async def test_login_in_every_subprotocol(subprotocol: str | None) -> None:
    async with running_server() as running, running.client(subprotocol) as client:
        opened = await client.login("alice")
        assert opened["peerId"] == "alice"
        assert isinstance(opened["st"], str)
        assert opened["st"]
        assert opened["stTtl"] == 172_800
        assert isinstance(opened["serverTs"], int)
        assert (await client.request({"cmd": "echo"}))["cmd"] == "echo"


@fail_after()
async def test_logout_replies_closed_without_code_and_goes_offline() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, bob):
        assert await online(bob, "alice", "bob") == ["alice", "bob"]
        closed = await alice.request({"cmd": "session", "op": "close"})
        assert (closed["cmd"], closed["op"]) == ("session", "closed")
        assert "code" not in closed  # protocol.md 4.3: a code would mean a kick
        assert await online(bob, "alice", "bob") == ["bob"]
        # The connection stays open, but without a session.
        refused = await alice.request({"cmd": "conv", "op": "start", "m": ["bob"]})
        assert code_of(refused) == 4105
        await alice.login("alice")
        assert await online(bob, "alice") == ["alice"]


@pytest.mark.parametrize("peer_id", ["a" * 65, "", " alice", "alice "])
@fail_after()
async def test_invalid_client_id_is_refused_with_4103(peer_id: str) -> None:
    async with running_server() as running, running.client() as client:
        reply = await open_session(client, peer_id)
        assert code_of(reply) == 4103
        assert reply["reason"]
        await client.login("a" * 64)  # the longest id allowed; the connection still works


@fail_after()
async def test_client_id_limit_is_configurable() -> None:
    async with (
        running_server({"max_client_id_length": 5}) as running,
        running.client() as client,
    ):
        assert code_of(await open_session(client, "sixsix")) == 4103
        await client.login("fivef")


@fail_after()
async def test_wrong_app_id_is_refused_when_one_is_configured() -> None:
    async with running_server({"app_id": "mine"}) as running, running.client() as client:
        reply = await client.request(
            {"cmd": "session", "op": "open", "appId": "other", "peerId": "alice"}
        )
        assert code_of(reply) == 4100
        opened = await client.request(
            {"cmd": "session", "op": "open", "appId": "mine", "peerId": "alice"}
        )
        assert opened.get("op") == "opened"


@pytest.mark.parametrize(
    "cmd",
    [
        {"cmd": "conv", "op": "start", "m": ["bob"]},
        {"cmd": "conv", "op": "query"},
        {"cmd": "logs", "cid": "x"},
        {"cmd": "session", "op": "query", "sessionPeerIds": ["bob"]},
        {"cmd": "session", "op": "close"},
    ],
)
@fail_after()
async def test_commands_before_login_get_4105(cmd: Cmd) -> None:
    async with running_server() as running, running.client() as client:
        reply = await client.request(cmd)
        assert code_of(reply) == 4105
        await client.login("alice")


@fail_after()
async def test_direct_before_login_is_acked_with_4105() -> None:
    async with running_server() as running, running.client() as client:
        reply = await client.request({"cmd": "direct", "cid": "x", "msg": "hi"})
        assert reply["cmd"] == "ack"  # errors of direct come as an ack with a code
        assert reply["code"] == 4105


@fail_after()
async def test_echo_needs_no_login() -> None:
    async with running_server() as running, running.client() as client:
        assert await client.request({"cmd": "echo"}) == {"cmd": "echo", "i": 1}


# several clients on one connection


@fail_after()
async def test_two_clients_on_one_connection_get_pushes_with_their_peer_id() -> None:
    async with (
        running_server() as running,
        running.user("carol") as carol,
        running.client() as shared,
    ):
        await shared.login("alice")
        await shared.login("bob")
        cid = await carol.start(["alice", "bob"])
        joined = [p for p in await shared.take_pushes() if p["op"] == "joined"]
        assert sorted(p["peerId"] for p in joined) == ["alice", "bob"]

        ack = await carol.say(cid, "hello both")
        pushes = [await shared.next_push("direct") for _ in range(2)]
        assert sorted(p["peerId"] for p in pushes) == ["alice", "bob"]
        assert {p["id"] for p in pushes} == {ack["uid"]}

        # Without peerId a command is the first client's; with it, that client's.
        await shared.say(cid, "from the first")
        await shared.say(cid, "from bob", peerId="bob")
        first, second = await carol.next_push("direct"), await carol.next_push("direct")
        assert (first["fromPeerId"], first["msg"]) == ("alice", "from the first")
        assert (second["fromPeerId"], second["msg"]) == ("bob", "from bob")
        # alice's message reaches bob on the same connection, and the other way round.
        mine = await shared.take_pushes()
        assert sorted((p["peerId"], p["fromPeerId"]) for p in mine) == [
            ("alice", "bob"),
            ("bob", "alice"),
        ]


@fail_after()
async def test_logout_of_one_client_keeps_the_other_on_the_connection() -> None:
    async with (
        running_server() as running,
        running.user("carol") as carol,
        running.client() as shared,
    ):
        await shared.login("alice")
        await shared.login("bob")
        cid = await carol.start(["alice", "bob"])
        await shared.take_pushes()
        await shared.request({"cmd": "session", "op": "close", "peerId": "bob"})
        assert await online(carol, "alice", "bob") == ["alice"]
        await carol.say(cid, "still there?")
        pushes = await shared.take_pushes()
        assert [(p["cmd"], p["peerId"]) for p in pushes] == [("direct", "alice")]


@fail_after()
async def test_unknown_peer_id_on_a_shared_connection_gets_4105() -> None:
    async with running_server() as running, running.user("alice") as alice:
        reply = await alice.request({"cmd": "conv", "op": "start", "m": ["x"], "peerId": "bob"})
        assert code_of(reply) == 4105


# device tags, single sign-on


@fail_after()
async def test_same_tag_on_a_second_connection_kicks_the_first_with_4111() -> None:
    async with (
        running_server() as running,
        running.user("bob") as bob,
        running.client() as phone1,
        running.client() as phone2,
    ):
        await phone1.login("alice", tag="phone")
        cid = await bob.start(["alice"])
        await phone1.take_pushes()
        await phone2.login("alice", tag="phone")
        kicked = await phone1.next_push("session", "closed")
        assert kicked["peerId"] == "alice"
        assert kicked["code"] == 4111
        assert kicked["reason"]
        # The old connection has no session any more; the new one gets the messages.
        assert code_of(await phone1.request({"cmd": "logs", "cid": cid})) == 4105
        await bob.say(cid, "which phone?")
        assert (await phone2.next_push("direct"))["msg"] == "which phone?"
        assert ops(await phone1.take_pushes()) == []
        assert await online(bob, "alice") == ["alice"]


@pytest.mark.parametrize(("tag1", "tag2"), [("phone", "web"), ("default", "default"), (None, None)])
@fail_after()
async def test_different_tags_and_no_tag_coexist(tag1: str | None, tag2: str | None) -> None:
    async with (
        running_server() as running,
        running.user("bob") as bob,
        running.client() as first,
        running.client() as second,
    ):
        await first.login("alice", **({"tag": tag1} if tag1 else {}))
        await second.login("alice", **({"tag": tag2} if tag2 else {}))
        cid = await bob.start(["alice"])
        await bob.say(cid, "both of you")
        for device in (first, second):
            assert (await device.next_push("direct"))["msg"] == "both of you"
            assert all(p["cmd"] != "session" for p in await device.take_pushes())


@fail_after()
async def test_automatic_relogin_with_a_taken_tag_is_refused_and_the_other_stays() -> None:
    async with (
        running_server() as running,
        running.user("bob") as bob,
        running.client() as holder,
        running.client() as late,
    ):
        await holder.login("alice", tag="phone")
        cid = await bob.start(["alice"])
        reply = await open_session(late, "alice", tag="phone", r=True)
        assert code_of(reply) == 4111
        await bob.say(cid, "still yours")
        assert (await holder.next_push("direct"))["msg"] == "still yours"
        assert all(p["cmd"] != "session" for p in await holder.take_pushes())


# resume with a session token


@fail_after()
async def test_resume_with_a_valid_token_after_a_dropped_connection() -> None:
    async with running_server() as running, running.user("bob") as bob:
        async with running.client() as first:
            opened = await first.login("alice", tag="phone")
            cid = await bob.start(["alice"])
            await first.drop()
        await running.wait_connections(1)
        assert await online(bob, "alice") == []
        async with running.client() as again, running.client() as rival:
            resumed = await open_session(again, "alice", r=True, st=opened["st"])
            assert resumed.get("op") == "opened", resumed
            assert resumed["st"]
            await bob.say(cid, "welcome back")
            assert (await again.next_push("direct"))["msg"] == "welcome back"
            # The resumed session is the "phone" device: a new phone login kicks it.
            await rival.login("alice", tag="phone")
            assert (await again.next_push("session", "closed"))["code"] == 4111


@fail_after()
async def test_resume_while_the_old_connection_still_looks_alive_moves_the_session() -> None:
    async with (
        running_server() as running,
        running.user("bob") as bob,
        running.client() as old,
        running.client() as new,
    ):
        opened = await old.login("alice")
        cid = await bob.start(["alice"])
        resumed = await open_session(new, "alice", r=True, st=opened["st"])
        assert resumed.get("op") == "opened", resumed
        await bob.say(cid, "where are you?")
        assert (await new.next_push("direct"))["msg"] == "where are you?"
        # The old session ended quietly: no kick, no message; its socket (which may
        # carry other clients) stays open, without that session.
        assert [p["cmd"] for p in await old.take_pushes()] == ["conv", "conv"]
        assert code_of(await old.request({"cmd": "logs", "cid": cid})) == 4105
        assert await online(bob, "alice") == ["alice"]


@pytest.mark.parametrize("token", ["unknown-token", "OTHER"])
@fail_after()
async def test_unknown_token_gets_4112_then_relogin_without_token_succeeds(token: str) -> None:
    async with running_server() as running, running.client() as client:
        if token == "OTHER":
            async with running.client() as other:
                token = str((await other.login("mallory"))["st"])  # not alice's token
        reply = await open_session(client, "alice", r=True, st=token)
        assert reply["cmd"] == "error"  # must be cmd:error for the SDK to retry
        assert reply["code"] == 4112
        opened = await open_session(client, "alice", r=True)
        assert opened.get("op") == "opened", opened


@fail_after()
async def test_token_is_revoked_by_logout() -> None:
    async with running_server() as running, running.client() as client:
        opened = await client.login("alice")
        await client.request({"cmd": "session", "op": "close"})
        assert code_of(await open_session(client, "alice", r=True, st=opened["st"])) == 4112


@fail_after()
async def test_refresh_issues_a_new_token_that_resumes() -> None:
    async with running_server() as running:
        async with running.client() as client:
            opened = await client.login("alice")
            refreshed = await client.request({"cmd": "session", "op": "refresh"})
            assert refreshed.get("op") == "refreshed"
            assert refreshed["st"] != opened["st"]
            assert refreshed["stTtl"] == 172_800
            await client.drop()
        await running.wait_connections(0)
        async with running.client() as client:
            assert code_of(await open_session(client, "alice", r=True, st=opened["st"])) == 4112
            resumed = await open_session(client, "alice", r=True, st=refreshed["st"])
            assert resumed.get("op") == "opened"


# online query


@fail_after()
async def test_online_query() -> None:
    async with running_server() as running, users(running, "alice", "bob") as (alice, _):
        assert await online(alice, "bob", "nobody", "alice", "bob") == ["bob", "alice"]
        assert await online(alice) == []
        too_many = await alice.request(
            {"cmd": "session", "op": "query", "sessionPeerIds": [f"u{i}" for i in range(21)]}
        )
        assert too_many["cmd"] == "error"
        assert await online(alice, *[f"u{i}" for i in range(19)], "bob") == ["bob"]


@fail_after()
async def test_logging_in_twice_on_one_connection_replaces_the_session() -> None:
    async with (
        running_server() as running,
        running.user("bob") as bob,
        running.client() as client,
    ):
        await client.login("alice")
        await client.login("alice")
        cid = await bob.start(["alice"])
        await bob.say(cid, "once")
        pushes = await client.take_pushes()
        assert [p["msg"] for p in pushes if p["cmd"] == "direct"] == ["once"]
