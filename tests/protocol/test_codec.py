"""chatroom.protocol.codec: the three encodings of GenericCommand, against real SDK frames.

Pure and synchronous. The fixtures in ``tests/data/captures/`` are copies of
``spec/protocol-captures/*.wire.jsonl``: frames the official SDK 4.3.1 exchanged with
fake servers, each ``cmd`` in protobuf-JSON form with exactly the fields that were on the
wire, and in ``mini`` the base64 text frame itself as ``raw``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import EncodeError
from google.protobuf.message import Message as PbMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatroom.protocol import codec, ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Codec, Prepared, Subprotocol
from chatroom.protocol.errors import CloseCode, ProtocolError
from chatroom.protocol.framing import ws_frame

CAPTURES = Path(__file__).parent.parent / "data" / "captures"
SDK_PROTO_DIR = (
    Path(__file__).parent.parent / "sdk" / "node_modules" / "leancloud-realtime" / "proto"
)
ALL_CODECS = list(Codec)


# ---------------------------------------------------------------------------
# helpers


@dataclass(frozen=True)
class Frame:
    source: str  # "file:line"
    direction: str  # "C->S" or "S->C"
    cmd: dict[str, Any]
    raw: str | None

    def parsed(self) -> pb.GenericCommand:
        return json_format.ParseDict(self.cmd, pb.GenericCommand())


def _load_frames() -> list[Frame]:
    frames = []
    for path in sorted(CAPTURES.glob("*.wire.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            row = json.loads(line)
            if row.get("dir") in ("C->S", "S->C"):
                source = f"{path.name.removesuffix('.wire.jsonl')}:{number}"
                frames.append(Frame(source, row["dir"], row["cmd"], row.get("raw")))
    return frames


FRAMES = _load_frames()
CLIENT_FRAMES = [f for f in FRAMES if f.direction == "C->S"]
SERVER_FRAMES = [f for f in FRAMES if f.direction == "S->C"]
RAW_FRAMES = [f for f in FRAMES if f.raw is not None]


def _ids(frames: list[Frame]) -> list[str]:
    return [f.source for f in frames]


def as_frame(c: Codec, payload: bytes) -> str | bytes:
    """What the WebSocket layer hands to ``decode``: text frames arrive as str."""
    return payload if c.binary_frames else payload.decode()


def round_trip(c: Codec, cmd: pb.GenericCommand) -> pb.GenericCommand:
    return codec.decode(c, as_frame(c, codec.encode(c, cmd)))


def present(msg: PbMessage, prefix: str = "") -> set[str]:
    """Dotted paths of the fields that are present (repeated messages per index)."""
    out = set()
    for field, value in msg.ListFields():
        path = prefix + field.name
        out.add(path)
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.is_repeated:
            for n, item in enumerate(value):
                out.add(f"{path}[{n}]")
                out |= present(item, f"{path}[{n}].")
        else:
            out |= present(value, path + ".")
    return out


def keys_of(obj: dict[str, Any], prefix: str = "") -> set[str]:
    """The same paths, read from a capture's protobuf-JSON ``cmd``."""
    out = set()
    for key, value in obj.items():
        path = prefix + key
        out.add(path)
        if isinstance(value, dict):
            out |= keys_of(value, path + ".")
        elif isinstance(value, list):
            for n, item in enumerate(value):
                if isinstance(item, dict):
                    out.add(f"{path}[{n}]")
                    out |= keys_of(item, f"{path}[{n}].")
    return out


# ---------------------------------------------------------------------------
# 1. captured frames


def test_captures_are_loaded() -> None:
    # Guards the parametrized tests below against passing vacuously.
    assert len(CLIENT_FRAMES) == 127
    assert len(SERVER_FRAMES) == 183
    assert len(RAW_FRAMES) == 12


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=_ids(CLIENT_FRAMES))
@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
def test_client_frame_round_trips(frame: Frame, c: Codec) -> None:
    cmd = frame.parsed()
    back = round_trip(c, cmd)
    assert back == cmd
    assert back.SerializeToString() == cmd.SerializeToString()
    assert present(back) == keys_of(frame.cmd)


@pytest.mark.parametrize("frame", RAW_FRAMES, ids=_ids(RAW_FRAMES))
def test_raw_frame_decodes_to_capture_and_reencodes_identically(frame: Frame) -> None:
    assert frame.raw is not None
    cmd = codec.decode(Codec.BASE64, frame.raw)
    assert cmd == frame.parsed()
    assert present(cmd) == keys_of(frame.cmd)
    assert codec.encode(Codec.BASE64, cmd) == frame.raw.encode()
    # the same bytes on a binary connection
    assert codec.decode(Codec.PROTOBUF, base64.b64decode(frame.raw)) == cmd
    assert codec.encode(Codec.PROTOBUF, cmd) == base64.b64decode(frame.raw)


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=_ids(SERVER_FRAMES))
def test_server_frame_serializes_with_presence(frame: Frame) -> None:
    cmd = frame.parsed()
    raw = cmd.SerializeToString()  # raises EncodeError if a required field is missing
    assert cmd.IsInitialized()
    for c in (Codec.PROTOBUF, Codec.BASE64):
        back = round_trip(c, cmd)
        assert back == cmd
        assert codec.encode(Codec.PROTOBUF, back) == raw
    assert present(pb.GenericCommand.FromString(raw)) == keys_of(frame.cmd)


