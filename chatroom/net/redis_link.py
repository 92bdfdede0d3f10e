"""The link between a ``RedisHub`` and Redis: the only place the cluster does I/O.

One task drains the hub's queue: each drain is one MULTI/EXEC holding one PUBLISH per
channel (the records queued for it packed together), this node's presence events, and
once a second its heartbeat and, when it changed, its snapshot. Another task reads the
connection and hands each message heard to the hub (``Listener``, redis_listen.py).
Subscriptions follow the chatrooms this node has viewers in. The same transaction
appends chatroom messages to their room's list of recent messages (``KEEP``), and a
drain reads those lists for ``logs`` (``kept``) after it. A quiet link does not wake
the drain for a record: the task that queued it writes it at once (``_wake``). A busy
one holds a chatroom's records until the node's next flush (``_held_until``): its own
viewers read them then anyway, and a room's messages leave once per flush, not once
each; such a PUBLISH is marked, and every node writes it to its viewers when it comes.

A node has one connection to Redis, in RESP3 (``HELLO 3``, Redis 6 or later): its
subscriptions' messages come as pushes on the connection that sends its commands. Redis
writes a drain's reply and the node's own message heard back in one write, read in one
read by the one reading task: a message costs the node a read, and Redis a write, fewer
than with a command connection and a subscribing one. Replies and pushes
come in the order Redis produced them: the reply to a drain comes after every message
published before that drain reached Redis (``settle``).

When Redis is unreachable the hub is told (it then delivers what it can here), what was
queued is dropped and logged, and the link reconnects with a growing pause (0.1 s to
5 s). Once back it resubscribes and republishes its snapshot; the other nodes reload
it. Every call to Redis runs under a deadline.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs, urlsplit

import orjson
import trio

from chatroom.core.model import Message
from chatroom.core.outbox import Priority
from chatroom.hub import redis_wire as wire
from chatroom.hub.base import EVERYTHING
from chatroom.hub.redis import RedisHub
from chatroom.hub.redis_queue import KEEP, PUBLISH
from chatroom.net import resp
from chatroom.net.flusher import Flusher
from chatroom.net.redis_kept import Command, KeptReader, Read, kept_commands
from chatroom.net.redis_listen import DEADLINE, SETTLE_DEADLINE, Listener

log = logging.getLogger(__name__)

HEARTBEAT = 1.0  # seconds between heartbeats
SILENCE = 5.0  # a node not heard from for this long has left the counts
SNAPSHOT_TTL = 10  # seconds a dead node's snapshot stays in Redis
BACKOFF = (0.1, 5.0)  # first and longest pause between reconnection attempts


def cluster_hub(url: str, queue: int, linger: float = 0.0, kept: int = 1000) -> RedisLink | None:
    """The link of a new node (its hub in ``.hub``) when ``url`` names a Redis."""
    if not url:
        return None
    # Pub/sub channels are shared by every database of a Redis: the database number in
    # the names keeps two clusters on one Redis (db 0 and db 1) apart.
    parts = urlsplit(url)
    db = parse_qs(parts.query).get("db", [parts.path.strip("/") or "0"])[0]
    hub = RedisHub(uuid.uuid4().hex[:12], prefix=f"chatroom:{db}:", queue=queue)
    return RedisLink(hub, url, linger, kept)


@dataclass(slots=True)
class LinkStatistics:
    publishes: int = 0  # PUBLISH commands sent
    records: int = 0  # records they carried
    drains: int = 0  # transactions
    at_once: int = 0  # of them written by the task that queued the record (a quiet link)
    reconnects: int = 0
    dropped_on_disconnect: int = 0


class RedisLink:
    def __init__(self, hub: RedisHub, url: str, linger: float = 0.0, kept: int = 1000) -> None:
        self.hub = hub
        self.url = url
        self._kept = kept  # messages a chatroom's Redis list keeps
        self._reads = KeptReader()  # chatrooms' kept messages, for ``logs``
        # After a drain that carried several records (a busy node), the next starts no
        # earlier than ``linger`` seconds after it: what is queued meanwhile shares one
        # PUBLISH per channel, and every node reads and fans out that many messages in
        # one go. A lone record (a quiet node) is published at once.
        self._linger = linger
        self.stats = LinkStatistics()
        self._poked = False  # something to publish (or to ask) since the drain began
        self._sleeper: trio.lowlevel.Task | None = None  # the drain, parked until poked
        self._beat_due = True  # the next drain sends the heartbeat
        self.ready = trio.Event()  # set once connected and subscribed the first time
        self._up = False  # this connection got as far as subscribing
        # Set once Redis answered the next drain (taken by it with the queue), if asked for
        self._drained: trio.Event | None = None
        self._fresh = False  # a waiter needs a command sent after it asked (``settle``)
        self._listener = Listener(hub, self._poke)  # what the connection hears
        self._client: resp.Connection | None = None  # while connected, read by its task
        self._not_before = -math.inf  # a busy drain's start plus the linger
        self._quiet_from = -math.inf  # the last drain plus the linger: a quiet link then
        self._lone = True  # the last drain of records carried one
        self._written = -1  # presence number of the last snapshot written
        hub.wake = self._wake

    @property
    def flusher(self) -> Flusher | None:
        """The node's flusher: held while the reader fans out what one read brought
        (redis_listen.py), so that an idle one costs no wake-up of its own."""
        return self._listener.flusher

    @flusher.setter
    def flusher(self, flusher: Flusher | None) -> None:
        self._listener.flusher = flusher
        if flusher is not None:  # it pauses as one node with every viewer would
            flusher.pace(self.hub.elsewhere)

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
            "bad_records": hub.bad_records + self._reads.bad,
            **{k: getattr(self.stats, k) for k in LinkStatistics.__slots__},
            "received": self._listener.received,
        }

    async def leave(self) -> None:
        """At shutdown: tell the other nodes, which then forget this node's sessions at
        once instead of after its silence. Waits a second at most."""
        await trio.lowlevel.checkpoint()
        if not self.hub.connected:
            return
        self.hub.farewell()
        await self._published(1.0)

    async def published(self) -> None:
        """``chatroom.service.ports.Cluster``: what this node queued is in Redis."""
        await trio.lowlevel.checkpoint()
        if self.hub.connected:
            self._poke()
            await self._published(SETTLE_DEADLINE)

    async def _published(self, deadline: float, fresh: bool = False) -> None:
        """Until Redis answered the next drain to take the queue (what was queued before
        is in Redis then), ``deadline`` seconds at most. With nothing queued, the reply
        to a drain already written does (``fresh``: no, a command written now)."""
        if self._drained is None:
            self._drained = trio.Event()
        self._fresh |= fresh
        with trio.move_on_after(deadline):
            await self._drained.wait()

    async def hearing(self, cid: str) -> None:
        """``chatroom.service.ports.Cluster``: until Redis confirmed this node's
        subscription to the chatroom (``Listener.hearing``)."""
        await self._listener.hearing(cid)

    def _wake(self) -> None:
        """The hub queued something: a drain now, in the caller's task, when the link
        is idle (the drain parked, no reply owed, nothing else for it to do) and quiet
        (no drain for ``linger`` seconds, and the last one with records carried one);
        else the drain runs soon. A message from a quiet node then costs no wake-up of
        the drain and no pass through the scheduler before it leaves, while records
        that come often or in bunches still leave packed by the drain (what one tick
        queues after a record written at once goes in one more PUBLISH, at once, and
        the next bunch in one)."""
        if self._poked:  # the drain runs soon already (every record of a bunch but one)
            return
        client = self._client
        hub = self.hub
        if (
            client is None
            or self._sleeper is None  # a drain is under way (or poked)
            or not client.idle
            or self._asked()
            or not self._lone  # records come in bunches: packed
            or self._quiet_from > trio.current_time()  # records come often: packed
            or (hub.outgoing.last is not None and hub.outgoing.last.op == KEEP)  # its push next
            or self._patient_until() > trio.current_time()  # held (``_held_until``)
        ):
            self._poke()
            return
        commands, _, _, _ = self._batch()
        if commands:
            client.post_nowait(commands)
            self.stats.drains += 1
            self.stats.at_once += 1
        if client.unsent:  # the socket took part of it: the drain writes the rest
            self._poke()

    def _held_until(self) -> float:
        """Until when the queue may wait: while this node's flusher pauses after a busy
        flush, a chatroom record that its viewers here read at the next flush anyway
        (``Outgoing.patient``) waits for that flush, and the records of one flush
        interval leave in one PUBLISH: Redis and every node then wake once per flush
        of a busy room, not once per message. Anything else queued or asked for (a
        drain awaited, a read, a subscription, the heartbeat) ends the wait. A PUBLISH
        that waited until the flush says so (``wire.PACED``): every node, this one
        too when it hears the records back, writes them at once, since they come once
        per flush already (net/flusher.py ``release``'s ``prompt``)."""
        return -math.inf if self._asked() else self._patient_until()

    def _patient_until(self) -> float:
        """The next flush, when everything queued may wait for it (else -inf)."""
        flusher = self.flusher
        if flusher is None or not self.hub.outgoing.patient:
            return -math.inf
        return flusher.due

    def _asked(self) -> bool:
        """The drain has more to do than publish what is queued: the heartbeat, a
        subscription, a resync, a drain someone waits for, a read of kept messages."""
        hub = self.hub
        return bool(
            self._beat_due
            or hub.rooms_changed
            or hub.resync_wanted
            or self._drained is not None
            or self._reads.waiting
        )

    def _poke(self) -> None:
        """The drain runs soon (a reschedule when it is parked, else a flag)."""
        self._poked = True
        sleeper = self._sleeper
        if sleeper is not None:
            self._sleeper = None
            trio.lowlevel.reschedule(sleeper)

    async def _parked(self) -> None:
        """The drain waits here until poked."""
        self._sleeper = trio.lowlevel.current_task()
        await trio.lowlevel.wait_task_rescheduled(self._unpark)

    def _unpark(self, _: object) -> trio.lowlevel.Abort:
        self._sleeper = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def _beats(self, client: resp.Connection) -> None:
        """Every ``HEARTBEAT`` seconds, the next drain sends the heartbeat; a reply
        Redis owes for ``DEADLINE`` seconds ends the connection."""
        while True:
            if trio.current_time() - client.owed_since > DEADLINE:
                raise trio.TooSlowError(f"Redis owes a reply for over {DEADLINE:.0f} s")
            self._beat_due = True
            self._poke()
            await trio.sleep(HEARTBEAT)

    several = True  # ``chatroom.service.ports.Cluster``

    async def settle(self) -> None:
        """``chatroom.service.ports.Cluster``: until every message published before now
        was heard: the reply to the next drain (a PING when it has nothing else to send)
        comes after them on the one connection. (Not the reply to a drain written
        before: Redis may have answered it before another node's message.)"""
        await trio.lowlevel.checkpoint()
        if self.hub.connected:
            self._poke()
            await self._published(SETTLE_DEADLINE, fresh=True)

    # ``chatroom.service.ports.Cluster``: a chatroom's recent messages, in Redis.

    def keep(self, message: Message, priority: Priority) -> None:
        self.hub.keep(message, priority)

    def unkeep(self, message: Message) -> None:
        self.hub.unkeep(message)

    def forget_kept(self, cid: str) -> None:
        self.hub.forget_kept(cid)

    async def kept(self, cid: str) -> list[Message] | None:
        """Chatroom ``cid``'s kept messages, oldest first, read after everything this
        node queued before; None when Redis does not answer (within a deadline)."""
        read = self._reads.ask(self.hub.channel("kept", cid)) if self.hub.connected else None
        if read is None:
            await trio.lowlevel.checkpoint()
            return None
        self._poke()
        with trio.move_on_after(SETTLE_DEADLINE):
            await read.done.wait()
        return await self._reads.messages(read)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        pause = BACKOFF[0]
        while True:
            try:
                await self._session()
            except* Exception as failed:  # every way Redis fails: connection, timeout, reply
                # (A shutdown's cancellation passes on.)
                if trio.current_effective_deadline() != -math.inf:
                    first = failed.exceptions[0]
                    log.warning("cluster: Redis at %s unreachable (%r)", self.url, first)
            hub = self.hub
            hub.connected = False
            hub.subscribed.clear()
            self._beat_due = True
            self._listener.lost()
            self._reads.abandon()
            if self._drained is not None:  # no answer comes: whoever waits goes on
                self._drained.set()
                self._drained = None
            self._fresh = False
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
        with trio.fail_after(DEADLINE):
            client = await resp.open_connection(self.url, resp3=True)
        async with client:
            with trio.fail_after(DEADLINE):
                own = (hub.channel("node", hub.node), hub.channel("presence"))
                await client.send(("SUBSCRIBE", *own))
                for _ in own:
                    await client.read()  # the confirmations
            log.info("cluster: node %s joined through %s", hub.node, self.url)
            hub.connected = self._up = True
            hub.rooms_changed = True  # subscribe to every chatroom watched here
            for node in hub.view.nodes():
                hub.resync_wanted.add(node)  # what changed while we were away
            # Changes made here or elsewhere while away were not heard: every node
            # reads its cached records again.
            hub.missed_changes()
            hub.changed(EVERYTHING, "")
            self.ready.set()
            client.read_by_task()  # the listener's, from now on
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._listener.read, client)
                    nursery.start_soon(self._beats, client)  # and the deadline
                    self._client = client  # ``_wake`` may write on it
                    await self._drain(client)
            finally:
                self._client = None
                client.abandon()  # whoever waits for a reply goes on

    async def _drain(self, client: resp.Connection) -> None:
        """Publish what is queued, each time the hub pokes. The replies come to the
        reading task (``Listener.read``): a drain waits for none, but for the previous
        drain's before it sends (``resp.Connection.post``), mostly in by then."""
        hub = self.hub
        self._not_before = self._quiet_from = -math.inf
        self._written, self._lone = -1, True
        while True:
            if not self._poked:
                await self._parked()
            elif self._not_before <= trio.current_time():
                await trio.lowlevel.checkpoint()  # a drain is a checkpoint
            if self._not_before > trio.current_time():
                await trio.sleep_until(self._not_before)
            # Held until the flush due now, not a later one (a busy cycle that starts
            # first moves it): no record waits longer than one pause.
            until = self._held_until()
            held = until > trio.current_time()
            while until > trio.current_time():
                with trio.move_on_at(until):  # or until poked with something else
                    await self._parked()
                until = min(until, self._held_until())
            # Held until that flush, not cut short by something else queued or asked
            paced = held and self._held_until() > -math.inf
            self._poked = False
            if client.unsent:  # what a drain in another task left (``_wake``)
                await client.flush()
            if hub.rooms_changed:  # else no checkpoint: a drain is a few scheduler passes
                await self._listener.follow_rooms(client)
            commands, reads, drained, beat = self._batch(paced)
            if commands:
                # Whoever waits (a drain's end, a chatroom's kept messages) hears when
                # the replies are in; no one waits for a drain of pushes.
                then = None
                if reads or drained is not None:
                    then = partial(self._answered, reads, drained)
                try:
                    await client.post(commands, then)
                except BaseException:
                    self._answered(reads, drained, None)  # the askers go on without
                    raise
            self.stats.drains += 1
            if beat:
                self._forget_silent()
            if hub.resync_wanted:
                await self._resync(client)

    def _batch(
        self, paced: bool = False
    ) -> tuple[list[Command], list[Read], trio.Event | None, bool]:
        """A drain's commands, out of what is queued (and whether it carries the
        heartbeat): its askers' reads and whoever waits for it taken with them.
        ``paced``: the records waited for this node's flush (``_held_until``), and each
        chatroom's PUBLISH ends with ``wire.PACED`` (``_commands``)."""
        hub = self.hub
        beat, self._beat_due = self._beat_due, False
        seq, events = hub.view.take_events()
        entries = hub.outgoing.take()
        drained, self._drained = self._drained, None  # its waiters' records are taken
        fresh, self._fresh = self._fresh, False
        self._quiet_from = trio.current_time() + self._linger
        if entries:
            self._lone = len(entries) == 1
            if not self._lone:
                self._not_before = self._quiet_from
        by_channel: dict[tuple[str, str], list[bytes]] = {}
        for entry in entries:
            by_channel.setdefault((entry.op, entry.channel), []).append(entry.record)
        if events:
            record = wire.encode({"k": "d", "n": hub.node, "q": seq, "e": events})
            by_channel.setdefault((PUBLISH, hub.channel("presence")), []).append(record)
        commands = self._commands(by_channel, paced)
        if beat:
            commands += self._beat(seq, self._written)
            self._written = seq
        if len(commands) > 1:  # every part of a drain in one order for every node
            commands = [("MULTI",), *commands, ("EXEC",)]
        reads = self._reads.take()
        commands += [("LRANGE", read.key, 0, -1) for read in reads]
        if drained is not None and not commands:
            if fresh or self._client is None:
                commands = [("PING",)]  # its reply comes after what was published before
            else:  # the queue went with a drain written before (``_wake``): its reply
                if not self._client.then_too(drained.set):
                    drained.set()  # is in already
                drained = None
        return commands, reads, drained, beat

    def _answered(
        self,
        reads: list[Read],
        drained: trio.Event | None,
        replies: list[resp.Reply | resp.RespError] | None,
    ) -> None:
        """A drain's ``replies`` are in (None: lost): its LRANGE replies (the last ones)
        to the askers, and whoever waits for the drain goes on. An error reply ends the
        connection (raised in the reading task)."""
        failed = resp.first_error(replies or ())
        if failed is not None or replies is None:
            KeptReader.answer(reads, None)
        else:
            KeptReader.answer(reads, replies[len(replies) - len(reads) :])  # type: ignore[arg-type]
        if drained is not None:
            drained.set()
        if failed is not None:
            raise failed

    def _commands(
        self, by_channel: dict[tuple[str, str], list[bytes]], paced: bool = False
    ) -> list[tuple[resp.Arg, ...]]:
        """One PUBLISH per channel (its records packed, then ``wire.PACED`` on a
        chatroom's when ``paced``); a chatroom's kept messages appended, trimmed to the
        newest ``kept`` and given a new lifetime, or removed."""
        commands: list[Command] = []
        stats = self.stats
        rooms = self.hub.channel("room", "") if paced else None
        for (op, key), records in by_channel.items():
            if op == PUBLISH:
                payload = b"".join(records)
                if rooms is not None and key.startswith(rooms):
                    payload += wire.PACED
                commands.append(("PUBLISH", key, payload))
                stats.publishes += 1
                stats.records += len(records)
            else:
                commands += kept_commands(op, key, records, self._kept)
        return commands

    def _beat(self, seq: int, written: int) -> list[tuple[resp.Arg, ...]]:
        """The heartbeat, and the snapshot when it changed since ``written``."""
        hub = self.hub
        key = hub.channel("snap", hub.node)
        if seq != written:
            snap = orjson.dumps({"q": seq, "rows": hub.snapshot()})
            refresh: tuple[resp.Arg, ...] = ("SET", key, snap, "EX", SNAPSHOT_TTL)
        else:
            refresh = ("EXPIRE", key, SNAPSHOT_TTL)
        beat = wire.encode({"k": "h", "n": hub.node, "q": seq})
        return [refresh, ("PUBLISH", hub.channel("presence"), beat)]

    def _forget_silent(self) -> None:
        hub = self.hub
        for node in hub.view.silent(trio.current_time(), SILENCE):
            log.warning("cluster: node %s silent for %.0f s: it leaves the counts", node, SILENCE)
            hub.view.drop(node)

    async def _resync(self, client: resp.Connection) -> None:
        await trio.lowlevel.checkpoint()
        hub = self.hub
        while hub.resync_wanted:
            node = hub.resync_wanted.pop()
            if hub.view.gone(node):
                continue
            with trio.fail_after(DEADLINE):
                raw = await client.call("GET", hub.channel("snap", node))
            if not isinstance(raw, bytes):
                hub.view.drop(node)
                continue
            try:
                snap = orjson.loads(raw)
                hub.view.load(node, int(snap["q"]), list(snap["rows"]), trio.current_time())
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                hub.bad_records += 1
                log.warning("cluster: node %s's snapshot is unreadable (%s)", node, exc)
