"""Listeners, nurseries and graceful shutdown: the Trio shell around the core.

Nesting, outermost first: the store; the committer (it outlives every connection so
that messages in flight at shutdown are still committed and acked) and the lasting-state
journal (so that what the connections' ends record is stored); the flusher, the
WebSocket listener with one task per connection, and the HTTP listener.
"""

from __future__ import annotations

import logging
import signal
from collections import deque
from dataclasses import asdict, dataclass
from functools import partial
from urllib.parse import parse_qs, urlsplit

import trio

from chatroom.config import Config
from chatroom.core.clock import Clock, SystemClock
from chatroom.http.admin import admin_routes
from chatroom.http.health import serve_http
from chatroom.http.push_webhook import PushNotifier
from chatroom.net.budget import BudgetKeeper
from chatroom.net.committer import Committer
from chatroom.net.connection import Connection
from chatroom.net.flusher import Flusher
from chatroom.net.gcpolicy import GcPolicy
from chatroom.net.journal import Lasting
from chatroom.net.transport import Rejected, Transport, serve_websocket
from chatroom.protocol.codec import Subprotocol, negotiate
from chatroom.service import lasting
from chatroom.service.context import Context
from chatroom.service.ports import Ports
from chatroom.store.base import Store
from chatroom.store.factory import open_store

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 5.0  # seconds connections get to receive goaway and close
_STATS_INTERVAL = 60.0  # seconds between statistics lines in the log
_LAG_INTERVAL = 0.02  # seconds between event-loop lag samples
_PURGE_ROWS = 10_000  # expired rows deleted per kind per transaction
_LAG_SAMPLES = 5  # the lag that counts is the least of this many samples in a row


@dataclass(frozen=True, slots=True)
class Listening:
    """What ``Server.run`` reports once both ports accept connections."""

    ws_port: int
    http_port: int