def _has_empty_body(frame: Frame) -> bool:
    return any(isinstance(v, dict) and not v for v in frame.cmd.values())


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=_ids(SERVER_FRAMES))
def test_server_frame_json_round_trip(frame: Frame) -> None:
    cmd: PbMessage = frame.parsed()
    back: PbMessage = round_trip(Codec.JSON, frame.parsed())
    for key, value in frame.cmd.items():
        if value == {}:
            # Flat JSON has no keys for an empty nested message: it reads back as absent.
            assert not back.HasField(key)
            cmd.ClearField(key)
    assert back == cmd


def test_ack_without_code_stays_without_code() -> None:
    ack = next(f for f in RAW_FRAMES if f.cmd["cmd"] == "ack").parsed()
    assert ack.HasField("ackMessage")
    assert not ack.ackMessage.HasField("code")
    for c in ALL_CODECS:
        back = round_trip(c, ack)
        assert not back.ackMessage.HasField("code")
        assert back.ackMessage.uid == "polkxvq7mt2"


def test_session_closed_code_zero_stays_present() -> None:
    closed = next(f for f in RAW_FRAMES if f.cmd.get("op") == "closed").parsed()
    assert closed.sessionMessage.HasField("code")
    for c in ALL_CODECS:
        back = round_trip(c, closed)
        assert back.sessionMessage.HasField("code")
        assert back.sessionMessage.code == 0


def test_false_and_zero_sent_by_the_sdk_stay_present() -> None:
    opened = next(f for f in RAW_FRAMES if f.cmd.get("op") == "open").parsed()
    direct = next(f for f in RAW_FRAMES if f.cmd["cmd"] == "direct").parsed()
    for c in ALL_CODECS:
        assert round_trip(c, opened).sessionMessage.HasField("r")
        assert round_trip(c, direct).directMessage.HasField("mentionAll")
        assert not round_trip(c, direct).directMessage.HasField("r")


def test_empty_conv_body_of_mute_reply_stays_present_in_protobuf() -> None:
    # Swift requires convMessage on the mute/unmute reply even when it is empty.
    updated = [f for f in SERVER_FRAMES if _has_empty_body(f)]
    assert updated
    for frame in updated:
        for c in (Codec.PROTOBUF, Codec.BASE64):
            assert round_trip(c, frame.parsed()).HasField("convMessage")


def test_missing_required_field_cannot_be_serialized() -> None:
    # what protobufjs would drop silently, the server must never send
    cmd = pb.GenericCommand(cmd=pb.error)
    cmd.errorMessage.code = 4201
    with pytest.raises(EncodeError):
        cmd.SerializeToString()
    with pytest.raises(AssertionError, match="reason"):
        codec.encode(Codec.PROTOBUF, cmd)


# ---------------------------------------------------------------------------
# 1b. our schema against the SDK's own

_LABEL = {True: "repeated", False: "optional"}
_TYPE_NAMES = {
    getattr(FieldDescriptor, name): name.removeprefix("TYPE_").lower()
    for name in dir(FieldDescriptor)
    if name.startswith("TYPE_")
}


def _ours(message: str, field: str) -> tuple[str, str, int] | None:
    """(label, type, number) of one of our fields, or None."""
    desc: Descriptor | None = pb.DESCRIPTOR.message_types_by_name.get(message)
    assert desc is not None, f"message {message} missing from messages.proto"
    f = desc.fields_by_name.get(field)
    if f is None:
        return None
    label = "required" if f.is_required else _LABEL[bool(f.is_repeated)]
    if f.message_type is not None:
        type_name = f.message_type.name
    elif f.enum_type is not None:
        type_name = f.enum_type.name
    else:
        type_name = _TYPE_NAMES[f.type]
    return label, type_name, f.number


def _our_enum_values(name: str) -> dict[str, int]:
    if name in pb.DESCRIPTOR.enum_types_by_name:
        enum_type = pb.DESCRIPTOR.enum_types_by_name[name]
    else:
        enum_type = pb.LogsCommand.DESCRIPTOR.enum_types_by_name[name]
    return {v.name: v.number for v in enum_type.values}


def _blocks(text: str, keyword: str) -> Iterator[tuple[str, str]]:
    """(name, body) of each top-level or nested ``message``/``enum`` block."""
    for match in re.finditer(rf"\b{keyword}\s+(\w+)\s*\{{", text):
        depth, end = 0, match.end() - 1
        while True:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            if depth == 0:
                break
            end += 1
        yield match.group(1), text[match.end() : end]


def _sdk_proto() -> str:
    path = SDK_PROTO_DIR / "message.proto"
    if not path.exists():
        pytest.skip(f"{path} absent: run `npm ci` in tests/sdk to compare with the SDK schema")
    return re.sub(r"//[^\n]*", "", path.read_text())


def test_sdk_proto_fields_match_ours() -> None:
    text = _sdk_proto()
    seen = 0
    for message, body in _blocks(text, "message"):
        body = re.sub(r"\benum\s+\w+\s*\{[^}]*\}", "", body)
        fields = re.findall(r"\b(optional|required|repeated)\s+([\w.]+)\s+(\w+)\s*=\s*(\d+)", body)
        assert fields, message
        for label, type_name, name, number in fields:
            assert _ours(message, name) == (label, type_name, int(number)), f"{message}.{name}"
            seen += 1
    assert seen == 223  # every field of the 4.3.1 schema


def test_sdk_proto_enums_match_ours() -> None:
    text = _sdk_proto()
    names = []
    for name, body in _blocks(text, "enum"):
        names.append(name)
        values = {v: int(n) for v, n in re.findall(r"(\w+)\s*=\s*(\d+)", body)}
        ours = _our_enum_values(name)
        assert {v: ours.get(v) for v in values} == values, name
    assert sorted(names) == ["CommandType", "OpType", "QueryDirection", "StatusType"]
    assert pb.LogsCommand().direction == pb.LogsCommand.OLD  # [default = OLD]


