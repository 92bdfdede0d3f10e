"""An async chat client on Trio for the flat JSON protocol (``lc.json.3``).

It logs in, keeps the connection alive (``echo`` every ``keepalive`` seconds), matches
replies to requests by ``i``, hands every push to ``events()`` as a typed event, and
reconnects by itself with exponential back-off when the connection drops: it resumes
the session with its token (the server puts a viewer back into its chatroom) and, when
the server no longer knows the token (it restarted), logs in again and re-joins the
chatroom itself. Close codes 4100, 4103 and 4110, and being replaced by another device
(4111), end it for good, as they end the official SDK.

Example::

    import trio
    from chatroom.client import Message, connect

    async def main() -> None:
        async with connect("ws://127.0.0.1:8080", "Tom") as tom:
            room = await tom.open_chatroom("lobby")
            await tom.send(room, "hello", priority="high")
            async for event in tom.events():
                if isinstance(event, Message):
                    print(event.sender, event.text)

    trio.run(main)
"""

from __future__ import annotations

import contextlib
import itertools
import random
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import orjson
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from chatroom.client.events import (
    PRIORITY_VALUES,
    Event,
    Json,
    Message,
    Shed,
    StateChange,
    message_from,
    parse_pushes,
)
from chatroom.protocol.errors import ErrorCode

SUBPROTOCOL = "lc.json.3"
TERMINAL_CLOSE_CODES = frozenset({4100, 4103, 4110, 4111})


class RequestError(Exception):
    """The server refused a request: LeanCloud's ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str):
        self.code = code
        self.reason = reason
        super().__init__(f"{code} {reason}")


class ConnectionLost(Exception):
    """The connection dropped before the reply came (the request may have been
    handled); or the client is closed for good."""


@dataclass(frozen=True)
class Sent:
    """The server's acknowledgement of a message: its id and timestamp."""

    mid: str
    timestamp: int


@dataclass(frozen=True)
class Options:
    """How a ``Client`` connects. Every wait is bounded."""

    app_id: str = "chatroom"
    reconnect: bool = True
    connect_timeout: float = 10.0
    request_timeout: float = 10.0
    keepalive: float = 180.0  # the server closes an idle connection after 400 s
    first_backoff: float = 0.5
    max_backoff: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    """For ``wss://`` URLs: the context that verifies the server (default: the
    system's trusted certificates)."""
    max_events: int = 1000
    """Events kept for a consumer that does not read; past it the oldest are dropped
    (and counted in ``Client.dropped_events``) so that replies still flow."""


class _Events:
    """A bounded queue of events; each event put wakes one of the waiting readers."""

    def __init__(self, size: int):
        self.items: deque[Event] = deque()
        self.size = size
        self.dropped = 0
        self._readers = trio.lowlevel.ParkingLot()

    def put(self, event: Event) -> None:
        if len(self.items) >= self.size:
            self.items.popleft()
            self.dropped += 1
        self.items.append(event)
        self._readers.unpark()

    async def get(self) -> Event:
        await trio.lowlevel.checkpoint()  # a checkpoint even when one is waiting
        while not self.items:
            await self._readers.park()
        return self.items.popleft()


