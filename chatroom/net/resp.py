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
(at the next ``post`` or ``pipeline``), ``post_nowait`` too, from synchronous code, when
nothing is owed; ``send`` and ``read`` are for a subscriber. A reply
``-ERR ...`` raises ``RespError``; the end of the stream raises ``ConnectionError``.
Deadlines are the caller's (``trio.fail_after``).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable
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
    return encode_all((args,))


def encode_all(commands: Iterable[tuple[Arg, ...]]) -> bytes:
    """``commands`` as RESP arrays of bulk strings, in one string: each argument copied
    once (into the result)."""
    parts: list[bytes] = []
    for args in commands:
        parts.append(b"*%d\r\n" % len(args))
        for arg in args:
            raw = arg if isinstance(arg, bytes) else str(arg).encode()
            parts += (b"$%d\r\n" % len(raw), raw, b"\r\n")
    return b"".join(parts)


class Push(list["Reply"]):
    """What Redis sends a RESP3 connection unasked (``>``): a subscription's message or
    confirmation. Never a command's reply."""

    __slots__ = ()


class Parser:
    """Replies (and pushes) out of the bytes fed in, as they complete. Pure. RESP2 and
    RESP3 (what HELLO 3 makes Redis send): a push comes out as ``Push``, in the order
    Redis wrote it, also when Redis wrote it inside a reply (Redis 7.0 writes a
    message a transaction publishes to this connection inside EXEC's reply): before
    that reply.

    The bytes are kept as they came (``bytes``, joined only when a reply is cut
    between two reads), and each bulk string is one slice of them: one copy."""

    def __init__(self) -> None:
        self._buf = b""
        self._nested: list[Reply | RespError] = []  # pushes met inside the reply parsed

    def feed(self, data: bytes | bytearray) -> None:
        self._buf = self._buf + data if self._buf else bytes(data)

    def replies(self) -> list[Reply | RespError]:
        out: list[Reply | RespError] = []
        buf = self._buf
        nested = self._nested
        done = 0  # where the first reply not complete yet starts
        while done < len(buf):
            try:
                reply, done_now = self._parse(buf, done)
            except _Incomplete:
                nested.clear()
                break
            done = done_now
            if nested:
                out += nested
                nested.clear()
            out.append(reply)
        self._buf = buf[done:] if done else buf
        return out

    def _parse(self, buf: bytes, at: int) -> tuple[Reply | RespError, int]:
        end = buf.find(b"\r\n", at)
        if end < 0:
            raise _Incomplete
        kind = buf[at]
        if kind == 36 or kind == 61 or kind == 33:  # $, = (verbatim), ! (an error)
            size = int(buf[at + 1 : end])
            if size < 0:
                return None, end + 2
            stop = end + 2 + size
            if len(buf) < stop + 2:
                raise _Incomplete
            if kind == 36:
                return buf[end + 2 : stop], stop + 2
            if kind == 61:  # "txt:" and the text
                return buf[end + 6 : stop], stop + 2
            return RespError(buf[end + 2 : stop].decode(errors="replace")), stop + 2
        if kind == 42 or kind == 62 or kind == 126 or kind == 37:  # * > ~ (a set) % (a map)
            count = int(buf[at + 1 : end])
            at = end + 2
            if count < 0:
                return None, at
            if kind == 37:  # a map: its keys and values, in turn
                count *= 2
            items: list[Reply] = Push() if kind == 62 else []
            size_of = len(buf)
            while len(items) < count:
                if at >= size_of:
                    raise _Incomplete
                if buf[at] == 36:  # a bulk string (a message's parts): parsed here
                    end = buf.find(b"\r\n", at)
                    if end < 0:
                        raise _Incomplete
                    size = int(buf[at + 1 : end])
                    if size < 0:
                        items.append(None)
                        at = end + 2
                        continue
                    stop = end + 2 + size
                    if size_of < stop + 2:
                        raise _Incomplete
                    items.append(buf[end + 2 : stop])
                    at = stop + 2
                    continue
                item, at = self._parse(buf, at)
                if type(item) is Push:  # written inside this reply, came before it
                    self._nested.append(item)
                    continue
                if isinstance(item, RespError):
                    raise item
                items.append(item)
            return items, at
        if kind == 58 or kind == 40:  # : and ( (a big number)
            return int(buf[at + 1 : end]), end + 2
        if kind == 43:  # +
            return buf[at + 1 : end], end + 2
        if kind == 45:  # -
            return RespError(buf[at + 1 : end].decode(errors="replace")), end + 2
        if kind == 95:  # _ (null)
            return None, end + 2
        if kind == 35:  # # (a boolean)
            return int(buf[at + 1 : end] == b"t"), end + 2
        if kind == 44:  # , (a double), as written
            return buf[at + 1 : end], end + 2
        if kind == 124:  # | (attributes): skipped, the reply follows
            attributes = int(buf[at + 1 : end])
            at = end + 2
            for _ in range(2 * attributes):
                _, at = self._parse(buf, at)
            return self._parse(buf, at)
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