def test_sdk_compiled_schema_matches_ours() -> None:
    # What the SDK actually runs: proto/message-compiled.js (protobufjs 5 JSON).
    path = SDK_PROTO_DIR / "message-compiled.js"
    if not path.exists():
        pytest.skip(f"{path} absent: run `npm ci` in tests/sdk to compare with the SDK schema")
    text = path.read_text()
    seen = 0
    for message, fields in re.findall(
        r"name: '(\w+)',\s*syntax: 'proto2',\s*fields: \[(.*?)\]", text, re.S
    ):
        for label, type_name, name, number in re.findall(
            r"rule: '(\w+)',\s*type: '([\w.]+)',\s*name: '(\w+)',\s*id: (\d+)", fields
        ):
            assert _ours(message, name) == (label, type_name, int(number)), f"{message}.{name}"
            seen += 1
    assert seen == 223  # every field of the 4.3.1 schema


# ---------------------------------------------------------------------------
# 2. Prepared: encode once, address to many


def _push() -> pb.GenericCommand:
    frame = next(f for f in SERVER_FRAMES if f.cmd["cmd"] == "direct" and "peerId" in f.cmd)
    return frame.parsed()


@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
def test_prepared_payload_carries_the_recipients_peer_id(c: Codec) -> None:
    prepared = Prepared(_push())
    for peer in ("Tom", "Jerry", "é" * 100):  # a long id needs a two-byte length
        got = codec.decode(c, as_frame(c, prepared.payload(c, peer)))
        want = _push()
        want.peerId = peer
        assert got == want


@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
def test_prepared_payload_without_peer_id(c: Codec) -> None:
    got = codec.decode(c, as_frame(c, Prepared(_push()).payload(c, None)))
    assert not got.HasField("peerId")
    want = _push()
    want.ClearField("peerId")
    assert got == want