class Client:
    """One logged-in client. Make it with ``connect``; its methods are safe to call
    from several tasks at once."""

    def __init__(self, url: str, peer_id: str, options: Options | None = None):
        self.url = url
        self.peer_id = peer_id
        self.options = options or Options()
        self.state = "connecting"
        self.room: str | None = None
        self.session_token: str | None = None
        self._events = _Events(self.options.max_events)
        self._ws: WebSocketConnection | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, trio.MemorySendChannel[Json]] = {}
        self._stopped = False
        self._missed_before = 0  # shed for this client on its earlier connections
        self._missed_now = 0  # ... and on this one

    @property
    def missed(self) -> int:
        """Messages the server dropped for this client because it fell behind (its
        ``Shed`` notices, over every connection)."""
        return self._missed_before + self._missed_now

    @property
    def dropped_events(self) -> int:
        """Events dropped because ``events()`` was not read fast enough."""
        return self._events.dropped

    # -- events ---------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The next event, waiting for one."""
        return await self._events.get()

    def pending(self) -> list[Event]:
        """Every event received and not yet read, without waiting (they are read now).
        After ``echo()`` that includes every push the server sent before the echo."""
        items = list(self._events.items)
        self._events.items.clear()
        return items

    async def events(self) -> AsyncIterator[Event]:
        """Every event in arrival order, forever (stop iterating to leave)."""
        while True:
            yield await self._events.get()

    # -- requests -------------------------------------------------------------------

    async def request(self, cmd: Json) -> Json:
        """Send ``cmd`` with a fresh ``i`` and return its reply. Raises
        ``RequestError`` for an error reply, ``ConnectionLost`` if the connection
        drops first, ``trio.TooSlowError`` after ``request_timeout``."""
        return await self._exchange(self._live(), cmd)

    def _live(self) -> WebSocketConnection:
        ws = self._ws
        if ws is None or self.state != "live":
            raise ConnectionLost(f"not connected ({self.state})")
        return ws

    async def _exchange(self, ws: WebSocketConnection, cmd: Json) -> Json:
        with self._expect() as (i, receive), trio.fail_after(self.options.request_timeout):
            await self._send(ws, {**cmd, "i": i})
            try:
                reply = await receive.receive()
            except trio.EndOfChannel as exc:
                raise ConnectionLost("connection closed before the reply") from exc
        return _checked(reply)

    @contextlib.contextmanager
    def _expect(self) -> Iterator[tuple[int, trio.MemoryReceiveChannel[Json]]]:
        """A fresh ``i`` and the channel its reply will come through."""
        i = next(self._ids) % 2**31 or next(self._ids)
        send, receive = trio.open_memory_channel[Json](1)
        self._waiting[i] = send
        try:
            yield i, receive
        finally:
            del self._waiting[i]

    async def _send(self, ws: WebSocketConnection, cmd: Json) -> None:
        try:
            await ws.send_message(orjson.dumps(cmd).decode())
        except ConnectionClosed as exc:
            raise ConnectionLost("connection closed") from exc

    async def send(
        self,
        cid: str,
        text: str,
        *,
        priority: str | None = None,
        transient: bool = False,
        mentions: Iterable[str] = (),
        mention_all: bool = False,
        receipt: bool = False,
    ) -> Sent:
        """Send a text message (a typed message ``{"_lctype": -1, "_lctext": ...}``,
        as the SDK's ``TextMessage``). ``priority`` is ``high``, ``normal`` or ``low``
        (chatrooms: the server sheds LOW first, HIGH never). JSON viewers of a
        chatroom are told it by the push; it also goes into the message's
        ``_lcattrs`` for history and protobuf receivers. ``transient``: not
        stored, delivered to who is online only."""
        content: Json = {"_lctype": -1, "_lctext": text}
        cmd: Json = {"cmd": "direct", "cid": cid}
        if priority is not None:
            cmd["priority"] = PRIORITY_VALUES[priority]
            content["_lcattrs"] = {"priority": priority}
        cmd["msg"] = orjson.dumps(content).decode()
        if transient:
            cmd["transient"] = True
        if mentions := list(mentions):
            cmd["mentionPids"] = mentions
        if mention_all:
            cmd["mentionAll"] = True
        if receipt:
            cmd["r"] = True
        ack = await self.request(cmd)
        return Sent(str(ack.get("uid", "")), int(ack.get("t", 0)))

    async def create_conversation(
        self, members: Iterable[str], name: str | None = None, *, unique: bool = False
    ) -> str:
        """A normal conversation of this client and ``members``; returns its id."""
        cmd: Json = {"cmd": "conv", "op": "start", "m": list(members)}
        if name is not None:
            cmd["attr"] = {"name": name}
        if unique:
            cmd["unique"] = True
        return str((await self.request(cmd))["cid"])

    async def create_chatroom(self, name: str) -> str:
        """A new chatroom (no member list); this client watches it at once."""
        cmd = {"cmd": "conv", "op": "start", "transient": True, "attr": {"name": name}}
        cid = str((await self.request(cmd))["cid"])
        self.room = cid
        return cid

    async def find_chatroom(self, name: str) -> str | None:
        """The oldest chatroom called ``name``, if there is one."""
        where = {"name": name, "tr": True}
        cmd = {"cmd": "conv", "op": "query", "where": where, "sort": "createdAt", "limit": 1}
        results = (await self.request(cmd)).get("results") or []
        return str(results[0]["objectId"]) if results else None

    async def open_chatroom(self, name: str) -> str:
        """Join the chatroom called ``name``, creating it if there is none."""
        cid = await self.find_chatroom(name)
        if cid is None:
            return await self.create_chatroom(name)
        # Found by a query for chatrooms: join() would only ask again what it is.
        await self.request({"cmd": "conv", "op": "add", "cid": cid, "m": [self.peer_id]})
        self.room = cid
        return cid

    async def join(self, cid: str) -> None:
        """Join a conversation, or watch a chatroom (leaving the one watched before)."""
        await self.request({"cmd": "conv", "op": "add", "cid": cid, "m": [self.peer_id]})
        if await self._is_chatroom(cid):
            self.room = cid

    async def _is_chatroom(self, cid: str) -> bool:
        cmd = {"cmd": "conv", "op": "query", "where": {"objectId": cid}, "limit": 1}
        results = (await self.request(cmd)).get("results") or []
        return bool(results and results[0].get("tr"))

    async def leave(self, cid: str) -> None:
        """Leave a conversation, or stop watching a chatroom."""
        await self.request({"cmd": "conv", "op": "remove", "cid": cid, "m": [self.peer_id]})
        if self.room == cid:
            self.room = None

    async def count(self, cid: str) -> int:
        """Members of a conversation; distinct clients watching a chatroom."""
        reply = await self.request({"cmd": "conv", "op": "count", "cid": cid})
        return int(reply.get("count", 0))

    async def history(
        self, cid: str, limit: int = 20, *, before: Message | None = None
    ) -> list[Message]:
        """Up to ``limit`` messages, oldest first; ``before`` pages backwards."""
        cmd: Json = {"cmd": "logs", "cid": cid, "l": limit}
        if before is not None:
            cmd.update(t=before.timestamp, mid=before.mid)
        logs = cast(list[Json], (await self.request(cmd)).get("logs") or [])
        return [message_from(item, cid) for item in logs]

    async def mark_read(self, cid: str) -> None:
        """Everything in ``cid`` is read: unread count 0, read receipts to senders."""
        # ``read`` has no reply when it succeeds: an echo behind it tells when the
        # server is done with it, and an error for it would have come first.
        ws = self._live()
        with self._expect() as (i, receive):
            await self._send(ws, {"cmd": "read", "cid": cid, "i": i})
            await self._exchange(ws, {"cmd": "echo"})
            with contextlib.suppress(trio.WouldBlock):
                _checked(receive.receive_nowait())

    async def acknowledge(self, message: Message) -> None:
        """Tell the server ``message`` arrived (delivery receipt for its sender).
        The server needs no reply, so none is awaited."""
        ack = {"cmd": "ack", "cid": message.cid, "mid": message.mid, "t": message.timestamp}
        await self._send(self._live(), ack)

    async def echo(self) -> None:
        """A round trip: every push queued before it has been received after it."""
        await self.request({"cmd": "echo"})

    # -- the connection -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then keep connected until ``stop`` or a terminal close. The first
        connection's failure is raised (bad URL, refused login); later ones are
        retried with back-off."""
        failures, first = 0, True

        def live() -> None:
            if first:
                task_status.started()

        while True:
            outcome = await self._connection(live)
            if first and not outcome.was_live:
                raise outcome.fatal_first or ConnectionLost(f"{self.url}: {outcome.reason}")
            first = False
            code, reason = outcome.code, outcome.reason
            if isinstance(outcome.fatal_first, RequestError):  # login refused: stay out
                code, reason = outcome.fatal_first.code, outcome.fatal_first.reason
            if (
                self._stopped
                or not self.options.reconnect
                or code in TERMINAL_CLOSE_CODES
                or isinstance(outcome.fatal_first, RequestError)
            ):
                self._set_state(StateChange("closed", code, reason))
                return
            failures = 0 if outcome.was_live else failures + 1
            delay = min(self.options.max_backoff, self.options.first_backoff * 2**failures)
            delay *= random.uniform(0.5, 1.0)  # viewers of a restarted server spread out
            self._set_state(StateChange("reconnecting", code, reason, delay))
            await trio.sleep(delay)

    async def _connection(self, live: Callable[[], None]) -> _Outcome:
        """One connection, from connecting to its end; ``live`` is called after login."""
        outcome = _Outcome()
        try:
            async with open_websocket_url(
                self.url,
                subprotocols=[SUBPROTOCOL],
                connect_timeout=self.options.connect_timeout,
                disconnect_timeout=2,
                max_message_size=16 * 2**20,
                ssl_context=self.options.ssl_context,
            ) as ws:
                try:
                    await self._serve(ws, outcome, live)
                finally:
                    self._ws = None
        except (OSError, HandshakeError) as exc:
            outcome.fatal_first = outcome.fatal_first or ConnectionLost(
                f"cannot connect to {self.url}: {exc}"
            )
            outcome.reason = outcome.reason or str(exc)
            await trio.lowlevel.checkpoint()
        return outcome

    async def _serve(
        self, ws: WebSocketConnection, outcome: _Outcome, live: Callable[[], None]
    ) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, ws, outcome, nursery.cancel_scope)
            try:
                await self._login(ws)
            except (RequestError, ConnectionLost, trio.TooSlowError) as exc:
                outcome.fatal_first = exc
                nursery.cancel_scope.cancel()
            else:
                outcome.was_live = True
                self._set_state(StateChange("live"))
                live()
                nursery.start_soon(self._keepalive, ws)

    async def _login(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._missed_before, self._missed_now = self.missed, 0  # counted per connection
        opened: Json = {"cmd": "session", "op": "open", "appId": self.options.app_id}
        opened["peerId"] = self.peer_id
        resumed = self.session_token is not None
        if resumed:
            opened.update(r=True, st=self.session_token)
        try:
            reply = await self._exchange(ws, opened)
        except RequestError as exc:
            if exc.code != ErrorCode.SESSION_TOKEN_EXPIRED:
                raise
            # The server forgot the session (it restarted): a fresh login, then the
            # chatroom again, since the server could not put us back into it.
            del opened["st"]
            reply = await self._exchange(ws, opened)
            resumed = False
        self.session_token = cast("str | None", reply.get("st"))
        if self.room is not None and not resumed:
            await self._exchange(
                ws, {"cmd": "conv", "op": "add", "cid": self.room, "m": [self.peer_id]}
            )
        await trio.lowlevel.checkpoint()

    async def _read(
        self, ws: WebSocketConnection, outcome: _Outcome, scope: trio.CancelScope
    ) -> None:
        await trio.lowlevel.checkpoint()
        try:
            while True:
                self._dispatch(orjson.loads(await ws.get_message()), outcome)
        except ConnectionClosed as exc:
            if exc.reason is not None:
                outcome.code = outcome.code or exc.reason.code
                outcome.reason = outcome.reason or (exc.reason.reason or "")
        except orjson.JSONDecodeError:
            outcome.code, outcome.reason = 1002, "the server sent something that is not JSON"
        finally:
            for waiter in self._waiting.values():
                waiter.close()
            scope.cancel()

    def _dispatch(self, raw: Any, outcome: _Outcome) -> None:
        if not isinstance(raw, dict):
            return
        if "i" in raw:
            # A reply; one whose request gave up waiting has nobody to go to.
            waiter = self._waiting.get(raw["i"])
            if waiter is not None:
                with contextlib.suppress(trio.WouldBlock):
                    waiter.send_nowait(raw)
            return
        if raw.get("cmd") == "session" and raw.get("op") == "closed":
            # Replaced by another device (4111) or logged out elsewhere: stay out.
            outcome.code = int(raw.get("code", 4111))
            outcome.reason = str(raw.get("reason", "session closed by the server"))
            self._stopped = True
        for event in parse_pushes(raw):
            if isinstance(event, Shed):
                self._missed_now = event.count
            self._events.put(event)

    async def _keepalive(self, ws: WebSocketConnection) -> None:
        while True:
            await trio.sleep(self.options.keepalive)
            try:
                await self._exchange(ws, {"cmd": "echo"})
            except (ConnectionLost, trio.TooSlowError):
                await ws.aclose()
                return

    def _set_state(self, change: StateChange) -> None:
        self.state = change.state
        self._events.put(change)

    async def stop(self) -> None:
        """Log out and close; ``run`` returns."""
        self._stopped = True
        ws = self._ws
        await trio.lowlevel.checkpoint()
        if ws is not None:
            with trio.move_on_after(2):
                with contextlib.suppress(RequestError, ConnectionLost):
                    await self._exchange(ws, {"cmd": "session", "op": "close"})
                await ws.aclose()


def _checked(reply: Json) -> Json:
    code = reply.get("code")
    if reply.get("cmd") == "error" or (reply.get("cmd") == "ack" and code is not None):
        raise RequestError(int(code or 0), str(reply.get("reason", "")))
    return reply


@dataclass
class _Outcome:
    """How one connection ended."""

    code: int | None = None
    reason: str = ""
    was_live: bool = False
    fatal_first: BaseException | None = None


@asynccontextmanager
async def connect(url: str, peer_id: str, options: Options | None = None) -> AsyncIterator[Client]:
    """A logged-in ``Client`` for the block; logs out at its end. Raises
    ``ConnectionLost`` or ``RequestError`` if the first connection or login fails."""
    client = Client(url, peer_id, options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            try:
                yield client
            finally:
                with trio.move_on_after(3) as cleanup:
                    cleanup.shield = True  # log out even when the block was cancelled
                    await client.stop()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The nursery is ours, not the caller's: a single error (the caller's own, or a
        # refused login) comes out as itself.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None  # noqa: ASYNC123 (its traceback is kept)
        raise
