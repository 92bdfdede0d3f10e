"""The operator's HTTP endpoints (on the HTTP port), authorised by the master key.

- ``POST /admin/system-conversations`` ``{"name": str, "attrs"?: {..}, "creator"?: str}``
  creates a system conversation: ``201 {"objectId", "createdAt"}``;
- ``POST /admin/system-conversations/{cid}/messages`` ``{"text": str}`` (a text message)
  or ``{"data": str}`` (content sent verbatim, e.g. a typed message's JSON), optional
  ``"from"``: stores it and pushes it to every online subscriber:
  ``200 {"id", "timestamp"}``.

Every request carries ``X-LC-Key: <masterKey>,master`` (LeanCloud's REST convention) or
``Authorization: Bearer <masterKey>``. With no ``master_key`` configured the endpoints
answer 403. Errors are ``{"code", "error"}`` with a LeanCloud code where one applies.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import orjson
import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chatroom.core.ids import iso
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import system
from chatroom.service.context import Context

_STATUS = {
    ErrorCode.CONVERSATION_NOT_FOUND: 404,
    ErrorCode.TEMPORARY_CONVERSATION_EXPIRED: 404,
    ErrorCode.SYSTEM_CONVERSATION_REQUIRED: 400,
}


def _error(status: int, message: str, code: int | None = None) -> JSONResponse:
    return JSONResponse({"code": code or status, "error": message}, status_code=status)


def _authorised(request: Request, master_key: str) -> bool:
    if not master_key:
        return False
    lc_key = request.headers.get("x-lc-key", "")
    bearer = request.headers.get("authorization", "")
    offered = [lc_key.removesuffix(",master") if lc_key.endswith(",master") else ""]
    offered.append(bearer.removeprefix("Bearer ") if bearer.startswith("Bearer ") else "")
    return any(o and hmac.compare_digest(o, master_key) for o in offered)


async def _body(request: Request, master_key: str) -> dict[str, object] | JSONResponse:
    """The JSON object of an operator's request, or the error response (403 without
    the master key, 400 for a body that is not a JSON object)."""
    await trio.lowlevel.checkpoint()  # also when refused (flake8-async)
    if not _authorised(request, master_key):
        return _error(403, "master key required (X-LC-Key: <masterKey>,master)")
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(400, "the body is not JSON")
    return body if isinstance(body, dict) else _error(400, "the body is a JSON object")


def admin_routes(context: Callable[[], Context]) -> list[Route]:
    """The routes; ``context`` gives the running server's context."""

    async def create(request: Request) -> JSONResponse:
        ctx = context()
        body = await _body(request, ctx.config.master_key)
        if isinstance(body, JSONResponse):
            return body
        name, attrs, creator = body.get("name"), body.get("attrs", {}), body.get("creator", "")
        if not isinstance(name, str) or not name:
            return _error(400, "name (a non-empty string) is required")
        if not isinstance(attrs, dict) or not isinstance(creator, str):
            return _error(400, "attrs is an object, creator a string")
        conv = await system.create(ctx, name, attrs, creator or "system")
        return JSONResponse(
            {"objectId": conv.cid, "createdAt": iso(conv.created_at)}, status_code=201
        )

    async def send(request: Request) -> JSONResponse:
        ctx = context()
        body = await _body(request, ctx.config.master_key)
        if isinstance(body, JSONResponse):
            return body
        text, data, sender = body.get("text"), body.get("data"), body.get("from")
        if isinstance(text, str) and data is None:
            data = orjson.dumps({"_lctype": -1, "_lctext": text}).decode()
        if not isinstance(data, str) or not (sender is None or isinstance(sender, str)):
            return _error(400, "text or data (a string) is required; from is a string")
        if len(data.encode()) > ctx.config.max_message_bytes:
            return _error(413, f"content over {ctx.config.max_message_bytes} bytes")
        try:
            message = await system.broadcast(ctx, request.path_params["cid"], data, sender)
        except ChatError as err:
            return _error(_STATUS.get(ErrorCode(err.code), 500), err.reason, err.code)
        return JSONResponse({"id": message.mid, "timestamp": message.timestamp})

    return [
        Route("/admin/system-conversations", create, methods=["POST"]),
        Route("/admin/system-conversations/{cid}/messages", send, methods=["POST"]),
    ]
