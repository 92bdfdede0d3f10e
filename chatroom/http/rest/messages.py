"""Messages over REST (rest-and-hooks.md 2.1-2.4): send as any client, history with the
paging of ``logs``, modify and recall; a service conversation's broadcasts, messages to
some subscribers and one subscriber's thread.

A send runs the ``direct`` handler (service/messages.py) as ``from_client``: the call
is answered after the message's commit, with the ack's id and timestamp, and online
members get the same push as from a WebSocket send. ``from_client`` needs no
membership (LeanCloud's rule); everything else (size, word filter, chatroom budgets)
is the handler's.
"""

from __future__ import annotations

import orjson

from chatroom.core.model import JSON, ConvType
from chatroom.core.outbox import Priority
from chatroom.protocol import messages_pb2 as pb
from chatroom.service import deletion, history, messages, patches, system

from .base import EPOCH_MS_MAX, ApiError, Call, Params, Spec
from .conversations import conversation_in

_MAX_MENTIONS = 20
_MAX_TO_CLIENTS = 20
_PRIORITIES = {"high": Priority.HIGH, "normal": Priority.NORMAL, "low": Priority.LOW}


def _content(call: Call) -> str:
    text = call.params.text("message", required=True) or ""
    if len(text.encode()) > call.ctx.config.max_message_bytes:
        raise ApiError(413, f"message is over {call.ctx.config.max_message_bytes} bytes", 4409)
    return text


def _sent(mid: str, timestamp: int) -> JSON:
    return {"msg-id": mid, "timestamp": timestamp}


