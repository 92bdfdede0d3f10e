"""Listening sockets that several processes share (SO_REUSEPORT).

``chatroom serve --workers N`` runs N processes on one port: each binds the WebSocket
port and the HTTP port with SO_REUSEPORT, and the kernel spreads new connections over
them. Linux only lets processes of one user share a port this way.
"""

from __future__ import annotations

import socket

import trio

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
