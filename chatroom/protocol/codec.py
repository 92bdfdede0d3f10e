"""Bytes <-> commands, for each subprotocol. Pure: no I/O, no Trio.

The command model is the protobuf ``GenericCommand`` of ``messages.proto``. Three
encodings carry it, chosen per connection by the WebSocket subprotocol:

========================  ============  =============================================
subprotocol               frames        payload
========================  ============  =============================================
``lc.protobuf2.{1,3}``    binary        the protobuf bytes
``lc.proto2base64.{1,3}`` text          base64 of the protobuf bytes
``lc.json.3`` or none     text          one flat JSON object (see ``to_json``)
========================  ============  =============================================

The flat JSON form puts the fields of the command's nested message (``sessionMessage``,
``directMessage``...) at top level next to ``cmd``/``op``/``i``/``peerId``; op names are
written with hyphens (``members-joined``; underscores are accepted too); the JSON
payload fields ``attr``, ``where``, ``results`` and ``attrModified`` are real JSON values
(a payload that is not JSON, or is a JSON string, is written as that text; a JSON string
read back is stored as it is); ``bytes`` fields (``binaryMsg``) are base64 strings. A
nested message that is present but empty has no keys, so it reads back as absent.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import orjson
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import DecodeError, EncodeError
from google.protobuf.message import Message as PbMessage

from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import CloseCode, ProtocolError
from chatroom.protocol.framing import frame_header, ws_frame

if TYPE_CHECKING:
    from chatroom.protocol.roomlog import RoomLog

GenericCommand = pb.GenericCommand


class Codec(enum.Enum):
    PROTOBUF = "protobuf"
    BASE64 = "base64"
    JSON = "json"

    @property
    def binary_frames(self) -> bool:
        return self is _PROTOBUF


# The members as module constants: an attribute of an Enum class is looked up through
# EnumType.__getattr__'s slot (~0.9 k instructions each), several times per request.
_PROTOBUF = Codec.PROTOBUF
_BASE64 = Codec.BASE64
_JSON = Codec.JSON


@dataclass(frozen=True, slots=True)
class Subprotocol:
    """The negotiated subprotocol: what to echo, how to encode, which protocol version
    (1 pushes stored messages at login, 3 sends unread counts instead)."""

    name: str | None
    codec: Codec
    version: int


_BY_FORMAT = {"protobuf2": Codec.PROTOBUF, "proto2base64": Codec.BASE64, "json": Codec.JSON}


# Every subprotocol we speak, made once: connections share them.
_SPOKEN = {
    f"lc.{form}.{version}": Subprotocol(f"lc.{form}.{version}", codec, version)
    for form, codec in _BY_FORMAT.items()
    for version in (1, 3)
}


def parse_subprotocol(name: str) -> Subprotocol | None:
    """``lc.<format>.<version>`` -> Subprotocol, or None when we do not speak it."""
    return _SPOKEN.get(name.strip())


def negotiate(offered: list[str], query_value: str | None = None) -> Subprotocol | None:
    """Pick the first ``lc.*`` subprotocol the client offered (the header, or the
    ``?subprotocol=`` query parameter that WeChat mini-programs use). A client that
    offers nothing gets flat JSON; one that offers only unknown names gets None."""
    candidates = list(offered)
    if query_value:
        candidates.append(query_value)
    for name in candidates:
        chosen = parse_subprotocol(name)
        if chosen is not None:
            if chosen.name == query_value and query_value not in offered:
                # Not offered in the header: echoing it would fail the handshake.
                return Subprotocol(None, chosen.codec, chosen.version)
            return chosen
    if not candidates:
        return Subprotocol(None, Codec.JSON, 3)
    return None


# ---------------------------------------------------------------------------
# protobuf


def decode(codec: Codec, frame: str | bytes) -> pb.GenericCommand:
    """``decode_checked``'s command."""
    return decode_checked(codec, frame)[0]


