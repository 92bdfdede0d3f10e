"""Compatibility with the official JS SDK, ``leancloud-realtime@4.3.1``, driven through Node.

Each test starts the real server (``python -m chatroom serve``) on a fresh SQLite file,
runs one scenario script from ``tests/sdk/scenarios/`` against it, and asserts on the
single JSON line of observations the script prints: what a user of the SDK would see
(ids, timestamps, texts, event payloads, error codes). Scenarios that need frames the
SDK cannot send use a raw WebSocket client (``RawClient`` in ``tests/sdk/lib.js``) that
encodes with the SDK's own schema. Every server is stopped with SIGTERM at the end of
its test and must exit with status 0.

Requires ``node`` (20) and ``npm ci`` in ``tests/sdk`` (``scripts/test`` does it).
Flows and codes are the ones in ``protocol.md`` (sections named in each test).
"""

from __future__ import annotations

import json

import pytest
from sdk_harness import (
    ENCODINGS,
    SCENARIO_TIMEOUT,
    SLACK_MS,
    SUBPROTOCOLS,
    Obs,
    Server,
    StartServer,
    assert_recent,
    error_code,
)

# ---------------------------------------------------------------------------
# sessions (protocol.md 2.5, 4.1, 4.3, 4.4)


@pytest.mark.parametrize("params", ENCODINGS)
def test_login_and_logout(server: Server, params: Obs) -> None:
    obs = server.run("session_login_logout", params)
    assert obs["aliceId"] == "alice"
    assert obs["bobId"] == "bob"
    assert obs["onlineBefore"] == ["alice", "bob"]
    assert obs["closed"]["resolved"] is True
    assert obs["closeEvents"] == [{"code": 0}]
    assert obs["onlineAfter"] == ["bob"]
    assert obs["againId"] == "alice"
    assert obs["onlineAgain"] == ["alice"]


@pytest.mark.parametrize("params", ENCODINGS)
def test_several_clients_share_one_socket(server: Server, params: Obs) -> None:
    obs = server.run("session_multi_client", params)
    assert obs["sameSocket"] is True
    cid, sent = obs["cid"], obs["sent"]

    def seen(inbox: list[Obs]) -> list[tuple[str, str, str, str]]:
        return [(m["text"], m["from"], m["id"], m["cid"]) for m in inbox]

    assert seen(obs["jerryInbox"]) == [
        ("from tom", "tom", sent["tom"], cid),
        ("from spike", "spike", sent["spike"], cid),
    ]
    assert seen(obs["tomInbox"]) == [
        ("from jerry", "jerry", sent["jerry"], cid),
        ("from spike", "spike", sent["spike"], cid),
    ]
    assert seen(obs["spikeInbox"]) == [
        ("from tom", "tom", sent["tom"], cid),
        ("from jerry", "jerry", sent["jerry"], cid),
        ("tom alone", "tom", sent["tomAlone"], cid),
    ]
    assert obs["online"] == ["jerry", "tom"]
    assert obs["onlineAfter"] == ["tom"]


def test_client_id_longer_than_64_is_rejected(server: Server) -> None:
    obs = server.run("session_long_id")
    assert obs["rejected"]["resolved"] is False
    assert obs["rejected"]["timeout"] is False
    assert obs["rejected"]["error"]["code"] == 4103
    assert obs["accepted"] == {"resolved": True, "id": "y" * 64, "error": None}


def test_online_query(server: Server) -> None:
    obs = server.run("session_online_query")
    assert obs["online"] == ["A", "B"]
    assert obs["onlyOffline"] == []


pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------
# keepalive, idle timeout, resume (protocol.md 2.5, 4.1, 6.3, 6.14)


