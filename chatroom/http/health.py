"""The HTTP side port: health, the operator's endpoints and the live-stream page.

Starlette on hypercorn's Trio worker, inside the server's own ``trio.run``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger(__name__)


WEB = Path(__file__).resolve().parent / "web"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
# The page must follow the server it comes from: a browser revalidates every time
# (a 304 costs nothing: the ETag is the content's hash).
_CACHE = "no-cache"
_TLS_HANDSHAKE = 10.0  # seconds an HTTPS client has for its TLS handshake


def web_routes(websocket_port: int) -> list[BaseRoute]:
    """The live-stream page (chatroom/http/web): ``/`` and the files beside it, read once
    here, so that a request never touches the disk."""
    files: dict[str, tuple[bytes, str]] = {}
    for path in sorted(WEB.iterdir()):
        kind = _TYPES.get(path.suffix)
        if kind is not None:
            body = path.read_bytes()
            if path.name == "index.html":  # the page needs the WebSocket port
                body = body.replace(b"{{websocket_port}}", str(websocket_port).encode())
            files[path.name] = (body, kind)
    files[""] = files["index.html"]

    def serve(name: str) -> Callable[[Request], Awaitable[Response]]:
        body, kind = files[name]
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {"Cache-Control": _CACHE, "ETag": etag, "X-Content-Type-Options": "nosniff"}

        async def respond(request: Request) -> Response:
            await trio.lowlevel.checkpoint()
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            return Response(body, headers={**headers, "Content-Type": kind})

        return respond

    return [Route(f"/{name}", serve(name), methods=["GET", "HEAD"]) for name in files]


def readiness_route(check: Callable[[], Awaitable[str | None]]) -> Route:
    """``/readyz``: 200 once ``check`` finds nothing wrong, else 503 with its reason
    (LeanCloud's error shape, code 503), so that a load balancer stops sending clients
    to a server whose store does not answer or that is shutting down."""

    async def readyz(request: Request) -> JSONResponse:
        reason = await check()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"code": 503, "error": reason}, status_code=503)

    return Route("/readyz", readyz)


def build_app(
    statistics: Callable[[], dict[str, object]],
    routes: Sequence[BaseRoute] = (),
    websocket_port: int | None = None,
) -> Starlette:
    """``/healthz`` plus ``routes`` (the operator's endpoints, chatroom/http/admin.py), and
    the page when ``websocket_port`` (where the page connects) is given."""

    async def healthz(request: Request) -> JSONResponse:
        await trio.lowlevel.checkpoint()
        return JSONResponse({"status": "ok", **statistics()})

    page = web_routes(websocket_port) if websocket_port is not None else []
    return Starlette(routes=[Route("/healthz", healthz), *routes, *page])


async def serve_http(
    host: str,
    port: int,
    statistics: Callable[[], dict[str, object]],
    shutdown: trio.Event,
    routes: Sequence[BaseRoute] = (),
    *,
    websocket_port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set; ``task_status`` gets the bound port. With
    ``websocket_port``, ``/`` serves the live-stream page, which connects there; with
    ``ssl_context``, HTTPS (the context may be reloaded in place, chatroom/net/tls.py);
    with ``sock``, on that listening socket (hypercorn takes it over) rather than one
    bound to ``host:port``."""
    config = _Config()
    config.context = ssl_context
    config.ssl_handshake_timeout = _TLS_HANDSHAKE
    # hypercorn adopts a descriptor given as fd://N; ``sock`` lets go of it first.
    config.bind = [f"{host}:{port}" if sock is None else f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("chatroom.http.health")
    config.graceful_timeout = 2.0

    class _Status:
        def started(self, binds: list[str]) -> None:
            task_status.started(int(binds[0].rsplit(":", 1)[1]))

    await hypercorn_serve(
        build_app(statistics, routes, websocket_port),  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown.wait,
        task_status=_Status(),  # type: ignore[arg-type]
    )


class _Config(HypercornConfig):
    """Hypercorn's configuration, taking an SSL context made elsewhere rather than
    file names: it is reloaded in place when the certificate changes."""

    context: ssl.SSLContext | None = None

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self.context

    @property
    def ssl_enabled(self) -> bool:
        return self.context is not None


def as_dict(snapshot: object) -> dict[str, object]:
    return dataclasses.asdict(snapshot)  # type: ignore[call-overload,no-any-return]
