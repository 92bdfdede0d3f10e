"""Listeners, nurseries and graceful shutdown: the Trio shell around the core.

Nesting, outermost first: the store; the committer (it outlives every connection so
that messages in flight at shutdown are still committed and acked) and the lasting-state
journal (so that what the connections' ends record is stored); the flusher, the
WebSocket listener with one task per connection, and the HTTP listener.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trio

from chatroom.config import Config
from chatroom.core.clock import Clock, SystemClock
from chatroom.core.model import ConvType
from chatroom.http.admin import admin_routes
from chatroom.http.health import readiness_route, serve_http
from chatroom.http.metrics import Readings, metrics_route
from chatroom.http.push_webhook import PushNotifier
from chatroom.http.rest import rest_routes
from chatroom.net.budget import BudgetKeeper
from chatroom.net.committer import Committer
from chatroom.net.connection import Connection
from chatroom.net.flusher import Flusher
from chatroom.net.gcpolicy import GcPolicy
from chatroom.net.handshake import Rejected, Wrapper, serve_websocket
from chatroom.net.hooks import HookRunner
from chatroom.net.journal import Lasting
from chatroom.net.listen import shared_listening_socket
from chatroom.net.redis_link import RedisLink, cluster_hub
from chatroom.net.retention import Retention
from chatroom.net.tls import Certificates
from chatroom.net.transport import Transport
from chatroom.protocol.codec import Subprotocol, negotiate
from chatroom.service import lasting, session
from chatroom.service.context import Context
from chatroom.service.ports import Alone, Ports
from chatroom.store.base import Store
from chatroom.store.factory import open_store

log = logging.getLogger(__name__)

_SHUTDOWN_GRACE = 5.0  # seconds connections get to receive goaway and close
_STATS_INTERVAL = 60.0  # seconds between statistics lines in the log
_LAG_INTERVAL = 0.02  # seconds between event-loop lag samples
_PURGE_ROWS = 10_000  # expired rows deleted per kind per transaction
_LAG_SAMPLES = 5  # the lag that counts is the least of this many samples in a row
_READY_TIMEOUT = 2.0  # seconds the store may take to answer /readyz
_KINDS = {kind.value: kind.name.lower() for kind in ConvType}  # metric labels


@dataclass(frozen=True, slots=True)
class Listening:
    """What ``Server.run`` reports once both ports accept connections."""

    ws_port: int
    http_port: int
    tls: bool = False  # wss:// and https:// rather than ws:// and http://


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
        self._on_end = self._ended  # one bound method, not one per connection
        # The services' ways out (service/ports.py), concrete here.
        self.committer = Committer(self.store, config.commit_batch, config.commit_queue)
        self.journal = Lasting(self.store, config.lasting_backlog, self.clock)
        self.pusher = PushNotifier(config.push_webhook, config.push_queue, config.push_timeout)
        self.hooks = HookRunner(
            config.hooks,
            config.hook_secret,
            config.hook_queue,
            config.hook_workers,
            self.clock.wall_ms,
            config.hook_ca_file,
        )
        self._ctx: Context | None = None
        # Runs the connections' writer and shed notice tasks (only while a socket is
        # full or a notice is due): the nursery of ``_serve``, set while it runs.
        self._tasks: trio.Nursery | None = None
        self._now: Callable[[], float] = trio.current_time  # the run's clock, once running
        # A node of a cluster when ``config.redis`` names one (docs/cluster.md).
        self.cluster: RedisLink | None = cluster_hub(
            config.redis, config.redis_queue, config.write_delay, config.chatroom_buffer
        )
        self._flusher = Flusher(
            config.write_delay,
            config.write_delay_threshold,
            max_pause=config.write_max_pause,
            slice_size=config.write_slice,
            latency=config.write_latency,
        )
        if self.cluster is not None:
            self.cluster.flusher = self._flusher  # node B's fan-out writes when it is idle
        self.gc = GcPolicy(
            config.gc_freeze_interval,
            config.gc_full_after_closes,
            config.gc_full_interval,
            config.malloc_trim_after_closes,
        )
        self._all_closed = trio.Event()  # set when shutting down and none are left
        self.tls = Certificates(config.tls_cert, config.tls_key) if config.tls_cert else None
        self.retention = Retention(
            self.store, self.clock, config.message_retention_days, config.retention_interval
        )

    @property
    def context(self) -> Context:
        assert self._ctx is not None, "the server is not running"
        return self._ctx

    def _get_context(self) -> Context:
        return self.context

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
            **({"cluster": self.cluster.statistics()} if self.cluster is not None else {}),
        }

    def readings(self) -> Readings:
        """What ``/metrics`` reports, read from the counters as they are."""
        ctx = self.context
        hub = ctx.hub.statistics()
        counters = ctx.counters
        committer = self.committer.statistics()
        queued = ctx.policies.queued
        return Readings(
            connections=len(self.connections),
            sessions=hub.sessions,
            clients=hub.clients,
            rooms=hub.rooms,
            logins=counters.logins,
            accepted={name: counters.accepted_by_kind[v] for v, name in _KINDS.items()},
            deliveries=hub.deliveries,
            shed={"low": counters.shed.low, "normal": counters.shed.normal},
            shed_at_intake={
                "backlog": counters.shed_at_intake - counters.shed_at_intake_lag,
                "lag": counters.shed_at_intake_lag,
            },
            refused={
                "requests": counters.refused_requests,
                "messages": counters.refused_messages,
                "room": counters.rejected_by_room_budget,
                "queued_bytes": queued.overruns,
            },
            closed_slow=counters.closed_slow,
            closed_over_budget=queued.closed,
            queued_bytes=queued.used,
            commit_queue=committer.queued,
            committed=committer.committed,
            commit_batches=self.committer.batch_sizes.snapshot(),
            commit_seconds=self.committer.latency.snapshot(),
            store_failures={
                "messages": committer.failed,
                "lasting": self.journal.stats.failed,
                "retention": self.retention.failures,
            },
            loop_lag=ctx.policies.loop_lag,
            retention_deleted=self.retention.deleted,
            tls_refused=self.tls.handshakes_failed if self.tls is not None else 0,
            push=dataclasses.asdict(self.pusher.stats),
            hooks=self.hooks.stats,
            cluster=self.cluster.statistics() if self.cluster is not None else None,
        )

    async def ready(self) -> str | None:
        """Why the server should get no traffic now (``/readyz``), or None."""
        await trio.lowlevel.checkpoint()
        if self.shutdown.is_set():
            return "shutting down"
        if self.cluster is not None and not self.cluster.hub.connected:
            return "not connected to the cluster's Redis"
        with trio.move_on_after(_READY_TIMEOUT):
            try:
                await self.store.max_message_timestamp()
            except Exception as exc:
                return f"store error: {exc}"
            return None
        return f"the store did not answer within {_READY_TIMEOUT:g} s"

    async def run(
        self, *, task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until ``shutdown`` is set, then drain and return."""
        config = self.config
        await self.store.open()
        try:
            committer = self.committer
            cluster = Alone() if self.cluster is None else self.cluster
            ports = Ports(committer, self.journal, self.pusher, self.hooks, cluster)
            newest = await self.store.max_message_timestamp()
            hub = self.cluster.hub if self.cluster is not None else None
            # Nodes of a cluster issue message ids in the same milliseconds: each
            # ends its ids with a part of its node id (hex digits, which sort as ids do).
            suffix = hub.node[:4] if hub is not None else ""
            self._ctx = Context.build(
                config,
                self.store,
                ports,
                hub=hub,
                clock=self.clock,
                not_before=newest,
                id_suffix=suffix,
            )
            if hub is not None:  # another node's login ended sessions here
                hub.on_kicked = partial(session.taken_over, self._ctx)
                hub.exclusive = session.exclusive_tag
                hub.on_changed = self._ctx.caches.changed_elsewhere
                hub.on_left_room = partial(lasting.follow_rooms, self._ctx)
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
            self._tasks = nursery
            self._now = trio.lowlevel.current_clock().current_time  # (see Connection)
            nursery.start_soon(self._flusher.run)
            if self.cluster is not None:
                await nursery.start(self.cluster.run)
            nursery.start_soon(BudgetKeeper(self.context.policies.queued, self.connections).run)
            if self.pusher.enabled:
                nursery.start_soon(self.pusher.run)  # offline push webhook
            if self.hooks.enabled:
                await nursery.start(self.hooks.run)  # hook calls and their continuations
            # Workers of ``--workers N`` share both ports (SO_REUSEPORT).
            shared = partial(shared_listening_socket, config.host)
            ws_sock = await shared(config.port) if config.reuse_port else None
            http_sock = await shared(config.http_port) if config.reuse_port else None
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
                    wrap=self._tls_terminator(),
                    sock=ws_sock,
                )
            )
            http_shutdown = trio.Event()
            routes = [
                # The operator's endpoints (master key) and LeanCloud's REST API.
                *admin_routes(self._get_context),
                *rest_routes(self._get_context),
                metrics_route(self.readings),
                readiness_route(self.ready),
            ]
            http_port = await nursery.start(
                partial(
                    serve_http,
                    websocket_port=ws_port,  # the page connects there
                    ssl_context=self.tls.http if self.tls is not None else None,
                    sock=http_sock,
                ),
                config.host,
                config.http_port,
                self.statistics,
                http_shutdown,
                routes,
            )
            task_status.started(Listening(ws_port, http_port, self.tls is not None))
            if self.tls is not None and config.tls_check_interval > 0:
                nursery.start_soon(self.tls.watch, config.tls_check_interval)
            if config.retention_interval > 0:
                nursery.start_soon(self.retention.run)
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
            if self.cluster is not None:
                await self.cluster.leave()  # the other nodes' counts drop at once
            http_shutdown.set()
            nursery.cancel_scope.cancel()

    def _tls_terminator(self) -> Wrapper | None:
        if self.tls is None:
            return None
        return partial(self.tls.terminate, self.config.handshake_timeout)

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

    def _handle(
        self, transport: Transport, chosen: Subprotocol, remote: str
    ) -> Coroutine[Any, Any, None]:
        """One connection, after its handshake: the coroutine that serves it (not one
        around it: a coroutine frame less per idle connection). Every exception ends
        in the handshake's task; ``_ended`` runs when the connection is over."""
        assert self._tasks is not None, "connections are served inside _serve"
        conn = Connection(transport, chosen, self.context, self._flusher, remote, self._now)
        self.connections.add(conn)
        return conn.serve(self._tasks, self._on_end)

    def _ended(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.gc.connection_closed()
        if self.shutdown.is_set() and not self.connections:
            self._all_closed.set()


def _subprotocol(offered: list[str], path: str) -> Subprotocol | None:
    query = None  # most paths have no query: parse none
    if "?" in path:
        query = parse_qs(urlsplit(path).query).get("subprotocol", [None])[0]
    return negotiate(offered, query)


def _choose(offered: list[str], path: str) -> Subprotocol:
    """The subprotocol of a handshake; refuses clients we cannot speak to."""
    chosen = _subprotocol(offered, path)
    if chosen is None:
        raise Rejected("unsupported subprotocol")
    return chosen


async def run_until_signalled(
    config: Config, on_listening: Callable[[], None] | None = None
) -> None:
    """``chatroom serve``: run until SIGINT or SIGTERM, then shut down gracefully.
    ``on_listening`` is called once both ports accept connections."""
    server = Server(config)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            listening = await nursery.start(server.run)
            secure = "s" if listening.tls else ""
            if on_listening is not None:  # first: whoever reads the log line may act on it
                on_listening()
            node = server.cluster.hub.node if server.cluster is not None else ""
            log.info(
                "chatroom listening on ws%s://%s:%d and http%s://%s:%d%s",
                secure,
                config.host,
                listening.ws_port,
                secure,
                config.host,
                listening.http_port,
                f" (cluster node {node})" if node else "",
            )
            async for signum in signals:
                if signum == signal.SIGHUP:  # the certificate was renewed
                    if server.tls is not None:
                        server.tls.reload()
                    continue
                log.info("received %s", signal.Signals(signum).name)
                server.shutdown.set()
                break
