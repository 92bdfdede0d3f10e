"""Calling the REST API (chatroom/http/rest) of a running server over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import trio
from helpers import Running

MASTER = "master-secret"
Json = Any  # what a response body parses to


def _call(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, Json]:
    request = urllib.request.Request(url, body, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def rest(
    running: Running,
    method: str,
    path: str,
    body: object = None,
    *,
    key: str | None = MASTER,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Json]:
    """``(status, parsed body)`` of one call to ``/1.2/rtm{path}`` (or ``path`` when it
    starts with ``/1.1/``), with the master key unless ``key`` is None."""
    full = path if path.startswith("/1.1/") else "/1.2/rtm" + path
    url = f"http://127.0.0.1:{running.http_port}{full}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key is not None:
        sent["X-LC-Key"] = f"{key},master"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    return await trio.to_thread.run_sync(_call, url, method, data, sent)


async def ok(running: Running, method: str, path: str, body: object = None, **kw: Any) -> Json:
    """The body of a call that must succeed."""
    status, found = await rest(running, method, path, body, **kw)
    assert status in (200, 201), (status, found)
    return found