def test_prepared_serializes_once_for_all_recipients(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    serialize = codec.serialize

    def counting(cmd: pb.GenericCommand) -> bytes:
        calls.append(cmd)
        return serialize(cmd)

    monkeypatch.setattr(codec, "serialize", counting)
    prepared = Prepared(_push())
    shared = prepared.payload(Codec.PROTOBUF, None)
    tom = prepared.payload(Codec.PROTOBUF, "Tom")
    jerry = prepared.payload(Codec.PROTOBUF, "Jerry")
    prepared.payload(Codec.BASE64, "Tom")
    assert len(calls) == 1
    assert tom == shared + codec.peer_id_tail("Tom")
    assert jerry == shared + codec.peer_id_tail("Jerry")
    assert prepared.payload(Codec.PROTOBUF, None) is shared


@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
@pytest.mark.parametrize("padding", [0, 60, 130, 70_000])  # across the 126/65536 headers
def test_prepared_frame_is_the_payload_in_one_websocket_frame(c: Codec, padding: int) -> None:
    cmd = _push()
    cmd.directMessage.msg = "x" * padding
    prepared = Prepared(cmd)
    # Tail lengths differ (and a long id moves the frame past a header size).
    for peer in (None, "Tom", "Jerry", "é" * 100, "Tom"):
        frame = prepared.frame(c, peer)
        assert frame == ws_frame(prepared.payload(c, peer), c.binary_frames)
    assert prepared.frame(c, None) is prepared.frame(c, None)  # one shared frame


def test_prepared_json_is_dumped_once() -> None:
    prepared = Prepared(_push())
    shared = prepared.payload(Codec.JSON, None)
    assert prepared.payload(Codec.JSON, None) is shared
    tom = orjson.loads(prepared.payload(Codec.JSON, "Tom"))
    assert tom == {"peerId": "Tom", **orjson.loads(shared)}


def test_prepared_drops_the_peer_id_it_was_given() -> None:
    cmd = _push()
    assert cmd.HasField("peerId")
    prepared = Prepared(cmd)
    assert not prepared.command.HasField("peerId")
    got = codec.decode(Codec.PROTOBUF, prepared.payload(Codec.PROTOBUF, "Spike"))
    assert got.peerId == "Spike"


@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
def test_prepared_empty_command_is_still_a_valid_payload(c: Codec) -> None:
    # An empty command encodes to "{}": adding peerId must not leave a trailing comma.
    payload = Prepared(pb.GenericCommand()).payload(c, "Tom")
    if c is Codec.JSON:
        assert orjson.loads(payload) == {"peerId": "Tom"}
    else:
        raw = payload if c is Codec.PROTOBUF else base64.b64decode(payload)
        assert pb.GenericCommand.FromString(raw) == pb.GenericCommand(peerId="Tom")


# ---------------------------------------------------------------------------
# 3. flat JSON


def _fill(msg: PbMessage) -> None:
    """Set every field of a message (and of its nested messages), repeated ones twice."""
    fields = cast("Sequence[FieldDescriptor]", msg.DESCRIPTOR.fields)
    for field in fields:
        items = 2 if field.is_repeated else 1
        for n in range(items):
            _set_sample(msg, field, n)


def _sample(field: FieldDescriptor, n: int) -> object:
    match field.type:
        case FieldDescriptor.TYPE_STRING:
            return f"{field.name}-{n}-é"
        case FieldDescriptor.TYPE_INT32:
            return -(2**31) if n else 2**31 - 1
        case FieldDescriptor.TYPE_INT64:
            return 1795292551505 + n
        case FieldDescriptor.TYPE_BOOL:
            return n == 0
        case FieldDescriptor.TYPE_BYTES:
            return bytes([0, 255, n]) + b"bin"
        case FieldDescriptor.TYPE_ENUM:
            assert field.enum_type is not None
            return field.enum_type.values[-1 - n].number
    raise AssertionError(field.full_name)


def _set_sample(msg: PbMessage, field: FieldDescriptor, n: int) -> None:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = getattr(msg, field.name).add() if field.is_repeated else getattr(msg, field.name)
        if field.message_type is pb.JsonObjectMessage.DESCRIPTOR:
            sub.data = '{"name":"Tom & Jerry","n":[1,2.5,null,true]}' if n == 0 else "[]"
        else:
            _fill(sub)
    elif field.is_repeated:
        getattr(msg, field.name).append(_sample(field, n))
    else:
        setattr(msg, field.name, _sample(field, n))


_BODIES = sorted(codec._BODY_FIELD.items())


def _full_command(cmd_type: int, body: str) -> pb.GenericCommand:
    cmd = pb.GenericCommand(cmd=pb.CommandType.ValueType(cmd_type), op=pb.members_joined)
    cmd.peerId, cmd.i, cmd.serverTs = "Tom", 7, 1795292551505
    _fill(getattr(cmd, body))
    return cmd


def test_every_command_type_with_a_body_is_covered() -> None:
    with_body = {pb.CommandType.Name(pb.CommandType.ValueType(n)) for n, _ in _BODIES}
    without = set(pb.CommandType.keys()) - with_body
    assert without == {"echo", "logout", "loggedout", "goaway"}


@pytest.mark.parametrize(("cmd_type", "body"), _BODIES, ids=[b for _, b in _BODIES])
def test_json_round_trip_of_every_body_field(cmd_type: int, body: str) -> None:
    cmd = _full_command(cmd_type, body)
    obj = codec.to_json(cmd)
    flat = set(getattr(cmd, body).DESCRIPTOR.fields_by_name)
    assert set(obj) == flat | {"cmd", "op", "peerId", "i", "serverTs"}
    assert codec.from_json(obj) == cmd
    assert codec.from_json(orjson.loads(orjson.dumps(obj))) == cmd
    for c in ALL_CODECS:
        assert round_trip(c, cmd) == cmd


def test_flat_json_names_do_not_collide() -> None:
    # from_json routes a key to the top level first, so no body may reuse those names
    top = {f.name for f in pb.GenericCommand.DESCRIPTOR.fields}
    for _, body in _BODIES:
        message = pb.GenericCommand.DESCRIPTOR.fields_by_name[body].message_type
        assert message is not None
        assert not set(message.fields_by_name) & top, body


def test_schema_uses_only_types_the_json_codec_handles() -> None:
    handled = set(codec._SCALAR_TYPES) | {
        FieldDescriptor.TYPE_BYTES,
        FieldDescriptor.TYPE_ENUM,
        FieldDescriptor.TYPE_MESSAGE,
    }
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            assert field.type in handled, field.full_name


def test_json_shape_of_a_conversation_start() -> None:
    cmd = json_format.ParseDict(CLIENT_FRAMES[0].cmd, pb.GenericCommand())
    start = next(f for f in RAW_FRAMES if f.cmd.get("op") == "start").parsed()
    assert codec.to_json(start) == {
        "cmd": "conv",
        "op": "start",
        "i": 2,
        "m": ["Jerry", "Tom"],
        "attr": {"name": "Tom & Jerry"},
    }
    assert codec.to_json(cmd)["lastPatchTime"] == cmd.sessionMessage.lastPatchTime


def test_json_payloads_are_json_values() -> None:
    obj: dict[str, object] = {
        "cmd": "conv",
        "op": "query",
        "where": {"m": {"$in": ["Tom"]}},
        "attr": {"name": "x", "n": 1},
        "results": [{"objectId": "c1", "lm": {"__type": "Date"}}],
        "attrModified": {"name": "y"},
    }
    cmd = codec.from_json(obj)
    assert json.loads(cmd.convMessage.where.data) == {"m": {"$in": ["Tom"]}}
    assert json.loads(cmd.convMessage.results.data) == [
        {"objectId": "c1", "lm": {"__type": "Date"}}
    ]
    assert codec.to_json(cmd) == obj
    data = pb.GenericCommand(cmd=pb.data)
    data.dataMessage.msg.add(data='{"a":1}')
    data.dataMessage.msg.add(data="[2]")
    assert codec.to_json(data) == {"cmd": "data", "msg": [{"a": 1}, [2]]}
    assert round_trip(Codec.JSON, data) == data


@pytest.mark.parametrize("data", ['"quoted"', "plain text", "{not json", '"', ""])
def test_json_payload_text_that_is_not_an_object_survives(data: str) -> None:
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.update)
    cmd.convMessage.attr.data = data
    assert codec.to_json(cmd)["attr"] == data
    assert round_trip(Codec.JSON, cmd) == cmd


def test_json_payload_deeper_than_orjson_writes() -> None:
    deep = "[" * 300 + "]" * 300
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.updated)
    cmd.convMessage.attr.data = deep
    cmd.convMessage.attrModified.data = '{"a":1}'
    out = orjson.loads(codec.encode(Codec.JSON, cmd))
    assert out["attr"] == deep  # sent as the string it is
    assert out["attrModified"] == '{"a":1}'
    assert orjson.loads(Prepared(cmd).payload(Codec.JSON, "Tom"))["attr"] == deep
    assert round_trip(Codec.JSON, cmd) == cmd


