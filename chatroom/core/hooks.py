"""Server hooks as webhooks: names, signatures, statistics and replies. Pure.

A hook is LeanCloud's cloud function of the same name (rest-and-hooks.md §3), called
here as an HTTP POST of its parameters as JSON to an operator URL. The reply is LeanCloud's
``{"result": {...}}``; an empty or null result means "carry on unchanged". The I/O is
chatroom/net/hooks.py, what each hook point sends and does with the reply is
chatroom/service/hooks.py; docs/hooks.md is the operator's guide.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

import orjson

from chatroom.core.model import JSON

# Blocking hooks: the request waits for their reply (or the failure policy).
MESSAGE_RECEIVED = "_messageReceived"
MESSAGE_UPDATE = "_messageUpdate"
RECEIVERS_OFFLINE = "_receiversOffline"
CONVERSATION_START = "_conversationStart"
CONVERSATION_ADD = "_conversationAdd"
CONVERSATION_REMOVE = "_conversationRemove"
CONVERSATION_UPDATE = "_conversationUpdate"
# Notifications: queued, posted in the background, their reply ignored.
MESSAGE_SENT = "_messageSent"
CONVERSATION_STARTED = "_conversationStarted"
CONVERSATION_ADDED = "_conversationAdded"
CONVERSATION_REMOVED = "_conversationRemoved"
CLIENT_ONLINE = "_clientOnline"
CLIENT_OFFLINE = "_clientOffline"

NAMES = (
    MESSAGE_RECEIVED,
    MESSAGE_UPDATE,
    RECEIVERS_OFFLINE,
    CONVERSATION_START,
    CONVERSATION_ADD,
    CONVERSATION_REMOVE,
    CONVERSATION_UPDATE,
    MESSAGE_SENT,
    CONVERSATION_STARTED,
    CONVERSATION_ADDED,
    CONVERSATION_REMOVED,
    CLIENT_ONLINE,
    CLIENT_OFFLINE,
)

# Request headers. The signature covers the timestamp and the exact body bytes, so a
# receiver can reject both forged and replayed calls (docs/hooks.md has the check).
HEADER_HOOK = "X-Chatroom-Hook"
HEADER_TIMESTAMP = "X-Chatroom-Timestamp"
HEADER_SIGNATURE = "X-Chatroom-Signature"

# Upper bounds (milliseconds) of the latency buckets; one more bucket counts the rest.
LATENCY_BUCKETS_MS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500)


def canonical_name(name: str) -> str | None:
    """``messageReceived`` or ``_messageReceived`` -> ``_messageReceived``; None if unknown."""
    full = name if name.startswith("_") else "_" + name
    return full if full in NAMES else None


def signature(secret: str, timestamp_ms: int, body: bytes) -> str:
    """The ``X-Chatroom-Signature`` value: ``sha256=`` and the hex HMAC-SHA256, keyed by
    the shared secret, of ``"<timestamp>."`` followed by the body."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp_ms: int, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of this call (constant-time comparison)."""
    return hmac.compare_digest(signature(secret, timestamp_ms, body), header)


class HookFailed(Exception):
    """A hook could not be asked (timeout, error, too many calls in flight) and its
    policy is ``refuse``: the request is refused, with the operation's own code."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        super().__init__(f"hook {name} failed: {why}")


class BadReply(Exception):
    """The endpoint answered, but not with LeanCloud's ``{"result": object}``."""


def parse_reply(status: int, body: bytes) -> dict[str, JSON]:
    """The ``result`` object of a 200 reply (``{}`` for null or empty), else BadReply."""
    if status != 200:
        raise BadReply(f"HTTP {status}")
    if not body.strip():
        return {}
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadReply("reply is not JSON") from None
    if not isinstance(value, dict):
        raise BadReply("reply is not a JSON object")
    result = value.get("result")
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise BadReply("result is not an object")
    return result


@dataclass(slots=True)
class HookStats:
    """Plain counters for one hook, read by ``statistics()`` and the metrics.

    ``calls`` counts requests made; ``failures`` the ones that errored or answered
    badly, ``timeouts`` the ones cut off; ``busy`` the calls not made because the hook's
    concurrency was used up; ``dropped`` the notifications lost to a full queue.
    Latency: ``latency_ms_sum`` over ``latency_count`` answered-or-failed calls, and a
    histogram whose bucket ``i`` counts calls of at most ``LATENCY_BUCKETS_MS[i]`` ms
    (not cumulative; the last bucket is the rest)."""

    calls: int = 0
    failures: int = 0
    timeouts: int = 0
    busy: int = 0
    dropped: int = 0
    latency_ms_sum: float = 0.0
    latency_count: int = 0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))

    def observe(self, seconds: float) -> None:
        ms = seconds * 1000.0
        self.latency_ms_sum += ms
        self.latency_count += 1
        for i, bound in enumerate(LATENCY_BUCKETS_MS):
            if ms <= bound:
                self.latency_buckets[i] += 1
                return
        self.latency_buckets[-1] += 1


# -- what a reply asks for ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ``drop``/``reject`` reply: the app's own ``code`` and ``detail`` for the client."""

    app_code: int | None
    detail: str


def refusal(result: dict[str, JSON], flag: str) -> Refusal | None:
    """The refusal a reply asks for through ``flag`` (``drop`` or ``reject``), or None."""
    if not result.get(flag):
        return None
    code = result.get("code")
    detail = result.get("detail")
    return Refusal(
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        detail if isinstance(detail, str) else "",
    )


def peer_list(result: dict[str, JSON], key: str) -> list[str] | None:
    """A replacement list of client ids (``toPeers``, ``offlinePeers``), or None when
    the reply leaves it out or gives something else than a list of strings."""
    value = result.get(key)
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        return None
    return list(dict.fromkeys(p for p in value if isinstance(p, str)))