def decode_checked(codec: Codec, frame: str | bytes) -> tuple[pb.GenericCommand, str | None]:
    """Decode one inbound WebSocket message, and name the first identifier field of it
    (``ids.control_field``'s answer) holding a control character, or None. Raises
    ProtocolError, never anything else.

    What it returns can be encoded again by every codec: it has its required fields and
    its strings are text. An unknown ``cmd`` or ``op`` number is not an error here (proto2
    keeps it among the unknown fields and the field reads as absent), so that the request
    can still be answered by its ``i``: check ``HasField("cmd")`` before dispatching on it."""
    if codec is _JSON:
        if isinstance(frame, str):
            cmd = from_json(_load_json_object(frame))
            return cmd, ids.control_field(cmd)
        try:
            obj = _load_json_object(frame)
        except ProtocolError:
            # A JSON object in a binary frame is accepted; anything else there is most
            # likely a client of another codec: say that, not what the JSON parser saw.
            raise ProtocolError("binary frame on a JSON connection") from None
        cmd = from_json(obj)
        return cmd, ids.control_field(cmd)
    if isinstance(frame, str):
        # base64 codec; binary-codec clients sending text are treated the same way.
        try:
            raw = base64.b64decode(frame, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"not base64: {exc}", CloseCode.UNSUPPORTED_DATA) from exc
    else:
        raw = frame
    cmd = pb.GenericCommand()
    try:
        cmd.ParseFromString(raw)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ProtocolError(f"not a GenericCommand: {exc}") from exc
    try:
        control = _check_text(cmd)
    except _Unset:
        _check_required(cmd)  # raises, naming every missing field
        raise AssertionError("a required field is unset, yet the command is initialized") from None
    except ProtocolError:
        _check_required(cmd)  # a missing required field is told first, as before
        raise
    return cmd, control


def _check_required(msg: PbMessage) -> None:
    # The parser does not enforce proto2 ``required``; a command missing one could not
    # be serialized again (serialize() would fail wherever a handler echoes a part).
    if not msg.IsInitialized():
        # FindInitializationErrors is real API but missing from the type stubs.
        missing = ", ".join(msg.FindInitializationErrors())  # type: ignore[attr-defined]
        raise ProtocolError(f"missing required field: {missing}")


def _check_text(msg: PbMessage, required: tuple[str, ...] = ()) -> str | None:
    """Raise for a string field that is not UTF-8 (``_Unset`` for a message missing one
    of its ``required`` fields); the first identifier field holding a control character
    (as ``ids.control_field`` names it), or None. One walk over the fields for the
    three: every decoded command pays it (``IsInitialized``, another walk, cost ~5 k
    instructions a command)."""
    # The parser does not validate UTF-8 in proto2 strings: it hands out ``bytes`` for
    # such a field, which breaks every consumer that expects ``str`` (JSON, the store).
    # A bytes field anywhere raises, even after an identifier with a control character.
    if required and not all(msg.HasField(name) for name in required):
        raise _Unset
    control: str | None = None
    kind_of = _TEXT_KIND.get
    for field, value in msg.ListFields():
        kind = kind_of(field, _OTHER)
        if kind == _OTHER:
            continue
        if kind == _STRING:
            if value.__class__ is bytes:
                raise _not_utf8(field)
        elif kind == _MESSAGE:
            # (a message field's type with required fields has them in _REQUIRED)
            inner = _check_text(value, _REQUIRED.get(field, ()))
            if control is None and inner is not None:
                control = f"{field.name}.{inner}"
        elif kind == _ID:
            if value.__class__ is bytes:
                raise _not_utf8(field)
            if control is None and not value.isprintable() and _CONTROL.search(value):
                control = field.name
        elif kind == _IDS:
            for item in value:
                if item.__class__ is bytes:
                    raise _not_utf8(field)
                if control is None and not item.isprintable() and _CONTROL.search(item):
                    control = field.name
        elif kind == _STRINGS:
            if any(item.__class__ is bytes for item in value):
                raise _not_utf8(field)
        else:  # _MESSAGES
            required_of = _REQUIRED.get(field, ())
            for item in value:
                inner = _check_text(item, required_of)
                if control is None and inner is not None:
                    control = f"{field.name}.{inner}"
    return control


def _not_utf8(field: FieldDescriptor) -> ProtocolError:
    return ProtocolError(f"{field.name}: not UTF-8", CloseCode.UNSUPPORTED_DATA)


