"""A chatroom's frame log (protocol/roomlog.py) as viewers see it: viewers that keep up
and leave ``peerId`` out (configBitmap bit 7) follow the room's log and are written by
its flushes, the others from their own outbox; all of them get every message once, in
order, never their own, and nothing of a room they left."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import cast

import pytest
import trio
from helpers import JSON_SUB, PROTOBUF_SUB, Client, fail_after, running_server

from chatroom.config import Config
from chatroom.core.outbox import Priority, QueuedBytes, ShedTotals
from chatroom.core.presence import Session
from chatroom.hub import redis_wire
from chatroom.hub.base import Hub
from chatroom.hub.local import LocalHub
from chatroom.hub.redis import RedisHub
from chatroom.net.connection import Connection
from chatroom.net.flusher import Flusher
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, parse_subprotocol

OMITS = 128  # configBitmap bit 7: pushes may leave peerId out
BUSY = {  # every flush busy, two connections a slice: ranges of several frames
    "write_slice": 2,
    "write_delay_threshold": 2,
    "shed_backlog_low": 1_000_000,
    "shed_backlog_normal": 1_000_000,
    "shed_lag_low": 3600.0,
    "shed_lag_normal": 3600.0,
}


async def directs(client: Client, count: int) -> list[str]:
    """Wait for ``count`` direct pushes; every direct message received so far, in order."""
    while True:
        got = [cmd["msg"] for cmd in client.received if cmd.get("cmd") == "direct"]
        if len(got) >= count:
            return got
        await client.receive()


async def join(client: Client, cid: str, name: str) -> None:
    reply = await client.request({"cmd": "conv", "op": "add", "cid": cid, "m": [name]})
    assert reply.get("op") == "added", reply


@asynccontextmanager
async def chatroom(*viewers: tuple[str, str, bool]) -> AsyncIterator[tuple[str, list[Client]]]:
    """A server with every flush busy, a chatroom opened by ``host`` (who leaves
    peerId out) and its viewers, each (name, subprotocol, leaves peerId out), logged
    in and joined; the room's cid and the clients, host first."""
    async with running_server(BUSY) as running, contextlib.AsyncExitStack() as stack:
        host = await stack.enter_async_context(running.client(PROTOBUF_SUB))
        await host.login("host", configBitmap=OMITS)
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        clients = [host]
        for name, subprotocol, omits in viewers:
            client = await stack.enter_async_context(running.client(subprotocol))
            await client.login(name, **({"configBitmap": OMITS} if omits else {}))
            await join(client, cid, name)
            clients.append(client)
        yield cid, clients


@fail_after(60)
async def test_viewers_read_from_the_log_get_everything_once_in_order_but_their_own() -> None:
    viewers = [
        ("fast", PROTOBUF_SUB, True),
        ("talker", PROTOBUF_SUB, True),
        ("named", PROTOBUF_SUB, False),  # SDK 3.x style: every push names its client
        ("flat", JSON_SUB, False),
    ]
    async with chatroom(*viewers) as (cid, (host, fast, talker, named, flat)):
        sent: list[str] = []
        for batch in range(5):
            texts = [f"h{batch}-{i:02d}" for i in range(20)]
            await host.say_many(cid, texts)
            sent += texts
            said = f"t{batch}"  # the talker's own, between the host's
            await talker.say(cid, said)
            sent.append(said)
        everyone = len(sent)
        assert await directs(fast, everyone) == sent
        assert await directs(named, everyone) == sent
        assert await directs(flat, everyone) == sent
        assert await directs(talker, everyone - 5) == [m for m in sent if m[0] == "h"]
        assert await directs(host, 5) == [m for m in sent if m[0] == "t"]
        pushed = [cmd for cmd in fast.received if cmd.get("cmd") == "direct"]
        assert all("peerId" not in cmd for cmd in pushed)
        pushed = [cmd for cmd in named.received if cmd.get("cmd") == "direct"]
        assert all(cmd.get("peerId") == "named" for cmd in pushed)