def first_error(replies: Iterable[Reply | RespError]) -> RespError | None:
    """The first error reply among ``replies``, if any."""
    return next((reply for reply in replies if isinstance(reply, RespError)), None)


Then = Callable[[list[Reply | RespError] | None], None]


class _Batch:
    """Commands written at once whose replies are not all in yet."""

    __slots__ = ("at_once", "owed", "replies", "then")

    def __init__(self, owed: int, then: Then | None, at_once: bool = False) -> None:
        self.owed = owed
        self.at_once = at_once  # written by ``post_nowait``
        self.then = then  # called with the replies once all are in, or None if lost
        self.replies: list[Reply | RespError] = []


class Connection(trio.abc.AsyncResource):
    """Over a socket (``trio.SocketStream``) it writes and reads the socket's file
    descriptor itself: a command that fits in the socket's buffer (they all do but
    the largest) is written at once, without a pass through the scheduler, and a read
    waits for the socket to be readable and reads it (no failed read first). Over any
    other stream it goes through the stream's methods.

    Each reply goes to the batch of commands it answers (``post``, ``pipeline``), in
    the order they were sent; what no command is owed (pushes on RESP3, every message
    of a RESP2 subscriber) to ``read_all``. After ``read_by_task`` one task reads the
    connection (``read_all``, in a loop) and hands every batch its replies as they
    come; until then ``post`` and ``pipeline`` read them themselves."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._parser = Parser()
        self._batches: deque[_Batch] = deque()  # oldest first
        self._heard: list[Reply | RespError] = []  # what no command is owed, for read_all
        self._by_task = False
        self._idle: trio.Event | None = None  # set once no batch is owed (someone waits)
        # What ``post_nowait`` could not write at once: written first by the next write.
        self._unsent = b""
        # When the oldest reply owed was asked for, or the last reply came since (inf
        # when none is owed): its caller checks it now and then (cheaper than a cancel
        # scope's deadline moved at every command and reply).
        self.owed_since = math.inf

    @property
    def owed(self) -> int:
        """Replies to commands sent, not in yet."""
        return sum(batch.owed for batch in self._batches)

    @property
    def idle(self) -> bool:
        """No reply owed and nothing left to write, over a socket: ``post_nowait``
        writes now."""
        return not self._batches and not self._unsent and self._fd >= 0

    @property
    def unsent(self) -> bool:
        """Part of a ``post_nowait`` is not written yet (``flush`` writes it)."""
        return bool(self._unsent)

    def read_by_task(self) -> None:
        """From now on a task reads this connection (``read_all``, in a loop): ``post``
        and ``pipeline`` wait for it to hand them their replies."""
        self._by_task = True

    async def send(self, *commands: tuple[Arg, ...]) -> None:
        """Send commands answered by pushes only (SUBSCRIBE, UNSUBSCRIBE on RESP3), or
        whose replies ``read_all`` takes (a RESP2 subscriber's)."""
        await self._put(commands)
        await trio.lowlevel.checkpoint()

    async def post(self, commands: list[tuple[Arg, ...]], then: Then | None = None) -> None:
        """Send ``commands`` without waiting for their replies: an error among them
        raises in whoever reads them (the reading task, or the next ``post`` or
        ``pipeline``); ``then`` is called with them once all are in (None: the
        connection was lost first). One batch at most is in flight: the replies to the
        previous ones are awaited first (mostly there already by the next batch), but
        for a lone ``post_nowait`` batch (what the caller queued after it in the same
        tick follows it at once, as one drain would have carried both)."""
        batches = self._batches
        if batches and (len(batches) > 1 or not batches[0].at_once):
            if self._unsent:  # the replies owed come once it is all written
                await self._put(())
            await self._caught_up()
        self._expect(len(commands), then)
        await self._put(commands)
        # No checkpoint when the socket took it all: the caller's loop waits for more.
        return  # noqa: ASYNC910

    def post_nowait(self, commands: list[tuple[Arg, ...]], then: Then | None = None) -> bool:
        """``post`` from synchronous code, when the connection is ``idle`` (else False,
        and nothing is done): one write without waiting, as far as the socket takes
        it. What it did not take (``unsent``) goes first in the next write: the
        caller has someone ``flush`` it. A broken socket is not raised here: the next
        write raises it."""
        if not self.idle:
            return False
        data = encode_all(commands)
        self._expect(len(commands), then, at_once=True)
        try:
            sent = os.write(self._fd, data)
        except OSError:  # full (BlockingIOError), or broken: the next write says which
            sent = 0
        if sent < len(data):
            self._unsent = data[sent:]
        return True

    async def flush(self) -> None:
        """Write what ``post_nowait`` left (``unsent``)."""
        await self._put(())
        await trio.lowlevel.checkpoint()

    async def pipeline(self, commands: list[tuple[Arg, ...]]) -> list[Reply]:
        """The replies to ``commands``, sent at once (after the replies still owed to
        ``post``); raises the first error reply (after taking every reply). One
        checkpoint per read from the socket (a transaction's replies mostly come in
        one), not one per reply: a pipeline the socket takes at once is written
        without one."""
        answered: list[list[Reply | RespError] | None] = []
        done = trio.Event() if self._by_task else None

        def then(replies: list[Reply | RespError] | None) -> None:
            answered.append(replies)
            if done is not None:
                done.set()

        self._expect(len(commands), then)
        await self._put(commands)
        if done is not None:
            await done.wait()
        while not answered:
            await self._receive()
        replies = answered[0]
        if replies is None:
            raise ConnectionError("the connection to Redis was lost")
        error = first_error(replies)
        if error is not None:
            raise error
        # (A pipeline's replies come after it is sent: a read or a wait ran, a checkpoint.)
        return replies  # type: ignore[return-value]  # noqa: ASYNC910

    async def call(self, *args: Arg) -> Reply:
        return (await self.pipeline([args]))[0]

    async def read(self) -> Reply:
        """The next reply no command is owed (a subscriber's next message)."""
        await self._hear()
        reply = self._heard.pop(0)
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def read_all(self) -> list[Reply | RespError]:
        """Every reply no command is owed (pushes, a subscriber's messages), waiting
        for one when none is: one checkpoint per read from the socket, not one per
        reply. The replies read meanwhile go to their commands. An error reply comes
        as ``RespError``, not raised."""
        await self._hear()
        heard, self._heard = self._heard, []
        return heard

    async def _hear(self) -> None:
        """Until something no command is owed was read; a checkpoint either way (a
        burst of it never hogs the loop)."""
        if self._heard:
            await trio.lowlevel.checkpoint()
            return
        await self._receive()  # first, so that flake8-async sees a checkpoint on every path
        while not self._heard:
            await self._receive()

    def then_too(self, then: Callable[[], None]) -> bool:
        """``then`` is called once the replies owed now are in (or lost); False, and
        not called, when none is owed."""
        if not self._batches:
            return False
        batch = self._batches[-1]
        first = batch.then

        def both(replies: list[Reply | RespError] | None) -> None:
            then()
            if first is not None:
                first(replies)
            elif replies is not None:
                error = first_error(replies)  # as for a batch no one waits on
                if error is not None:
                    raise error

        batch.then = both
        return True

    def abandon(self) -> None:
        """The connection is done with: every batch still owed is told (``None``)."""
        batches = list(self._batches)
        self._batches.clear()
        for batch in batches:
            if batch.then is not None:
                batch.then(None)
        self._wake_idle()

    async def _caught_up(self) -> None:
        """Until no reply is owed (called when some is: no checkpoint when they are in
        already, as they mostly are)."""
        if self._by_task:
            while self._batches:
                if self._idle is None:
                    self._idle = trio.Event()
                await self._idle.wait()
            return  # noqa: ASYNC910 (see above)
        self._read_now()
        while self._batches:
            await self._receive()
        return  # noqa: ASYNC910 (see above)

    def _expect(self, owed: int, then: Then | None, at_once: bool = False) -> None:
        if not self._batches:
            self.owed_since = trio.current_time()
        self._batches.append(_Batch(owed, then, at_once))

    async def _put(self, commands: Iterable[tuple[Arg, ...]]) -> None:
        """Send ``commands``: written at once when the socket takes them (no checkpoint
        then: the callers wait for a reply next, or checkpoint themselves), the rest
        through the stream."""
        data = encode_all(commands)
        if self._unsent:  # before anything written later
            data, self._unsent = self._unsent + data, b""
        if self._fd >= 0:
            try:
                sent = os.write(self._fd, data)
            except BlockingIOError:
                sent = 0
            data = data[sent:] if sent < len(data) else b""
        if data:
            await self._stream.send_all(data)
        return  # noqa: ASYNC910 (see above)

    async def _receive(self) -> None:
        """One read from the socket (waiting for it), its replies taken."""
        fd = self._fd
        data: bytes | bytearray
        if fd >= 0:
            await trio.lowlevel.wait_readable(fd)
            try:
                data = os.read(fd, _READ)
            except BlockingIOError:
                return
        else:
            data = await self._stream.receive_some(_READ)
        self._took(data)

    def _read_now(self) -> None:
        """Take what the socket holds already, without waiting."""
        while self._fd >= 0:
            try:
                data = os.read(self._fd, _READ)
            except BlockingIOError:
                return
            self._took(data)
            if len(data) < _READ:
                return

    def _took(self, data: bytes | bytearray) -> None:
        """Each reply in ``data`` to the batch it answers, the rest to ``_heard``; an
        error reply to a batch no one waits on raises (after every reply is taken)."""
        if not data:
            raise ConnectionError("Redis closed the connection")
        self._parser.feed(data)
        batches = self._batches
        answered = False
        failed: RespError | None = None
        for item in self._parser.replies():
            if not batches or type(item) is Push:
                self._heard.append(item)
                continue
            batch = batches[0]
            batch.replies.append(item)
            if failed is None and batch.then is None and isinstance(item, RespError):
                failed = item
            batch.owed -= 1
            if not batch.owed:
                batches.popleft()
                answered = True
                if batch.then is not None:
                    batch.then(batch.replies)
        if answered:
            if batches:
                self.owed_since = trio.current_time()
            else:
                self.owed_since = math.inf
                self._wake_idle()
        if failed is not None:
            raise failed

    def _wake_idle(self) -> None:
        if self._idle is not None:
            self._idle.set()
            self._idle = None

    async def aclose(self) -> None:
        await self._stream.aclose()


async def open_connection(url: str, *, resp3: bool = False) -> Connection:
    """A connection to the Redis of ``url``, authenticated, its database selected;
    ``resp3``: speaking RESP3 (``HELLO 3``, Redis 6 or later), on which one connection
    both subscribes and sends commands."""
    address = parse_url(url)
    stream: trio.abc.Stream
    if address.path:
        stream = await trio.open_unix_socket(address.path)
    else:
        stream = await trio.open_tcp_stream(address.host, address.port)
    connection = Connection(stream)
    try:
        if resp3:
            hello: list[Arg] = ["HELLO", 3]
            if address.password:
                hello += ["AUTH", address.user or "default", address.password]
            try:
                await connection.call(*hello)
            except RespError as exc:
                if "HELLO" not in str(exc) and "unknown command" not in str(exc):
                    raise
                raise RespError(f"Redis 6 or later is needed (HELLO 3: {exc})") from None
        elif address.password:
            auth = (address.user, address.password) if address.user else (address.password,)
            await connection.call("AUTH", *auth)
        if address.db:
            await connection.call("SELECT", address.db)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return connection
