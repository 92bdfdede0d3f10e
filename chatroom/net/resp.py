"""The smallest Redis client the cluster needs: RESP2 over a Trio stream.

coredis (the client the cluster issue names) runs on Trio here, but costs about 140 µs of
CPU per PUBLISH and as much per message received (measured with its 6.9.0 on this
machine): at a few dozen viewers per node that was most of the cost of a delivery. This
module writes commands as RESP arrays and parses replies incrementally
(``Parser``, pure), with no per-call machinery: a PUBLISH costs a few µs.

``open_connection(url)`` takes ``redis://[[user]:password@]host[:port][/db]`` or
``unix:///path[?db=N&password=...]``, authenticates and selects the database.
``Connection.call`` sends one command and returns its reply; ``pipeline`` sends several
at once and returns their replies; ``post`` sends several and reads their replies later
(at the next ``post`` or ``pipeline``); ``send`` and ``read`` are for a subscriber. A reply
``-ERR ...`` raises ``RespError``; the end of the stream raises ``ConnectionError``.
Deadlines are the caller's (``trio.fail_after``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import trio

Reply = bytes | int | list["Reply"] | None
Arg = bytes | str | int
_READ = 1 << 16


class RespError(Exception):
    """Redis answered a command with an error."""


class _Incomplete(Exception):
    pass


def encode(*args: Arg) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


class Parser:
    """Replies out of the bytes fed in, as they complete. Pure.

    The bytes are kept as they came (``bytes``, joined only when a reply is cut
    between two reads), and each bulk string is one slice of them: one copy."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes | bytearray) -> None:
        self._buf = self._buf + data if self._buf else bytes(data)

    def replies(self) -> list[Reply | RespError]:
        out: list[Reply | RespError] = []
        buf = self._buf
        done = 0  # where the first reply not complete yet starts
        while done < len(buf):
            try:
                reply, done_now = self._parse(buf, done)
            except _Incomplete:
                break
            done = done_now
            out.append(reply)
        self._buf = buf[done:] if done else buf
        return out

    def _parse(self, buf: bytes, at: int) -> tuple[Reply | RespError, int]:
        end = buf.find(b"\r\n", at)
        if end < 0:
            raise _Incomplete
        kind = buf[at]
        if kind == 36:  # $
            size = int(buf[at + 1 : end])
            if size < 0:
                return None, end + 2
            stop = end + 2 + size
            if len(buf) < stop + 2:
                raise _Incomplete
            return buf[end + 2 : stop], stop + 2
        if kind == 42:  # *
            count = int(buf[at + 1 : end])
            at = end + 2
            if count < 0:
                return None, at
            items: list[Reply] = []
            for _ in range(count):
                item, at = self._parse(buf, at)
                if isinstance(item, RespError):
                    raise item
                items.append(item)
            return items, at
        if kind == 58:  # :
            return int(buf[at + 1 : end]), end + 2
        if kind == 43:  # +
            return buf[at + 1 : end], end + 2
        if kind == 45:  # -
            return RespError(buf[at + 1 : end].decode(errors="replace")), end + 2
        raise ConnectionError(f"not a RESP reply: {buf[at : at + 1]!r}")


@dataclass(frozen=True, slots=True)
class Address:
    host: str = ""
    port: int = 6379
    path: str = ""  # a unix socket, instead of host and port
    db: int = 0
    user: str = ""
    password: str = ""


def parse_url(url: str) -> Address:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    password = unquote(parts.password or "") or query.get("password", [""])[0]
    user = unquote(parts.username or "")
    if parts.scheme == "unix":
        db = query.get("db", ["0"])[0]
        return Address(path=parts.path, db=int(db), user=user, password=password)
    if parts.scheme != "redis":
        raise ValueError(f"a redis:// or unix:// URL, got {url!r}")
    db = parts.path.strip("/") or query.get("db", ["0"])[0]
    host = parts.hostname or "127.0.0.1"
    return Address(host, parts.port or 6379, "", int(db), user, password)


def _raise_first(replies: Iterable[Reply | RespError]) -> None:
    """Raise the first error reply among ``replies`` (all of them taken already)."""
    for reply in replies:
        if isinstance(reply, RespError):
            raise reply