@fail_after(60)
async def test_a_viewer_that_left_gets_nothing_more_of_the_room() -> None:
    viewers = [("stays", PROTOBUF_SUB, True), ("leaves", PROTOBUF_SUB, True)]
    async with chatroom(*viewers) as (cid, (host, stays, leaves)):
        before = [f"b{i:02d}" for i in range(30)]
        await host.say_many(cid, before)
        assert await directs(leaves, len(before)) == before
        quit_ = {"cmd": "conv", "op": "remove", "cid": cid, "m": ["leaves"]}
        assert (await leaves.request(quit_)).get("op") == "removed"
        after = [f"a{i:02d}" for i in range(30)]
        await host.say_many(cid, after)
        assert await directs(stays, 60) == before + after
        # A message of a normal conversation, sent after: what came before it on
        # this socket is all the viewer will ever get of the room.
        dm = await host.start(["leaves"])
        await host.say(dm, "marker")
        assert await directs(leaves, len(before) + 1) == [*before, "marker"]


@fail_after(60)
async def test_a_follower_that_stops_reading_is_closed_4120_and_the_others_miss_nothing() -> None:
    # Both viewers follow the room; "stalled" stops reading. The room's flushes write
    # it until its socket refuses bytes; then it is a straggler with its own queue,
    # which overflows: closed as a slow consumer. The reader gets every message.
    async with running_server(BUSY) as running, contextlib.AsyncExitStack() as stack:
        clients = []
        for name in ("host", "reader", "stalled"):
            client = await stack.enter_async_context(running.client(PROTOBUF_SUB))
            await client.login(name, configBitmap=OMITS)
            clients.append(client)
        host, reader, stalled = clients
        reply = await host.request({"cmd": "conv", "op": "start", "m": [], "transient": True})
        cid = reply["cid"]
        await join(reader, cid, "reader")
        await join(stalled, cid, "stalled")
        counters = running.server.context.counters
        sent: list[str] = []
        while counters.closed_slow == 0:
            batch = [f"{len(sent) + i:05d}" + "x" * 30_000 for i in range(10)]
            await host.say_many(cid, batch)
            sent += batch
            assert await directs(reader, len(sent)) == sent  # it keeps up, whatever else
        reason = await stalled.closed()  # reading now: what was written, then the close
        got = [p["msg"] for p in stalled.pushes if p.get("cmd") == "direct"]
        assert got == sent[: len(got)]  # a prefix, in order, no gap
        assert reason.code == 4120
        await host.say(cid, "after")
        assert (await directs(reader, len(sent) + 1))[-1] == "after"


# The log's edges, on real connections and a real hub, without sockets: the hub of one
# process, and a cluster node's (alone here: it delivers to its viewers at once).

HUBS = pytest.mark.parametrize(
    "make_hub", [LocalHub, lambda: RedisHub("n1")], ids=["local", "redis"]
)


OPEN: list[Wire] = []


@pytest.fixture(autouse=True)
def _close_pipes() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


class Wire:
    """A transport on a pipe, which the room's flushes write to as to a socket: the
    frames written, decoded."""

    backlog = 0

    def __init__(self) -> None:
        self.owner: object = None
        self._out, self.fileno = os.pipe()
        OPEN.append(self)
        os.set_blocking(self._out, False)
        os.set_blocking(self.fileno, False)  # as trio leaves a socket
        self.data = b""

    def write_nowait(self, data: bytes) -> int:
        try:
            return os.write(self.fileno, data)
        except BlockingIOError:
            return 0

    async def wait_writable(self) -> None:
        await trio.lowlevel.wait_writable(self.fileno)

    def interrupt(self) -> bool:
        return False  # nobody reads a pipe's end here

    def close(self) -> None:
        os.close(self._out)
        os.close(self.fileno)

    async def read_until(self, count: int) -> None:
        """Read until ``count`` messages are in."""
        while len(self.texts()) < count:
            await trio.lowlevel.wait_readable(self._out)

    def texts(self) -> list[str]:
        """Every whole message written so far (the pipe holds 64 KiB)."""
        while True:
            try:
                chunk = os.read(self._out, 65536)
            except BlockingIOError:
                break
            self.data += chunk
        out, data = [], self.data
        while len(data) >= 4:
            size, start = data[1] & 0x7F, 2
            if size == 126:
                size, start = int.from_bytes(data[2:4], "big"), 4
            if len(data) < start + size:
                break  # the rest of it is still to come
            out.append(pb.GenericCommand.FromString(data[start : start + size]).directMessage.msg)
            data = data[start + size :]
        return out