# Where text can hide in a field, and which strings are identifiers (ids.ID_FIELDS).
# Plain ints in a table keep the check near 1 us a frame (an Enum member lookup alone
# doubles it). Every field of a command is in the table, those without text too
# (``_OTHER``): a field's descriptor object that nothing holds is made and freed again
# by every ``ListFields`` that returns the field (~5 k instructions a login and join).
_ID, _IDS, _STRING, _STRINGS, _MESSAGE, _MESSAGES, _OTHER = range(7)
# A printable string (nearly every id) holds no control character: ``str.isprintable``
# says so for less than the search (C0, DEL and C1 are all unprintable).
_CONTROL = ids.CONTROL


def _text_kinds(message: Descriptor, out: dict[FieldDescriptor, int]) -> dict[FieldDescriptor, int]:
    id_names = ids.ID_FIELDS.get(message.name, frozenset())
    for field in message.fields:
        if field in out:
            continue
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.name in id_names:
                out[field] = _IDS if field.is_repeated else _ID
            else:
                out[field] = _STRINGS if field.is_repeated else _STRING
        elif field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type is not None:
            out[field] = _MESSAGES if field.is_repeated else _MESSAGE
            _text_kinds(field.message_type, out)
        else:
            out[field] = _OTHER
    return out


_TEXT_KIND = _text_kinds(pb.GenericCommand.DESCRIPTOR, {})


class _Unset(Exception):
    """A message ``_check_text`` walked misses a required field."""


def _with_required() -> dict[object, tuple[str, ...]]:
    """The message fields of a command whose type has required fields, and their
    names (a command itself has none)."""
    out: dict[object, tuple[str, ...]] = {}
    for field in _TEXT_KIND:
        message = field.message_type
        if message is not None:
            names = tuple(f.name for f in message.fields if f.is_required)
            if names:
                out[field] = names
    assert not any(f.is_required for f in pb.GenericCommand.DESCRIPTOR.fields)
    return out


_REQUIRED = _with_required()


def encode(codec: Codec, cmd: pb.GenericCommand) -> bytes:
    """Encode a command as the payload of one frame (UTF-8 for the text codecs)."""
    if codec is _JSON:
        return _dumps(cmd)
    raw = serialize(cmd)
    return base64.b64encode(raw) if codec is _BASE64 else raw


def serialize(cmd: pb.GenericCommand) -> bytes:
    """Protobuf bytes. A missing required field is a server bug: it would make the SDK
    drop the frame silently, so it raises here instead."""
    try:
        return cmd.SerializeToString()
    except EncodeError as exc:  # pragma: no cover - a bug in a handler
        raise AssertionError(f"server built an invalid command: {exc}") from exc


# The JSON-only part of a chatroom push whose sender gave a priority: ``priority`` alone.
# One shared, read-only command per value (``Prepared.json_only`` is read only), its
# bytes made once: a cluster node's record carries them with every such push
# (hub/redis_wire.py), and a node hearing them shares the command again.
_TOLD = {p: pb.GenericCommand(priority=p) for p in (1, 2, 3)}
_TOLD_RAW = {id(cmd): cmd.SerializeToString() for cmd in _TOLD.values()}
_TOLD_HEARD = {cmd.SerializeToString(): cmd for cmd in _TOLD.values()}


def told_priority(priority: int) -> pb.GenericCommand:
    """The JSON-only fields that tell flat JSON recipients a push's ``priority``."""
    shared = _TOLD.get(priority)
    return shared if shared is not None else pb.GenericCommand(priority=priority)


def json_only_bytes(json_only: pb.GenericCommand) -> bytes:
    """``serialize(json_only)``, made once for ``told_priority``'s commands."""
    raw = _TOLD_RAW.get(id(json_only))
    return raw if raw is not None else serialize(json_only)


def json_only_of(raw: bytes) -> pb.GenericCommand:
    """The JSON-only fields ``raw`` holds (``json_only_bytes``), shared when they only
    tell a priority: not to be changed."""
    shared = _TOLD_HEARD.get(raw)
    return shared if shared is not None else pb.GenericCommand.FromString(raw)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_PEER_ID_TAG = b"\x22"  # field 4 (peerId), wire type 2