@pytest.mark.parametrize("params", ENCODINGS)
def test_echo_keepalive(server: Server, params: Obs) -> None:
    obs = server.run("keepalive_echo", params)
    echo = obs["sdkEcho"]
    assert len(echo["sent"]) == 1
    assert echo["reply"] == {"cmd": 14, "i": echo["sent"][0]["i"]}  # 14 = echo
    assert echo["stillConnected"] is True
    assert obs["online"] == ["tom"]
    assert obs["negotiated"] == ("lc.proto2base64.3" if params["noBinary"] else "lc.protobuf2.3")
    assert [(r["cmd"], r["i"]) for r in obs["rawReplies"]] == [
        ("echo", 7),
        ("echo", 8),
        ("echo", 42),
    ]


def test_idle_socket_is_closed_with_4107(start_server: StartServer) -> None:
    server = start_server(idle_timeout="1")
    obs = server.run("keepalive_idle_timeout")
    assert obs["silentClose"] is not None, "a silent socket was not closed"
    assert obs["silentClose"]["code"] == 4107
    assert 500 <= obs["silentAfterMs"] <= 3500
    assert obs["chattyOpen"] is True, obs["chattyClose"]
    assert obs["echoes"] >= 5


@pytest.mark.parametrize("params", ENCODINGS)
def test_resume_after_dropped_connection(server: Server, params: Obs) -> None:
    obs = server.run("resume_after_drop", params)
    events = obs["events"]
    assert events[0] == "disconnect"
    assert "reconnect" in events
    assert "reconnecterror" not in events
    assert 500 <= obs["reconnectMs"] <= 6000
    # exactly one automatic re-login, with r:true and the session token
    assert obs["opens"] == [{"peerId": "tom", "r": True, "hasSt": True}]
    assert [(m["text"], m["from"]) for m in obs["tomInbox"]] == [("to tom after resume", "jerry")]
    assert [m["text"] for m in obs["jerryInbox"]] == ["before drop", "from tom after resume"]
    assert obs["jerryInbox"][1]["id"] == obs["afterResumeId"]
    assert obs["afterResumeStatus"] == "sent"
    assert obs["online"] == ["tom"]


@pytest.mark.parametrize("params", ENCODINGS)
def test_unknown_session_token_gives_4112_then_reopen(server: Server, params: Obs) -> None:
    obs = server.run("resume_unknown_token", params)
    assert obs["opens"] == [
        {"r": True, "st": "bogus-token-from-before-a-restart"},
        {"r": True, "st": None},
    ]
    assert obs["reconnectErrors"] == []
    assert obs["tomInbox"] == ["after 4112"]
    assert obs["jerryInbox"] == ["tom after 4112"]
    assert isinstance(obs["tomNewToken"], str)
    assert obs["tomNewToken"] not in ("", "bogus-token-from-before-a-restart")
    bogus = obs["raw"]["bogus"]
    # must be cmd:error (only that form makes the SDK retry without the token)
    assert bogus["cmd"] == "error"
    assert bogus["errorMessage"]["code"] == 4112
    reopened = obs["raw"]["withoutToken"]
    assert (reopened["cmd"], reopened["op"], reopened["peerId"]) == ("session", "opened", "tom")
    assert reopened["sessionMessage"]["st"]