def _send(family: str) -> Spec:
    async def send(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        params = call.params
        sender = params.client("from_client", call.ctx)
        cmd = pb.GenericCommand(cmd=pb.direct)
        body = cmd.directMessage
        body.cid = conv.cid
        body.msg = _content(call)
        body.transient = params.flag("transient")
        body.mentionAll = params.flag("mention_all")
        mentions = params.values.get("mention_client_ids")
        if mentions is not None:
            body.mentionPids.extend(params.clients("mention_client_ids", call.ctx, _MAX_MENTIONS))
        push_data = params.values.get("push_data")
        if isinstance(push_data, (dict, str)):
            body.pushData = (
                push_data if isinstance(push_data, str) else orjson.dumps(push_data).decode()
            )
        priority = (params.text("priority") or "").lower()
        if priority:
            if priority not in _PRIORITIES:
                raise ApiError(400, "priority is high, normal or low")
            cmd.priority = int(_PRIORITIES[priority])
        no_sync = params.flag("no_sync")
        reply = await call.run(messages.send, cmd, sender, no_sync=no_sync)
        return _sent(reply.ackMessage.uid, reply.ackMessage.t)

    fields = {
        "from_client": "string!",
        "message": "string!",
        "transient": "boolean",
        "priority": "string",
        "mention_all": "boolean",
        "mention_client_ids": "array",
        "push_data": "object",
        "no_sync": "boolean",
    }
    return Spec(f"/{family}/{{cid}}/messages", ("POST",), send, "Send a message", fields)


def logs_query(cid: str, params: Params) -> pb.LogsCommand:
    """A history query's parameters as a ``logs`` command: ``msgid``/``timestamp`` start,
    ``till_msgid``/``till_timestamp`` end, ``include_start``/``include_stop``,
    ``reversed`` (oldest first), ``limit`` (at most 1000)."""
    q = pb.LogsCommand(cid=cid)
    q.limit = params.integer("limit", 100, 1, 1000)
    for mid_name, ts_name, mid_field, ts_field in (
        ("msgid", "timestamp", "mid", "t"),
        ("till_msgid", "till_timestamp", "tmid", "tt"),
    ):
        mid = params.text(mid_name)
        if ts_name in params.values:
            setattr(q, ts_field, params.integer(ts_name, 0, 0, EPOCH_MS_MAX))
        elif mid:
            raise ApiError(400, f"{mid_name} needs {ts_name}")
        if mid:
            setattr(q, mid_field, mid)
    q.tIncluded = params.flag("include_start")
    q.ttIncluded = params.flag("include_stop")
    if params.flag("reversed"):
        q.direction = pb.LogsCommand.NEW
    return q


def records(cid: str, kind: ConvType, items: list[pb.LogItem], newest_first: bool) -> JSON:
    """History items as LeanCloud's REST records (newest first unless ``reversed``)."""
    return [record(cid, kind, item) for item in (reversed(items) if newest_first else items)]


def record(cid: str, kind: ConvType, item: pb.LogItem) -> JSON:
    """One history item as LeanCloud's REST record."""
    out: dict[str, JSON] = {
        "timestamp": item.timestamp,
        "conv-id": cid,
        "data": item.data,
        "from": getattr(item, "from"),
        "msg-id": item.msgId,
        "is-conv": True,
        "is-room": kind is ConvType.TRANSIENT,
        "to": cid,
        "bin": item.bin,
        "mention-all": item.mentionAll,
        "mention-pids": list(item.mentionPids),
    }
    if item.HasField("ackAt"):
        out["ack-at"] = item.ackAt
    if item.HasField("patchTimestamp"):
        out["patch-timestamp"] = item.patchTimestamp
    return out


async def every_history(call: Call) -> JSON:
    """Every conversation's stored messages, by time, with the paging of one's."""
    q = logs_query("", call.params)
    found = await history.every_conversation(call.ctx, q)
    if not call.params.flag("reversed"):
        found.reverse()
    return [record(cid, ConvType.NORMAL, item) for cid, item in found]


def _history(family: str) -> Spec:
    async def read(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        cmd = pb.GenericCommand(cmd=pb.logs)
        cmd.logsMessage.CopyFrom(logs_query(conv.cid, call.params))
        reply = await call.run(history.logs, cmd, conv.creator)
        newest_first = not call.params.flag("reversed")
        return records(conv.cid, conv.kind, list(reply.logsMessage.logs), newest_first)

    return Spec(f"/{family}/{{cid}}/messages", ("GET",), read, "History", query=HISTORY_QUERY)


def _patch(family: str, recall: bool) -> Spec:
    async def patch(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        params = call.params
        sender = params.client("from_client", call.ctx)
        cmd = pb.GenericCommand(cmd=pb.patch, op=pb.modify)
        item = cmd.patchMessage.patches.add(cid=conv.cid, mid=call.path["mid"])
        item.timestamp = params.integer("timestamp", -1, 0, EPOCH_MS_MAX)
        if item.timestamp < 0:
            raise ApiError(400, "timestamp is required (the message's, ms)")
        if recall:
            item.recall = True
        else:
            item.data = _content(call)
        await call.run(patches.modify, cmd, sender)
        return {}

    path = f"/{family}/{{cid}}/messages/{{mid}}" + ("/recall" if recall else "")
    fields = {"from_client": "string!", "timestamp": "integer!"}
    if not recall:
        fields["message"] = "string!"
    name = "Recall a message" if recall else "Modify a message"
    return Spec(path, ("PUT", "POST"), patch, name, fields)


def _delete(family: str) -> Spec:
    async def delete(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        subscriber = call.path.get("client_id")
        sender = call.params.client("from_client", call.ctx)
        timestamp = call.params.integer("timestamp", -1, 0, EPOCH_MS_MAX)
        mid = call.path["mid"]
        await deletion.delete_message(call.ctx, conv.cid, mid, sender, timestamp, subscriber)
        return {}

    path = f"/{family}/{{cid}}/messages/{{mid}}"
    if family == "service-conversations":
        path = f"/{family}/{{cid}}/subscribers/{{client_id}}/messages/{{mid}}"
    query = {"from_client": "string!", "timestamp": "integer!"}
    summary = "Delete a message from the server (clients are not told)"
    return Spec(path, ("DELETE",), delete, summary, query=query)


async def broadcast(call: Call) -> JSON:
    """To every subscriber of a service conversation."""
    conv = await conversation_in(call, "service-conversations")
    sender = call.params.client("from_client", call.ctx, required=False) or None
    message = await system.broadcast(call.ctx, conv.cid, _content(call), sender)
    return _sent(message.mid, message.timestamp)


async def to_subscribers(call: Call) -> JSON:
    """To some subscribers only (``to_clients``, at most 20)."""
    conv = await conversation_in(call, "service-conversations")
    params = call.params
    sender = params.client("from_client", call.ctx, required=False) or None
    clients = params.clients("to_clients", call.ctx, _MAX_TO_CLIENTS)
    message = await system.send_to(call.ctx, conv.cid, _content(call), sender, clients)
    return _sent(message.mid, message.timestamp)


async def subscriber_thread(call: Call) -> JSON:
    """What the operator sent one subscriber, what it wrote to the operator and the
    broadcasts, one page with the history paging."""
    conv = await conversation_in(call, "service-conversations")
    client = call.path["client_id"]
    q = logs_query(conv.cid, call.params)
    items = await system.subscriber_history(call.ctx, conv.cid, client, q)
    return records(conv.cid, conv.kind, items, not call.params.flag("reversed"))


HISTORY_QUERY = {
    "msgid": "string",
    "timestamp": "integer",
    "till_msgid": "string",
    "till_timestamp": "integer",
    "include_start": "boolean",
    "include_stop": "boolean",
    "reversed": "boolean",
    "limit": "integer",
}
_SERVICE = "/service-conversations/{cid}"
_OPERATOR_SEND = {"from_client": "string", "message": "string!"}
SPECS = [
    *(_send(f) for f in ("conversations", "chatrooms")),
    *(_history(f) for f in ("conversations", "chatrooms", "service-conversations")),
    *(_patch(f, recall) for f in ("conversations", "service-conversations")
      for recall in (False, True)),
    *(_delete(f) for f in ("conversations", "chatrooms", "service-conversations")),
    Spec("/messages", ("GET",), every_history, "Every conversation's history",
         query=HISTORY_QUERY),
    Spec(f"{_SERVICE}/broadcasts", ("POST",), broadcast, "Send to every subscriber",
         _OPERATOR_SEND),
    Spec(f"{_SERVICE}/messages", ("POST",), to_subscribers, "Send to some subscribers",
         {**_OPERATOR_SEND, "to_clients": "array!"}),
    Spec(f"{_SERVICE}/subscribers/{{client_id}}/messages", ("GET",), subscriber_thread,
         "One subscriber's thread and the broadcasts", query=HISTORY_QUERY),
]  # fmt: skip
