"""chatroom.net.redis_link: what a node is made of, and how it publishes."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from helpers import fail_after
from redis_server import RedisServer, redis_server

from chatroom.core.outbox import Priority
from chatroom.hub import redis_wire as wire
from chatroom.net import redis_link, resp
from chatroom.net.flusher import Flusher
from chatroom.net.redis_link import HEARTBEAT, cluster_hub
from chatroom.net.redis_listen import DEADLINE


@pytest.mark.parametrize(
    ("url", "prefix"),
    [
        ("redis://10.0.0.5:6379/3", "chatroom:3:"),
        ("redis://10.0.0.5:6379", "chatroom:0:"),
        ("unix:///run/redis.sock?db=2", "chatroom:2:"),
    ],
)
def test_channel_names_carry_the_database_number(url: str, prefix: str) -> None:
    # Redis shares pub/sub channels between databases: two clusters stay apart.
    link = cluster_hub(url, 100)
    assert link is not None
    assert link.hub.channel("presence") == prefix + "presence"
    assert link.hub.outgoing.capacity == 100


def test_without_a_url_a_node_is_alone() -> None:
    assert cluster_hub("", 100) is None


def test_every_node_has_its_own_id() -> None:
    first, second = cluster_hub("redis://h:1/0", 1), cluster_hub("redis://h:1/0", 1)
    assert first is not None
    assert second is not None
    assert first.hub.node != second.hub.node


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    yield from redis_server()


async def _texts(listener: resp.Connection) -> list[str]:
    """The records of the next PUBLISH heard, by their ``t`` (``|``: ``wire.PACED``)."""
    reply = await listener.read()
    assert isinstance(reply, list)
    assert reply[0] == b"message"
    data = reply[2]
    assert isinstance(data, bytes)
    return [str(record.header.get("t", "|")) for record in wire.decode(data)]


class _Room:
    """A node's link running on the test's Redis, and a plain subscriber to one of its
    room channels (``listener``)."""

    def __init__(self, link: redis_link.RedisLink, listener: resp.Connection) -> None:
        self.link = link
        self.listener = listener
        self.channel = link.hub.channel("room", "r1")

    def queue(self, *texts: str, pad: int = 0, patient: bool = False) -> None:
        """Records with these ``t``s queued (and the hub woken) one by one; ``patient``:
        records of a room the node reads back (``Outgoing.offer``)."""
        for text in texts:
            record = wire.encode({"k": "x", "t": text, **({"pad": "x" * pad} if pad else {})})
            self.link.hub.outgoing.offer(self.channel, record, Priority.HIGH, patient=patient)
            self.link.hub.wake()


class _Paused(Flusher):
    """A node's flusher that pauses after a busy flush until ``until``."""

    def __init__(self, until: float) -> None:
        super().__init__()
        self.until = until

    @property
    def due(self) -> float:
        return self.until


@asynccontextmanager
async def _room(redis: RedisServer, linger: float = 0.0) -> AsyncIterator[_Room]:
    """The link running and ready, its room's channel subscribed to; stopped after."""
    link = cluster_hub(redis.url, 100, linger=linger)
    assert link is not None
    listener = await resp.open_connection(redis.url)
    room = _Room(link, listener)
    async with listener, trio.open_nursery() as nursery:
        await listener.send(("SUBSCRIBE", room.channel))
        await listener.read()  # the confirmation
        await nursery.start(link.run)
        await link.ready.wait()
        yield room
        nursery.cancel_scope.cancel()


@fail_after(20)
async def test_a_busy_node_packs_what_it_queues_meanwhile_into_one_publish(
    redis: RedisServer,
) -> None:
    # After a drain of several records, what the node queues in the next ``linger``
    # seconds leaves in one PUBLISH per channel: every node then reads and fans out
    # those messages in one go, instead of one PUBLISH (and one wake-up) each.
    async with _room(redis, linger=1.0) as room:
        room.queue("a", "b")
        assert await _texts(room.listener) == ["a", "b"]  # a busy drain: the linger starts
        for text in "cde":  # each alone, with time between them
            room.queue(text)
            await trio.sleep(0.01)
        assert await _texts(room.listener) == ["c", "d", "e"]


