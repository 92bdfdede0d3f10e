"""A blocking wrapper of ``Client`` for scripts and REPLs that do not use Trio.

The async client runs in a background thread with its own ``trio.run``; each method
hands one call to it and waits for the result::

    from chatroom.client import SyncClient

    with SyncClient("ws://127.0.0.1:8080", "Tom") as tom:
        room = tom.open_chatroom("lobby")
        tom.send(room, "hello")
        print(tom.next_event(timeout=5))
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TypeVar

import trio

from chatroom.client.events import Event, Message
from chatroom.client.trio_client import Client, ConnectionLost, Options, Sent, connect

T = TypeVar("T")


class SyncClient:
    """A logged-in client whose methods block. Close it (or use ``with``) to log out."""

    def __init__(self, url: str, peer_id: str, options: Options | None = None):
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._client: Client | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._done: trio.Event | None = None
        self._thread = threading.Thread(
            target=self._main, args=(url, peer_id, options), name=f"chatroom-{peer_id}"
        )
        self._thread.daemon = True  # a forgotten close() must not keep the process alive
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def _main(self, url: str, peer_id: str, options: Options) -> None:
        try:
            trio.run(self._serve, url, peer_id, options)
        except Exception as exc:  # handed to the caller's thread
            self._failure = exc
        finally:
            self._ready.set()

    async def _serve(self, url: str, peer_id: str, options: Options) -> None:
        async with connect(url, peer_id, options) as client:
            self._client = client
            self._token = trio.lowlevel.current_trio_token()
            self._done = trio.Event()
            self._ready.set()
            await self._done.wait()

    def _call(self, fn: Callable[[Client], Awaitable[T]]) -> T:
        client, token = self._client, self._token
        if client is None or token is None or not self._thread.is_alive():
            raise ConnectionLost("client is closed")

        async def call() -> T:
            return await fn(client)

        return trio.from_thread.run(call, trio_token=token)

    @property
    def client(self) -> Client:
        """The async client underneath (its attributes are safe to read)."""
        if self._client is None:
            raise ConnectionLost("client is closed")
        return self._client

    def send(self, cid: str, text: str, **options: object) -> Sent:
        """``Client.send``: same keyword options."""
        return self._call(lambda c: c.send(cid, text, **options))  # type: ignore[arg-type]

    def create_conversation(self, members: Iterable[str], name: str | None = None) -> str:
        return self._call(lambda c: c.create_conversation(list(members), name))

    def open_chatroom(self, name: str) -> str:
        return self._call(lambda c: c.open_chatroom(name))

    def join(self, cid: str) -> None:
        self._call(lambda c: c.join(cid))

    def leave(self, cid: str) -> None:
        self._call(lambda c: c.leave(cid))

    def count(self, cid: str) -> int:
        return self._call(lambda c: c.count(cid))

    def history(self, cid: str, limit: int = 20) -> list[Message]:
        return self._call(lambda c: c.history(cid, limit))

    def mark_read(self, cid: str) -> None:
        self._call(lambda c: c.mark_read(cid))

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds (None: wait forever)."""

        async def wait(client: Client) -> Event | None:
            with trio.move_on_after(float("inf") if timeout is None else timeout):
                return await client.next_event()
            return None

        return self._call(wait)

    def close(self) -> None:
        """Log out and stop the background thread (idempotent)."""
        if self._token is not None and self._done is not None and self._thread.is_alive():
            done = self._done
            trio.from_thread.run_sync(done.set, trio_token=self._token)
        self._thread.join(timeout=10)

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


__all__ = ["SyncClient"]