def test_sigterm_sends_goaway_and_exits_0(server: Server) -> None:
    client, ready = server.run_until_ready("shutdown_goaway")
    try:
        assert ready == {"ready": True}
        assert server.stop() == 0
        out, err = client.communicate(timeout=SCENARIO_TIMEOUT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0, f"{err[-4000:]}\n{server.log_tail()}"
    obs = json.loads(out.strip().splitlines()[-1])
    assert obs["goaway"] == {"cmd": "goaway"}  # no i, no peerId
    assert obs["close"]["code"] == 1001
    assert obs["sdkDisconnected"] is True


# ---------------------------------------------------------------------------
# tags and single sign-on (protocol.md 4.2, 6.4, 6.5)


def test_same_tag_conflicts_older_device(server: Server) -> None:
    obs = server.run("tags_conflict")
    assert isinstance(obs["conflict"]["reason"], str)
    assert obs["olderConflicts"] == 1
    assert obs["olderReconnects"] == 0
    assert obs["olderInbox"] == 0
    assert obs["newerConflicts"] == 0
    assert obs["newerInbox"] == [{"text": "to tom", "from": "jerry"}]
    assert obs["jerryInbox"] == [{"text": "from the newer device", "from": "tom"}]
    assert obs["online"] == ["tom"]


def test_different_tags_coexist(server: Server) -> None:
    obs = server.run("tags_coexist")
    expected = [
        {"id": obs["sentId"], "text": "to every tom device", "from": "jerry", "cid": obs["cid"]}
    ]
    assert obs["inboxes"] == [expected, expected, expected]
    assert obs["conflicts"] == [0, 0, 0]
    assert obs["closes"] == [0, 0, 0]


@pytest.mark.parametrize("params", ENCODINGS)
def test_automatic_relogin_never_kicks(server: Server, params: Obs) -> None:
    obs = server.run("tags_reconnect_refused", params)
    sdk = obs["sdk"]
    assert sdk["reconnectError"]["code"] == 4111
    assert sdk["firstReconnects"] == 0
    assert sdk["secondConflicts"] == 0
    assert sdk["secondCloses"] == 0
    assert sdk["secondInbox"] == ["still there?"]
    raw = obs["raw"]
    assert (raw["aOpened"], raw["bOpened"]) == ("opened", "opened")
    kicked = raw["aKicked"]
    assert kicked["sessionMessage"]["code"] == 4111
    assert kicked["peerId"] == "spike"
    assert "i" not in kicked
    assert error_code(raw["withToken"]) == 4111, raw["withToken"]
    assert error_code(raw["withTag"]) == 4111, raw["withTag"]
    assert raw["bPushes"] == []
    assert raw["bEcho"]["cmd"] == "echo"


# ---------------------------------------------------------------------------
# conversations (protocol.md 4.5, 4.7; design.md 4: member limit)


def test_create_conversations(server: Server) -> None:
    obs = server.run("conv_create")
    direct, group = obs["direct"], obs["group"]
    assert isinstance(direct["id"], str)
    assert direct["id"]
    assert isinstance(group["id"], str)
    assert group["id"]
    assert group["id"] != direct["id"]
    assert direct["members"] == ["jerry", "tom"]
    assert direct["name"] == "Tom & Jerry"
    assert group["members"] == ["jerry", "spike", "tom"]
    jd = obs["jerryDirect"]
    assert (jd["id"], jd["name"], jd["creator"]) == (direct["id"], "Tom & Jerry", "tom")
    assert jd["members"] == ["jerry", "tom"]
    assert (jd["color"], jd["level"]) == ("blue", 3)
    assert obs["before"] - SLACK_MS <= jd["createdAt"] <= obs["before"] + 10_000
    sg = obs["spikeGroup"]
    assert (sg["name"], sg["creator"], sg["topic"]) == ("Cartoon", "tom", {"lang": "en"})
    assert sg["members"] == ["jerry", "spike", "tom"]

    def joined(members: list[str]) -> Obs:
        return {
            "invited": [{"invitedBy": "tom"}],
            "membersjoined": [{"members": members, "invitedBy": "tom"}],
        }

    nothing: Obs = {"invited": [], "membersjoined": []}
    ev = obs["events"]
    assert ev["direct"] == {
        "tom": joined(["jerry", "tom"]),
        "jerry": joined(["jerry", "tom"]),
        "spike": nothing,
    }
    everyone = joined(["jerry", "spike", "tom"])
    assert ev["group"] == {"tom": everyone, "jerry": everyone, "spike": everyone}
    unique = obs["unique"]
    assert unique["first"] == unique["second"] == unique["third"]
    assert unique["first"] not in (direct["id"], group["id"])
    # an existing unique conversation is returned without new events
    assert unique["countsAfter"] == unique["countsBefore"]


def test_member_limit(start_server: StartServer) -> None:
    server = start_server(max_members="5")
    obs = server.run("conv_member_limit")
    assert obs["fits"] == {"resolved": True, "members": ["m1", "m2", "m3", "m4", "owner"]}
    assert obs["tooMany"]["resolved"] is False
    assert obs["tooMany"]["error"]["code"] == 4304
    assert obs["invitedM5"] == 0


# ---------------------------------------------------------------------------
# messages (protocol.md 3.4, 4.11, 6.6)


@pytest.mark.parametrize(("params", "subprotocol"), SUBPROTOCOLS)
def test_send_and_receive_text(server: Server, params: Obs, subprotocol: str) -> None:
    obs = server.run("msg_text", params)
    assert obs["protocol"] == subprotocol
    sent = obs["sent"]
    assert isinstance(sent["id"], str)
    assert sent["id"]
    assert_recent(sent["timestamp"], obs["before"], obs["after"])
    assert (sent["status"], sent["cid"], sent["from"]) == ("sent", obs["cid"], "tom")
    attributes = {"mood": "happy", "n": 1, "nested": {"a": [1, 2]}}
    assert obs["received"] == [
        {
            "id": sent["id"],
            "cid": obs["cid"],
            "convId": obs["cid"],
            "from": "tom",
            "timestamp": sent["timestamp"],
            "class": "TextMessage",
            "type": -1,
            "status": "sent",
            "text": "hello 你好 👋",
            "attributes": attributes,
            "fields": {},
        }
    ]
    assert obs["history"] == [
        {
            "id": sent["id"],
            "text": "hello 你好 👋",
            "attributes": attributes,
            "from": "tom",
            "timestamp": sent["timestamp"],
        }
    ]


@pytest.mark.parametrize("params", ENCODINGS)
def test_rich_media_messages(server: Server, params: Obs) -> None:
    obs = server.run("msg_rich_media", params)
    file = {
        "url": "https://example.invalid/cat.png",
        "objId": "5c1234",
        "metaData": {
            "name": "cat.png",
            "format": "png",
            "height": 480,
            "width": 640,
            "size": 12345,
        },
    }
    loc = {"latitude": 39.9, "longitude": 116.4}
    image_id, location_id = obs["sent"]
    received = obs["received"]
    assert [(m["class"], m["type"], m["id"], m["from"]) for m in received] == [
        ("ImageMessage", -2, image_id, "tom"),
        ("LocationMessage", -5, location_id, "tom"),
    ]
    assert (received[0]["text"], received[0]["attributes"]) == ("a cat", {"album": "pets"})
    assert received[0]["fields"] == {"_lcfile": file}
    assert (received[1]["text"], received[1]["attributes"]) == ("here", {"place": "Beijing"})
    assert received[1]["fields"] == {"_lcloc": loc}
    expected = [
        {"id": image_id, "class": "ImageMessage", "type": -2, "text": "a cat",
         "attributes": {"album": "pets"}, "file": file, "loc": None},
        {"id": location_id, "class": "LocationMessage", "type": -5, "text": "here",
         "attributes": {"place": "Beijing"}, "file": None, "loc": loc},
    ]  # fmt: skip
    assert obs["history"] == expected
    assert obs["jerryHistory"] == expected


@pytest.mark.parametrize("params", ENCODINGS)
def test_custom_message_type(server: Server, params: Obs) -> None:
    obs = server.run("msg_custom_type", params)
    assert obs["sent"]["type"] == 1
    [received] = obs["received"]
    assert (received["class"], received["type"], received["id"]) == (
        "CustomMessage",
        1,
        obs["sent"]["id"],
    )
    assert received["fields"] == {"priceCents": 1999, "currency": "EUR"}
    assert (received["text"], received["attributes"]) == ("red packet", {"occasion": "new year"})
    assert obs["history"] == [
        {"id": obs["sent"]["id"], "class": "CustomMessage", "priceCents": 1999,
         "currency": "EUR", "text": "red packet"}
    ]  # fmt: skip


@pytest.mark.parametrize("params", ENCODINGS)
def test_binary_message(server: Server, params: Obs) -> None:
    obs = server.run("msg_binary", params)
    expected = obs["expected"]
    assert len(expected) == 300
    big_id, small_id = obs["sent"]
    received = obs["received"]
    assert [(m["class"], m["id"]) for m in received[:2]] == [
        ("BinaryMessage", big_id),
        ("BinaryMessage", small_id),
    ]
    assert received[0]["bytes"] == expected
    assert received[1]["bytes"] == [0]
    assert (received[2]["class"], received[2]["text"]) == ("TextMessage", "after binary")
    history = obs["history"]
    assert [(m["id"], m["class"], m["bytes"]) for m in history[:2]] == [
        (big_id, "BinaryMessage", expected),
        (small_id, "BinaryMessage", [0]),
    ]
    assert history[2]["text"] == "after binary"


def test_delivery_to_every_member_in_order(server: Server) -> None:
    obs = server.run("msg_fanout_order")
    acks = obs["acks"]
    assert [a["text"] for a in acks] == [f"msg {n}" for n in range(20)]
    ids = [a["id"] for a in acks]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 20
    stamps = [a["timestamp"] for a in acks]
    for stamp in stamps:
        assert_recent(stamp, obs["before"], obs["after"])
    assert stamps == sorted(stamps), "acks are in the order the server accepted them"
    assert all(a["status"] == "sent" for a in acks)
    for name in ("jerry", "spike"):
        got = obs["received"][name]
        assert [m["text"] for m in got] == [f"msg {n}" for n in range(20)], name
        assert [m["id"] for m in got] == ids, name
        assert [m["timestamp"] for m in got] == stamps, name
        assert {(m["from"], m["cid"], m["convId"]) for m in got} == {
            ("tom", obs["cid"], obs["cid"])
        }
    assert obs["received"]["tom"] == []
    assert [m["id"] for m in obs["history"]] == ids


@pytest.mark.parametrize("params", ENCODINGS)
def test_resend_with_same_dt_is_deduplicated(server: Server, params: Obs) -> None:
    obs = server.run("msg_dedupe_raw", params)
    first, second, third, other = obs["first"], obs["second"], obs["third"], obs["other"]
    for ack in (first, second, third, other):
        assert ack["cmd"] == "ack", ack
        assert "code" not in ack["ackMessage"], ack
    uid, t = first["ackMessage"]["uid"], first["ackMessage"]["t"]
    assert uid
    assert (second["ackMessage"]["uid"], second["ackMessage"]["t"]) == (uid, t)
    assert (third["ackMessage"]["uid"], third["ackMessage"]["t"]) == (uid, t)
    assert other["ackMessage"]["uid"] != uid
    delivered = obs["delivered"]
    assert [d["directMessage"]["id"] for d in delivered] == [uid, other["ackMessage"]["uid"]]
    logs = obs["logs"]["logsMessage"]["logs"]
    assert [(item["msgId"], item["timestamp"]) for item in logs] == [
        (uid, t),
        (other["ackMessage"]["uid"], other["ackMessage"]["t"]),
    ]


def test_send_to_missing_conversation_or_as_non_member_fails(server: Server) -> None:
    obs = server.run("msg_send_errors")
    assert obs["asNonMember"]["resolved"] is False
    assert obs["asNonMember"]["error"]["code"] == 4401
    assert obs["asNonMemberStatus"] == "failed"
    assert obs["toMissing"]["resolved"] is False
    assert obs["toMissing"]["error"]["code"] == 4401
    assert obs["toMissingStatus"] == "failed"
    assert obs["jerryInbox"] == ["fine"]
    assert obs["tomInbox"] == []
    assert obs["history"] == ["fine"]


# ---------------------------------------------------------------------------
# history (protocol.md 4.14; limit 1..100 (history_max_limit), default 20)


def test_history_newest_first_results_ascending(server: Server) -> None:
    obs = server.run("history_query")
    sent = obs["sent"]
    assert [m["text"] for m in sent] == [f"m{n}" for n in range(25)]

    def expect(first: int, last: int) -> list[tuple[str, str, int]]:
        return [(m["id"], m["text"], m["timestamp"]) for m in sent[first : last + 1]]

    def got(key: str) -> list[tuple[str, str, int]]:
        return [(m["id"], m["text"], m["timestamp"]) for m in obs[key]]

    assert got("newest5") == expect(20, 24)
    assert got("byDefault") == expect(5, 24)
    assert got("one") == expect(24, 24)
    assert got("jerryNewest5") == expect(20, 24)
    assert all(m["from"] == "tom" for m in obs["newest5"])
    assert obs["none"] == []


def test_history_paging_with_iterator(server: Server) -> None:
    obs = server.run("history_iterator")
    order = [m["text"] for m in obs["sent"]]
    assert order == [f"p{n}" for n in range(21)]
    ids = [m["id"] for m in obs["sent"]]
    pages = obs["pages"]
    assert [(len(p["texts"]), p["done"]) for p in pages] == [(10, False), (10, False), (1, True)]
    assert pages[0]["ids"] == ids[11:21]
    assert pages[1]["ids"] == ids[1:11]
    assert pages[2]["ids"] == ids[0:1]


def test_history_direction_and_interval(server: Server) -> None:
    obs = server.run("history_interval")
    i = [f"i{n}" for n in range(10)]
    stamps = [m["timestamp"] for m in obs["sent"]]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == 10
    assert obs["oldToNew3"] == i[0:3]
    assert obs["newToOld3"] == i[7:10]
    assert obs["open7to2"] == i[3:7]
    assert obs["closed7to2"] == i[2:8]
    assert obs["open2to7"] == i[3:7]
    assert obs["closed2to7"] == i[2:8]
    assert obs["before7limit2"] == i[5:7]
    assert obs["before7closedLimit2"] == i[6:8]
    assert obs["after2limit2"] == i[3:5]
    assert obs["afterTime4"] == i[5:10]
    assert obs["beforeTime4"] == i[0:4]
    assert obs["newToOldUntil5"] == i[6:10]


def test_history_filtered_by_type(server: Server) -> None:
    obs = server.run("history_type_filter")
    assert obs["images"] == [
        {"class": "ImageMessage", "type": -2, "text": "img1"},
        {"class": "ImageMessage", "type": -2, "text": "img2"},
    ]
    assert [m["text"] for m in obs["texts"]] == ["t1", "t2", "t3"]
    assert {m["class"] for m in obs["texts"]} == {"TextMessage"}
    assert [m["text"] for m in obs["textsLimit2"]] == ["t2", "t3"]
    assert obs["locations"] == [{"class": "LocationMessage", "type": -5, "text": "loc"}]
    assert obs["audio"] == []
    assert [m["text"] for m in obs["all"]] == ["t1", "img1", "t2", "loc", "img2", "t3"]


def test_history_limit_over_100(server: Server) -> None:
    obs = server.run("history_limit_clamp", timeout=90)
    assert obs["failedAcks"] == 0
    full = {"resolved": True, "count": 100, "first": "f5", "last": "f104"}
    assert obs["limit100"] == full
    # Over the maximum the limit is cut to 100 (features.md F54: at most 100 per query).
    assert obs["limit101"] == full
    assert obs["limit5000"] == full


def test_history_of_big_messages_with_a_raised_reply_bound(start_server: StartServer) -> None:
    # 10 messages of 60 KB pass the default bound (512 KiB, half the outbox); an app that
    # stores such messages raises the outbox and the bound together (README: sizes). The
    # SDK's iterator then gets full pages, and a page of 100 is cut by bytes and paged on.
    raised = {"outbox_max_bytes": str(2 * 2**20), "max_reply_bytes": str(2**20)}
    obs = start_server(**raised).run("history_big_messages")
    labels = [f"{n:02d}" for n in range(12)]
    assert obs["iterated"] == [
        {"done": False, "labels": labels[2:]},
        {"done": True, "labels": labels[:2]},
    ]
    assert [label for page in reversed(obs["paged"]) for label in page] == labels


def test_history_of_big_messages_over_a_small_reply_bound(start_server: StartServer) -> None:
    # Pages cut by bytes: paging until an empty page sees everything, but the SDK's
    # iterator takes the first short page for the end (README: history).
    obs = start_server(max_reply_bytes="200000").run("history_big_messages")
    labels = [f"{n:02d}" for n in range(12)]
    assert obs["iterated"] == [{"done": True, "labels": labels[9:]}]
    assert obs["paged"] == [labels[9:], labels[6:9], labels[3:6], labels[:3]]


# ---------------------------------------------------------------------------
# flat JSON (design.md 1: lc.json.3 and no subprotocol)


def test_json_clients_chat(server: Server) -> None:
    obs = server.run("json_clients")
    assert obs["negotiated"] == {"u1": "lc.json.3", "u2": None}
    assert obs["decodeErrors"] == []
    o1, o2 = obs["opened1"], obs["opened2"]
    assert (o1["cmd"], o1["op"], o1["peerId"], o1["i"]) == ("session", "opened", "u1", 1)
    assert (o2["cmd"], o2["op"], o2["peerId"], o2["i"]) == ("session", "opened", "u2", 1)
    started = obs["started"]
    assert (started["cmd"], started["op"], started["i"]) == ("conv", "started", 2)
    cid = started["cid"]
    assert isinstance(cid, str)
    assert cid
    joined = obs["u2Joined"]
    assert (joined["peerId"], joined["cid"], joined["initBy"]) == ("u2", cid, "u1")
    members_joined = obs["u2MembersJoined"]
    assert members_joined["op"] == "members-joined"
    assert sorted(members_joined["m"]) == ["u1", "u2"]
    ack = obs["ack"]
    assert (ack["cmd"], ack["i"]) == ("ack", 3)
    assert ack["uid"]
    assert isinstance(ack["t"], int)
    assert "code" not in ack
    pushed = obs["pushed"]
    expected = {"cmd": "direct", "peerId": "u2", "cid": cid, "msg": "hello", "fromPeerId": "u1"}
    assert {k: pushed.get(k) for k in expected} == expected
    assert (pushed["id"], pushed["timestamp"]) == (ack["uid"], ack["t"])
    assert "i" not in pushed
    reply = obs["reply"]
    assert (reply["cmd"], reply["i"]) == ("ack", 2)
    back = obs["pushedBack"]
    assert (back["peerId"], back["fromPeerId"], back["msg"], back["id"]) == (
        "u1",
        "u2",
        '{"_lctype":-1,"_lctext":"hi u1"}',
        reply["uid"],
    )
    for bad in (obs["badJson"], obs["notObject"]):
        assert bad["cmd"] == "error", bad
        assert isinstance(bad["code"], int), bad
        assert bad["reason"], bad
    assert obs["echo"] == {"cmd": "echo", "i": 5}
    assert obs["afterBad"]["cmd"] == "ack"
    assert obs["pushedAfterBad"]["msg"] == "still here"
    logs = obs["logs"]
    assert (logs["cmd"], logs["i"]) == ("logs", 7)
    assert [(item["from"], item["data"]) for item in logs["logs"]] == [
        ("u1", "hello"),
        ("u2", '{"_lctype":-1,"_lctext":"hi u1"}'),
        ("u1", "still here"),
    ]
    assert obs["stillOpen"] is True


# ---------------------------------------------------------------------------
# bad input (design.md 4: never crashes, never loses data)

# Close codes a bad frame may end a connection with (chatroom/protocol/errors.py).
PROTOCOL_CLOSES = {1002, 1003, 1007, 1008}


def check_unharmed(server: Server, obs: Obs, extra: list[str] | None = None) -> None:
    """Another connection logs in and chats; existing ones still work; history intact."""
    assert obs["tomInbox"] == ["hi tom"]
    assert obs["aliceInbox"] == ["hi alice"]
    baseline = obs["baseline"]
    history = obs["history"]
    assert history[: len(baseline)] == baseline
    expected = [m["text"] for m in baseline] + (extra or []) + ["after"]
    assert [m["text"] for m in history] == expected
    assert history[-1]["id"] == obs["lastId"]
    assert server.healthz()["status"] == "ok"


def rejected(result: Obs) -> bool:
    """An error reply with a code, or a close with a protocol close code."""
    errors = [r for r in result["replies"] if r.get("cmd") == "error"]
    if errors:
        return all(isinstance(e["errorMessage"]["code"], int) for e in errors)
    close = result["close"]
    return close is not None and close["code"] in PROTOCOL_CLOSES


def test_garbage_frames(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "garbage"})
    got = obs["observed"]
    assert rejected(got["first"]), got
    if got["second"] is not None:
        assert rejected(got["second"]), got
        if got["second"]["close"] is None:
            assert got["echo"]["cmd"] == "echo", got
    check_unharmed(server, obs)


