"""What RedisHub nodes say to each other over Redis pub/sub. Pure.

One PUBLISH carries one or more *records*; each record is a small JSON header and up
to two protobuf bodies (a push's ``GenericCommand`` without ``peerId``, and its
JSON-only fields), each part prefixed by its length (4 bytes, big-endian). A busy room
gets every push of one drain of the publishing queue in one PUBLISH.

A record starts with its size (4 bytes), its *origin* (one byte of length, then the
sending node's id; empty but for pushes) and its *echo* number (4 bytes; 0 for none).
A push that comes back to the node that sent it (a chatroom's, or one to its own
channel) carries the sender's number for it: the sender still holds the push and whom
it is for, and hearing it back reads those few bytes and skips the rest, unparsed
(``heard``). Echo 0 from its own origin: the sender delivered it when
it sent it (it did not hear the room yet). Then the record count of bodies (4 bytes),
the header's size (4 bytes), the header, the bodies.

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
- ``b``: node ``n`` shuts down (the same channel);
- ``f``: the records before it in this PUBLISH waited for the sending node's flush
  (``PACED``): every node writes them to its viewers at once, without a pause of its
  own (a node before this record kind logs it as malformed and skips it).

Every push record also carries ``p`` (the priority) and ``s`` (the token of a session
to skip, or null); its origin says which node sent it.

A chatroom's recent messages (its ``logs``) are kept in a Redis list, one element per
message (``kept``): a JSON array of the message's fields, its binary content in base64.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable, Container, Iterator
from typing import Any, NamedTuple

import orjson

from chatroom.core.model import Message
from chatroom.core.outbox import Priority
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, json_only_bytes, json_only_of

_LEN = struct.Struct(">I")
_START = struct.Struct(">IB")  # a record's size, its origin's length
_HEAD = struct.Struct(">II")  # bodies, header size
Header = dict[str, Any]


class WireError(ValueError):
    """A PUBLISH that is not made of well-formed records."""


class Record(NamedTuple):
    """One record heard (a tuple: made once per record of every PUBLISH heard)."""

    header: Header
    bodies: tuple[bytes, ...]

    def prepared(self) -> Prepared:
        """The push a ``r`` or ``p`` record carries, ready to fan out (its protobuf
        encoding is the body as heard: it is not serialized again)."""
        body = self.bodies[0]
        extra = json_only_of(self.bodies[1]) if len(self.bodies) > 1 else None
        return Prepared(pb.GenericCommand.FromString(body), extra, body)

    @property
    def priority(self) -> Priority:
        return _PRIORITIES[self.header.get("p", 0)]


_PRIORITIES = {int(p): p for p in Priority}
_PROTOBUF = Codec.PROTOBUF


def origin(node: str) -> bytes:
    """How a node's id starts each of its push records (``mine`` for ``heard``)."""
    raw = node.encode()
    if len(raw) > 255:
        raise ValueError("a node id of more than 255 bytes")
    return bytes((len(raw),)) + raw


def head(header: Header, count: int) -> bytes:
    """A record's header part, for ``count`` bodies (the same for every push of one
    sender to one room: its caller may keep it)."""
    raw = orjson.dumps(header)
    return _HEAD.pack(count, len(raw)) + raw


def record(head: bytes, bodies: tuple[bytes, ...], source: bytes = b"\x00", echo: int = 0) -> bytes:
    """One record: ``head`` (``head()``), the bodies, from ``source`` (``origin()``)."""
    size = len(source) + 4 + len(head) + 4 * len(bodies) + sum(map(len, bodies))
    parts = [_START.pack(size, len(source) - 1), source[1:], _LEN.pack(echo), head]
    for body in bodies:
        parts += (_LEN.pack(len(body)), body)
    return b"".join(parts)


