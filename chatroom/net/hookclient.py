"""A minimal HTTP/1.1 client for hook calls: h11 over Trio, keeping connections alive.

A hook call is one JSON POST and one bounded JSON reply (a reply body over
``max_reply`` bytes is an error). ``HookClient`` keeps the connections whose exchange
ended cleanly, per origin (scheme, host, port): at most ``max_idle`` idle ones, each
closed once idle for ``idle_timeout`` seconds (``prune``, and whenever one is taken).
The caller puts the whole call under its deadline (chatroom/net/hooks.py), so every
connect, write and read here is bounded by it; a call cancelled half way closes its
connection, which is never reused in an unknown state.

An idle connection the endpoint has closed is noticed before it is used (its socket is
readable: an end of file, or bytes nobody asked for) and dropped. When the endpoint
closes one just as a request goes out on it, so that not a byte of a reply comes back,
the request is sent once more on a new connection: that is the one retry, and it only
repeats a request whose connection the endpoint closed without answering. There are no
redirects and no other retries (a retry would double a hook's side effects).
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Callable
from urllib.parse import urlsplit

import h11
import trio

_READ_CHUNK = 65_536
_IDLE_TIMEOUT = 4.0  # s: below the 5 s keep-alive of common servers (hypercorn, uvicorn, Node)
MAX_IDLE = 8  # idle connections kept per origin


class HookHTTPError(Exception):
    """The call could not be made or its reply could not be read."""


class _Unanswered(Exception):
    """A reused connection ended before a byte of the reply came."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """What ``https://`` calls trust: the CAs of ``ca_file``, else the system's. Make it
    once: loading them takes milliseconds."""
    return ssl.create_default_context(cafile=ca_file or None)


class _Connection:
    __slots__ = ("http", "idle_since", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, socket: trio.SocketStream) -> None:
        self.stream = stream
        self.socket = socket
        self.http = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    def closed_by_peer(self) -> bool:
        """Whether the idle connection's socket is readable: the peer closed it (or
        sent what nobody asked for), so it cannot carry a request."""
        poller = select.poll()
        poller.register(self.socket.socket.fileno(), select.POLLIN)
        return bool(poller.poll(0))


_Origin = tuple[str, str, int]


class HookClient:
    """POSTs to hook URLs over kept-alive connections (see the module's docstring)."""

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE,
        idle_timeout: float = _IDLE_TIMEOUT,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._tls = tls
        self._max_idle = max_idle
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._idle: dict[_Origin, list[_Connection]] = {}

    @property
    def idle_timeout(self) -> float:
        return self._idle_timeout

    def idle(self) -> int:
        """How many connections are idle in the pool now."""
        return sum(len(kept) for kept in self._idle.values())

    async def post(
        self, url: str, body: bytes, headers: list[tuple[str, str]], max_reply: int
    ) -> tuple[int, bytes]:
        """POST ``body`` to ``url``; the status and the reply body."""
        parts = urlsplit(url)
        host = parts.hostname
        if host is None or parts.scheme not in ("http", "https"):
            raise HookHTTPError(f"not an http(s) URL: {url!r}")
        secure = parts.scheme == "https"
        if secure and self._tls is None:
            raise HookHTTPError("https:// without a TLS context")
        origin = (parts.scheme, host, parts.port or (443 if secure else 80))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = h11.Request(
            method="POST",
            target=target,
            headers=[
                ("Host", parts.netloc),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                *headers,
            ],
        )
        conn = self._take(origin)
        if conn is not None:
            try:
                return await self._exchange(conn, origin, request, body, max_reply, True)
            except _Unanswered:
                pass  # closed by the endpoint as the request went out: once more, anew
        conn = await self._connect(origin)
        return await self._exchange(conn, origin, request, body, max_reply, False)

    def prune(self) -> None:
        """Close the connections idle for ``idle_timeout`` or closed by the endpoint."""
        now = self._clock()
        for origin, kept in list(self._idle.items()):
            fresh = [c for c in kept if not self._stale(c, now)]
            for conn in kept:
                if conn not in fresh:
                    _close(conn)
            if fresh:
                self._idle[origin] = fresh
            else:
                del self._idle[origin]

    def close(self) -> None:
        """Close every idle connection."""
        for kept in self._idle.values():
            for conn in kept:
                _close(conn)
        self._idle.clear()

    def _stale(self, conn: _Connection, now: float) -> bool:
        return now - conn.idle_since >= self._idle_timeout or conn.closed_by_peer()

    def _take(self, origin: _Origin) -> _Connection | None:
        """The most recently used idle connection to ``origin`` still usable."""
        kept = self._idle.get(origin)
        now = self._clock()
        while kept:
            conn = kept.pop()
            if not self._stale(conn, now):
                return conn
            _close(conn)
        return None

    def _give_back(self, origin: _Origin, conn: _Connection) -> None:
        http = conn.http
        if http.our_state is not h11.DONE or http.their_state is not h11.DONE:
            _close(conn)  # the endpoint asked to close, or the exchange did not end
            return
        http.start_next_cycle()
        conn.idle_since = self._clock()
        kept = self._idle.setdefault(origin, [])
        kept.append(conn)
        if len(kept) > self._max_idle:
            _close(kept.pop(0))  # the one idle longest

    async def _connect(self, origin: _Origin) -> _Connection:
        scheme, host, port = origin
        try:
            tcp = await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise HookHTTPError(f"connect: {exc}") from None
        stream: trio.abc.Stream = tcp
        if scheme == "https":
            assert self._tls is not None  # post() checked
            stream = trio.SSLStream(tcp, self._tls, server_hostname=host)
        return _Connection(stream, tcp)

    async def _exchange(
        self,
        conn: _Connection,
        origin: _Origin,
        request: h11.Request,
        body: bytes,
        max_reply: int,
        reused: bool,
    ) -> tuple[int, bytes]:
        """One request and its reply on ``conn``, which goes back to the pool if the
        exchange ended cleanly and is closed otherwise. ``_Unanswered`` when a reused
        connection ends before a byte of the reply."""
        answered = False
        done = False
        try:
            http = conn.http
            out = http.send(request) or b""
            out += http.send(h11.Data(data=body)) or b""
            out += http.send(h11.EndOfMessage()) or b""
            await conn.stream.send_all(out)
            status = 0
            reply = bytearray()
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.stream.receive_some(_READ_CHUNK)
                    answered = answered or bool(data)
                    http.receive_data(bytes(data))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    reply += event.data
                    if len(reply) > max_reply:
                        raise HookHTTPError(f"reply over {max_reply} bytes")
                elif isinstance(event, h11.EndOfMessage):
                    done = True
                    return status, bytes(reply)
                elif isinstance(event, h11.ConnectionClosed):
                    raise HookHTTPError("the endpoint closed the connection mid-reply")
        except (trio.BrokenResourceError, ssl.SSLError, OSError, h11.ProtocolError) as exc:
            if reused and not answered:
                raise _Unanswered from None
            cause = exc.__cause__ or exc  # trio wraps the SSL error that broke the stream
            raise HookHTTPError(f"{type(cause).__name__}: {cause}") from None
        except HookHTTPError:
            if reused and not answered:
                raise _Unanswered from None
            raise
        finally:
            if done:
                self._give_back(origin, conn)
            else:
                _close(conn)


def _close(conn: _Connection) -> None:
    """Close at once, without a TLS goodbye: nothing waits on it."""
    conn.socket.socket.close()
