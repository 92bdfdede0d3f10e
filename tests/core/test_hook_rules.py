"""Hook names, signatures, replies and statistics (chatroom/core/hooks.py): pure."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import pytest

from chatroom.core.hooks import (
    LATENCY_BUCKETS_MS,
    BadReply,
    HookStats,
    Refusal,
    canonical_name,
    parse_reply,
    peer_list,
    refusal,
    signature,
    verify,
)


def test_names_are_canonical_with_or_without_the_underscore() -> None:
    assert canonical_name("messageReceived") == "_messageReceived"
    assert canonical_name("_clientOffline") == "_clientOffline"
    assert canonical_name("messageReceivd") is None
    assert canonical_name("_rtmClientSign") is None  # not a hook this server calls


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"convId":"c1"}'
    expected = hmac.new(b"k", b"1700000000000." + body, hashlib.sha256).hexdigest()
    assert signature("k", 1_700_000_000_000, body) == "sha256=" + expected
    assert verify("k", 1_700_000_000_000, body, "sha256=" + expected)
    assert not verify("k", 1_700_000_000_001, body, "sha256=" + expected)  # replayed later
    assert not verify("other", 1_700_000_000_000, body, "sha256=" + expected)
    assert not verify("k", 1_700_000_000_000, body + b" ", "sha256=" + expected)


def test_a_reply_is_leancloud_s_result_object() -> None:
    assert parse_reply(200, b'{"result": {"drop": true}}') == {"drop": True}
    assert parse_reply(200, b'{"result": null}') == {}
    assert parse_reply(200, b"{}") == {}
    assert parse_reply(200, b"") == {}


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"code": 1, "error": "boom"}'),
        (404, b""),
        (200, b"not json"),
        (200, b"[1, 2]"),
        (200, b'{"result": "yes"}'),
    ],
)
def test_anything_else_is_a_bad_reply(status: int, body: bytes) -> None:
    with pytest.raises(BadReply):
        parse_reply(status, body)


def test_refusals_carry_the_app_s_code_and_detail() -> None:
    assert refusal({"drop": True, "code": 42, "detail": "spam"}, "drop") == Refusal(42, "spam")
    assert refusal({"reject": 1}, "reject") == Refusal(None, "")
    assert refusal({"reject": True, "code": True, "detail": 5}, "reject") == Refusal(None, "")
    assert refusal({"drop": False, "code": 42}, "drop") is None
    assert refusal({"content": "x"}, "drop") is None


def test_peer_lists_are_lists_of_ids_without_repeats() -> None:
    assert peer_list({"toPeers": ["a", "b", "a"]}, "toPeers") == ["a", "b"]
    assert peer_list({"toPeers": []}, "toPeers") == []
    assert peer_list({"toPeers": "a"}, "toPeers") is None
    assert peer_list({"toPeers": ["a", 1]}, "toPeers") is None
    assert peer_list({}, "toPeers") is None


def test_latency_lands_in_one_bucket_and_in_the_sum() -> None:
    stats = HookStats()
    for seconds in (0.001, 0.005, 0.2, 9.0):
        stats.observe(seconds)
    assert stats.latency_count == 4
    assert stats.latency_ms_sum == pytest.approx(9206.0)
    assert len(stats.latency_buckets) == len(LATENCY_BUCKETS_MS) + 1
    assert stats.latency_buckets[0] == 2  # <= 5 ms, the bound included
    assert stats.latency_buckets[LATENCY_BUCKETS_MS.index(250)] == 1
    assert stats.latency_buckets[-1] == 1  # over the last bound


def test_the_verification_example_of_the_docs_accepts_our_signature() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    example = docs.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(example, namespace)  # the operator's code, as printed
    namespace["SECRET"] = b"k"
    body = b'{"peerId":"tom"}'
    now = int(time.time() * 1000)
    headers = {"X-Chatroom-Timestamp": str(now), "X-Chatroom-Signature": signature("k", now, body)}
    assert namespace["verified"](headers, body)
    assert not namespace["verified"](headers, body + b" ")
    stale = {**headers, "X-Chatroom-Timestamp": str(now - 120_000)}
    stale["X-Chatroom-Signature"] = signature("k", now - 120_000, body)
    assert not namespace["verified"](stale, body)  # a replay, two minutes later
