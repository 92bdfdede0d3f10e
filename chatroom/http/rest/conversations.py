"""Conversations, chatrooms and service conversations over REST (rest-and-hooks.md
2.2-2.4): create, query, update, members and subscribers, online counts.

Each call runs the WebSocket command's handler (service/conversations.py,
service/conv_query.py) as the operator: members are added and removed by the
conversation's owner (its creator), so the same events reach online members and the
same rules refuse (the owner cannot be removed, blocked clients cannot be added).
"""

from __future__ import annotations

import orjson

from chatroom.core.model import JSON, Conversation, ConvType
from chatroom.protocol import messages_pb2 as pb
from chatroom.service import conv_query, conversations, deletion, system
from chatroom.service.conv_query import conversation_doc

from .base import ApiError, Call, Spec

# Path family -> the conversations it holds, and the `where` that selects them.
FAMILIES: dict[str, tuple[frozenset[ConvType], dict[str, JSON]]] = {
    "conversations": (
        frozenset({ConvType.NORMAL, ConvType.TEMPORARY}),
        {"tr": False, "sys": False},
    ),
    "chatrooms": (frozenset({ConvType.TRANSIENT}), {"tr": True}),
    "service-conversations": (frozenset({ConvType.SYSTEM}), {"sys": True}),
    "all-conversations": (frozenset(ConvType), {"objectId": {"$exists": True}}),
}
# Body keys of a create or update that are not attributes.
_NOT_ATTRS = frozenset({"m", "c", "unique", "tr", "sys", "tempConv", "ttl"})
_MAX_SUBSCRIBER_PAGE = 50
_PURGE_LIMIT, _PURGE_LIMIT_MAX = 100, 1000  # conversations deleted by one purge call
_DAY_MS = 86_400_000
SYSTEM_CREATOR = "system"  # the creator (owner) of what the operator makes without a `c`


async def conversation_in(call: Call, family: str) -> Conversation:
    """The conversation of the path's ``cid``: 404 if it is not of ``family``."""
    conv = await call.ctx.conversation(call.path["cid"])
    if conv.kind not in FAMILIES[family][0]:
        raise ApiError(404, f"{conv.cid} is not one of the {family}", 4303)
    return conv


def owner_of(conv: Conversation) -> str:
    """Whom the operator acts as for a conversation's administration."""
    return conv.creator


def _attributes(call: Call) -> dict[str, JSON]:
    return {k: v for k, v in call.params.body.items() if k not in _NOT_ATTRS}  # type: ignore[misc]


def _doc(call: Call, conv: Conversation) -> JSON:
    return conversation_doc(conv, call.ctx.clock.wall_ms())  # type: ignore[return-value]


def _updated(call: Call, conv: Conversation) -> JSON:
    doc = conversation_doc(conv, call.ctx.clock.wall_ms())
    return {"objectId": conv.cid, "updatedAt": str(doc["updatedAt"])}


def _failures(reply: pb.GenericCommand) -> list[JSON]:
    """Per-id refusals of a partial-success reply, as ``{code, error, client_ids}``."""
    body = reply.blacklistMessage if reply.HasField("blacklistMessage") else reply.convMessage
    return [
        {"code": f.code, "error": f.reason, "client_ids": list(f.pids)} for f in body.failedPids
    ]


def with_failures(result: dict[str, JSON], reply: pb.GenericCommand) -> JSON:
    failed = _failures(reply)
    if failed:
        result["failed"] = failed
    return result