@functools.lru_cache(maxsize=65536)
def peer_id_tail(peer_id: str) -> bytes:
    """The protobuf bytes of ``peerId = peer_id``. Appending them to a serialized
    command sets the field: protobuf parsers accept fields in any order."""
    raw = peer_id.encode()
    return _PEER_ID_TAG + _varint(len(raw)) + raw


class Prepared:
    """A push encoded once and addressed to many recipients.

    The shared part (everything but ``peerId``) is serialized once per codec in use;
    ``payload`` adds only the recipient's ``peerId``: a protobuf tail, or a JSON key.
    ``frame`` returns the whole WebSocket frame, and for the binary codec builds each
    recipient's frame with one concatenation: the frame header and the shared bytes
    are cached by the length of the recipient's tail.

    ``json_only`` holds fields that only flat JSON recipients get, merged into ``cmd``
    for them (a chatroom message's ``priority``: the SDK's protobuf push has no such
    field in ``DirectCommand``, and what protobuf clients receive stays as it was).

    While a hub pushes it to a chatroom's viewers, ``room`` is that room's frame log
    and ``at`` the push's index in it (protocol/roomlog.py); None at any other time.
    """

    __slots__ = ("_cmd", "_heads", "_json", "_proto", "_shared", "at", "json_only", "room")

    def __init__(
        self,
        cmd: pb.GenericCommand,
        json_only: pb.GenericCommand | None = None,
        proto: bytes | None = None,  # ``cmd``'s protobuf bytes, when the caller has them
    ):
        cmd.ClearField("peerId")
        self._cmd = cmd
        self.json_only = json_only  # read only (an attribute: read for every push)
        self._proto: bytes | None = proto
        self._json: bytes | None = None
        self._shared: dict[Codec, bytes] = {}  # whole frames without peerId, by codec
        self._heads: dict[int, bytes] = {}  # binary header + shared bytes, by tail length
        self.room: RoomLog[Any] | None = None
        self.at = 0

    @property
    def command(self) -> pb.GenericCommand:
        return self._cmd

    def payload(self, codec: Codec, peer_id: str | None) -> bytes:
        if codec is Codec.JSON:
            if self._json is None:
                self._json = _dumps(self._json_command())
            if peer_id is None:
                return self._json
            rest = self._json[1:] if self._json == b"{}" else b"," + self._json[1:]
            return b'{"peerId":' + orjson.dumps(peer_id) + rest
        if self._proto is None:
            self._proto = serialize(self._cmd)
        raw = self._proto if peer_id is None else self._proto + peer_id_tail(peer_id)
        return base64.b64encode(raw) if codec is _BASE64 else raw

    def _json_command(self) -> pb.GenericCommand:
        if self.json_only is None:
            return self._cmd
        merged = pb.GenericCommand()
        merged.CopyFrom(self._cmd)
        merged.MergeFrom(self.json_only)
        return merged

    def frame(self, codec: Codec, peer_id: str | None) -> bytes:
        """The WebSocket frame for one recipient (``peer_id`` None: the shared one)."""
        if peer_id is None:
            shared = self._shared.get(codec)
            if shared is None:
                shared = self._shared[codec] = ws_frame(
                    self.payload(codec, None), codec.binary_frames
                )
            return shared
        if codec is _PROTOBUF:
            tail = peer_id_tail(peer_id)
            head = self._heads.get(len(tail))
            if head is None:
                base = self.payload(codec, None)
                head = self._heads[len(tail)] = frame_header(len(base) + len(tail), True) + base
            return head + tail
        return ws_frame(self.payload(codec, peer_id), codec.binary_frames)


# ---------------------------------------------------------------------------
# flat JSON

