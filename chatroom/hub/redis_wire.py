"""What RedisHub nodes say to each other over Redis pub/sub. Pure.

One PUBLISH carries one or more *records*; each record is a small JSON header and up
to two protobuf bodies (a push's ``GenericCommand`` without ``peerId``, and its
JSON-only fields), each part prefixed by its length (4 bytes, big-endian). A busy room
gets every push of one drain of the publishing queue in one PUBLISH.

Header kinds (``k``):

- ``r``: a push to chatroom ``c``'s viewers (channel ``<prefix>room:<cid>``), but
  any session of client ``x`` when it is given (a REST send in that client's name);
- ``p``: a push to every session of the clients ``to`` on the receiving node
  (channel ``<prefix>node:<id>``);
- ``k``: end the sessions ``t`` of client ``peer`` (single-device login);
- ``w``: client ``peer`` set a will on session ``keep``: the others' wills are void;
- ``i``: node ``n`` changed a cached record of kind ``w`` (hub/base.py) with key
  ``key``, its new state ``v`` (or null): the others forget their copy
  (channel ``<prefix>presence``);
- ``d``: presence changes ``e`` of node ``n``, numbered up to ``q``;
- ``h``: node ``n`` is alive, its presence at number ``q`` (channel ``<prefix>presence``);
- ``b``: node ``n`` shuts down (the same channel).

Every push record also carries ``n`` (the node that sent it), ``p`` (the priority),
``s`` (the token of a session to skip, or null) and, when it comes back to its sender,
``o`` (the sender's number for it, to reuse the push it still holds).

A chatroom's recent messages (its ``logs``) are kept in a Redis list, one element per
message (``kept``): a JSON array of the message's fields, its binary content in base64.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from chatroom.core.model import Message
from chatroom.core.outbox import Priority
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, serialize

_LEN = struct.Struct(">I")
Header = dict[str, Any]


class WireError(ValueError):
    """A PUBLISH that is not made of well-formed records."""


@dataclass(frozen=True, slots=True)
class Record:
    header: Header
    bodies: tuple[bytes, ...]

    def prepared(self) -> Prepared:
        """The push a ``r`` or ``p`` record carries, ready to fan out."""
        cmd = pb.GenericCommand.FromString(self.bodies[0])
        extra = pb.GenericCommand.FromString(self.bodies[1]) if len(self.bodies) > 1 else None
        return Prepared(cmd, extra)

    @property
    def priority(self) -> Priority:
        return Priority(int(self.header.get("p", 0)))


def encode(header: Header, *bodies: bytes) -> bytes:
    raw = orjson.dumps(header)
    parts = [_LEN.pack(len(bodies)), _LEN.pack(len(raw)), raw]
    for body in bodies:
        parts += (_LEN.pack(len(body)), body)
    return b"".join(parts)


def push_record(header: Header, prepared: Prepared, priority: Priority, skip: str | None) -> bytes:
    header["p"] = int(priority)
    header["s"] = skip
    bodies = [prepared.payload(Codec.PROTOBUF, None)]  # cached: encoded once per push
    if prepared.json_only is not None:
        bodies.append(serialize(prepared.json_only))
    return encode(header, *bodies)


def decode(data: bytes) -> Iterator[Record]:
    """The records of one PUBLISH, in order; ``WireError`` on anything malformed."""
    view = memoryview(data)
    at = 0
    try:
        while at < len(view):
            (count,) = _LEN.unpack_from(view, at)
            (size,) = _LEN.unpack_from(view, at + 4)
            at += 8
            header = orjson.loads(view[at : at + size])
            at += size
            bodies = []
            for _ in range(count):
                (size,) = _LEN.unpack_from(view, at)
                bodies.append(bytes(view[at + 4 : at + 4 + size]))
                at += 4 + size
            if not isinstance(header, dict) or at > len(view):
                raise WireError("truncated record")
            yield Record(header, tuple(bodies))
    except (struct.error, orjson.JSONDecodeError) as exc:
        raise WireError(str(exc)) from None


def kept(message: Message) -> bytes:
    """A chatroom message as its room's Redis list keeps it (its ``dt`` left out: only
    ``logs`` reads it). The same message always gives the same bytes (``LREM`` finds it)."""
    binary = None if message.binary is None else base64.b64encode(message.binary).decode()
    return orjson.dumps(
        [
            message.cid,
            message.mid,
            message.from_peer,
            message.timestamp,
            message.data,
            binary,
            message.mention_all,
            message.mention_pids,
            message.lctype,
            message.patch_timestamp,
        ]
    )


def unkept(raw: bytes) -> Message:
    """A message read back from a room's Redis list; ``WireError`` when malformed."""
    try:
        cid, mid, peer, ts, data, binary, everyone, pids, lctype, patched = orjson.loads(raw)
        fields = (cid, mid, peer, ts, data, binary, lctype, patched)
        if not all(isinstance(f, t) for f, t in zip(fields, _KEPT_TYPES, strict=True)):
            raise WireError("a kept message with a field of the wrong type")
        return Message(
            cid,
            mid,
            peer,
            ts,
            data,
            None if binary is None else base64.b64decode(binary, validate=True),
            bool(everyone),
            tuple(str(p) for p in pids),
            lctype=lctype,
            patch_timestamp=patched,
        )
    except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
        raise WireError(f"a kept message is unreadable ({exc})") from None


_OPTIONAL_STR: tuple[type, ...] = (str, type(None))
_OPTIONAL_INT: tuple[type, ...] = (int, type(None))
_KEPT_TYPES: tuple[type | tuple[type, ...], ...] = (
    str,
    str,
    str,
    int,
    _OPTIONAL_STR,
    _OPTIONAL_STR,
    _OPTIONAL_INT,
    _OPTIONAL_INT,
)
