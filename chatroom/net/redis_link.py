"""The link between a ``RedisHub`` and Redis: the only place the cluster does I/O.

One task drains the hub's queue: each drain is one MULTI/EXEC holding one PUBLISH per
channel (the records queued for it packed together), this node's presence events, and
once a second its heartbeat and, when it changed, its snapshot. Another task reads the
subscription and hands each message to the hub. Subscriptions follow the chatrooms
this node has viewers in.

When Redis is unreachable the hub is told (it then delivers what it can here), what was
queued is dropped and logged, and the link reconnects with a growing pause (0.1 s to
5 s). Once back it resubscribes and republishes its snapshot; the other nodes reload
it. Every call to Redis runs under a deadline.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import coredis
import orjson
import trio

from chatroom.hub import redis_wire as wire
from chatroom.hub.redis import RedisHub

log = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds between heartbeats
SILENCE = 5.0  # a node not heard from for this long has left the counts
SNAPSHOT_TTL = 10  # seconds a dead node's snapshot stays in Redis
DEADLINE = 5.0  # seconds any one call to Redis may take
BACKOFF = (0.1, 5.0)  # first and longest pause between reconnection attempts


def cluster_hub(url: str, queue: int) -> RedisLink | None:
    """The link of a new node (its hub in ``.hub``) when ``url`` names a Redis."""
    if not url:
        return None
    # Pub/sub channels are shared by every database of a Redis: the database number in
    # the names keeps two clusters on one Redis (db 0 and db 1) apart.
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]
    hub = RedisHub(uuid.uuid4().hex[:12], prefix=f"chatroom:{db}:", queue=queue)
    return RedisLink(hub, url)


@dataclass(slots=True)
class LinkStatistics:
    publishes: int = 0  # PUBLISH commands sent
    records: int = 0  # records they carried
    drains: int = 0  # transactions
    received: int = 0  # messages heard
    reconnects: int = 0
    dropped_on_disconnect: int = 0


class RedisLink:
    def __init__(
        self,
        hub: RedisHub,
        url: str,
        connect: Callable[[str], coredis.Redis[bytes]] | None = None,
    ) -> None:
        self.hub = hub
        self.url = url
        self.stats = LinkStatistics()
        self._wake = trio.Event()
        self._connect = connect or (lambda u: coredis.Redis.from_url(u, decode_responses=False))
        self.ready = trio.Event()  # set once connected and subscribed the first time
        self._up = False  # this connection got as far as subscribing
        hub.wake = self._poke

    def statistics(self) -> dict[str, object]:
        hub = self.hub
        return {
            "node": hub.node,
            "connected": hub.connected,
            "nodes": len(hub.view.nodes()),
            "queue": len(hub.outgoing),
            "shed": hub.outgoing.shed,
            "lost": hub.outgoing.lost,
            "resyncs": hub.view.resyncs,
            "bad_records": hub.bad_records,
            **{k: getattr(self.stats, k) for k in LinkStatistics.__slots__},
        }

    def _poke(self) -> None:
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = BACKOFF[0]
        while True:
            try:
                await self._session()
            except* Exception as failed:  # every way Redis fails: connection, timeout, reply
                # (A shutdown's cancellation passes on; coredis's cleanup may add errors.)
                if trio.current_effective_deadline() != -math.inf:
                    first = failed.exceptions[0]
                    log.warning("cluster: Redis at %s unreachable (%r)", self.url, first)
            hub = self.hub
            hub.connected = False
            hub.subscribed.clear()
            lost = hub.outgoing.drop_all()
            self.stats.dropped_on_disconnect += lost
            if lost:
                log.warning("cluster: %d queued records lost with the connection", lost)
            hub.view.take_events()  # the snapshot after reconnecting says it all
            if self._up:
                self._up, pause = False, BACKOFF[0]
            await trio.sleep(pause)
            pause = min(BACKOFF[1], pause * 2)
            self.stats.reconnects += 1

    async def _session(self) -> None:
        hub = self.hub
        client = self._connect(self.url)
        async with client:
            with trio.fail_after(DEADLINE):
                await client.ping()
            pubsub = client.pubsub(retry_policy=None, max_idle_seconds=HEARTBEAT * 2)
            async with pubsub:
                with trio.fail_after(DEADLINE):
                    await pubsub.subscribe(hub.channel("node", hub.node), hub.channel("presence"))
                log.info("cluster: node %s joined through %s", hub.node, self.url)
                hub.connected = self._up = True
                hub.rooms_changed = True  # subscribe to every chatroom watched here
                for node in hub.view.nodes():
                    hub.resync_wanted.add(node)  # what changed while we were away
                self.ready.set()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read, pubsub)
                    await self._drain(client, pubsub)

    async def _read(self, pubsub: Any) -> None:
        hub = self.hub
        async for message in pubsub:
            if message["type"] == "message":
                self.stats.received += 1
                hub.receive(message["data"], trio.current_time())
            await trio.lowlevel.checkpoint()

    async def _drain(self, client: coredis.Redis[bytes], pubsub: Any) -> None:
        hub = self.hub
        last_beat = -HEARTBEAT
        written = -1  # presence number of the last snapshot written
        while True:
            with trio.move_on_after(max(0.0, last_beat + HEARTBEAT - trio.current_time())):
                await self._wake.wait()
            self._wake = trio.Event()
            await self._follow_rooms(pubsub)
            beat = trio.current_time() >= last_beat + HEARTBEAT
            seq, events = hub.view.take_events()
            entries = hub.outgoing.take()
            by_channel: dict[str, list[bytes]] = {}
            for entry in entries:
                by_channel.setdefault(entry.channel, []).append(entry.record)
            presence = hub.channel("presence")
            if events:
                record = wire.encode({"k": "d", "n": hub.node, "q": seq, "e": events})
                by_channel.setdefault(presence, []).append(record)
            publishes = [(channel, b"".join(records)) for channel, records in by_channel.items()]
            self.stats.publishes += len(publishes)
            self.stats.records += sum(len(records) for records in by_channel.values())
            with trio.fail_after(DEADLINE):
                if len(publishes) == 1 and not beat:
                    await client.publish(*publishes[0])  # one command: atomic as it is
                elif publishes or beat:
                    async with client.pipeline(transaction=True) as pipe:
                        for channel, data in publishes:
                            pipe.publish(channel, data)
                        if beat:
                            last_beat = trio.current_time()
                            written = self._beat(pipe, seq, written)
            self.stats.drains += 1
            if beat:
                self._forget_silent()
            await self._resync(client)

    def _beat(self, pipe: Any, seq: int, written: int) -> int:
        """Queue the heartbeat, and the snapshot when it changed since ``written``; the
        presence number the snapshot in Redis now has."""
        hub = self.hub
        key = hub.channel("snap", hub.node)
        if seq != written:
            pipe.set(key, orjson.dumps({"q": seq, "rows": hub.snapshot()}), ex=SNAPSHOT_TTL)
        else:
            pipe.expire(key, SNAPSHOT_TTL)
        pipe.publish(hub.channel("presence"), wire.encode({"k": "h", "n": hub.node, "q": seq}))
        return seq

    async def _follow_rooms(self, pubsub: Any) -> None:
        """Subscribe to the chatrooms this node has viewers in, and only to those."""
        await trio.lowlevel.checkpoint()
        hub = self.hub
        if not hub.rooms_changed:
            return
        hub.rooms_changed = False
        wanted = hub.local_rooms()
        joined = wanted - hub.subscribed
        gone = hub.subscribed - wanted
        with trio.fail_after(DEADLINE):
            if joined:
                await pubsub.subscribe(*(hub.channel("room", cid) for cid in joined))
            if gone:
                await pubsub.unsubscribe(*(hub.channel("room", cid) for cid in gone))
        hub.subscribed = (hub.subscribed | joined) - gone

    def _forget_silent(self) -> None:
        hub = self.hub
        for node in hub.view.silent(trio.current_time(), SILENCE):
            log.warning("cluster: node %s silent for %.0f s: it leaves the counts", node, SILENCE)
            hub.view.drop(node)

    async def _resync(self, client: coredis.Redis[bytes]) -> None:
        await trio.lowlevel.checkpoint()
        hub = self.hub
        while hub.resync_wanted:
            node = hub.resync_wanted.pop()
            with trio.fail_after(DEADLINE):
                raw = await client.get(hub.channel("snap", node))
            if raw is None:
                hub.view.drop(node)
                continue
            try:
                snap = orjson.loads(raw)
                hub.view.load(node, int(snap["q"]), list(snap["rows"]), trio.current_time())
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                hub.bad_records += 1
                log.warning("cluster: node %s's snapshot is unreadable (%s)", node, exc)
