"""Listening sockets that several processes share (SO_REUSEPORT), and the accept loop.

``chatroom serve --workers N`` runs N processes on one port: each binds the WebSocket
port and the HTTP port with SO_REUSEPORT, and the kernel spreads new connections over
them. Linux only lets processes of one user share a port this way.
"""

from __future__ import annotations

import collections
import errno
import fcntl
import functools
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import NoReturn

import trio

log = logging.getLogger(__name__)

_BACKLOG = 1024  # connections the kernel may hold for one process before accept


async def shared_listening_socket(host: str, port: int) -> socket.socket:
    """A non-blocking socket bound to ``host:port`` with SO_REUSEPORT, listening."""
    found = await trio.socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = found[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# accept(2) errors that say the process or the system is out of descriptors or
# memory for now (as trio.serve_listeners): logged, and accepting pauses a moment.
_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
_CAPACITY_PAUSE = 0.1  # seconds
_ACCEPT_BATCH = 64  # accepted connections started per reschedule
_LOBBY = 16384  # accepted connections waiting to be started, at most
_ACCEPT_MAX = 1024  # connections taken from the backlog per reschedule
# Serves one accepted connection, given the client's address (host:port), and closes
# it, whatever happens (cancellation too): started as the connection's task itself,
# without a wrapper coroutine that would stay alive, frame and all, as long as the
# connection.
Serve = Callable[["Stream", str], Awaitable[object]]


# What trio.SocketStream sets on every socket it wraps (TCP_NODELAY, and 16 KiB of
# TCP_NOTSENT_LOWAT): set once on the listening socket instead, whose accepted
# sockets inherit them on Linux (tests/net/test_listen.py checks it).
_STREAM_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
if hasattr(socket, "TCP_NOTSENT_LOWAT"):
    _STREAM_OPTIONS.append((socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 2**14))


def _inherited_options(listener: socket.socket) -> bool:
    """Set the stream options on ``listener``: whether its accepted sockets have them
    (else each stream sets them itself, as trio.SocketStream does)."""
    try:
        for level, option, value in _STREAM_OPTIONS:
            listener.setsockopt(level, option, value)
    except OSError:
        return False  # not TCP (a Unix socket), or options this system lacks
    return sys.platform == "linux"


# An accepted socket's file status flags are none (it inherits neither O_NONBLOCK nor
# O_APPEND, O_ASYNC...): set to O_NONBLOCK alone with one F_SETFL, whose integer
# argument costs less to pass than FIONBIO's buffer (~5 k instructions a socket).
_NONBLOCKING = os.O_NONBLOCK


class RawSocketStream(trio.abc.HalfCloseableStream):
    """An accepted socket as a stream, made of its descriptor alone: a
    ``trio.SocketStream`` over it (and the socket objects under that, the standard
    library's, whose making asks the kernel for the socket's address, and trio's) is
    made only if a stream method is called. A WebSocket's never are: its transport
    reads, writes, waits for and closes the descriptor itself (``fileno_of``,
    ``close_now``), as does the handshake when the head is a plain one. A refusal
    uses the methods."""

    __slots__ = ("_fd", "_kind", "_made")

    def __init__(self, fd: int, kind: tuple[int, int, int]) -> None:
        self._fd = fd
        self._kind = kind
        self._made: trio.SocketStream | None = None

    def _stream(self) -> trio.SocketStream:
        if self._made is None:
            if self._fd < 0:
                raise trio.ClosedResourceError("the socket is closed")
            made = socket.socket(*self._kind, fileno=self._fd)
            self._made = trio.SocketStream(trio.socket.from_stdlib_socket(made))
        return self._made

    def fileno(self) -> int:
        """The descriptor (-1 once closed)."""
        return self._fd if self._made is None else self._made.socket.fileno()

    def close(self) -> None:
        """Close the socket now (again: nothing)."""
        if self._made is not None:
            self._made.socket.close()
        elif self._fd >= 0:
            fd, self._fd = self._fd, -1
            trio.lowlevel.notify_closing(fd)
            os.close(fd)

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream().send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream().wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream().send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return await self._stream().receive_some(max_bytes)


# An accepted connection: a RawSocketStream, or a trio.SocketStream where the
# listener's options are not inherited (and behind TLS, the plain side's socket pair).
Stream = trio.SocketStream | RawSocketStream


def fileno_of(stream: Stream) -> int:
    """The socket descriptor of ``stream`` (-1 once closed), without making a socket
    object for it."""
    if isinstance(stream, RawSocketStream):
        return stream.fileno()
    return stream.socket.fileno()


def close_now(stream: Stream) -> None:
    """Close ``stream``'s socket at once (a no-op if it is closed)."""
    if isinstance(stream, RawSocketStream):
        stream.close()
    else:
        stream.socket.close()


def _address(peer: object) -> str:
    """``host:port`` of an address ``accept`` returned (IPv4 or IPv6)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return "?"


def _task_name(serve: Serve) -> str:
    """The name trio would give a task running ``serve`` (module and qualified name)."""
    func = serve.func if isinstance(serve, functools.partial) else serve
    try:
        return f"{func.__module__}.{func.__qualname__}"
    except AttributeError:
        return repr(func)


async def accept_all(
    listener: trio.socket.SocketType, serve: Serve, nursery: trio.Nursery, raw: bool = True
) -> NoReturn:
    """Accept connections on ``listener`` until cancelled, each served (and closed) by
    ``serve`` in a task of ``nursery``; then close ``listener``. ``serve`` is given the
    client's address as ``accept`` told it (no ``getpeername`` call per connection).

    Unlike ``trio.serve_listeners``, which reschedules once per connection, every
    connection waiting in the backlog (up to ``_ACCEPT_MAX``) is taken in one go, and
    up to ``_ACCEPT_BATCH`` of them are started per pass, the others waiting in a
    lobby (``_LOBBY`` at most) in arrival order. In a flash crowd the passes are long
    (every connection started does its handshake, login and join), and a kernel
    backlog drained 64 per pass overflowed: the kernel dropped clients' SYNs, and they
    came back a second (or three) later. Taken out at once, they wait in the lobby
    instead, with their handshake in their socket's buffer.

    ``raw``: connections are ``RawSocketStream``s where the listener's options are
    inherited (else, and for TLS, which needs a ``trio.SocketStream``, they are those)."""
    sock = socket.socket(fileno=listener.detach())
    sock.setblocking(False)
    inherited = _inherited_options(sock)
    # socket.accept() without its wrapper's three enum conversions per connection (the
    # listener's family, type and protocol, looked up as properties): what it does
    # with them, with plain integers read once. The listener has no timeout, so the
    # wrapper would not change the new socket's blocking mode either.
    accept_raw = sock._accept  # type: ignore[attr-defined]
    kind = (int(sock.family), int(sock.type), sock.proto)
    # Until the backlog is first found empty, a connection may have been queued before
    # the options were set: trio.SocketStream sets them on it.
    bare = False
    # Accepted, not yet served: a crowd is taken out of the kernel's backlog at once
    # (whose overflow drops connections, which the clients retry a second or more
    # later), and started ``_ACCEPT_BATCH`` per scheduler pass, in arrival order.
    lobby: collections.deque[tuple[Stream, str]] = collections.deque()
    # Every connection's task is named once here: without a name, trio formats one
    # from ``serve`` for each (a string per connection, kept as long as it lives).
    name = _task_name(serve)
    try:
        while True:
            if lobby:
                await trio.lowlevel.checkpoint()
            else:
                await trio.lowlevel.wait_readable(sock)
            for _ in range(min(_ACCEPT_MAX, _LOBBY - len(lobby))):
                try:
                    fd, peer = accept_raw()
                except BlockingIOError:
                    bare = raw and inherited
                    break
                except OSError as exc:
                    if exc.errno not in _CAPACITY_ERRNOS:
                        raise
                    log.error("accept failed: %s; pausing %g s", exc, _CAPACITY_PAUSE)
                    await trio.sleep(_CAPACITY_PAUSE)
                    break
                stream: Stream
                if bare:
                    try:
                        fcntl.fcntl(fd, fcntl.F_SETFL, _NONBLOCKING)
                    except OSError:  # gone already: nothing to serve
                        os.close(fd)
                        continue
                    stream = RawSocketStream(fd, kind)
                else:
                    conn = socket.socket(*kind, fileno=fd)
                    stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                lobby.append((stream, _address(peer)))
            for _ in range(min(_ACCEPT_BATCH, len(lobby))):
                nursery.start_soon(serve, *lobby.popleft(), name=name)
    finally:
        for stream, _ in lobby:  # never to be served
            close_now(stream)
        trio.lowlevel.notify_closing(sock)
        sock.close()