@pytest.mark.parametrize("op", ["members-joined", "members_joined", 33])
def test_op_names_hyphenated_or_underscored(op: str | int) -> None:
    cmd = codec.decode(Codec.JSON, orjson.dumps({"cmd": "conv", "op": op, "cid": "c"}))
    assert cmd.op == pb.members_joined
    assert codec.to_json(cmd)["op"] == "members-joined"


def test_session_query_result_op_name() -> None:
    cmd = codec.from_json({"cmd": "session", "op": "query-result"})
    assert cmd.op == pb.query_result


@pytest.mark.parametrize("value", [1795292551505, 2**63 - 1, -(2**63), 0])
def test_int64_survives_json(value: int) -> None:
    raw = orjson.dumps({"cmd": "session", "op": "open", "lastPatchTime": value, "serverTs": value})
    cmd = codec.decode(Codec.JSON, raw.decode())
    assert cmd.sessionMessage.lastPatchTime == value
    assert cmd.serverTs == value
    assert str(value).encode() in codec.encode(Codec.JSON, cmd)


def test_binary_msg_is_base64_in_json() -> None:
    payload = bytes(range(256))
    text = base64.b64encode(payload).decode()
    cmd = codec.decode(Codec.JSON, orjson.dumps({"cmd": "direct", "binaryMsg": text}))
    assert cmd.directMessage.binaryMsg == payload
    assert codec.to_json(cmd)["binaryMsg"] == text


def test_json_body_without_keys_stays_absent() -> None:
    # like `session close` from the SDK, which has no sessionMessage on the wire
    cmd = codec.decode(Codec.JSON, '{"cmd":"session","op":"close","i":5}')
    assert not cmd.HasField("sessionMessage")
    assert cmd == pb.GenericCommand(cmd=pb.session, op=pb.close, i=5)


def test_json_enum_fields_by_name_or_number() -> None:
    cmd = codec.from_json({"cmd": "logs", "direction": "NEW"})
    assert cmd.logsMessage.direction == pb.LogsCommand.NEW
    assert codec.from_json({"cmd": 6, "direction": 2}) == cmd
    assert codec.to_json(cmd) == {"cmd": "logs", "direction": "NEW"}


# ---------------------------------------------------------------------------
# 4. bad input: ProtocolError and nothing else

_VALID = base64.b64decode(RAW_FRAMES[0].raw or "")


def _pb(cmd: pb.GenericCommand) -> bytes:
    return cmd.SerializePartialToString()


def _error_without_reason() -> bytes:
    cmd = pb.GenericCommand(cmd=pb.error)
    cmd.errorMessage.code = 1
    return _pb(cmd)


BAD_BINARY: list[tuple[str, bytes]] = [
    ("garbage", b"\xff\xff\xff\xff\xff"),
    ("truncated", _VALID[:-3]),
    ("truncated-varint", b"\x08"),
    ("bad-wire-type", b"\x0f"),
    ("missing-required", _error_without_reason()),
    ("missing-required-nested", b"\x08\x0b\xda\x06\x02\x1a\x00"),
    ("bad-utf8", b"\x08\x02\xc2\x06\x04\x0a\x02\xff\xfe"),
    ("bad-utf8-repeated", b"\x08\x02\xc2\x06\x06\x3a\x00\x3a\x02\xc3\x28"),
    ("bad-utf8-nested", b"\x08\x06\xea\x06\x07\xca\x06\x04\x0a\x02\xed\xa0"),
    ("bad-utf8-top", b"\x08\x00\x22\x01\x80"),
    ("deep-groups", b"\x0b" * 200),
]