class Connection(trio.abc.AsyncResource):
    """Over a socket (``trio.SocketStream``) it writes and reads the socket's file
    descriptor itself: a command that fits in the socket's buffer (they all do but
    the largest) is written at once, without a pass through the scheduler, and a read
    waits for the socket to be readable and reads it (no failed read first). Over any
    other stream it goes through the stream's methods."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._parser = Parser()
        self._ready: deque[Reply | RespError] = deque()
        self.owed = 0  # replies to commands sent by ``post``, not read yet

    async def send(self, *commands: tuple[Arg, ...]) -> None:
        await self._put(commands)
        await trio.lowlevel.checkpoint()

    async def _put(self, commands: Iterable[tuple[Arg, ...]]) -> None:
        """Send ``commands``: written at once when the socket takes them (no checkpoint
        then: the callers wait for a reply next, or checkpoint themselves), the rest
        through the stream."""
        data = b"".join(encode(*c) for c in commands)
        if self._fd >= 0:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            data = data[sent:] if sent < len(data) else b""
        if data:
            await self._stream.send_all(data)
        return  # noqa: ASYNC910 (see above)

    async def read(self) -> Reply:
        """The next reply (a subscriber's next message)."""
        if self._ready:
            await trio.lowlevel.checkpoint()  # a burst of replies never hogs the loop
        else:
            await self._receive()  # a checkpoint: no second one
        reply = self._ready.popleft()
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def read_all(self) -> list[Reply | RespError]:
        """Every reply complete (a subscriber's messages), waiting for one when none
        is: one checkpoint per read from the socket, not one per reply. An error
        reply comes as ``RespError``, not raised."""
        if self._ready:
            await trio.lowlevel.checkpoint()
        else:
            await self._receive()
        ready = list(self._ready)
        self._ready.clear()
        return ready

    async def _receive(self) -> None:
        """Read until at least one reply is complete."""
        fd = self._fd
        data: bytes | bytearray
        while True:
            if fd >= 0:
                await trio.lowlevel.wait_readable(fd)
                try:
                    data = os.read(fd, _READ)
                except BlockingIOError:
                    continue
            else:
                data = await self._stream.receive_some(_READ)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._parser.feed(data)
            self._ready.extend(self._parser.replies())
            if self._ready:
                return

    async def pipeline(self, commands: list[tuple[Arg, ...]]) -> list[Reply]:
        """The replies to ``commands``, sent at once (after the replies still owed to
        ``post``, which are dropped); raises the first error reply (after taking every
        reply). One checkpoint per read from the socket (a transaction's replies mostly
        come in one), not one per reply: a pipeline the socket takes at once is written
        without one."""
        owed, self.owed = self.owed, 0
        await self._put(commands)
        ready = self._ready
        while len(ready) < owed + len(commands):
            await self._receive()
        earlier = [ready.popleft() for _ in range(owed)]
        replies = [ready.popleft() for _ in commands]
        _raise_first((*earlier, *replies))
        # (A pipeline's replies come after it is sent: _receive ran, a checkpoint.)
        return replies  # type: ignore[return-value]  # noqa: ASYNC910

    async def post(self, commands: list[tuple[Arg, ...]]) -> None:
        """Send ``commands`` without waiting for their replies: the next ``post`` or
        ``pipeline`` reads them, and raises an error among them. One batch at most is
        in flight: the replies to the previous one are read first, without a wait when
        they are there already (as they mostly are by the next batch)."""
        if self.owed:
            self._read_now()
            while len(self._ready) < self.owed:
                await self._receive()
            owed, self.owed = self.owed, 0
            _raise_first([self._ready.popleft() for _ in range(owed)])
        self.owed = len(commands)
        await self._put(commands)
        # No checkpoint when the socket took it all: the caller's loop waits for more.
        return  # noqa: ASYNC910

    def _read_now(self) -> None:
        """Parse what the socket holds already, without waiting."""
        while self._fd >= 0:
            try:
                data = os.read(self._fd, _READ)
            except BlockingIOError:
                return
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._parser.feed(data)
            self._ready.extend(self._parser.replies())
            if len(data) < _READ:
                return

    async def call(self, *args: Arg) -> Reply:
        return (await self.pipeline([args]))[0]

    async def aclose(self) -> None:
        await self._stream.aclose()


async def open_connection(url: str) -> Connection:
    address = parse_url(url)
    stream: trio.abc.Stream
    if address.path:
        stream = await trio.open_unix_socket(address.path)
    else:
        stream = await trio.open_tcp_stream(address.host, address.port)
    connection = Connection(stream)
    try:
        if address.password:
            auth = (address.user, address.password) if address.user else (address.password,)
            await connection.call("AUTH", *auth)
        if address.db:
            await connection.call("SELECT", address.db)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return connection
