"""The messaging semantics of the intermediate guide, driven by the official JS SDK
(``leancloud-realtime@4.3.1``): receipts, read state, unread counts and their sync
across devices, recall and edit (live and replayed after a reconnect), protocol-v1
offline messages, will messages, sensitive-word filtering, the offline-push webhook,
and the bad-input cases of these commands (protocol.md 4.1, 4.12-4.15; features.md
F37-F50). Scenarios are ``tests/sdk/scenarios/msg4_*.js``; the fixtures are
``tests/test_sdk.py``'s.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from helpers import webhook
from sdk_harness import ENCODINGS, SLACK_MS, Obs, Server, StartServer, assert_recent

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("params", ENCODINGS)
def test_delivery_and_read_receipts(server: Server, params: Obs) -> None:
    obs = server.run("msg4_receipts", params)
    sent_at = obs["sentTimestamp"]
    assert_recent(sent_at, obs["before"], obs["after"])
    # delivery receipt: lastdeliveredatupdate, and the message waiting for it is DELIVERED
    assert obs["status"] == "delivered"
    assert obs["messageDeliveredAt"] == obs["deliveredAt"]
    assert sent_at <= obs["deliveredAt"] <= obs["after"] + SLACK_MS
    # read receipt: lastreadatupdate at the time of the message jerry read
    assert obs["readAt"] == sent_at
    # conv/max_read and history (ackAt/readAt) tell a fresh client the same
    assert obs["fetched"] == {"lastDeliveredAt": sent_at, "lastReadAt": sent_at}
    assert obs["history"] == [{"id": obs["sentId"], "status": "delivered", "deliveredAt": sent_at}]
    assert obs["foreign"]["error"]["code"] == 4317  # max_read of someone else's chat


@pytest.mark.parametrize("params", ENCODINGS)
def test_edit_and_recall(server: Server, params: Obs) -> None:
    obs = server.run("msg4_recall_edit", params)
    mid = obs["originalId"]
    assert obs["edited"] == {"id": mid, "text": "hello jerry (edited)"}
    for update in (obs["jerryUpdate"], obs["phoneUpdate"]):  # other member, other device
        assert (update["id"], update["from"], update["text"]) == (
            mid,
            "tom",
            "hello jerry (edited)",
        )
        assert update["updatedAt"] >= update["timestamp"]
    assert obs["jerryReason"] is None  # changed by its sender, not by the system
    assert obs["clientEventConv"] == obs["jerryUpdate"]["cid"]
    [logged] = obs["historyAfterEdit"]
    assert (logged["id"], logged["text"]) == (mid, "hello jerry (edited)")
    assert logged["updatedAt"] == obs["jerryUpdate"]["updatedAt"]
    assert obs["recalled"] == {"id": mid, "class": "RecalledMessage"}
    for recall in (obs["jerryRecall"], obs["phoneRecall"]):
        assert (recall["id"], recall["class"], recall["type"]) == (mid, "RecalledMessage", -127)
    [logged] = obs["historyAfterRecall"]
    assert (logged["id"], logged["class"]) == (mid, "RecalledMessage")
    assert logged["updatedAt"] > obs["jerryUpdate"]["updatedAt"]
    assert obs["notYours"]["error"]["code"] == 4403
    assert obs["notYoursEdit"]["error"]["code"] == 4403
    assert obs["missing"]["error"]["code"] == 4404


def test_edit_and_recall_can_be_switched_off(start_server: StartServer) -> None:
    server = start_server(allow_edit="false", allow_recall="false")
    obs = server.run("msg4_recall_edit_disabled")
    assert obs == {"edit": 4406, "recall": 4407}


@pytest.mark.parametrize("params", ENCODINGS)
def test_patches_missed_while_disconnected_are_replayed(server: Server, params: Obs) -> None:
    obs = server.run("msg4_missed_patches", params)
    assert obs["order"] == ["reconnect", "update", "recall"]  # after the re-login
    assert (obs["update"]["id"], obs["update"]["text"]) == (
        obs["firstId"],
        "first (edited while you were away)",
    )
    assert (obs["recall"]["id"], obs["recall"]["class"]) == (obs["secondId"], "RecalledMessage")


@pytest.mark.parametrize("params", ENCODINGS)
def test_unread_counts_mentions_and_read_sync(server: Server, params: Obs) -> None:
    obs = server.run("msg4_unread", params)
    last = {"id": obs["lastId"], "text": "three", "from": "tom"}
    for seen in (obs["atLogin"], obs["onB"]):  # offline messages; a second device too
        assert (seen["count"], seen["mentioned"], seen["lastMessage"]) == (3, True, last)
    assert (obs["afterRead"]["count"], obs["afterRead"]["mentioned"]) == (0, False)
    # a message received online still counts until read
    later = obs["later"]
    assert (later["count"], later["mentioned"]) == (1, False)
    assert later["lastMessage"]["id"] == obs["onlineId"]


@pytest.mark.parametrize("params", ENCODINGS)
def test_protocol_v1_pushes_offline_messages(server: Server, params: Obs) -> None:
    obs = server.run("msg4_offline_v1", {**params, "pushOfflineMessages": True})
    assert obs["protocol"].endswith(".1")
    assert [m["id"] for m in obs["received"]] == obs["sent"][-20:]  # the newest 20
    assert [m["text"] for m in obs["received"]] == [f"m{n}" for n in range(3, 23)]
    # (the SDK counts each as unread itself: unreadmessagescountupdate per message)
    assert obs["unreadEvents"] == 20


def test_will_message_on_abrupt_drop_only_the_last_one(server: Server) -> None:
    obs = server.run("msg4_will")
    assert obs["willStatuses"] == ["sent", "sent"]  # acked at once
    assert obs["beforeDrop"] == 0  # held back
    # the last will set (in the second conversation); none on spike's logout
    assert obs["got"] == [{"text": "tom dropped", "from": "tom", "cid": obs["secondId"]}]
    assert obs["history"] == []  # never stored


def test_will_message_on_keepalive_timeout(start_server: StartServer) -> None:
    server = start_server(idle_timeout="1")
    obs = server.run("msg4_will", {"keepalive": True})
    assert obs["ackHasUid"]
    assert obs["close"] == {"code": 4107, "reason": "idle timeout"}
    assert obs["will"] == {"cid": obs["cid"], "msg": "tom timed out", "from": "tom"}


def test_sensitive_words_are_masked_in_groups(start_server: StartServer, tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("badword\n")
    server = start_server(sensitive_words_file=str(words))
    obs = server.run("msg4_filter", {"noBinary": False})
    assert obs["updated"] == {"id": obs["sentId"], "text": "you *** you"}
    assert obs["reason"] == {"code": 4408, "detail": "sensitive words replaced"}
    assert obs["got"] == [
        {"cid": obs["groupId"], "text": "you *** you"},
        {"cid": obs["pairId"], "text": "badword between us"},  # one-to-one: untouched
    ]
    assert obs["history"] == ["you *** you"]


def test_offline_push_goes_to_the_webhook(start_server: StartServer) -> None:
    with webhook() as (url, received):
        template = '{"alert":"${fromClientId} wrote in ${convId}"}'
        server = start_server(push_webhook=url, push_template=template)
        obs = server.run("msg4_push")
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    cid = obs["cid"]
    assert [(r["conversation"], r["recipients"], r["messageId"]) for r in received] == [
        (cid, ["jerry"], obs["ids"][0]),  # spike muted it; tom is the sender
        (cid, ["jerry"], obs["ids"][1]),
    ]
    assert received[0]["payload"] == {"alert": "您有一条未读的消息", "badge": 1}
    assert received[1]["payload"] == {"alert": f"tom wrote in {cid}"}


def test_bad_input_for_messaging_commands(server: Server) -> None:
    obs = server.run("msg4_bad_input")
    assert obs == {
        "noContent": 4201,
        "bothContents": 4201,
        "unknownConv": 4303,
        "unknownMessage": 4404,
        "noPatches": 4201,
        "maxReadForeign": 4317,
        "maxReadMissing": 4303,
        "readForeign": 4317,
        "readNothing": 4201,
        "ackForeign": 4317,
        "stillServing": "echo",
        "history": ["hi"],
    }


class _RewritingHook(BaseHTTPRequestHandler):
    """``_messageReceived`` as an app would write it: rewrite "hello", drop "buy"."""

    def do_POST(self) -> None:
        params = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        content = json.loads(params["content"])  # a TextMessage: {"_lctype": -1, ...}
        if "buy" in content["_lctext"]:
            reply: dict[str, object] = {"drop": True, "code": 42, "detail": "no ads"}
        else:
            content["_lctext"] += " (checked by the app)"
            reply = {"content": json.dumps(content)}
        body = json.dumps({"result": reply}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_hook_rewrites_and_drops_messages(start_server: StartServer) -> None:
    httpd = HTTPServer(("127.0.0.1", 0), _RewritingHook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/1.1/functions/_messageReceived"
        hooks = {"messageReceived": {"url": url, "timeout_ms": 2000}}
        server = start_server(hooks=json.dumps(hooks), hook_secret="s3")
        obs = server.run("hook_rewrite")
    finally:
        httpd.shutdown()
        httpd.server_close()
    text = "hello (checked by the app)"
    assert obs["updated"] == {"id": obs["sentId"], "text": text}
    assert obs["reason"] is None  # changed by the app, not by the word filter
    assert obs["got"] == [{"id": obs["sentId"], "text": text, "from": "tom"}]
    assert obs["dropped"] == {"code": 4402, "appCode": 42}
    assert obs["history"] == [text]