def viewers(
    hub: Hub, flusher: Flusher, *names: str, tasks: trio.Nursery | None = None
) -> list[tuple[Session, Wire]]:
    """Connections on pipes, each a session of one viewer in chatroom "room";
    ``tasks`` runs their writers (without it, none may be needed)."""
    config = Config(db=":memory:")
    ctx = SimpleNamespace(
        config=config,
        counters=SimpleNamespace(shed=ShedTotals()),
        policies=SimpleNamespace(queued=QueuedBytes(config.queued_bytes_budget)),
    )
    subprotocol = parse_subprotocol(PROTOBUF_SUB)
    assert subprotocol is not None
    out = []
    for name in names:
        wire = Wire()
        conn = Connection(wire, subprotocol, ctx, flusher)  # type: ignore[arg-type]
        conn._omit_peer_id = True  # as after a login with configBitmap bit 7
        conn._tasks = tasks or cast(trio.Nursery, object())  # as while serving
        session = Session(name, conn, token=name)
        conn.attach(session)
        hub.attach(session)
        hub.join_room("room", session)
        out.append((session, wire))
    return out


def message(text: str) -> Prepared:
    cmd = pb.GenericCommand(cmd=pb.direct)
    cmd.directMessage.msg = text
    cmd.directMessage.cid = "room"
    return Prepared(cmd)


def flush(flusher: Flusher) -> None:
    dirty, flusher._dirty = flusher._dirty, []
    for conn in dirty:
        conn.flush_nowait()


