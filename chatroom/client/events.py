"""Typed events a client receives, parsed from the flat JSON pushes.

Everything the server pushes becomes one of these dataclasses; a push this module
does not know becomes ``Other`` (with the raw object), so a newer server never breaks
an older client. ``Message.text`` is the readable text of a message: the ``_lctext``
of a typed (rich-media) message, else the raw content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, cast

import orjson

Json = dict[str, Any]

PRIORITY_NAMES = {1: "high", 2: "normal", 3: "low"}
PRIORITY_VALUES = {name: value for value, name in PRIORITY_NAMES.items()}


@dataclass(frozen=True)
class Message:
    """A message pushed to this client (``direct``), or one item of ``history``."""

    cid: str
    mid: str
    sender: str
    content: str
    timestamp: int
    transient: bool = False
    offline: bool = False
    mention_all: bool = False
    mentions: tuple[str, ...] = ()
    attrs: Json = field(default_factory=dict)
    pushed_priority: str | None = None
    """The priority the push carried (``high``, ``normal``, ``low``): the server tells
    it for a chatroom message sent with one."""

    @cached_property
    def text(self) -> str:
        """The ``_lctext`` of a typed message, else the content as it is (parsed once)."""
        parsed = _typed(self.content)
        text = parsed.get("_lctext") if parsed else None
        return text if isinstance(text, str) else self.content

    @property
    def priority(self) -> str | None:
        """The priority the message was sent with, if known: ``high``, ``normal`` or
        ``low``. The push's own (``pushed_priority``), else the one the sender put in
        the message's ``_lcattrs`` (``Client.send`` does: history items and pushes of
        normal conversations carry no priority of their own)."""
        if self.pushed_priority is not None:
            return self.pushed_priority
        value = self.attrs.get("priority")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class ConvEvent:
    """A change of a conversation's members or attributes: ``joined``, ``left``,
    ``members-joined``, ``members-left`` or ``updated``."""

    kind: str
    cid: str
    by: str
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Receipt:
    """A delivery (``read`` false) or read receipt for a message this client sent."""

    cid: str
    mid: str
    read: bool
    timestamp: int
    reader: str | None


@dataclass(frozen=True)
class UnreadCount:
    """One conversation of an ``unread`` push: how many messages wait, and the last."""

    cid: str
    count: int
    last: str | None
    mentioned: bool


@dataclass(frozen=True)
class Unread:
    convs: tuple[UnreadCount, ...]


@dataclass(frozen=True)
class Patch:
    """A message was edited (``content`` new) or recalled (``recalled`` true)."""

    cid: str
    mid: str
    recalled: bool
    content: str | None


@dataclass(frozen=True)
class Shed:
    """The server dropped messages for this client because it fell behind (its
    outbox was full): ``count`` frames so far on this connection. Sent at most once a
    second; ``Client.missed`` adds up every connection's."""

    count: int


@dataclass(frozen=True)
class StateChange:
    """The connection's state: ``connecting``, ``live``, ``reconnecting`` (with the
    back-off ``delay`` before the next try) or ``closed`` (with the server's close
    ``code`` and ``reason`` when it gave one)."""

    state: str
    code: int | None = None
    reason: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class Other:
    """A push this client has no type for."""

    raw: Json


Event = Message | ConvEvent | Receipt | Unread | Patch | Shed | StateChange | Other

_CONV_EVENTS = {"joined", "left", "members-joined", "members-left", "updated"}


def _typed(content: str) -> Json | None:
    if not content.startswith("{"):
        return None
    try:
        value = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return cast(Json, value) if isinstance(value, dict) else None


def message_from(raw: Json, cid: str | None = None) -> Message:
    """A ``direct`` push or a ``logs`` item as a ``Message``."""
    content = raw.get("msg", raw.get("data", ""))
    content = content if isinstance(content, str) else ""
    typed = _typed(content) or {}
    attrs = typed.get("_lcattrs")
    return Message(
        cid=str(raw.get("cid", cid or "")),
        mid=str(raw.get("id", raw.get("msgId", ""))),
        sender=str(raw.get("fromPeerId", raw.get("from", ""))),
        content=content,
        timestamp=int(raw.get("timestamp", 0)),
        transient=bool(raw.get("transient", False)),
        offline=bool(raw.get("offline", False)),
        mention_all=bool(raw.get("mentionAll", False)),
        mentions=tuple(raw.get("mentionPids", ())),
        attrs=cast(Json, attrs) if isinstance(attrs, dict) else {},
        pushed_priority=PRIORITY_NAMES.get(raw.get("priority", 0)),
    )


def parse_pushes(raw: Json) -> list[Event]:
    """The events of one pushed command (one without ``i``): one each, but a
    ``patch`` push carries one ``Patch`` per edited or recalled message."""
    if raw.get("cmd") == "patch":
        return [_patch(item) for item in raw.get("patches", ())]
    return [_event(raw)]


def _patch(item: Json) -> Patch:
    data = item.get("data")
    recalled = bool(item.get("recall", False))
    return Patch(str(item.get("cid", "")), str(item.get("mid", "")), recalled, data)


def _event(raw: Json) -> Event:
    cmd, op = raw.get("cmd"), raw.get("op")
    if cmd == "direct":
        return message_from(raw)
    if cmd == "conv" and op in _CONV_EVENTS:
        return ConvEvent(
            str(op), str(raw.get("cid", "")), str(raw.get("initBy", "")), tuple(raw.get("m", ()))
        )
    if cmd == "rcp":
        return Receipt(
            str(raw.get("cid", "")),
            str(raw.get("id", "")),
            bool(raw.get("read", False)),
            int(raw.get("t", 0)),
            cast("str | None", raw.get("from")),
        )
    if cmd == "unread":
        return Unread(tuple(_unread(c) for c in raw.get("convs", ())))
    if cmd == "shed" and isinstance(raw.get("count"), int):
        return Shed(raw["count"])
    return Other(raw)


def _unread(raw: Json) -> UnreadCount:
    last = raw.get("data")
    return UnreadCount(
        str(raw.get("cid", "")),
        int(raw.get("unread", 0)),
        last if isinstance(last, str) else None,
        bool(raw.get("mentioned", False)),
    )
