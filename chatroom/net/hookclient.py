"""A minimal HTTP/1.1 client for hook calls: one POST per connection, h11 over Trio.

Small on purpose: a hook call is one JSON request and one bounded JSON reply, so there
is no pooling, no redirects and no retries (a retry would double a hook's side effects).
The caller puts the whole call under its deadline (chatroom/net/hooks.py); this module
bounds what it reads instead: a reply body over ``max_reply`` bytes is an error.
"""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import h11
import trio

_READ_CHUNK = 65_536


class HookHTTPError(Exception):
    """The call could not be made or its reply could not be read."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """What ``https://`` calls trust: the CAs of ``ca_file``, else the system's. Make it
    once: loading them takes milliseconds."""
    return ssl.create_default_context(cafile=ca_file or None)


async def post(
    url: str,
    body: bytes,
    headers: list[tuple[str, str]],
    max_reply: int,
    tls: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """POST ``body`` to ``url``; the status and the reply body. ``tls`` is needed for
    an ``https://`` URL."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None or parts.scheme not in ("http", "https"):
        raise HookHTTPError(f"not an http(s) URL: {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    except OSError as exc:
        raise HookHTTPError(f"connect: {exc}") from None
    try:
        if secure:
            if tls is None:
                raise HookHTTPError("https:// without a TLS context")
            stream = trio.SSLStream(stream, tls, server_hostname=host)
        return await _exchange(stream, parts.netloc, target, body, headers, max_reply)
    except (trio.BrokenResourceError, ssl.SSLError, OSError, h11.ProtocolError) as exc:
        cause = exc.__cause__ or exc  # trio wraps the SSL error that broke the stream
        raise HookHTTPError(f"{type(cause).__name__}: {cause}") from None
    finally:
        await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream,
    netloc: str,
    target: str,
    body: bytes,
    headers: list[tuple[str, str]],
    max_reply: int,
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(
        method="POST",
        target=target,
        headers=[
            ("Host", netloc),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *headers,
        ],
    )
    out = conn.send(request) or b""
    out += conn.send(h11.Data(data=body)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)
    status = 0
    reply = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_READ_CHUNK)))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            reply += event.data
            if len(reply) > max_reply:
                raise HookHTTPError(f"reply over {max_reply} bytes")
        elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, bytes(reply)