class Server:
    def __init__(
        self, config: Config, store: Store | None = None, clock: Clock | None = None
    ) -> None:
        """``clock`` gives wall time to everything the server stamps or expires (the
        system clock unless a test injects one)."""
        self.config = config
        self.clock = clock if clock is not None else SystemClock()
        self.store = store if store is not None else open_store(config.db)
        self.shutdown = trio.Event()
        self.connections: set[Connection] = set()
        # The services' ways out (service/ports.py), concrete here.
        self.committer = Committer(self.store, config.commit_batch, config.commit_queue)
        self.journal = Lasting(self.store, config.lasting_backlog, self.clock)
        self.pusher = PushNotifier(config.push_webhook, config.push_queue, config.push_timeout)
        self._ctx: Context | None = None
        self._flusher = Flusher(config.write_delay, config.write_delay_threshold)
        self.gc = GcPolicy(
            config.gc_freeze_interval,
            config.gc_full_after_closes,
            config.gc_full_interval,
            config.malloc_trim_after_closes,
        )
        self._all_closed = trio.Event()  # set when shutting down and none are left

    @property
    def context(self) -> Context:
        assert self._ctx is not None, "the server is not running"
        return self._ctx

    def statistics(self) -> dict[str, object]:
        ctx = self.context
        return {
            "connections": len(self.connections),
            **asdict(ctx.hub.statistics()),
            **asdict(ctx.counters),
            "commit": asdict(self.committer.statistics()),
            "push": asdict(self.pusher.stats),
            "lasting": asdict(self.journal.stats),
            "queued": ctx.policies.queued.statistics(),  # all outboxes against queued_bytes_budget
        }

    async def run(
        self, *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``shutdown`` is set, then drain and return."""
        config = self.config
        await self.store.open()
        try:
            committer = self.committer
            ports = Ports(committer, self.journal, self.pusher)
            newest = await self.store.max_message_timestamp()
            self._ctx = Context.build(
                config, self.store, ports, clock=self.clock, not_before=newest
            )
            # Resends of messages stored before a restart are still recognised.
            for message in await self.store.recent_dedupe_tokens(config.dedupe_cache):
                self._ctx.caches.dedupe.remember(message)
            await lasting.restore(self._ctx)  # nonces and receipts from before a restart
            async with trio.open_nursery() as outer:
                await outer.start(committer.run)
                # Like the committer, it outlives the connections: what their ends
                # record (the chatroom to rejoin) is stored before the store closes.
                await outer.start(self.journal.run)
                try:
                    async with trio.open_nursery() as inner:
                        listening = await inner.start(self._serve)
                        task_status.started(listening)
                finally:
                    committer.close()
                    self.journal.close()
        finally:
            with trio.CancelScope(shield=True):
                await self.store.aclose()

    async def _serve(
        self, *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
    ) -> None:
        config = self.config
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._flusher.run)
            nursery.start_soon(BudgetKeeper(self.context.policies.queued, self.connections).run)
            if self.pusher.enabled:
                nursery.start_soon(self.pusher.run)  # offline push webhook
            ws_port = await nursery.start(
                partial(
                    serve_websocket,
                    self._handle,
                    _choose,
                    config.host,
                    config.port,
                    max_message_bytes=config.max_frame_bytes,
                    handshake_timeout=config.handshake_timeout,
                    on_unserved=self.gc.unserved_closed,  # memory worth returning too
                )
            )
            http_shutdown = trio.Event()
            admin = admin_routes(lambda: self.context)  # operator endpoints (master key)
            http_port = await nursery.start(
                partial(serve_http, websocket_port=ws_port),  # the page connects there
                config.host,
                config.http_port,
                self.statistics,
                http_shutdown,
                admin,
            )
            task_status.started(Listening(ws_port, http_port))
            nursery.start_soon(self._log_statistics)
            nursery.start_soon(self._watch_lag)
            nursery.start_soon(self.gc.run)
            if config.purge_interval > 0:
                nursery.start_soon(self.journal.purge, config.purge_interval, _PURGE_ROWS)
            await self.shutdown.wait()
            log.info("shutting down: %d connections", len(self.connections))
            # Stop taking commands, let the messages already read be committed and
            # acked, then say goaway: a client loses nothing it was told was sent.
            for conn in list(self.connections):
                conn.stop_reading()
            committer = self.committer
            committer.close()
            with trio.move_on_after(_SHUTDOWN_GRACE):
                await committer.finished.wait()
            for conn in list(self.connections):
                conn.goaway()
            if not self.connections:
                self._all_closed.set()
            with trio.move_on_after(_SHUTDOWN_GRACE):
                await self._all_closed.wait()
            http_shutdown.set()
            nursery.cancel_scope.cancel()

    async def _watch_lag(self) -> None:
        """Sample how late the event loop runs: an overloaded server sheds chatroom
        LOW and NORMAL messages at intake (see ratelimit.shed_at_intake)."""
        ctx = self.context
        recent: deque[float] = deque(maxlen=_LAG_SAMPLES)
        while True:
            start = trio.current_time()
            await trio.sleep(_LAG_INTERVAL)
            recent.append(max(0.0, trio.current_time() - start - _LAG_INTERVAL))
            # Sustained lag only: one pause (a GC, a burst) must not shed anything.
            ctx.policies.note_loop_lag(min(recent) if len(recent) == recent.maxlen else 0.0)

    async def _log_statistics(self) -> None:
        """Log the counters every ``_STATS_INTERVAL`` seconds while they change."""
        last: dict[str, object] = {}
        while True:
            await trio.sleep(_STATS_INTERVAL)
            now = self.statistics()
            if now != last:
                log.info("statistics %s", now)
                last = now

    async def _handle(self, transport: Transport, chosen: Subprotocol, remote: str) -> None:
        """One connection, after its handshake. Every exception ends here."""
        await trio.lowlevel.checkpoint()
        conn = Connection(transport, chosen, self.context, self._flusher, remote)
        self.connections.add(conn)
        try:
            await conn.serve()
        except Exception:
            log.exception("connection handler failed")
        finally:
            self.connections.discard(conn)
            self.gc.connection_closed()
            if self.shutdown.is_set() and not self.connections:
                self._all_closed.set()


def _subprotocol(offered: list[str], path: str) -> Subprotocol | None:
    query = parse_qs(urlsplit(path).query).get("subprotocol", [None])[0]
    return negotiate(offered, query)


def _choose(offered: list[str], path: str) -> Subprotocol:
    """The subprotocol of a handshake; refuses clients we cannot speak to."""
    chosen = _subprotocol(offered, path)
    if chosen is None:
        raise Rejected("unsupported subprotocol")
    return chosen


async def run_until_signalled(config: Config) -> None:
    """``chatroom serve``: run until SIGINT or SIGTERM, then shut down gracefully."""
    server = Server(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(server.run)
            log.info(
                "chatroom listening on ws://%s:%d and http://%s:%d",
                config.host,
                listening.ws_port,
                config.host,
                listening.http_port,
            )
            async for signum in signals:
                log.info("received %s", signal.Signals(signum).name)
                server.shutdown.set()
                break