@fail_after(20)
async def test_a_quiet_node_publishes_before_the_sending_task_yields(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the link idle (no drain under way, no reply owed), a record queued leaves
    # from the task that queued it, in one write: no wake-up of the drain, no pass
    # through the scheduler first. A subscriber gets it while that task still holds
    # the event loop (it waits on a plain socket here, blocking the loop).
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)  # no heartbeat drain meanwhile
    link = cluster_hub(redis.url, 100)
    assert link is not None
    hub = link.hub
    channel = hub.channel("room", "r1")
    with socket.socket(socket.AF_UNIX) as subscriber:
        subscriber.settimeout(5)
        subscriber.connect(str(redis.socket))
        subscriber.sendall(resp.encode("SUBSCRIBE", channel))
        parser = resp.Parser()

        def heard() -> resp.Reply | resp.RespError:
            while not (replies := parser.replies()):
                parser.feed(subscriber.recv(1 << 16))  # blocking: the loop must not run
            assert len(replies) == 1
            return replies[0]

        assert isinstance(heard(), list)  # the confirmation
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await link.ready.wait()
            await link.settle()  # the first drain's replies are in: the link is idle
            drains = link.stats.drains
            for text in "ab":
                hub.outgoing.offer(channel, wire.encode({"k": "x", "t": text}), Priority.HIGH)
                hub.wake()
                message = heard()
                assert isinstance(message, list)
                data = message[2]
                assert isinstance(data, bytes)
                assert [record.header["t"] for record in wire.decode(data)] == [text]
                await link.settle()  # its reply in: idle again
            assert link.stats.drains == drains + 4  # two at once, two for settle
            assert link.stats.at_once == 2
            nursery.cancel_scope.cancel()


