"""Identifiers a client supplies (conversation, message and client ids, session tokens,
cursors) never hold control characters: refused here, at the boundary, before a store
sees them (PostgreSQL cannot hold U+0000 in text at all, and no id the server issues
has any). Message content, attributes and queries are not ids and are not checked.
"""

from __future__ import annotations

import re

from google.protobuf.message import Message

from chatroom.protocol.errors import ChatError, ErrorCode

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")

# Message type -> its fields that hold identifiers (strings, or repeated strings).
ID_FIELDS: dict[str, frozenset[str]] = {
    "SessionCommand": frozenset({"st", "sessionPeerIds", "tag", "deviceId"}),
    "DirectCommand": frozenset({"cid", "toPeerIds", "id", "dt", "mentionPids", "roomId"}),
    "AckCommand": frozenset({"cid", "mid", "ids", "uid"}),
    "ConvCommand": frozenset(
        {"m", "cid", "cids", "tempConvIds", "targetClientId", "initBy", "next", "uniqueId"}
    ),
    "ConvMemberInfo": frozenset({"pid", "infoId"}),
    "MaxReadTuple": frozenset({"pid"}),
    "LogsCommand": frozenset({"cid", "mid", "tmid"}),
    "ReadCommand": frozenset({"cid", "cids"}),
    "ReadTuple": frozenset({"cid", "mid"}),
    "UnreadTuple": frozenset({"cid", "mid"}),
    "RcpCommand": frozenset({"id", "cid", "from"}),
    "PresenceCommand": frozenset({"sessionPeerIds", "cid"}),
    "PatchItem": frozenset({"cid", "mid", "from", "mentionPids"}),
    "BlacklistCommand": frozenset({"srcCid", "toPids", "srcPid", "toCids", "next"}),
}


def has_control(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character, or DEL."""
    return CONTROL.search(text) is not None


def holds_nul(value: object) -> bool:
    """Whether a parsed JSON value has U+0000 in a string (a key or a value), which no
    store can match and PostgreSQL cannot hold."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    return False


def control_field(message: Message) -> str | None:
    """The name of the first identifier field of ``message`` (or of a message inside
    it) holding a control character, or None."""
    ids = ID_FIELDS.get(message.DESCRIPTOR.name, frozenset())
    for fd, value in message.ListFields():
        if fd.message_type is not None:
            for sub in (value,) if isinstance(value, Message) else value:
                name = control_field(sub)
                if name is not None:
                    return f"{fd.name}.{name}"
        elif fd.name in ids:
            for text in (value,) if isinstance(value, str) else value:
                if isinstance(text, str) and has_control(text):
                    return fd.name
    return None


def refuse_control(message: Message) -> None:
    """ChatError 4201 (the invalid-argument error) naming the field, if any identifier
    of ``message`` holds a control character."""
    name = control_field(message)
    if name is not None:
        raise ChatError(
            ErrorCode.INVALID_COMMAND, f"invalid argument: {name} holds a control character"
        )
