"""LeanCloud's IM REST API 1.2 on the HTTP port (rest-and-hooks.md part 2, docs/rest.md),
plus the SDK's own member-info call: every endpoint runs the WebSocket command's service
function (service/operator.py), so that both paths behave the same."""

from __future__ import annotations

from collections.abc import Callable

import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatroom.service.context import Context

from . import clients, conversations, messages, moderation
from .base import Spec, json_response, route
from .openapi import document

SPECS: list[Spec] = [*conversations.SPECS, *messages.SPECS, *moderation.SPECS, *clients.SPECS]


def rest_routes(context: Callable[[], Context]) -> list[Route]:
    """Every endpoint, and ``/openapi.json``; ``context`` gives the running server's."""
    openapi = document(SPECS)

    async def describe(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return json_response(openapi)

    return [Route("/openapi.json", describe), *(route(context, spec) for spec in SPECS)]