_G = pb.GenericCommand.DESCRIPTOR
# which nested message carries the body of each command
_BODY_FIELD: dict[int, str] = {
    pb.session: "sessionMessage",
    pb.conv: "convMessage",
    pb.direct: "directMessage",
    pb.ack: "ackMessage",
    pb.rcp: "rcpMessage",
    pb.unread: "unreadMessage",
    pb.logs: "logsMessage",
    pb.error: "errorMessage",
    pb.read: "readMessage",
    pb.patch: "patchMessage",
    pb.room: "roomMessage",
    pb.presence: "presenceMessage",
    pb.report: "reportMessage",
    pb.pubsub: "pubsubMessage",
    pb.blacklist: "blacklistMessage",
    pb.data: "dataMessage",
    pb.login: "loginMessage",
    pb.loggedin: "loggedinMessage",
}
_TOP_SCALARS = {f.name for f in _G.fields if f.type not in (FieldDescriptor.TYPE_MESSAGE,)}
_JSON_PAYLOAD = pb.JsonObjectMessage.DESCRIPTOR

JsonDict = dict[str, object]


def _op_name(value: int) -> str:
    return pb.OpType.Name(pb.OpType.ValueType(value)).replace("_", "-")


def to_json(cmd: pb.GenericCommand) -> JsonDict:
    """The flat JSON object of a command (see the module docstring)."""
    return _to_json(cmd, parse_payloads=True)


def _dumps(cmd: pb.GenericCommand) -> bytes:
    try:
        return orjson.dumps(_to_json(cmd, parse_payloads=True))
    except orjson.JSONEncodeError:
        # A stored payload nested deeper than orjson writes (it reads deeper than that):
        # send the payloads as the strings they are rather than fail the whole push.
        return orjson.dumps(_to_json(cmd, parse_payloads=False))


def _to_json(cmd: pb.GenericCommand, *, parse_payloads: bool) -> JsonDict:
    out: JsonDict = {}
    for field, value in cmd.ListFields():
        if field.name == "cmd":
            out["cmd"] = pb.CommandType.Name(value)
        elif field.name == "op":
            out["op"] = _op_name(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            out.update(_message_to_json(value, parse_payloads))
        else:
            out[field.name] = _value_to_json(field, value, parse_payloads)
    return out


def _message_to_json(msg: PbMessage, parse_payloads: bool) -> JsonDict:
    if msg.DESCRIPTOR is _JSON_PAYLOAD:
        raise AssertionError("JsonObjectMessage is converted by its parent")
    out: JsonDict = {}
    for field, value in msg.ListFields():
        if _is_repeated(field):
            out[field.name] = [_value_to_json(field, v, parse_payloads) for v in value]
        else:
            out[field.name] = _value_to_json(field, value, parse_payloads)
    return out


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _json_payload_out(data: str, parse: bool) -> object:
    """The JSON value a payload holds. Text that is not JSON, or is a JSON string, goes
    out as itself: ``from_json`` stores a string as it is and anything else as JSON, so
    both come back unchanged."""
    if not parse:
        return data
    try:
        value = cast(object, orjson.loads(data))
    except orjson.JSONDecodeError:
        return data
    return data if isinstance(value, str) else value


def _value_to_json(field: FieldDescriptor, value: object, parse_payloads: bool) -> object:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if field.message_type is _JSON_PAYLOAD:
            return _json_payload_out(cast(pb.JsonObjectMessage, value).data, parse_payloads)
        return _message_to_json(cast(PbMessage, value), parse_payloads)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(cast(bytes, value)).decode()
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_type(field).values_by_number[cast(int, value)].name
    return value


def from_json_bytes(raw: bytes) -> pb.GenericCommand:
    return from_json(_load_json_object(raw))


def _load_json_object(raw: str | bytes) -> JsonDict:
    try:
        # orjson reads str as well and rejects lone surrogates in it with JSONDecodeError
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"invalid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("a command is a JSON object")
    return cast(JsonDict, obj)


def from_json(obj: JsonDict) -> pb.GenericCommand:
    """Parse a flat JSON command. Unknown keys and wrong types raise ProtocolError,
    whose text names the field and the problem; client values in it are cut to
    ``ECHO_LIMIT`` characters."""
    cmd = pb.GenericCommand()
    name = obj.get("cmd")
    if name is None:
        raise ProtocolError("missing cmd")
    cmd.cmd = pb.CommandType.ValueType(_enum_in(pb.CommandType.DESCRIPTOR, name, "cmd"))
    if "op" in obj:
        op = obj["op"]
        op = op.replace("-", "_") if isinstance(op, str) else op
        cmd.op = pb.OpType.ValueType(_enum_in(pb.OpType.DESCRIPTOR, op, "op"))
    body_name = _BODY_FIELD.get(cmd.cmd)
    body = getattr(cmd, body_name) if body_name else None
    for key, value in obj.items():
        if key in ("cmd", "op"):
            continue
        if key in _TOP_SCALARS:
            _set_field(cmd, _G.fields_by_name[key], value)
        elif body is not None and key in body.DESCRIPTOR.fields_by_name:
            _set_field(body, body.DESCRIPTOR.fields_by_name[key], value)
        else:
            raise ProtocolError(f"unknown field {shown(key)} for cmd {shown(name)}")
    # A body with no keys stays absent, as in the protobuf frames (``session close``).
    _check_required(cmd)
    return cmd


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    assert field.enum_type is not None, field.name
    return field.enum_type


def _enum_in(enum_type: EnumDescriptor, value: object, what: str) -> int:
    """A known enum value, by name or by number."""
    if isinstance(value, str) and value in enum_type.values_by_name:
        return enum_type.values_by_name[value].number
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value in enum_type.values_by_number
    ):
        return value
    raise ProtocolError(f"{what}: unknown value {shown(value)}")


