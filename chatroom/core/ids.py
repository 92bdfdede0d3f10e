"""Identifiers and server time. Pure.

Message ids and timestamps come from one ``MessageClock`` so that the order the server
accepts messages in is also ``(timestamp, id)`` order: timestamps never go backwards
(a wall clock that does is held at its last value) and, within one millisecond, later
ids sort after earlier ones.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

# Digits in ascending ASCII order, so that fixed-width ids sort like the numbers.
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_COUNTER_BITS = 16


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """ISO 8601 with milliseconds and ``Z``, as LeanCloud's ``cdate``/``udate``."""
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _base32(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        out.append(_DIGITS[value & 31])
        value >>= 5
    return "".join(reversed(out))


class MessageClock:
    """Issues ``(timestamp_ms, message_id)`` pairs in strictly increasing order, all
    after any issued before ``not_before`` (the newest stored timestamp) by an earlier
    run of the server. Nodes of a cluster issue ids each with its own ``suffix``
    (appended), so that two nodes' ids of one millisecond never collide."""

    __slots__ = ("_counter", "_last", "_now", "_suffix")

    def __init__(self, now: Callable[[], int] = wall_ms, not_before: int = 0, suffix: str = ""):
        self._now = now
        self._suffix = suffix
        self._last = not_before
        # As if ``not_before`` had used up its ids: ids of that millisecond may be
        # stored already, so the first id is issued in a later one.
        self._counter = (1 << _COUNTER_BITS) - 1

    def next(self) -> tuple[int, str]:
        now = self._now()
        if now > self._last:
            self._last = now
            self._counter = 0
        else:
            self._counter += 1
            if self._counter >> _COUNTER_BITS:
                # 65536 ids in one millisecond: borrow the next millisecond.
                self._last += 1
                self._counter = 0
        ts = self._last
        return ts, _base32((ts << _COUNTER_BITS) | self._counter, 13) + self._suffix


class ObjectIds:
    """Conversation ids in MongoDB ObjectId form (24 hex digits), as LeanCloud's:
    seconds, a per-process random part and a counter."""

    def __init__(self, now: Callable[[], int] = wall_ms) -> None:
        self._now = now
        self._process = os.urandom(5)
        self._counter = int.from_bytes(os.urandom(3), "big")

    def next(self) -> str:
        self._counter = (self._counter + 1) & 0xFFFFFF
        seconds = (self._now() // 1000) & 0xFFFFFFFF
        raw = seconds.to_bytes(4, "big") + self._process + self._counter.to_bytes(3, "big")
        return raw.hex()


class Ids:
    """Every identifier and server time the services issue, from one wall clock
    (``now``, milliseconds): message ids with their timestamps, conversation ids, and
    patch times (strictly increasing, so that a ``lastPatchTime`` replay misses none)."""

    __slots__ = ("_last_patch", "_messages", "_now", "_objects")

    def __init__(
        self, now: Callable[[], int] = wall_ms, not_before: int = 0, suffix: str = ""
    ) -> None:
        self._now = now
        self._messages = MessageClock(now, not_before, suffix)
        self._objects = ObjectIds(now)
        self._last_patch = 0

    def message(self) -> tuple[int, str]:
        """A new message's ``(timestamp_ms, message_id)`` (see ``MessageClock``)."""
        return self._messages.next()

    def conversation(self) -> str:
        """A new conversation id."""
        return self._objects.next()

    def patch_time(self) -> int:
        """Wall-clock ms, strictly after the previous patch time."""
        self._last_patch = max(self._now(), self._last_patch + 1)
        return self._last_patch


_TOKEN_BYTES = 24  # 192 bits, as ``secrets.token_urlsafe(24)``: 32 URL-safe characters
_POOL_BYTES = 4080  # read from the kernel at once: 170 tokens per getrandom


class _Entropy:
    """Bytes of ``os.urandom``, read a few KB at a time and handed out once each: a
    login takes its token's 24 bytes from here, not one system call (and the
    ``SystemRandom`` layers) of its own. Emptied in a forked child, so that no two
    processes hand out the same bytes."""

    __slots__ = ("_at", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        at = self._at
        if at + n > len(self._pool):
            self._pool = os.urandom(max(_POOL_BYTES, n))
            at = 0
        self._at = at + n
        return self._pool[at : at + n]

    def clear(self) -> None:
        self._pool = b""
        self._at = 0


_ENTROPY = _Entropy()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ENTROPY.clear)


def session_token() -> str:
    """A new session token: 24 random bytes in URL-safe base64 (no padding), the
    format of ``secrets.token_urlsafe(24)``."""
    return base64.urlsafe_b64encode(_ENTROPY.take(_TOKEN_BYTES)).decode("ascii")


def thread_cid(system_cid: str, client: str) -> str:
    """Where the messages between a system conversation's operator and one subscriber
    are kept: ``md5(systemCid + ":" + clientId)``, as LeanCloud's 1.1 history API names
    such a thread. Never a conversation id (those are 24 base-32 digits)."""
    return hashlib.md5(f"{system_cid}:{client}".encode()).hexdigest()