def stamp(head: bytes, count: int, source: bytes) -> Callable[[tuple[bytes, ...], int], bytes]:
    """``record`` for one ``head`` (of ``count`` bodies) and ``source``, as a function of
    the bodies and the echo number: a sender keeps it with its head. A record of one
    body is then one ``pack`` of everything before the body, and the body; of two (a
    push with JSON-only fields), that, the second one's length and the second one."""
    if count > 2:
        return lambda bodies, echo: record(head, bodies, source, echo)
    pack = struct.Struct(f">IB{len(source) - 1}sI{len(head)}sI").pack
    length, tail, fixed = len(source) - 1, source[1:], len(source) + 8 + len(head)

    def one(bodies: tuple[bytes, ...], echo: int) -> bytes:
        (body,) = bodies
        size = len(body)
        return pack(fixed + size, length, tail, echo, head, size) + body

    def two(bodies: tuple[bytes, ...], echo: int) -> bytes:
        body, extra = bodies
        size, more = len(body), len(extra)
        start = pack(fixed + size + 4 + more, length, tail, echo, head, size)
        return b"".join((start, body, _LEN.pack(more), extra))

    return one if count == 1 else two


def encode(header: Header, *bodies: bytes) -> bytes:
    return record(head(header, len(bodies)), bodies)


def push_bodies(prepared: Prepared) -> tuple[bytes, ...]:
    """What a push record carries of ``prepared``."""
    body = prepared.payload(_PROTOBUF, None)  # cached: encoded once per push
    json_only = prepared.json_only
    if json_only is None:
        return (body,)
    return (body, json_only_bytes(json_only))


def push_record(
    header: Header,
    prepared: Prepared,
    priority: Priority,
    skip: str | None,
    source: bytes = b"\x00",
    echo: int = 0,
) -> bytes:
    header["p"] = int(priority)
    header["s"] = skip
    bodies = push_bodies(prepared)
    return record(head(header, len(bodies)), bodies, source, echo)


def decode(data: bytes) -> Iterator[Record]:
    """The records of one PUBLISH, in order; ``WireError`` on anything malformed."""
    for record in heard(data, b"", ()):
        assert isinstance(record, Record)
        yield record


def heard(data: bytes, mine: bytes, own: Container[int]) -> Iterator[Record | int]:
    """``decode`` for the node ``mine`` (``origin()``): its own record whose echo number
    is 0 or in ``own`` comes as that number, not parsed. Records with the same header
    part as the one before (a sender's pushes to one room) share its header, parsed
    once: not to be changed."""
    end = len(data)
    last_raw, last = b"", None
    at = 0
    mine_at = len(mine) - 1  # where its echo number starts, after the origin's length
    try:
        while at < end:
            size, length = _START.unpack_from(data, at)
            stop = at + 4 + size
            if stop > end:
                raise WireError("truncated record")
            at += 5 + length
            if mine and length == mine_at and data.startswith(mine, at - length - 1):
                (echo,) = _LEN.unpack_from(data, at)
                if echo == 0 or echo in own:
                    yield echo
                    at = stop
                    continue
            count, size = _HEAD.unpack_from(data, at + 4)
            at += 12
            raw = data[at : at + size]
            at += size
            if raw == last_raw:
                header = last
            else:
                header = last = orjson.loads(raw)
                last_raw = raw
            if count == 1:  # a push without JSON-only fields: most records
                (size,) = _LEN.unpack_from(data, at)
                at += 4 + size
                bodies: tuple[bytes, ...] = (data[at - size : at],)
            elif count == 2:  # with them (a chatroom push whose sender gave a priority)
                (size,) = _LEN.unpack_from(data, at)
                body = data[at + 4 : at + 4 + size]
                at += 4 + size
                (size,) = _LEN.unpack_from(data, at)
                at += 4 + size
                bodies = (body, data[at - size : at])
            else:
                bodies, at = _bodies(data, at, count)
            if not isinstance(header, dict) or at != stop:
                raise WireError("truncated record")
            yield Record(header, bodies)
    except (struct.error, orjson.JSONDecodeError) as exc:
        raise WireError(str(exc)) from None


def _bodies(data: bytes, at: int, count: int) -> tuple[tuple[bytes, ...], int]:
    """``count`` bodies from ``at``, each after its length; where they end."""
    bodies = []
    for _ in range(count):
        (size,) = _LEN.unpack_from(data, at)
        bodies.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return tuple(bodies), at


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


# The last record of a PUBLISH whose chatroom records waited for the sending node's
# flush (net/redis_link.py): the receivers write them at once (net/flusher.py).
PACED = encode({"k": "f"})