def _start(family: str) -> Spec:
    async def create(call: Call) -> JSON:
        params = call.params
        attrs = _attributes(call)
        if family == "service-conversations":
            name = params.text("name", required=True) or ""
            creator = params.client("c", call.ctx, required=False) or SYSTEM_CREATOR
            conv = await system.create(call.ctx, name, attrs, creator)
            return _doc(call, conv)
        members: list[str] = []
        if family == "conversations":
            members = params.clients("m", call.ctx, call.ctx.config.max_members)
        creator = params.client("c", call.ctx, required=False) or (
            members[0] if members else SYSTEM_CREATOR
        )
        cmd = pb.GenericCommand(cmd=pb.conv, op=pb.start)
        body = cmd.convMessage
        body.m.extend(members)
        body.unique = params.flag("unique")
        body.transient = family == "chatrooms"
        body.attr.data = orjson.dumps(attrs).decode()
        reply = await call.run(conversations.start, cmd, creator)
        return _doc(call, await call.ctx.conversation(reply.convMessage.cid))

    body = {"name": "string", "m": "array", "c": "string", "unique": "boolean"}
    return Spec(f"/{family}", ("POST",), create, f"Create one of the {family}", body, ok=201)


def _query(family: str) -> Spec:
    async def query(call: Call) -> JSON:
        params = call.params
        where: JSON = FAMILIES[family][1]
        given = params.text("where")
        if given:
            try:
                asked = orjson.loads(given)
            except orjson.JSONDecodeError:
                raise ApiError(400, "where is not JSON", 107) from None
            where = {"$and": [asked, where]}
        cmd = pb.GenericCommand(cmd=pb.conv, op=pb.query)
        body = cmd.convMessage
        body.where.data = orjson.dumps(where).decode()
        body.limit = params.integer("limit", conv_query.DEFAULT_LIMIT, 1, conv_query.MAX_LIMIT)
        body.skip = params.integer("skip", 0)
        order = params.text("order")
        if order:
            body.sort = order
        reply = await call.run(conv_query.query, cmd, "")
        return {"results": orjson.loads(reply.convMessage.results.data)}

    fields = {"where": "string", "limit": "integer", "skip": "integer", "order": "string"}
    return Spec(f"/{family}", ("GET",), query, f"Query the {family}", query=fields)


def _update(family: str) -> Spec:
    async def update(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        if "m" in call.params.body:
            raise ApiError(400, "m cannot be set here: use the members endpoints")
        cmd = pb.GenericCommand(cmd=pb.conv, op=pb.update)
        cmd.convMessage.cid = conv.cid
        cmd.convMessage.attr.data = orjson.dumps(_attributes(call)).decode()
        await call.run(conversations.update, cmd, owner_of(conv))
        return _updated(call, conv)

    body = {"name": "string"}
    return Spec(f"/{family}/{{cid}}", ("PUT",), update, f"Update one of the {family}", body)


def _delete(family: str) -> Spec:
    async def delete(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        await deletion.delete_conversation(call.ctx, conv, owner_of(conv))
        return {}

    summary = f"Delete one of the {family} with its messages (members get conv/left)"
    return Spec(f"/{family}/{{cid}}", ("DELETE",), delete, summary)


def _get(family: str) -> Spec:
    async def get(call: Call) -> JSON:
        conv = await conversation_in(call, family)
        # Read through: another node's messages move last_message_at in the store only.
        return _doc(call, await call.ctx.caches.conversations.read(conv.cid) or conv)

    return Spec(f"/{family}/{{cid}}", ("GET",), get, f"One of the {family}")


async def change_members(call: Call, conv: Conversation, ids: list[str], add: bool) -> JSON:
    """Add or remove ``ids`` as the owner: ``{objectId, updatedAt}``, and ``failed``
    with the ids refused."""
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.add if add else pb.remove)
    cmd.convMessage.cid = conv.cid
    cmd.convMessage.m.extend(ids)
    handler = conversations.add if add else conversations.remove
    reply = await call.run(handler, cmd, owner_of(conv))
    return with_failures(_updated(call, conv), reply)  # type: ignore[arg-type]


async def add_members(call: Call) -> JSON:
    conv = await conversation_in(call, "conversations")
    ids = call.params.clients("client_ids", call.ctx, call.ctx.config.max_members)
    return await change_members(call, conv, ids, add=True)


async def remove_members(call: Call) -> JSON:
    conv = await conversation_in(call, "conversations")
    ids = call.params.clients("client_ids", call.ctx, call.ctx.config.max_members)
    return await change_members(call, conv, ids, add=False)


async def members(call: Call) -> JSON:
    conv = await conversation_in(call, "conversations")
    return {"result": list(conv.members)}


async def online_count(call: Call) -> JSON:
    conv = await conversation_in(call, "chatrooms")
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.count)
    cmd.convMessage.cid = conv.cid
    reply = await call.run(conversations.count, cmd, owner_of(conv))
    return {"result": reply.convMessage.count}


