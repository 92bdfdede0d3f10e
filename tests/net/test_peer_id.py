"""What older and newer official SDKs rely on, over real sockets; tests/sdk/test_sdk_compat.py
runs the real SDKs (3.5.7, 4.3.1, 5.0.0-rc.8) over the same rules.

Which pushes carry ``peerId`` (chatroom/net/inbound.py ``_omits_peer_id``): a push
without ``peerId`` reaches a JS SDK 4.x or 5.x client only as the first client of its
socket (``realtime._firstIMClient``); 3.x drops it. So the server leaves it out only on
a socket whose single login announced configBitmap bit 7 or came from a JS SDK of those
majors, never for a re-login, never in JSON, and never while a login and its sync are
under way.

Temporary conversations started with ``unique`` (JS 5.0.0-rc.6 and later always ask for
it): the same member set gets the same live conversation back.
"""

from __future__ import annotations

import pytest
from helpers import JSON_SUB, PROTOBUF_SUB, Client, Cmd, fail_after, running_server, users

from chatroom.core.clock import ManualClock

V1_SUB = "lc.protobuf2.1"


async def direct_push(client: Client) -> Cmd:
    push = await client.next_push("direct")
    assert push.get("msg") is not None, push
    return push


@pytest.mark.parametrize(
    ("ua", "bitmap", "named"),
    [
        pytest.param("js/3.5.7", 1, True, id="js3-drops-unnamed"),
        pytest.param("js/4.3.1", 59, False, id="js4-first-client"),
        pytest.param("js/4.0.0-beta.2", 1, False, id="js4-beta"),
        pytest.param("js/5.0.0-alpha.3", 59, False, id="js5-alpha"),
        pytest.param("js/5.0.0-rc.8", 187, False, id="js5-bit7"),
        pytest.param("ios/8.0.0", 128, False, id="bit7-any-sdk"),
        pytest.param("android/6.5.0", 59, True, id="other-sdk"),
        pytest.param("js/10.0.0", 59, True, id="unknown-js-major"),
        pytest.param("", 0, True, id="no-ua"),
    ],
)
@fail_after()
async def test_live_push_names_the_client_unless_the_sdk_routes_it(
    ua: str, bitmap: int, named: bool
) -> None:
    async with (
        running_server() as running,
        running.client(PROTOBUF_SUB) as jerry,
        running.user("tom") as tom,
    ):
        await jerry.login("jerry", ua=ua, configBitmap=bitmap)
        cid = await tom.start(["jerry"])
        await tom.say(cid, "hi")
        push = await direct_push(jerry)
        assert push.get("peerId") == ("jerry" if named else None)


@pytest.mark.parametrize(
    ("subprotocol", "fields"),
    [
        pytest.param(PROTOBUF_SUB, {"r": True}, id="relogin"),
        pytest.param(JSON_SUB, {}, id="json"),
    ],
)
@fail_after()
async def test_relogin_and_json_always_name_the_client(subprotocol: str, fields: Cmd) -> None:
    async with (
        running_server() as running,
        running.client(subprotocol) as jerry,
        running.user("tom") as tom,
    ):
        await jerry.login("jerry", ua="js/5.0.0-rc.8", configBitmap=187, **fields)
        cid = await tom.start(["jerry"])
        await tom.say(cid, "hi")
        assert (await direct_push(jerry)).get("peerId") == "jerry"


@pytest.mark.parametrize(
    ("subprotocol", "sync_cmd"),
    [pytest.param(PROTOBUF_SUB, "unread", id="v3-unread"), pytest.param(V1_SUB, "direct", id="v1")],
)
@fail_after()
async def test_second_client_on_a_socket_gets_its_login_sync_named(
    subprotocol: str, sync_cmd: str
) -> None:
    """ann logs in first; bob, with messages waiting, second on the same socket: his
    unread counts (v3) or offline messages (v1) must name him, or a 4.x SDK hands
    them to ann. From then on every push names its client."""
    async with running_server() as running, running.user("tom") as tom:
        cid_bob = await tom.start(["bob"])
        await tom.say(cid_bob, "while you were away")
        cid_ann = await tom.start(["ann"])
        async with running.client(subprotocol) as shared:
            await shared.login("ann", ua="js/4.3.1", configBitmap=59)
            await tom.say(cid_ann, "to ann alone")
            assert (await direct_push(shared)).get("peerId") is None
            await shared.take_pushes()
            await shared.login("bob", ua="js/4.3.1", configBitmap=59)
            sync = await shared.next_push(sync_cmd)
            assert sync.get("peerId") == "bob", sync
            await tom.say(cid_ann, "to ann again")
            assert (await direct_push(shared)).get("peerId") == "ann"


@fail_after()
async def test_first_client_sync_is_named_and_a_failed_second_login_changes_nothing() -> None:
    """The SDK learns which client is its first only once that client's open has
    resolved, after the frames that came with the reply: the login's own sync names
    its client. A second login that fails leaves the socket with its one client."""
    async with running_server() as running, running.user("tom") as tom:
        cid = await tom.start(["ann"])
        await tom.say(cid, "while you were away")
        async with running.client(PROTOBUF_SUB) as ann:
            await ann.login("ann", ua="js/4.3.1", configBitmap=59)
            assert (await ann.next_push("unread")).get("peerId") == "ann"
            refused = await ann.request({"cmd": "session", "op": "open", "peerId": " bad "})
            assert refused["cmd"] == "error", refused
            await tom.say(cid, "live")
            assert (await direct_push(ann)).get("peerId") is None


async def start_temporary(client: Client, members: list[str], **fields: object) -> Cmd:
    cmd = {"cmd": "conv", "op": "start", "m": members, "tempConv": True, **fields}
    reply = await client.request(cmd)
    assert reply.get("op") == "started", reply
    return reply


@fail_after()
async def test_unique_temporary_conversation_comes_back_for_the_same_members() -> None:
    async with running_server() as running, users(running, "a", "b", "c") as (a, b, c):
        first = await start_temporary(a, ["b"], unique=True, tempConvTTL=60)
        assert first["cid"].startswith("_tmp:")
        assert first["tempConvTTL"] == 60
        await a.take_pushes()
        again = await start_temporary(b, ["a"], unique=True, tempConvTTL=3600)
        assert again["cid"] == first["cid"]
        assert again["cdate"] == first["cdate"]
        assert 0 < again["tempConvTTL"] <= 60  # what is left, not a new lifetime
        assert await a.take_pushes() == []  # nothing new: no joined events
        # not unique, another member set, or a normal unique one: all new
        plain = await start_temporary(a, ["b"])
        wider = await start_temporary(a, ["b", "c"], unique=True)
        normal = await a.request({"cmd": "conv", "op": "start", "m": ["b"], "unique": True})
        cids = {first["cid"], plain["cid"], wider["cid"], normal["cid"]}
        assert len(cids) == 4
        assert not normal["cid"].startswith("_tmp:")
        assert (await start_temporary(c, ["a", "b"], unique=True))["cid"] == wider["cid"]


@fail_after()
async def test_expired_unique_temporary_conversation_is_replaced() -> None:
    clock = ManualClock()
    async with running_server(clock=clock) as running, running.user("a") as a:
        first = await start_temporary(a, ["b"], unique=True, tempConvTTL=1)
        clock.advance(999)
        again = await start_temporary(a, ["b"], unique=True, tempConvTTL=1)
        assert again["cid"] == first["cid"]  # 1 ms left
        clock.advance(1)
        later = await start_temporary(a, ["b"], unique=True, tempConvTTL=1)
        assert later["cid"] != first["cid"]
        assert later["tempConvTTL"] == 1
