"""What every REST endpoint shares: LeanCloud's authentication, its error JSON, reading
parameters, and running a WebSocket command's handler for the operator.

Authentication (rest-and-hooks.md 1.2): ``X-LC-Id`` (the ``app_id`` when one is
configured) and ``X-LC-Key: <masterKey>,master``, or ``X-LC-Sign:
md5(timestamp + masterKey),timestamp,master``. A missing or wrong key is 401; with no
``master_key`` configured the API is off and every call answers 403 saying so.

Errors are ``{"code", "error"}``: an IM error code (4303, 4308...) where the service
refused, else the HTTP status (400 for bad parameters, 401, 403, 404).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import orjson
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatroom.core.model import JSON
from chatroom.protocol import ids
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.errors import ChatError, ErrorCode
from chatroom.service import operator
from chatroom.service.context import Context, Handler, SyncHandler, valid_client_id

PREFIX = "/1.2/rtm"
INT32_MAX = 2**31 - 1  # the default bound of an integer parameter (protobuf int32)
EPOCH_MS_MAX = 2**53  # of a time in epoch milliseconds
_BODY_SLACK = 64 * 1024  # bytes of a body beyond its message (JSON escapes take up to 6)
_REPLY_TIMEOUT = 10.0  # seconds a call waits for a handler's late reply (a commit)

# How a service refusal shows as an HTTP status (the rest are 400).
_STATUS = {
    ErrorCode.CONVERSATION_NOT_FOUND: 404,
    ErrorCode.TEMPORARY_CONVERSATION_EXPIRED: 404,
    ErrorCode.MESSAGE_NOT_FOUND: 404,
    ErrorCode.CONVERSATION_NOT_ALLOWED: 403,
    ErrorCode.CONVERSATION_UPDATE_REJECTED: 403,
    ErrorCode.CONVERSATION_MEMBERSHIP_REQUIRED: 403,
    ErrorCode.CONVERSATION_LOG_REJECTED: 403,
    ErrorCode.CONVERSATION_READ_ONLY: 403,
    ErrorCode.MESSAGE_OWNERSHIP_REQUIRED: 403,
    ErrorCode.CONVERSATION_BLACKLISTED: 403,
    ErrorCode.MESSAGE_SENT_QUOTA_EXCEEDED: 429,
    ErrorCode.INTERNAL_ERROR: 503,  # a store that failed or a reply that did not come
}


class ApiError(Exception):
    """A refused call: the HTTP status, and the ``code`` and ``error`` of the body."""

    def __init__(self, status: int, error: str, code: int | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.code = code if code is not None else status
        self.error = error


def json_response(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status, media_type="application/json")


def error_response(err: ApiError) -> Response:
    return json_response({"code": err.code, "error": err.error}, err.status)


def from_chat_error(err: ChatError) -> ApiError:
    text = err.reason if err.detail is None else f"{err.reason}: {err.detail}"
    return ApiError(_STATUS.get(err.code, 400), text, int(err.code))


def check_master(request: Request, config_master_key: str, app_id: str) -> None:
    """401 unless the request carries the master key (and the app id, when set); 403
    when no master key is configured."""
    if not config_master_key:
        raise ApiError(403, "the REST API is off: no master_key is configured")
    if app_id and request.headers.get("x-lc-id", "") != app_id:
        raise ApiError(401, "Unauthorized. (X-LC-Id is not this app's id)")
    key = request.headers.get("x-lc-key", "")
    if key.endswith(",master") and hmac.compare_digest(key[:-7], config_master_key):
        return
    sign = request.headers.get("x-lc-sign", "").split(",")
    if len(sign) == 3 and sign[2] == "master":
        expected = hashlib.md5((sign[1] + config_master_key).encode()).hexdigest()
        if hmac.compare_digest(sign[0], expected):
            return
    raise ApiError(401, "Unauthorized. (X-LC-Key: <masterKey>,master is required)")


class Params:
    """A call's parameters (the JSON body's object, or the query string) read with
    their types: a missing required one or a wrong type is a 400 naming it."""

    def __init__(self, values: dict[str, object], body: dict[str, object] | None = None) -> None:
        self.values = values
        self.body = body if body is not None else {}

    def _get(self, name: str, kinds: tuple[type, ...], required: bool, what: str) -> object:
        value = self.values.get(name)
        if value is None:
            if required:
                raise ApiError(400, f"{name} is required ({what})")
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ApiError(400, f"{name} must be {what}")
        return value

    def text(self, name: str, required: bool = False, max_bytes: int = 1 << 16) -> str | None:
        value = self._get(name, (str,), required, "a string")
        if isinstance(value, str) and len(value.encode()) > max_bytes:
            raise ApiError(400, f"{name} is longer than {max_bytes} bytes")
        return value if isinstance(value, str) else None

    def client(self, name: str, ctx: Context, required: bool = True) -> str:
        value = self.text(name, required) or ""
        if value and not valid_client_id(value, ctx.config.max_client_id_length):
            raise ApiError(400, f"{name} is not a valid client id")
        return value

    def flag(self, name: str) -> bool:
        value = self.values.get(name, False)
        if isinstance(value, str):  # from the query string
            value = {"true": True, "false": False, "1": True, "0": False}.get(value.lower())
        if not isinstance(value, bool):
            raise ApiError(400, f"{name} must be true or false")
        return value

    def integer(self, name: str, default: int, low: int = 0, high: int = INT32_MAX) -> int:
        value = self.values.get(name, default)
        if isinstance(value, str):  # from the query string
            try:
                value = int(value)
            except ValueError:
                raise ApiError(400, f"{name} must be an integer") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(400, f"{name} must be an integer")
        if not low <= value <= high:
            raise ApiError(400, f"{name} must be between {low} and {high}")
        return value

    def clients(self, name: str, ctx: Context, most: int) -> list[str]:
        """A non-empty list of at most ``most`` valid client ids, without repeats."""
        value = self._get(name, (list,), True, "a list of client ids")
        assert isinstance(value, list)
        limit = ctx.config.max_client_id_length
        if not all(isinstance(i, str) and valid_client_id(i, limit) for i in value):
            raise ApiError(400, f"{name} holds an invalid client id")
        ids = list(dict.fromkeys(value))
        if not ids or len(ids) > most:
            raise ApiError(400, f"{name} holds 1 to {most} client ids")
        return ids


def max_body(ctx: Context) -> int:
    """Bytes of a request body: a message of the largest size, escaped, and the rest."""
    return 6 * ctx.config.max_message_bytes + _BODY_SLACK


async def read_params(request: Request, limit: int) -> Params:
    """The JSON object of a POST/PUT/DELETE body (empty allowed: ``{}``), merged over the
    query string. A GET's body is ignored (the SDK sends ``{}`` with every GET)."""
    values: dict[str, object] = dict(request.query_params)
    body: dict[str, object] = {}
    if request.method in ("GET", "HEAD"):
        await trio.lowlevel.checkpoint()
        return Params(values)
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, f"the body is over {limit} bytes")
    if raw.strip():
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ApiError(400, "the body is not JSON", 107) from None
        if not isinstance(parsed, dict):
            raise ApiError(400, "the body must be a JSON object", 107)
        body = parsed
        values.update(body)
    return Params(values, body)