def test_binary_frame_on_base64_connection(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "binaryOnBase64"})
    got = obs["observed"]
    answered = [r for r in got["replies"] if r.get("cmd") == "echo" and r.get("i") == 99]
    if answered:
        # Accepted leniently (chatroom.protocol.codec.decode reads either frame type),
        # answered once, and the connection stays open.
        assert len(answered) == 1, got
        assert got["close"] is None, got
    else:
        assert rejected(got), got
        if got["close"] is not None:
            assert got["close"]["code"] == 1003, got
    check_unharmed(server, obs)


def test_unknown_command_and_op(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "unknownCommand"})
    got = obs["observed"]
    for key, i in (("unknownCmd", 11), ("unknownOp", 12), ("serverOnlyOp", 13)):
        reply = got[key]
        assert reply.get("cmd") == "error", (key, reply)
        assert reply["i"] == i
        assert isinstance(reply["errorMessage"]["code"], int)
        assert reply["errorMessage"]["reason"]
    assert got["echo"]["cmd"] == "echo"
    assert got["close"] is None
    check_unharmed(server, obs)


def test_command_before_login(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "beforeLogin"})
    got = obs["observed"]
    for key in ("convStart", "direct", "query"):
        assert error_code(got[key]) == 4105, (key, got[key])
    assert got["opened"]["op"] == "opened"
    assert sorted(got["online"]["sessionMessage"]["onlineSessionPeerIds"]) == ["late", "tom"]
    assert got["close"] is None
    check_unharmed(server, obs)


def test_oversized_frame_closes_with_1009(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "oversized"})
    got = obs["observed"]
    assert got["close"] is not None, got
    assert got["close"]["code"] == 1009, got
    check_unharmed(server, obs)


def test_echo_flood(server: Server) -> None:
    obs = server.run("bad_input", {"kind": "echoFlood"})
    got = obs["observed"]
    assert got["echoIdsInRange"] is True
    assert got["inOrder"] is True
    assert got["other"] == 0
    assert got["distinctEchoes"] == got["echoes"]
    if got["close"] is None:
        # all answered: by an echo, or by a documented error (rate limit)
        assert got["echoes"] + got["errors"] == got["count"], got
        assert set(got["errorCodes"]) <= {4113}, got
    else:
        assert got["close"]["code"] == 4113, got
    during = obs["during"]
    assert during, "the bystander sent nothing during the flood"
    assert all(d["ok"] for d in during), during
    check_unharmed(server, obs, [f"during {n}" for n in range(len(during))])