@pytest.mark.parametrize(("name", "frame"), BAD_BINARY, ids=[n for n, _ in BAD_BINARY])
@pytest.mark.parametrize("c", [Codec.PROTOBUF, Codec.BASE64], ids=lambda c: c.value)
def test_bad_protobuf_raises_protocol_error(c: Codec, name: str, frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(c, frame if c is Codec.PROTOBUF else base64.b64encode(frame).decode())


@pytest.mark.parametrize("text", ["not base64!", "CA4oAg", "é", "\ud800", "CA4o Ag==", "===="])
@pytest.mark.parametrize("c", [Codec.PROTOBUF, Codec.BASE64], ids=lambda c: c.value)
def test_text_that_is_not_base64_raises_protocol_error(c: Codec, text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(c, text)
    assert info.value.close_code is CloseCode.UNSUPPORTED_DATA


def test_valid_base64_text_frame_is_accepted() -> None:
    assert codec.decode(Codec.BASE64, "CA4oAg==") == pb.GenericCommand(cmd=pb.echo, i=2)


_DEEP = "[" * 300 + "]" * 300

BAD_JSON: list[tuple[str, str | bytes]] = [
    ("not-json", "{"),
    ("empty", ""),
    ("not-utf8", b'{"cmd":"\xff"}'),
    ("lone-surrogate-text", '{"cmd":"echo","peerId":"\ud800"}'),
    ("lone-surrogate-escape", '{"cmd":"echo","peerId":"\\ud800"}'),
    ("array", "[1,2]"),
    ("number", "42"),
    ("string", '"echo"'),
    ("null", "null"),
    ("too-deep", "[" * 2000 + "]" * 2000),
    ("no-cmd", '{"op":"open"}'),
    ("unknown-cmd", '{"cmd":"nope"}'),
    ("unknown-cmd-number", '{"cmd":99}'),
    ("negative-cmd", '{"cmd":-1}'),
    ("huge-cmd", '{"cmd":18446744073709551615}'),
    ("cmd-bool", '{"cmd":true}'),
    ("cmd-null", '{"cmd":null}'),
    ("unknown-op", '{"cmd":"conv","op":"nope"}'),
    ("unknown-op-number", '{"cmd":"conv","op":999}'),
    ("op-list", '{"cmd":"conv","op":["start"]}'),
    ("unknown-enum", '{"cmd":"logs","direction":"SIDEWAYS"}'),
    ("unknown-enum-number", '{"cmd":"logs","direction":5}'),
    ("unknown-key", '{"cmd":"direct","bogus":1}'),
    ("body-key-of-other-cmd", '{"cmd":"echo","cid":"x"}'),
    ("nested-form", '{"cmd":"direct","directMessage":{"msg":"hi"}}'),
    ("unknown-nested-key", '{"cmd":"read","convs":[{"cid":"x","zz":1}]}'),
    ("string-for-int", '{"cmd":"echo","i":"1"}'),
    ("bool-for-int", '{"cmd":"echo","i":true}'),
    ("float-for-int", '{"cmd":"echo","i":1.5}'),
    ("null-for-int", '{"cmd":"echo","i":null}'),
    ("int32-too-big", '{"cmd":"echo","i":2147483648}'),
    ("int32-too-small", '{"cmd":"echo","i":-2147483649}'),
    ("int64-too-big", '{"cmd":"direct","timestamp":9223372036854775808}'),
    ("int64-far-too-big", '{"cmd":"direct","timestamp":1' + "0" * 30 + "}"),
    ("int-for-bool", '{"cmd":"direct","r":1}'),
    ("string-for-bool", '{"cmd":"direct","r":"true"}'),
    ("int-for-string", '{"cmd":"direct","msg":1}'),
    ("list-for-scalar", '{"cmd":"direct","msg":["a"]}'),
    ("object-for-scalar", '{"cmd":"direct","msg":{}}'),
    ("scalar-for-list", '{"cmd":"conv","m":"Tom"}'),
    ("object-for-list-item", '{"cmd":"conv","m":[{}]}'),
    ("list-for-list-item", '{"cmd":"conv","m":[["Tom"]]}'),
    ("scalar-for-message", '{"cmd":"conv","info":"x"}'),
    ("list-for-message", '{"cmd":"conv","info":[]}'),
    ("scalar-for-message-item", '{"cmd":"read","convs":["x"]}'),
    ("wrong-type-in-message-item", '{"cmd":"read","convs":[{"cid":1}]}'),
    ("missing-required", '{"cmd":"read","convs":[{"mid":"m"}]}'),
    ("missing-required-error", '{"cmd":"error","code":1}'),
    ("binary-not-base64", '{"cmd":"direct","binaryMsg":"!!!"}'),
    ("binary-bad-padding", '{"cmd":"direct","binaryMsg":"AAA"}'),
    ("binary-non-ascii", '{"cmd":"direct","binaryMsg":"é"}'),
    ("binary-number", '{"cmd":"direct","binaryMsg":1}'),
    ("payload-too-deep", '{"cmd":"conv","attr":' + _DEEP + "}"),
    ("payload-item-too-deep", '{"cmd":"data","msg":[' + _DEEP + "]}"),
]


@pytest.mark.parametrize(("name", "frame"), BAD_JSON, ids=[n for n, _ in BAD_JSON])
def test_bad_json_raises_protocol_error(name: str, frame: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        codec.decode(Codec.JSON, frame)
    if isinstance(frame, str) and "\ud800" not in frame:
        with pytest.raises(ProtocolError):
            codec.decode(Codec.JSON, frame.encode())


@pytest.mark.parametrize(
    ("frame", "cmd", "op"),
    [
        (b"\x08\x63\x10\x01\x28\x0b", None, pb.open),  # cmd=99, op=open
        (b"\x08\x01\x10\xe7\x07\x28\x0c", pb.conv, None),  # cmd=conv, op=999
        (b"\x0a\x01x\x28\x0b", None, None),  # cmd sent as a string
        (b"\x28\x0b", None, None),  # no cmd at all
    ],
)
def test_unknown_cmd_or_op_reads_as_absent_and_keeps_i(
    frame: bytes, cmd: int | None, op: int | None
) -> None:
    # Decoded, not rejected, so that the server can answer the request by its i. The
    # unknown value is absent, never the enum default (session/open) it would read as.
    got = codec.decode(Codec.PROTOBUF, frame)
    assert got.HasField("i")
    assert (got.cmd if got.HasField("cmd") else None) == cmd
    assert (got.op if got.HasField("op") else None) == op
    again = codec.encode(Codec.PROTOBUF, got)  # the unknown value is kept, moved last
    assert len(again) == len(frame)
    assert codec.decode(Codec.PROTOBUF, again) == got


def test_protocol_error_names_the_field() -> None:
    with pytest.raises(ProtocolError, match="'bogus'"):
        codec.decode(Codec.JSON, '{"cmd":"direct","bogus":1}')
    with pytest.raises(ProtocolError, match=r"^i: "):
        codec.decode(Codec.JSON, '{"cmd":"echo","i":"1"}')
    with pytest.raises(ProtocolError, match=r"errorMessage\.reason"):
        codec.decode(Codec.PROTOBUF, _error_without_reason())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('{"i":4}', "missing cmd"),
        ('{"cmd":null,"i":4}', "missing cmd"),
        ('{"cmd":"echo","i":2147483648}', "i out of range (int32)"),
        ('{"cmd":"echo","i":-2147483649}', "i out of range (int32)"),
        ('{"cmd":"direct","timestamp":9223372036854775808}', "timestamp out of range (int64)"),
        ('{"cmd":"echo","i":"1"}', "i: wrong type str"),
        ('{"cmd":"echo","i":true}', "i: wrong type bool"),
        ('{"cmd":"bogus"}', "cmd: unknown value 'bogus'"),
        (b"\xff\xfe garbage", "binary frame on a JSON connection"),
        (b"\x08\x0e\x28\x02", "binary frame on a JSON connection"),  # protobuf echo
    ],
)
def test_protocol_error_says_which_field_and_what_is_wrong(frame: str | bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(Codec.JSON, frame)
    assert str(info.value) == reason


def test_json_in_a_binary_frame_is_still_a_command() -> None:
    assert codec.decode(Codec.JSON, b'{"cmd":"echo","i":2}') == pb.GenericCommand(cmd=pb.echo, i=2)


_LONG = "z" * 100_000


@pytest.mark.parametrize(
    "frame",
    [
        f'{{"cmd":"{_LONG}"}}',
        f'{{"cmd":"conv","op":"{_LONG}"}}',
        f'{{"cmd":"direct","{_LONG}":1}}',
        f'{{"cmd":"{_LONG}","{_LONG}":1}}',
        f'{{"cmd":"read","convs":[{{"{_LONG}":1}}]}}',
        f'{{"cmd":["{_LONG}"]}}',
    ],
)
def test_protocol_error_quotes_at_most_64_characters_of_a_client_value(frame: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(Codec.JSON, frame)
    reason = str(info.value)
    assert len(reason) <= 2 * (codec.ECHO_LIMIT + 1) + 40, reason
    assert "zzz" not in reason or "…" in reason


def _accepted_and_reencodable(cmd: pb.GenericCommand) -> None:
    # Whatever decode accepts, every codec can send again.
    assert isinstance(cmd, pb.GenericCommand)
    for c in (Codec.PROTOBUF, Codec.BASE64):
        assert round_trip(c, cmd) == cmd
    once = codec.encode(Codec.JSON, cmd)
    if _flat_json_can_hold(cmd):
        assert codec.encode(Codec.JSON, codec.decode(Codec.JSON, once)) == once


def _flat_json_can_hold(cmd: pb.GenericCommand) -> bool:
    # Flat JSON names the cmd and has room for one nested message, the body of that cmd.
    messages = {f.name for f, _ in cmd.ListFields() if f.type == FieldDescriptor.TYPE_MESSAGE}
    return cmd.HasField("cmd") and messages <= {codec._BODY_FIELD.get(cmd.cmd)}


_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(c=st.sampled_from(ALL_CODECS), data=st.binary(max_size=200))
def test_decode_arbitrary_bytes(c: Codec, data: bytes) -> None:
    try:
        cmd = codec.decode(c, data)
    except ProtocolError:
        return
    _accepted_and_reencodable(cmd)


@_FUZZ
@given(c=st.sampled_from(ALL_CODECS), text=st.text(st.characters(codec="utf-8"), max_size=200))
def test_decode_arbitrary_text(c: Codec, text: str) -> None:
    try:
        cmd = codec.decode(c, text)
    except ProtocolError:
        return
    _accepted_and_reencodable(cmd)


@_FUZZ
@given(c=st.sampled_from(ALL_CODECS), text=st.text(max_size=50))
def test_decode_arbitrary_text_with_surrogates(c: Codec, text: str) -> None:
    try:
        cmd = codec.decode(c, text + "\udc80")
    except ProtocolError:
        return
    raise AssertionError(f"accepted a lone surrogate: {cmd}")


_SEEDS = [base64.b64decode(f.raw) for f in RAW_FRAMES if f.raw]


@_FUZZ
@given(
    seed=st.sampled_from(_SEEDS),
    edits=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 400),
)
def test_decode_mutated_sdk_frames(seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for at, byte in edits:
        data[at % len(data)] = byte
    for c, frame in ((Codec.PROTOBUF, bytes(data)), (Codec.PROTOBUF, bytes(data[:cut]))):
        try:
            cmd = codec.decode(c, frame)
        except ProtocolError:
            continue
        _accepted_and_reencodable(cmd)


_NAMES = sorted(
    {f.name for m in pb.DESCRIPTOR.message_types_by_name.values() for f in m.fields}
    | {"cmd", "op", "bogus"}
)
_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
    | st.sampled_from(["conv", "direct", "session", "members-joined", "NEW", "AAEC"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_NAMES), inner, max_size=3)
    ),
    max_leaves=12,
)


@_FUZZ
@given(
    cmd=st.sampled_from([*pb.CommandType.keys(), 2, 999]),
    body=st.dictionaries(st.sampled_from(_NAMES), _JSON_VALUES, max_size=6),
)
def test_decode_arbitrary_json_commands(cmd: str | int, body: dict[str, object]) -> None:
    try:
        decoded = codec.decode(Codec.JSON, orjson.dumps({**body, "cmd": cmd}))
    except ProtocolError:
        return
    _accepted_and_reencodable(decoded)


# ---------------------------------------------------------------------------
# 5. subprotocol negotiation


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        (["lc.proto2base64.3"], Subprotocol("lc.proto2base64.3", Codec.BASE64, 3)),
        (["lc.proto2base64.1"], Subprotocol("lc.proto2base64.1", Codec.BASE64, 1)),
        (["lc.protobuf2.3"], Subprotocol("lc.protobuf2.3", Codec.PROTOBUF, 3)),
        (["lc.protobuf2.1"], Subprotocol("lc.protobuf2.1", Codec.PROTOBUF, 1)),
        (["lc.json.3"], Subprotocol("lc.json.3", Codec.JSON, 3)),
        (
            ["chat", "lc.protobuf2.3", "lc.proto2base64.3"],
            Subprotocol("lc.protobuf2.3", Codec.PROTOBUF, 3),
        ),
        ([], Subprotocol(None, Codec.JSON, 3)),
        (["chat"], None),
        (["lc.protobuf2.2", "lc.protobuf3.3", "lc.json", "lc.json.3.1", "xx.json.3"], None),
    ],
)
def test_negotiate_header(offered: list[str], expected: Subprotocol | None) -> None:
    assert codec.negotiate(offered) == expected