@HUBS
def test_a_range_with_a_gap_is_queued_without_the_missing_frame(
    make_hub: Callable[[], Hub],
) -> None:
    hub, flusher = make_hub(), Flusher()
    (a, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b")
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    hub.to_room(message("m2"), "room", Priority.NORMAL, skip=a)  # a sent it
    hub.to_room(message("m3"), "room", Priority.NORMAL)
    flush(flusher)
    assert a_wire.texts() == ["m1", "m3"]
    assert b_wire.texts() == ["m1", "m2", "m3"]


@HUBS
def test_a_viewer_that_left_is_not_written_what_came_after(make_hub: Callable[[], Hub]) -> None:
    hub, flusher = make_hub(), Flusher()
    (_, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b")
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    hub.leave_room("room", "b")
    hub.to_room(message("m2"), "room", Priority.NORMAL)
    flush(flusher)
    assert a_wire.texts() == ["m1", "m2"]
    assert b_wire.texts() == ["m1"]


@HUBS
def test_a_reply_between_two_pushes_is_written_between_them(make_hub: Callable[[], Hub]) -> None:
    hub, flusher = make_hub(), Flusher()
    (a, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b")
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    a.outlet.send(message("reply").command)
    hub.to_room(message("m2"), "room", Priority.NORMAL)
    flush(flusher)
    assert a_wire.texts() == ["m1", "reply", "m2"]
    assert b_wire.texts() == ["m1", "m2"]


@HUBS
def test_viewers_flushed_every_few_messages_keep_every_frame_in_order(
    make_hub: Callable[[], Hub],
) -> None:
    hub, flusher = make_hub(), Flusher()
    (_, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b")
    sent = [f"m{i}" for i in range(600)]
    for number, text in enumerate(sent):
        hub.to_room(message(text), "room", Priority.NORMAL)
        if number % 5 == 0:
            flush(flusher)
    flush(flusher)
    assert a_wire.texts() == sent
    assert b_wire.texts() == sent


def test_a_cluster_node_writes_another_nodes_chatroom_pushes_from_the_log() -> None:
    # Node n1 hears node n2's pushes to the room on the room's channel, in the order
    # Redis gave every node: its viewers that keep up read them from one log, and
    # share each write's bytes; the one a record skips (its sender is here) gets the
    # rest, in order.
    hub, flusher = RedisHub("n1"), Flusher()
    (_, a_wire), (_, b_wire), (_, c_wire) = viewers(hub, flusher, "a", "b", "c")
    sent = [f"m{i}" for i in range(5)]
    for text in sent:
        header: redis_wire.Header = {"k": "r", "c": "room", "l": False, "n": "n2"}
        skip = "c" if text == "m2" else None
        hub.receive(redis_wire.push_record(header, message(text), Priority.NORMAL, skip), 0.0)
    flush(flusher)
    assert a_wire.texts() == b_wire.texts() == sent
    assert c_wire.texts() == [t for t in sent if t != "m2"]


@HUBS
def test_a_closed_follower_is_not_written_any_more(make_hub: Callable[[], Hub]) -> None:
    # Its socket's number may belong to another client once it is closed.
    hub, flusher = make_hub(), Flusher()
    (a, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b")
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    flush(flusher)
    a.outlet.kick(4001, "test")
    hub.to_room(message("m2"), "room", Priority.NORMAL)
    flush(flusher)
    assert a_wire.texts() == ["m1"]
    assert b_wire.texts() == ["m1", "m2"]


@HUBS
@fail_after(10)
async def test_a_follower_whose_socket_fills_gets_the_rest_and_every_later_frame_in_order(
    make_hub: Callable[[], Hub],
) -> None:
    # 20 KB messages fill a pipe (64 KiB) at the fourth: the room's flush writes part
    # of one, the connection's writer finishes it once the reader reads, then queued
    # frames, then the room's flushes again.
    hub, flusher = make_hub(), Flusher()
    async with trio.open_nursery() as nursery:
        (_, a_wire), (_, b_wire) = viewers(hub, flusher, "a", "b", tasks=nursery)
        sent = [f"{i}:" + "x" * 20_000 for i in range(8)]
        for text in sent:
            hub.to_room(message(text), "room", Priority.HIGH)
            flush(flusher)
        for wire in (a_wire, b_wire):
            await wire.read_until(len(sent))
        later = [f"later{i}" for i in range(3)]
        for text in later:
            hub.to_room(message(text), "room", Priority.NORMAL)
            flush(flusher)
        for wire in (a_wire, b_wire):
            await wire.read_until(len(sent) + len(later))
        assert a_wire.texts() == b_wire.texts() == sent + later


@HUBS
def test_a_room_bigger_than_a_slice_is_written_a_slice_per_turn_with_what_came_meanwhile(
    make_hub: Callable[[], Hub],
) -> None:
    # Five followers, two sockets a turn: between two turns the other tasks run, and a
    # message read then reaches the followers not written yet in the same cycle; the
    # ones already written get it in the next cycle.
    hub, flusher = make_hub(), Flusher(slice_size=2)
    wires = [wire for _, wire in viewers(hub, flusher, "a", "b", "c", "d", "e")]
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    (writer,) = flusher._dirty
    flusher._dirty, flusher._cycle = [], [writer]
    writer.flush_nowait()  # the cycle's first turn: two sockets, then another turn
    assert flusher._cycle == [writer, writer]
    hub.to_room(message("m2"), "room", Priority.NORMAL)  # read between two turns
    for _ in range(2):
        flusher._cycle.pop().flush_nowait()
    assert flusher._cycle == [writer]  # no fourth turn: everyone was written
    assert sorted(len(wire.texts()) for wire in wires) == [1, 1, 2, 2, 2]
    assert flusher._dirty == [writer]  # m2, for the two written first
    flusher._cycle = None
    flush(flusher)
    assert all(wire.texts() == ["m1", "m2"] for wire in wires)


def first_turn(flusher: Flusher) -> None:
    """A cycle's first turn, the room's writer its one dirty item; its other turns
    are left in ``flusher._cycle``."""
    (writer,) = flusher._dirty
    flusher._dirty, flusher._cycle = [], []
    writer.flush_nowait()


@HUBS
def test_followers_written_first_in_one_cycle_are_written_first_in_the_next(
    make_hub: Callable[[], Hub],
) -> None:
    # Two sockets a turn. In the first cycle a and b get m1 alone, then m2 comes and
    # c, d, e get both: two groups. In the next cycle a and b have waited longest, so
    # the cycle's first turn is theirs, not the group written last.
    hub, flusher = make_hub(), Flusher(slice_size=2)
    wires = {session.peer_id: wire for session, wire in viewers(hub, flusher, *"abcde")}
    hub.to_room(message("m1"), "room", Priority.NORMAL)
    first_turn(flusher)
    hub.to_room(message("m2"), "room", Priority.NORMAL)  # read between two turns
    while flusher._cycle:
        flusher._cycle.pop().flush_nowait()
    flusher._cycle = None
    hub.to_room(message("m3"), "room", Priority.NORMAL)
    first_turn(flusher)  # the next cycle's
    assert {name for name, wire in wires.items() if "m3" in wire.texts()} == {"a", "b"}
    assert wires["a"].texts() == ["m1", "m2", "m3"]
