"""The HTTP side port: health now; metrics, the REST API and the demo page later.

Starlette on hypercorn's Trio worker, inside the server's own ``trio.run``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

log = logging.getLogger(__name__)


def build_app(
    statistics: Callable[[], dict[str, object]], routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """``/healthz`` plus ``routes`` (the operator's endpoints, chatroom/admin.py)."""

    async def healthz(request: Request) -> JSONResponse:
        await trio.lowlevel.checkpoint()
        return JSONResponse({"status": "ok", **statistics()})

    return Starlette(routes=[Route("/healthz", healthz), *routes])


async def serve_http(
    host: str,
    port: int,
    statistics: Callable[[], dict[str, object]],
    shutdown: trio.Event,
    routes: Sequence[BaseRoute] = (),
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` is set; ``task_status`` gets the bound port."""
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("chatroom.http")
    config.graceful_timeout = 2.0

    class _Status:
        def started(self, binds: list[str]) -> None:
            task_status.started(int(binds[0].rsplit(":", 1)[1]))

    await hypercorn_serve(
        build_app(statistics, routes),  # type: ignore[arg-type]
        config,
        shutdown_trigger=shutdown.wait,
        task_status=_Status(),  # type: ignore[arg-type]
    )


def as_dict(snapshot: object) -> dict[str, object]:
    return dataclasses.asdict(snapshot)  # type: ignore[call-overload,no-any-return]