def test_negotiate_query_parameter_is_not_echoed() -> None:
    # WeChat mini-programs cannot set the header: nothing to echo back
    assert codec.negotiate([], "lc.proto2base64.3") == Subprotocol(None, Codec.BASE64, 3)
    assert codec.negotiate([], "lc.protobuf2.1") == Subprotocol(None, Codec.PROTOBUF, 1)
    assert codec.negotiate([], "lc.bogus.3") is None
    assert codec.negotiate([], "") == Subprotocol(None, Codec.JSON, 3)


def test_negotiate_header_wins_over_query_parameter() -> None:
    got = codec.negotiate(["lc.protobuf2.3"], "lc.proto2base64.3")
    assert got == Subprotocol("lc.protobuf2.3", Codec.PROTOBUF, 3)
    same = codec.negotiate(["lc.proto2base64.3"], "lc.proto2base64.3")
    assert same == Subprotocol("lc.proto2base64.3", Codec.BASE64, 3)


def test_negotiate_every_captured_offer_is_echoed() -> None:
    offers = set()
    for path in CAPTURES.glob("*.wire.jsonl"):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("dir") == "CONNECT":
                offers.add(row["offered"])
    assert offers == {"lc.proto2base64.3", "lc.proto2base64.1", "lc.protobuf2.3"}
    for offer in offers:
        chosen = codec.negotiate([offer])
        assert chosen is not None
        assert chosen.name == offer
        assert chosen.codec.binary_frames == ("protobuf2" in offer)