@fail_after(20)
async def test_records_that_come_often_are_packed_by_the_drain(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a quiet link (no drain for ``linger`` seconds) writes a record at once:
    # within the linger the drain packs what one tick queues into one PUBLISH, also
    # when the link has nothing owed.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    async with _room(redis, linger=1.0) as room:
        link = room.link
        await link.settle()
        await trio.sleep(1.0)  # quiet
        drains = link.stats.drains
        room.queue("a")
        assert link.stats.drains == drains + 1  # at once
        assert await _texts(room.listener) == ["a"]
        await link.published()  # its reply in: nothing owed
        room.queue("b", "c")
        assert await _texts(room.listener) == ["b", "c"]


@fail_after(20)
async def test_records_that_come_in_bunches_are_packed_by_the_drain(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A record written at once that others followed in the same tick (they left in a
    # drain of their own): the next bunch goes through the drain, in one PUBLISH, until
    # a drain carries a lone record again.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    async with _room(redis) as room:  # no linger: a link is quiet at once
        link = room.link

        async def heard(count: int) -> list[list[str]]:
            publishes: list[list[str]] = []
            while sum(map(len, publishes)) < count:
                publishes.append(await _texts(room.listener))
            await link.published()  # the replies in: nothing owed
            return publishes

        await link.settle()
        room.queue("a", "b", "c")
        assert await heard(3) == [["a"], ["b", "c"]]  # "a" at once
        room.queue("d", "e")
        assert await heard(2) == [["d", "e"]]  # one drain
        room.queue("f")
        assert await heard(1) == [["f"]]  # a lone record, by the drain
        at_once = link.stats.at_once
        room.queue("g")
        assert await heard(1) == [["g"]]
        assert link.stats.at_once == at_once + 1  # quiet again: at once


@fail_after(20)
async def test_a_busy_nodes_room_records_wait_for_its_next_flush_in_one_publish(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While the node's flusher pauses after a busy flush, its viewers read a room's
    # messages at the next flush anyway: the records leave then, those of the whole
    # pause in one PUBLISH, and Redis and every node wake once for them, not once each.
    # For that flush only: a busy cycle of other traffic that starts first moves the
    # next one on, and the records do not wait for it as well. The PUBLISH ends with
    # the mark that it waited (``wire.PACED``): every node writes it when it comes.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    async with _room(redis) as room:
        link = room.link
        await link.settle()
        due = trio.current_time() + 0.3
        flusher = link.flusher = _Paused(due)
        records = link.stats.records
        room.queue("a", patient=True)
        await trio.sleep(0.05)
        room.queue("b", patient=True)
        flusher.until = trio.current_time() + 3600
        assert await _texts(room.listener) == ["a", "b", "|"]
        assert trio.current_time() >= due
        assert link.stats.at_once == 0
        assert link.stats.records == records + 2  # the mark is no record of a message


@pytest.mark.parametrize("end", ["a push to clients", "settle", "not paused"])
@fail_after(20)
async def test_anything_else_a_node_queues_or_awaits_ends_the_wait(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, end: str
) -> None:
    # ... and the PUBLISH that leaves then is not marked as paced (no ``|``): the
    # other nodes pace its records as their own.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    async with _room(redis) as room, trio.open_nursery() as nursery:
        link = room.link
        await link.settle()
        link.flusher = _Paused(trio.current_time() + (-1 if end == "not paused" else 3600))
        room.queue("a", patient=True)
        room.queue("b", patient=True)
        if end == "a push to clients":
            room.queue("c")
            assert await _texts(room.listener) == ["a", "b", "c"]
        else:
            if end == "settle":
                nursery.start_soon(link.settle)
            texts = await _texts(room.listener)
            if end == "not paused":  # "a" at once (a quiet link), "b" in the next drain
                texts += await _texts(room.listener)
            assert texts == ["a", "b"]


@fail_after(20)
async def test_what_is_queued_while_a_large_record_is_written_follows_it(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A record larger than the socket takes at once is written in part by the task
    # that queued it; the drain writes the rest, then what was queued meanwhile.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    async with _room(redis) as room:
        await room.link.settle()
        room.queue("big", pad=4 << 20)
        room.queue("a", "b")
        texts: list[str] = []
        while len(texts) < 3:
            texts += await _texts(room.listener)
        assert texts == ["big", "a", "b"]


@fail_after(20)
async def test_waiting_for_a_record_just_written_costs_no_command(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A login writes its presence event at once, then waits until Redis has it
    # (``published``): the reply to that write says so, no PING is sent for it. A
    # ``settle`` (what other nodes published before now) sends one.
    monkeypatch.setattr(redis_link, "HEARTBEAT", 3600.0)
    link = cluster_hub(redis.url, 100)
    assert link is not None
    hub = link.hub

    async def pings() -> int:
        async with await resp.open_connection(redis.url) as asker:
            stats = await asker.call("INFO", "commandstats")
        assert isinstance(stats, bytes)
        for line in stats.decode().splitlines():
            if line.startswith("cmdstat_ping:"):
                return int(line.split("calls=")[1].split(",")[0])
        return 0

    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        await link.ready.wait()
        await link.settle()
        before = await pings()
        hub.outgoing.offer(hub.channel("presence"), wire.encode({"k": "x"}), Priority.HIGH)
        hub.wake()
        await link.published()
        assert await pings() == before
        await link.settle()
        assert await pings() == before + 1
        nursery.cancel_scope.cancel()


async def _clients(redis: RedisServer) -> int:
    """Connections Redis holds, the asker's left out."""
    async with await resp.open_connection(redis.url) as asker:
        listed = await asker.call("CLIENT", "LIST")
    assert isinstance(listed, bytes)
    return len(listed.splitlines()) - 1


@fail_after(20)
async def test_a_node_sends_and_hears_through_one_connection(redis: RedisServer) -> None:
    # One RESP3 connection both publishes and subscribes: Redis writes a drain's reply
    # and the node's own message heard back in one write, read in one read.
    link = cluster_hub(redis.url, 100)
    assert link is not None
    hub = link.hub
    before = await _clients(redis)
    async with trio.open_nursery() as nursery:
        await nursery.start(link.run)
        await link.ready.wait()
        assert await _clients(redis) == before + 1
        await link.settle()  # answered on that connection
        heard = link.statistics()["received"]
        hub.outgoing.offer(hub.channel("node", hub.node), wire.encode({"k": "x"}), Priority.HIGH)
        hub.wake()
        await link.settle()  # the reply comes after the message published before it
        assert link.statistics()["received"] == heard + 1  # type: ignore[operator]
        nursery.cancel_scope.cancel()


@fail_after(30)
async def test_a_redis_that_stops_answering_is_left_and_found_again(tmp_path: Path) -> None:
    # Every call has a deadline: with Redis stopped (SIGSTOP: the socket stays open,
    # nothing answers) a node notices within DEADLINE, and reconnects once it answers.
    server = RedisServer(tmp_path)
    server.start()
    assert server.process is not None
    link = cluster_hub(server.url, 100)
    assert link is not None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(link.run)
            await link.ready.wait()
            os.kill(server.process.pid, signal.SIGSTOP)
            stopped = trio.current_time()
            while link.hub.connected:  # noqa: ASYNC110 - the link's flag, no event
                await trio.sleep(0.05)
            assert trio.current_time() - stopped < DEADLINE + HEARTBEAT + 1
            os.kill(server.process.pid, signal.SIGCONT)
            while not link.hub.connected:  # noqa: ASYNC110
                await trio.sleep(0.05)
            assert link.stats.reconnects >= 1
            nursery.cancel_scope.cancel()
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        server.stop()
