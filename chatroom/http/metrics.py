"""``GET /metrics``: the server's counters in Prometheus' text format.

A custom ``prometheus_client`` collector turns one ``Readings`` (made by the server
from the counters it keeps anyway, see ``Server.readings``) into metric families when
Prometheus scrapes: the message path pays nothing for it. Each scrape has its own
registry, so that two servers in one process (the tests) never share a metric.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from chatroom.core.histogram import HistogramSnapshot
from chatroom.core.hooks import LATENCY_BUCKETS_MS, HookStats


@dataclass(frozen=True, slots=True)
class Readings:
    """What one scrape reports. Totals only grow; the others are current values."""

    connections: int
    sessions: int
    clients: int
    rooms: int
    logins: int
    accepted: Mapping[str, int]  # messages accepted, by conversation kind
    deliveries: int  # messages and events pushed to sessions
    shed: Mapping[str, int]  # frames shed by full outboxes, by priority
    shed_at_intake: Mapping[str, int]  # by reason: the senders' backlog, the loop's lag
    refused: Mapping[str, int]  # requests refused by a budget, by budget
    closed_slow: int
    closed_over_budget: int
    queued_bytes: int
    commit_queue: int
    committed: int
    commit_batches: HistogramSnapshot
    commit_seconds: HistogramSnapshot
    store_failures: Mapping[str, int]  # writes lost to store errors, by what
    loop_lag: float
    retention_deleted: int
    tls_refused: int
    push: Mapping[str, int] = field(default_factory=dict)  # offline push webhook calls
    hooks: Mapping[str, HookStats] = field(default_factory=dict)  # by hook function name
    cluster: Mapping[str, object] | None = None  # RedisLink.statistics() of a cluster node


def _counter(name: str, doc: str, value: int | Mapping[str, int], label: str = "") -> Metric:
    metric = CounterMetricFamily(name, doc, labels=[label] if label else None)
    if isinstance(value, Mapping):
        for key, count in value.items():
            metric.add_metric([key], count)
    else:
        metric.add_metric([], value)
    return metric


def _gauge(name: str, doc: str, value: float) -> Metric:
    return GaugeMetricFamily(name, doc, value=value)


def _histogram(name: str, doc: str, snap: HistogramSnapshot) -> Metric:
    pairs = zip(snap.bounds, snap.cumulative[:-1], strict=True)
    buckets = [(f"{bound:g}", count) for bound, count in pairs]
    buckets.append(("+Inf", snap.cumulative[-1]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=snap.total)


def families(r: Readings) -> Iterator[Metric]:
    """Every metric, named as Prometheus asks (``chatroom_`` prefix, ``_total`` on
    counters, base units)."""
    yield _gauge("chatroom_connections", "Open WebSocket connections.", r.connections)
    yield _gauge("chatroom_sessions", "Logged-in sessions.", r.sessions)
    yield _gauge("chatroom_clients", "Distinct client ids online.", r.clients)
    yield _gauge("chatroom_chatrooms_watched", "Chatrooms with a viewer online.", r.rooms)
    yield _counter("chatroom_logins", "Successful logins.", r.logins)
    yield _counter(
        "chatroom_messages_accepted", "Messages accepted, by conversation kind.", r.accepted, "kind"
    )
    yield _counter("chatroom_deliveries", "Messages and events pushed to sessions.", r.deliveries)
    yield _counter(
        "chatroom_frames_shed", "Frames dropped by full outboxes, by priority.", r.shed, "priority"
    )
    yield _counter(
        "chatroom_intake_shed",
        "Chatroom messages dropped as read while the server was behind, by reason.",
        r.shed_at_intake,
        "reason",
    )
    yield _counter(
        "chatroom_budget_refusals", "Requests refused by a budget, by budget.", r.refused, "budget"
    )
    yield _counter(
        "chatroom_slow_consumers_closed",
        "Connections closed with 4120 for not reading their outbox.",
        r.closed_slow,
    )
    yield _counter(
        "chatroom_queued_budget_closed",
        "Connections closed with 4120 to bring all outboxes back under queued_bytes_budget.",
        r.closed_over_budget,
    )
    yield _gauge(
        "chatroom_queued_bytes", "Bytes counted against queued_bytes_budget.", r.queued_bytes
    )
    yield _gauge(
        "chatroom_commit_queue", "Messages waiting for their group commit.", r.commit_queue
    )
    yield _counter("chatroom_messages_committed", "Messages written to the store.", r.committed)
    yield _histogram(
        "chatroom_commit_batch_messages", "Messages per commit transaction.", r.commit_batches
    )
    yield _histogram(
        "chatroom_commit_duration_seconds", "Seconds per commit transaction.", r.commit_seconds
    )
    yield _counter(
        "chatroom_store_failures",
        "Writes lost to store errors: messages, lasting changes, retention sweeps.",
        r.store_failures,
        "what",
    )
    yield _gauge(
        "chatroom_event_loop_lag_seconds", "Sustained lateness of the event loop.", r.loop_lag
    )
    yield _counter(
        "chatroom_retention_deleted",
        "Rows deleted by the retention sweep (old messages, expired temporary conversations).",
        r.retention_deleted,
    )
    yield _counter(
        "chatroom_tls_handshakes_failed",
        "Connections on the WebSocket port whose TLS handshake failed or timed out.",
        r.tls_refused,
    )
    yield _counter(
        "chatroom_push_notifications", "Offline push webhook calls, by outcome.", r.push, "outcome"
    )


def hook_families(hooks: Mapping[str, HookStats]) -> Iterator[Metric]:
    """Calls of each configured hook, their outcomes and their latency."""
    calls = CounterMetricFamily("chatroom_hook_calls", "Hook requests made.", labels=["hook"])
    outcomes = CounterMetricFamily(
        "chatroom_hook_problems",
        "Hook calls that failed, timed out or were not made (busy), and notifications "
        "dropped by a full queue.",
        labels=["hook", "outcome"],
    )
    latency = HistogramMetricFamily(
        "chatroom_hook_duration_seconds", "Seconds per hook call.", labels=["hook"]
    )
    bounds = [f"{ms / 1000:g}" for ms in LATENCY_BUCKETS_MS] + ["+Inf"]
    for name, stats in hooks.items():
        calls.add_metric([name], stats.calls)
        for outcome in ("failures", "timeouts", "busy", "dropped"):
            outcomes.add_metric([name, outcome], getattr(stats, outcome))
        cumulative = list(itertools.accumulate(stats.latency_buckets))
        buckets = list(zip(bounds, cumulative, strict=True))
        latency.add_metric([name], buckets, sum_value=stats.latency_ms_sum / 1000)
    yield from (calls, outcomes, latency)


def cluster_families(cluster: Mapping[str, object]) -> Iterator[Metric]:
    """A cluster node's broker traffic (docs/cluster.md), from its link's statistics."""

    def number(key: str) -> int:
        value = cluster.get(key, 0)
        return int(value) if isinstance(value, int | bool) else 0

    yield _gauge("chatroom_cluster_connected", "1 when Redis answers.", number("connected"))
    yield _gauge("chatroom_cluster_nodes", "Other nodes this node knows.", number("nodes"))
    yield _gauge("chatroom_cluster_queue", "Records waiting to be published.", number("queue"))
    yield _counter("chatroom_cluster_publishes", "PUBLISH commands sent.", number("publishes"))
    drains = {"drain": number("drains") - number("at_once"), "at_once": number("at_once")}
    yield _counter(
        "chatroom_cluster_drains",
        "Transactions sent to Redis, by the task that wrote them.",
        drains,
        "by",
    )
    records = {
        what: number(key)
        for what, key in (
            ("published", "records"),
            ("received", "received"),
            ("shed", "shed"),
            ("lost", "lost"),
            ("dropped_on_disconnect", "dropped_on_disconnect"),
            ("malformed", "bad_records"),
        )
    }
    yield _counter(
        "chatroom_cluster_records", "Broker records, by what became of them.", records, "what"
    )
    yield _counter("chatroom_cluster_reconnects", "Reconnections to Redis.", number("reconnects"))
    yield _counter(
        "chatroom_cluster_resyncs", "Presence snapshots reloaded after a gap.", number("resyncs")
    )


class _Collector(Collector):
    def __init__(self, readings: Callable[[], Readings]) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        readings = self._readings()
        yield from families(readings)
        yield from hook_families(readings.hooks)
        if readings.cluster is not None:
            yield from cluster_families(readings.cluster)


def render(readings: Callable[[], Readings]) -> bytes:
    """The text format of one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(readings))
    return generate_latest(registry)


def metrics_route(readings: Callable[[], Readings]) -> Route:
    async def metrics(request: Request) -> Response:
        await trio.lowlevel.checkpoint()
        return Response(render(readings), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return Route("/metrics", metrics, methods=["GET"])