def test_only_the_protobuf_codec_uses_binary_frames() -> None:
    assert [c for c in Codec if c.binary_frames] == [Codec.PROTOBUF]


def _with_controls() -> list[pb.GenericCommand]:
    """Commands with an identifier (or a non-identifier) holding a control character,
    at the top, nested and repeated, and clean ones."""
    login = pb.GenericCommand(cmd=pb.session, op=pb.open, peerId="a\x01")
    login.sessionMessage.tag = "t\x00"
    join = pb.GenericCommand(cmd=pb.conv, op=pb.add, peerId="a")
    join.convMessage.cid = "c"
    join.convMessage.m.extend(["b", "c\x7f"])
    text = pb.GenericCommand(cmd=pb.direct, peerId="a")
    text.directMessage.cid = "c"
    text.directMessage.msg = "a message may hold \x00 and \n"
    read = pb.GenericCommand(cmd=pb.read, peerId="a")
    read.readMessage.convs.add(cid="c", mid="m\x9f")
    read.readMessage.convs.add(cid="d\x02", mid="m")
    clean = pb.GenericCommand(cmd=pb.session, op=pb.open, peerId="a", i=1)
    clean.sessionMessage.ua = "js/4.3.1"
    return [login, join, text, read, clean]


@pytest.mark.parametrize("cmd", _with_controls(), ids=lambda c: pb.CommandType.Name(c.cmd))
@pytest.mark.parametrize("c", ALL_CODECS, ids=lambda c: c.value)
def test_decode_checked_names_the_identifier_holding_a_control_character(
    c: Codec, cmd: pb.GenericCommand
) -> None:
    got, control = codec.decode_checked(c, as_frame(c, codec.encode(c, cmd)))
    assert got == cmd
    assert control == ids.control_field(cmd)


def test_decode_checked_names_each_kind_of_field() -> None:
    names = [
        codec.decode_checked(Codec.PROTOBUF, codec.serialize(cmd))[1] for cmd in _with_controls()
    ]
    assert names == ["sessionMessage.tag", "convMessage.m", None, "readMessage.convs.mid", None]


def test_a_string_that_is_not_utf8_fails_even_after_a_control_character() -> None:
    inner = b"\x32\x01\x00" + b"\x42\x01\xff"  # tag "\x00", then sessionPeerIds [b"\xff"]
    frame = b"\x08\x00\xb2\x06" + bytes([len(inner)]) + inner  # cmd session, sessionMessage
    with pytest.raises(ProtocolError, match="not UTF-8"):
        codec.decode_checked(Codec.PROTOBUF, frame)


def test_a_missing_required_field_is_named_and_told_before_bad_utf8() -> None:
    cmd = pb.GenericCommand(cmd=pb.read)
    cmd.readMessage.convs.add(mid="m")  # ReadTuple.cid is required
    with pytest.raises(
        ProtocolError, match=re.escape("missing required field: readMessage.convs[0].cid")
    ):
        codec.decode_checked(Codec.PROTOBUF, _pb(cmd))
    cmd.peerId = "x"
    frame = _pb(cmd).replace(b'"\x01x', b'"\x01\xff')  # peerId not UTF-8, walked first
    assert frame != _pb(cmd)
    with pytest.raises(ProtocolError, match="missing required field"):
        codec.decode_checked(Codec.PROTOBUF, frame)
