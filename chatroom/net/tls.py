"""TLS on both ports: ``wss://`` for clients and ``https://`` for the HTTP side.

``Certificates`` holds one ``ssl.SSLContext`` per port, made from the ``tls_cert`` and
``tls_key`` files, and reloads them in place on SIGHUP or when the files change: new
handshakes use the new certificate, established connections keep theirs. A reload
whose files do not load (a key that does not match, a file half written) keeps the
old certificate and is logged.

The WebSocket transport reads and writes its socket's descriptor directly (see
chatroom/net/transport.py), which TLS cannot share. ``terminate`` therefore ends TLS
in front of it: it runs the TLS handshake under ``handshake_timeout``, then hands the
transport one end of a local socket pair and copies bytes between the other end and
the TLS stream, in both directions, until either side closes. Backpressure carries
through (the pair's kernel buffers are bounded), so a slow TLS client still counts as
a slow consumer. A client that does not speak TLS (plain TCP, plain HTTP) fails the
handshake and is closed; nobody else notices.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
from contextlib import suppress

import trio

from chatroom.net.handshake import Serve

log = logging.getLogger(__name__)

_CHUNK = 65536
_DRAIN = 2.0  # seconds to pass on what the server wrote before its socket closed
_CLOSE = 1.0  # seconds for the TLS close_notify


def _context(cert: str, key: str, alpn: list[str]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(alpn)
    context.load_cert_chain(cert, key)
    return context


def _stamp(*paths: str) -> tuple[tuple[int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append((0, 0, 0))
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


class Certificates:
    """The server's certificate chain and key as SSL contexts, reloadable in place.
    ValueError (with the reason) when the files do not load."""

    def __init__(self, cert: str, key: str) -> None:
        self._cert, self._key = cert, key
        try:
            # The WebSocket port speaks HTTP/1.1 only; the HTTP port offers h2 too.
            self.websocket = _context(cert, key, ["http/1.1"])
            self.http = _context(cert, key, ["h2", "http/1.1"])
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls_cert/tls_key ({cert}, {key}): {exc}") from None
        self._seen = _stamp(cert, key)
        self.reloads = 0  # successful reloads
        self.handshakes_failed = 0  # on the WebSocket port: not TLS, timed out, refused

    def reload(self) -> bool:
        """Load the files again into both contexts; False (logged, the old certificate
        kept) when they do not load."""
        self._seen = _stamp(self._cert, self._key)
        try:
            _context(self._cert, self._key, [])  # checked first: a live context is
        except (OSError, ssl.SSLError) as exc:  # never left with half a new pair
            log.error("TLS certificate not reloaded, the old one stays: %s", exc)
            return False
        for context in (self.websocket, self.http):
            context.load_cert_chain(self._cert, self._key)
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self._cert)
        return True

    async def watch(self, interval: float) -> None:
        """Reload whenever either file's modification time, size or inode changes,
        checked every ``interval`` seconds."""
        while True:
            await trio.sleep(interval)
            if _stamp(self._cert, self._key) != self._seen:
                self.reload()

    async def terminate(
        self, handshake_timeout: float, serve: Serve, stream: trio.SocketStream, remote: str
    ) -> None:
        """One accepted connection on the WebSocket port (from ``remote``): TLS
        handshake, then ``serve`` (the plain WebSocket server) over a socket pair. Every
        failure ends here."""
        tls = trio.SSLStream(stream, self.websocket, server_side=True, https_compatible=True)
        try:
            with trio.move_on_after(handshake_timeout):
                await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("TLS handshake with %s failed: %s", remote, exc.__cause__ or exc)
        except BaseException:  # cancelled: nothing else closes the socket
            stream.socket.close()
            raise
        if not _handshaken(tls):
            self.handshakes_failed += 1
            await trio.aclose_forcefully(stream)
            return
        inner_sock, outer_sock = socket.socketpair()
        inner = trio.SocketStream(trio.socket.from_stdlib_socket(inner_sock))
        outer = trio.SocketStream(trio.socket.from_stdlib_socket(outer_sock))
        sent = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_pump_in, tls, outer)
                nursery.start_soon(_pump_out, outer, tls, sent)
                await serve(inner, remote)  # closes inner, whatever happens
                with trio.move_on_after(_DRAIN):
                    await sent.wait()  # the close frame reaches the client
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await outer.aclose()
                with trio.move_on_after(_CLOSE), suppress(trio.BrokenResourceError):
                    await tls.aclose()
                await trio.aclose_forcefully(stream)  # a no-op once tls.aclose closed it


def _handshaken(tls: trio.SSLStream[trio.SocketStream]) -> bool:
    try:
        tls.selected_alpn_protocol()  # raises until the handshake has completed
    except trio.NeedHandshakeError:
        return False
    return True


async def _pump_in(tls: trio.SSLStream[trio.SocketStream], outer: trio.SocketStream) -> None:
    """Client to server; at the client's end the server reads EOF."""
    await trio.lowlevel.checkpoint()
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        while data := await tls.receive_some(_CHUNK):
            await outer.send_all(data)
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await outer.send_eof()


async def _pump_out(
    outer: trio.SocketStream, tls: trio.SSLStream[trio.SocketStream], sent: trio.Event
) -> None:
    """Server to client, until the server has closed its end and all of it is sent."""
    await trio.lowlevel.checkpoint()
    try:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            while data := await outer.receive_some(_CHUNK):
                await tls.send_all(data)
    finally:
        sent.set()
