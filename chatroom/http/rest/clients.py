"""Clients over REST (rest-and-hooks.md 2.5), and the SDK's own member-info call (4.3).

- ``POST /clients/{id}/kick {reason}``: every session of the client ends with
  ``session/closed`` code 4115 (KICKED_BY_APP) and the reason; the SDK then emits
  ``close`` and does not reconnect; its session tokens no longer resume.
- ``POST /clients/check-online {client_ids}`` (also ``online-check``): those online,
  at most 20 asked, through the ``session/query`` handler.
- ``GET /clients/{id}/unread-count[?conv_id]`` and ``GET /clients/{id}/conversations``.
- ``GET /1.1/classes/_ConversationMemberInfo?client_id=..&where={"cid":..}`` with the
  IM session token (``X-LC-IM-Session-Token``, the ``st`` of ``session/opened``), as
  ``Conversation#getAllMemberInfo`` sends it: the role rows, for a member only.
"""

from __future__ import annotations

import orjson
import trio

from chatroom.core.model import JSON
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ErrorCode
from chatroom.service import conv_query, permissions, session

from .base import ApiError, Call, Spec
from .moderation import member_infos

_MAX_ONLINE_QUERY = 20
_MAX_REASON = 20  # characters, as LeanCloud documents
_MAX_MARKS = 10_000  # conversations counted for one client's unread total


async def kick(call: Call) -> JSON:
    client = call.path["client_id"]
    code = ErrorCode.KICKED_BY_APP
    reason = call.params.text("reason") or code.name
    if len(reason) > _MAX_REASON:
        raise ApiError(400, f"reason is at most {_MAX_REASON} characters")
    detail = "kicked by the operator"
    ended = session.end_sessions(call.ctx, client, None, None, code, reason, detail)
    await trio.lowlevel.checkpoint()
    return {"sessions": ended}


async def check_online(call: Call) -> JSON:
    asked = call.params.clients("client_ids", call.ctx, _MAX_ONLINE_QUERY)
    cmd = pb.GenericCommand(cmd=pb.session, op=pb.query)
    cmd.sessionMessage.sessionPeerIds.extend(asked)
    reply = await call.run(session.query_online, cmd, asked[0])
    return {"results": list(reply.sessionMessage.onlineSessionPeerIds)}


async def unread_count(call: Call) -> JSON:
    client = call.path["client_id"]
    cid = call.params.text("conv_id")
    marks = await call.ctx.store.changed_marks(client, None, _MAX_MARKS)
    return {"count": sum(k.unread for k in marks if cid in (None, k.cid))}


async def conversations_of(call: Call) -> JSON:
    """The conversations a client is a member of, most recently active first."""
    client = call.path["client_id"]
    cmd = pb.GenericCommand(cmd=pb.conv, op=pb.query)
    body = cmd.convMessage
    body.where.data = orjson.dumps({"m": client}).decode()
    body.limit = call.params.integer("limit", conv_query.DEFAULT_LIMIT, 1, conv_query.MAX_LIMIT)
    body.skip = call.params.integer("skip", 0)
    reply = await call.run(conv_query.query, cmd, client)
    return {"results": orjson.loads(reply.convMessage.results.data)}


async def sdk_member_infos(call: Call) -> JSON:
    """The SDK's ``getAllMemberInfo``: authorised by the client's IM session token."""
    ctx = call.ctx
    client = call.params.text("client_id", required=True) or ""
    token = call.headers.get("x-lc-im-session-token", "")
    ticket = ctx.caches.tickets.get(token) if token else None
    if ctx.config.app_id and call.headers.get("x-lc-id", "") != ctx.config.app_id:
        raise ApiError(401, "Unauthorized. (X-LC-Id is not this app's id)")
    if (
        ticket is None
        or ticket.peer_id != client
        or ticket.taken_over
        or ticket.expires_ms <= ctx.clock.wall_ms()
    ):
        raise ApiError(401, "the IM session token is missing, expired or not this client's")
    try:
        where = orjson.loads(call.params.text("where", required=True) or "")
    except orjson.JSONDecodeError:
        raise ApiError(400, "where is not JSON", 107) from None
    cid = where.get("cid") if isinstance(where, dict) else None
    if not isinstance(cid, str):
        raise ApiError(400, 'where must be {"cid": "<conversation id>"}', 107)
    conv = await ctx.conversation(cid)
    if await permissions.role(ctx, conv, client) is None:
        raise ApiError(
            403, "only members read the roles", int(ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED)
        )
    results: list[JSON] = [*await member_infos(call, conv)]
    return {"results": results}


_ASKED = {"client_ids": "array!"}
SPECS = [
    Spec("/clients/{client_id}/kick", ("POST",), kick, "End every session of a client",
         {"reason": "string"}),
    Spec("/clients/check-online", ("POST",), check_online, "Which clients are online", _ASKED),
    Spec("/clients/online-check", ("POST",), check_online, "The same (R4's spelling)", _ASKED),
    Spec("/clients/{client_id}/unread-count", ("GET",), unread_count, "Unread messages",
         query={"conv_id": "string"}),
    Spec("/clients/{client_id}/conversations", ("GET",), conversations_of,
         "A client's conversations", query={"limit": "integer", "skip": "integer"}),
    Spec("/1.1/classes/_ConversationMemberInfo", ("GET",), sdk_member_infos,
         "The SDK's member roles (IM session token)",
         query={"client_id": "string!", "where": "string!"}, master=False),
]  # fmt: skip