@dataclass(frozen=True, slots=True)
class Call:
    """One authorised call: the running server's context, the path's parameters and the
    call's own."""

    ctx: Context
    path: dict[str, str]
    params: Params
    headers: Mapping[str, str]

    async def run(
        self,
        handler: Handler | SyncHandler,
        cmd: pb.GenericCommand,
        peer_id: str,
        *,
        no_sync: bool = False,
    ) -> pb.GenericCommand:
        """The handler's reply to ``cmd`` sent by the operator as ``peer_id``."""
        return await operator.run(self.ctx, handler, cmd, peer_id, _REPLY_TIMEOUT, no_sync=no_sync)


def refuse_control_ids(request: Request) -> None:
    """400 (code 4201, invalid argument) when an id of the path, a query parameter or the
    IM session token holds a control character; ids in a body are checked where read
    (``Params.client``) or by the command they become (``operator.run``)."""
    values = [*request.path_params.values(), *request.query_params.values()]
    values.append(request.headers.get("x-lc-im-session-token", ""))
    if any(isinstance(v, str) and ids.has_control(v) for v in values):
        raise ApiError(
            400, "invalid argument: an id holds a control character", int(ErrorCode.INVALID_COMMAND)
        )


Endpoint = Callable[[Call], Awaitable["JSON | Response"]]


@dataclass(frozen=True, slots=True)
class Spec:
    """One endpoint: its path (under ``/1.2/rtm`` unless it starts with ``/1.1/``), its
    methods and what ``/openapi.json`` says of it. ``body`` and ``query`` map parameter
    names to a JSON type (``string``, ``boolean``, ``integer``, ``array``, ``object``),
    with ``!`` when required. ``master`` False: the endpoint checks its own credentials."""

    path: str
    methods: tuple[str, ...]
    endpoint: Endpoint
    summary: str
    body: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    ok: int = 200
    master: bool = True

    @property
    def full_path(self) -> str:
        return self.path if self.path.startswith("/1.1/") else PREFIX + self.path


def route(context: Callable[[], Context], spec: Spec) -> Route:
    """The Starlette route of ``spec``: master key checked (unless ``spec.master`` is
    False), parameters read, refusals turned into LeanCloud's error JSON."""

    async def respond(request: Request) -> Response:
        await trio.lowlevel.checkpoint()  # also when refused at once (flake8-async)
        ctx = context()
        try:
            if spec.master:
                check_master(request, ctx.config.master_key, ctx.config.app_id)
            params = await read_params(request, max_body(ctx))
            refuse_control_ids(request)
            call = Call(ctx, dict(request.path_params), params, request.headers)
            result = await spec.endpoint(call)
        except ApiError as err:
            return error_response(err)
        except ChatError as err:
            return error_response(from_chat_error(err))
        return result if isinstance(result, Response) else json_response(result, spec.ok)

    return Route(spec.full_path, respond, methods=list(spec.methods))
