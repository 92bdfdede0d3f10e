"""chatroom's protocol (LeanCloud's, protobuf codec) as the bench needs it.

Every frame is built once here, with the project's own schema and codec, and handed
to the C generator as bytes: it never encodes a command itself. The publish frame is
a template: the command serialized around a placeholder payload of the exact size
the generator writes, so that every length prefix stays right; the generator appends
``GenericCommand.i`` (field 5) after it, as protobuf allows fields in any order.
"""

from __future__ import annotations

from chatroom.protocol import codec
from chatroom.protocol import messages_pb2 as pb

SUBPROTOCOL = "lc.protobuf2.3"
APP_ID = "bench"
CONFIG_BITMAP = 59  # what leancloud-realtime 4.3.1 announces (acks for transient messages)
UA = "js/4.3.1"  # ... and its ua: the server leaves peerId out of its pushes, as for the SDK
PRIORITIES = {1: "HIGH", 2: "NORMAL", 3: "LOW"}


def _bytes(cmd: pb.GenericCommand) -> bytes:
    return codec.encode(codec.Codec.PROTOBUF, cmd)


def login(peer_id: str, i: int) -> bytes:
    cmd = pb.GenericCommand(cmd=pb.session, op=pb.open, appId=APP_ID, peerId=peer_id, i=i)
    cmd.sessionMessage.ua = UA
    cmd.sessionMessage.configBitmap = CONFIG_BITMAP
    return _bytes(cmd)


def start_conversation(members: list[str], i: int, *, transient: bool) -> bytes:
    """``conv/start``: a live-stream chatroom (transient) or a normal group."""
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.start, i=i)
    cmd.convMessage.m.extend(members)
    if transient:
        cmd.convMessage.transient = True
        cmd.convMessage.attr.data = '{"name":"bench"}'
    else:
        cmd.convMessage.attr.data = "{}"
    return _bytes(cmd)


def join(cid: str, peer_id: str, i: int) -> bytes:
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.add, i=i)
    cmd.convMessage.cid = cid
    cmd.convMessage.m.append(peer_id)
    return _bytes(cmd)


def started_cid(reply: bytes) -> str:
    """The conversation id of a ``conv/started`` reply; ValueError on anything else."""
    cmd = codec.decode(codec.Codec.PROTOBUF, reply)
    if cmd.cmd != pb.conv or cmd.op != pb.started or not cmd.convMessage.cid:
        raise ValueError(f"expected conv/started, got {describe(reply)}")
    return cmd.convMessage.cid


def describe(frame: bytes) -> str:
    """A short readable form of a frame, for error reports."""
    try:
        cmd = codec.decode(codec.Codec.PROTOBUF, frame)
    except Exception:  # any undecodable frame is itself the finding
        return f"undecodable frame {frame[:60].hex()}"
    return str(codec.to_json(cmd))


def direct_template(cid: str, size: int, priority: int, *, transient: bool) -> tuple[bytes, bytes]:
    """(prefix, suffix) of a ``direct`` command around a ``size``-byte payload."""
    placeholder = "\x01" * size
    cmd = pb.GenericCommand(cmd=pb.direct)
    if transient:
        cmd.priority = priority
        cmd.directMessage.transient = True
    cmd.directMessage.cid = cid
    cmd.directMessage.msg = placeholder
    raw = _bytes(cmd)
    at = raw.index(placeholder.encode())
    return raw[:at], raw[at + size :]
