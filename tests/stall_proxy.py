"""A TCP proxy in front of the server whose server-to-client direction can be stopped
and resumed: a client behind it falls behind for real (the server's writes to it
block, its outbox fills and sheds) without the client itself having to stop reading,
which a browser page or ``chatroom.client`` never does."""

from __future__ import annotations

import socket
from collections.abc import Callable
from functools import partial

import trio

_UPSTREAM_RCVBUF = 16 * 1024  # small: the server's writes block soon after a stall


class StallProxy:
    """Forwards 127.0.0.1:``port`` to the server's ``target`` port. ``stall()`` stops
    reading what the server sends (to every client behind it), ``resume()`` reads on."""

    def __init__(self, target: int):
        self.target = target
        self.port = 0
        self._flowing = trio.Event()
        self._flowing.set()

    def stall(self) -> None:
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def resume(self) -> None:
        self._flowing.set()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        sock = trio.socket.socket()
        # Set before connecting, so that the window the server sees is small too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UPSTREAM_RCVBUF)
        await sock.connect(("127.0.0.1", self.target))
        upstream = trio.SocketStream(sock)
        async with client, upstream, trio.open_nursery() as nursery:
            done = nursery.cancel_scope.cancel
            nursery.start_soon(partial(self._pump, client, upstream, done, stalls=False))
            nursery.start_soon(partial(self._pump, upstream, client, done, stalls=True))

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        done: Callable[[], None],
        *,
        stalls: bool,
    ) -> None:
        try:
            while True:
                if stalls:
                    await self._flowing.wait()
                data = await source.receive_some(65536)
                if not data:
                    break
                await sink.send_all(data)
        except trio.BrokenResourceError:
            pass
        done()  # one side ended: close both