ECHO_LIMIT = 64  # characters of a client's value quoted back in an error


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client's value as quoted in an error text or a log line: the repr of a string
    or number (one line), cut to ``limit`` characters; only the type of anything else
    (a list or an object may be a megabyte long)."""
    if isinstance(value, str):
        text = repr(value[: limit + 1])  # no repr of a huge string just to cut it
    elif value is None or isinstance(value, int | float):
        text = repr(value)
    else:
        return f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit] + "…"


_SCALAR_TYPES: dict[int, tuple[type, ...]] = {
    FieldDescriptor.TYPE_STRING: (str,),
    FieldDescriptor.TYPE_BOOL: (bool,),
    FieldDescriptor.TYPE_INT32: (int,),
    FieldDescriptor.TYPE_INT64: (int,),
}
# Which integers each integer type holds, named as in the error text.
_INT_RANGES: dict[int, tuple[int, int, str]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31, "int32"),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63, "int64"),
}


def _set_field(msg: PbMessage, field: FieldDescriptor, value: object) -> None:
    if _is_repeated(field):
        if not isinstance(value, list):
            raise ProtocolError(f"{field.name}: expected a list")
        target = getattr(msg, field.name)
        for item in value:
            if field.message_type is _JSON_PAYLOAD:
                target.add().data = _json_payload_in(item, field.name)
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                _fill_message(target.add(), item, field.name)
            else:
                target.append(_scalar(field, item))
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = getattr(msg, field.name)
        if field.message_type is _JSON_PAYLOAD:
            sub.data = _json_payload_in(value, field.name)
        else:
            _fill_message(sub, value, field.name)
        return
    setattr(msg, field.name, _scalar(field, value))


def _json_payload_in(value: object, name: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes
        raise ProtocolError(f"{name}: {exc}") from exc


def _fill_message(msg: PbMessage, value: object, name: str) -> None:
    if not isinstance(value, dict):
        raise ProtocolError(f"{name}: expected an object")
    msg.SetInParent()
    for key, item in value.items():
        field = cast("FieldDescriptor | None", msg.DESCRIPTOR.fields_by_name.get(key))
        if field is None:
            raise ProtocolError(f"{name}: unknown field {shown(key)}")
        _set_field(msg, field, item)


def _scalar(field: FieldDescriptor, value: object) -> object:
    if field.type == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise ProtocolError(f"{field.name}: expected base64 text")
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(f"{field.name}: not base64") from exc
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_in(_enum_type(field), value, field.name)
    expected = _SCALAR_TYPES.get(field.type, ())
    is_bool = isinstance(value, bool)
    if not isinstance(value, expected) or (is_bool and bool not in expected):
        raise ProtocolError(f"{field.name}: wrong type {type(value).__name__}")
    bounds = _INT_RANGES.get(field.type)
    if bounds is not None and not bounds[0] <= cast(int, value) < bounds[1]:
        raise ProtocolError(f"{field.name} out of range ({bounds[2]})")
    return value