async def subscribe(call: Call) -> JSON:
    """A client subscribes itself, as ``ServiceConversation.subscribe`` does."""
    conv = await conversation_in(call, "service-conversations")
    client = call.params.client("client_id", call.ctx)
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.add)
    cmd.convMessage.cid = conv.cid
    cmd.convMessage.m.append(client)
    await call.run(conversations.add, cmd, client)
    return {}


async def unsubscribe(call: Call) -> JSON:
    conv = await conversation_in(call, "service-conversations")
    client = call.path["client_id"]
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.remove)
    cmd.convMessage.cid = conv.cid
    cmd.convMessage.m.append(client)
    await call.run(conversations.remove, cmd, client)
    return {}


async def subscribers(call: Call) -> JSON:
    """A page of subscribers after the ``client_id`` cursor, in id order."""
    conv = await conversation_in(call, "service-conversations")
    limit = call.params.integer("limit", _MAX_SUBSCRIBER_PAGE, 1, _MAX_SUBSCRIBER_PAGE)
    after = call.params.text("client_id") or ""
    page = [m for m in sorted(conv.members) if m > after][:limit]
    return [{"timestamp": conv.updated_at, "subscriber": m, "conv_id": conv.cid} for m in page]


async def subscriber_count(call: Call) -> JSON:
    conv = await conversation_in(call, "service-conversations")
    return {"count": len(conv.members)}


async def purge_inactive(call: Call) -> JSON:
    """Conversations of any kind with no message and no update for ``days`` days."""
    days = call.params.integer("days", 0, 1, 100 * 365)
    limit = call.params.integer("limit", _PURGE_LIMIT, 1, _PURGE_LIMIT_MAX)
    before = call.ctx.clock.wall_ms() - days * _DAY_MS
    deleted, more = await deletion.purge_inactive(call.ctx, before, limit)
    return {"deleted": deleted, "more": more}


_IDS = {"client_ids": "array!"}
_SERVICE = "/service-conversations/{cid}"
SPECS = [
    *(_start(f) for f in ("conversations", "chatrooms", "service-conversations")),
    *(_query(f) for f in FAMILIES),
    *(_get(f) for f in ("conversations", "chatrooms", "service-conversations")),
    *(_update(f) for f in ("conversations", "chatrooms", "service-conversations")),
    *(_delete(f) for f in ("conversations", "chatrooms", "service-conversations")),
    Spec(
        "/purge-inactive-conversations",
        ("POST",),
        purge_inactive,
        "Delete conversations inactive for days (members get conv/left)",
        {"days": "integer!", "limit": "integer"},
    ),
    Spec("/conversations/{cid}/members", ("POST",), add_members, "Add members", _IDS),
    Spec("/conversations/{cid}/members", ("DELETE",), remove_members, "Remove members", _IDS),
    Spec("/conversations/{cid}/members", ("GET",), members, "The members"),
    Spec("/chatrooms/{cid}/members/online-count", ("GET",), online_count, "Clients watching now"),
    Spec(
        f"{_SERVICE}/subscribers",
        ("POST",),
        subscribe,
        "Subscribe a client",
        {"client_id": "string!"},
    ),
    Spec(f"{_SERVICE}/subscribers/{{client_id}}", ("DELETE",), unsubscribe, "Unsubscribe"),
    Spec(
        f"{_SERVICE}/subscribers",
        ("GET",),
        subscribers,
        "Subscribers, a page at a time",
        query={"limit": "integer", "client_id": "string"},
    ),
    Spec(f"{_SERVICE}/subscribers/count", ("GET",), subscriber_count, "How many subscribe"),
]
