"""``chatroom chat``: chat from a terminal, on ``chatroom.client``.

A line typed is sent to the current room; lines starting with ``/`` are commands
(``/help`` lists them). Messages and events are printed as they arrive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import TextIO

import trio

from chatroom.client.events import ConvEvent, Event, Message, Shed, StateChange
from chatroom.client.trio_client import Client, ConnectionLost, Options, RequestError, connect

HELP = """\
commands:
  TEXT                send TEXT to the current room
  /high TEXT          send with HIGH priority (/low TEXT: LOW; never dropped / dropped first)
  /join NAME          watch the chatroom NAME (made if there is none)
  /count              how many are watching the current room
  /history [N]        the last N messages (default 10)
  /quit               leave"""


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


def describe(event: Event) -> str | None:
    """The line printed for an event (None: nothing worth a line)."""
    if isinstance(event, Message):
        mark = " [HIGH]" if event.priority == "high" else ""
        if event.transient:
            return None if event.text == "typing" else f"~ {event.sender}: {event.text}"
        return f"[{_clock(event.timestamp)}] {event.sender}{mark}: {event.text}"
    if isinstance(event, ConvEvent):
        who = ", ".join(event.members) or event.by
        return f"* {event.kind}: {who}"
    if isinstance(event, StateChange):
        if event.state == "reconnecting":
            why = f" (closed {event.code} {event.reason})" if event.code else ""
            return f"* connection lost{why}; reconnecting in {event.delay:.1f} s"
        if event.state == "closed":
            return f"* closed {event.code or ''} {event.reason}".rstrip()
        return f"* {event.state}"
    if isinstance(event, Shed):
        return f"* {event.count} messages missed on this connection (this terminal fell behind)"
    return None


class Chat:
    """The state of one terminal session: the client (whose ``room`` is the one typed
    into) and that room's name."""

    def __init__(self, client: Client, out: TextIO):
        self.client = client
        self.out = out
        self.room_name = ""
        self.commands: dict[str, Callable[[str], Awaitable[None]]] = {
            "/join": self.join,
            "/count": self.count,
            "/history": self.history,
            "/high": lambda text: self.say(text, "high"),
            "/low": lambda text: self.say(text, "low"),
            "/help": self.help,
        }

    def say_line(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    async def join(self, name: str) -> None:
        await trio.lowlevel.checkpoint()  # whichever way it goes
        if not name:
            self.say_line("usage: /join NAME")
            return
        room = await self.client.open_chatroom(name)
        self.room_name = name
        viewers = await self.client.count(room)
        self.say_line(f"* joined {name} ({viewers} online)")

    async def count(self, _: str) -> None:
        await trio.lowlevel.checkpoint()  # whichever way it goes
        if (room := self.client.room) is not None:
            self.say_line(f"* {await self.client.count(room)} online in {self.room_name}")

    async def history(self, arg: str) -> None:
        await trio.lowlevel.checkpoint()  # whichever way it goes
        if (room := self.client.room) is not None:
            limit = int(arg) if arg.isdigit() else 10
            for message in await self.client.history(room, limit):
                self.say_line(describe(message) or "")

    async def help(self, _: str) -> None:
        await trio.lowlevel.checkpoint()
        self.say_line(HELP)

    async def say(self, text: str, priority: str | None = None) -> None:
        await trio.lowlevel.checkpoint()  # whichever way it goes
        if (room := self.client.room) is None:
            self.say_line("* join a room first: /join NAME")
        elif text:
            await self.client.send(room, text, priority=priority)

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False once the user wants to leave."""
        await trio.lowlevel.checkpoint()
        line = line.strip()
        word, _, rest = line.partition(" ")
        if word == "/quit":
            return False
        try:
            if word in self.commands:
                await self.commands[word](rest.strip())
            elif line.startswith("/"):
                self.say_line(f"* unknown command {word}; /help lists them")
            else:
                await self.say(line)
        except RequestError as exc:
            self.say_line(f"* refused: {exc.code} {exc.reason}")
        except (ConnectionLost, trio.TooSlowError) as exc:
            self.say_line(f"* not sent: {exc or 'no reply'}")
        return True

    async def show_events(self) -> None:
        async for event in self.client.events():
            if isinstance(event, Message) and event.sender == self.client.peer_id:
                if not event.transient:
                    self.say_line(describe(event) or "")
                continue
            line = describe(event)
            if line is not None:
                self.say_line(line)


async def _lines(stdin: TextIO) -> str:
    # A thread per line: portable (a pty, a pipe, a file), and abandoned on cancel.
    return await trio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)


async def chat(url: str, name: str, room: str | None, stdin: TextIO, out: TextIO) -> int:
    """Run the terminal chat until ``/quit`` or end of input; the exit status."""
    try:
        async with connect(url, name, Options(app_id="chatroom")) as client:
            session = Chat(client, out)
            session.say_line(f"* connected to {url} as {name}; /help lists the commands")
            if room:
                await session.join(room)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.show_events)
                while (line := await _lines(stdin)) and await session.handle(line):
                    pass
                nursery.cancel_scope.cancel()
    except (ConnectionLost, RequestError) as exc:
        print(f"chatroom chat: {exc}", file=sys.stderr)
        status = 1
    else:
        status = 0
    await trio.lowlevel.checkpoint()
    return status
