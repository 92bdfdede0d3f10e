"""Node A's per-message work in a cluster, for instruction counts (not a benchmark).

``python -m bench.clusterpath N ROUNDS`` runs the publisher's node of a cluster in this
process, with a private ``redis-server`` (unix socket; not traced by callgrind, which
follows no child unless told): N viewers here (``Connection`` objects on sinks, as in
bench/hotpath.py), following one chatroom's frame log. ROUNDS times it pushes
``--frames`` prepared chatroom messages through ``RedisHub.to_room`` (the publisher's
session skipped, as ``messages._push`` does), lets the link publish them in one drain
and waits until Redis brought them back and the hub delivered them here, then runs one
flusher sweep. That is everything a message costs node A in Python (the record's
encode, the drain, the PUBLISH and its reply, the echo's read and decode, the fan-out),
Redis itself left out. ``--hub local`` does the same on one node (``LocalHub``, no
Redis) for comparison: the difference is what the cluster costs per message.

Under callgrind at two values of ROUNDS, the difference divided by ``frames`` times
the difference in ROUNDS is the cost of one message in instructions, start-up
cancelled out::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.clusterpath 100 100 --frames 10
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.clusterpath 100 200 --frames 10

``--kept`` also keeps each message in the room's Redis list (``keep``: what a chatroom
message that is not transient costs). The heartbeat is turned off (it runs once a
second of wall time, which callgrind stretches).

``--role b`` measures the other side, a node that hears the room: N viewers here (on
node ``nodeB``), and a feeder process (``--feed``, started by this one; callgrind does
not follow it) that publishes each round's ``--frames`` records on the room's channel
in one PUBLISH (``--publishes K``: in K, written at once, as from K drains heard in
one read), built by a ``RedisHub`` as node A builds them. This process reads the
PUBLISH from Redis, decodes the records and fans them out: node B's work per message.
Node A plus node B, each with N viewers, set against ``--hub local`` with 2N viewers is
what two nodes cost per message over one. ``--flusher`` runs the server's flusher task
(the default configuration) instead of one sweep by hand per round, and pauses 50 ms
between rounds (beyond the flusher's pause, as at bench.cluster's fixed rate): the
wake-ups and scheduler passes between reading a PUBLISH and writing the viewers are
then counted too (a pause costs the same sleep and wake-up of this task per round)::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.clusterpath 100 20 --frames 10 --role b   # and 100 60
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.clusterpath 200 20 --frames 10 --hub local   # and 200 60
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import trio

from bench.cluster import redis_server
from bench.hotpath import _Sink, fake_context
from chatroom.config import Config
from chatroom.core.model import Message
from chatroom.core.outbox import Priority
from chatroom.core.presence import Session
from chatroom.hub.local import LocalHub
from chatroom.hub.redis import RedisHub
from chatroom.net import redis_link, resp
from chatroom.net.connection import Connection
from chatroom.net.flusher import Flusher
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, parse_subprotocol, told_priority

CID = "c" * 24
PREFIX = "chatroom:0:"


def _message(n: int, told: bool) -> tuple[Prepared, Message]:
    """Message ``n`` and its push; ``told`` (``--told``): the push tells flat JSON
    viewers its priority, as a sender's that gave one does."""
    cmd = pb.GenericCommand(cmd=pb.direct)
    cmd.directMessage.msg = "m" * 100
    cmd.directMessage.cid = CID
    cmd.directMessage.id = f"{n:020d}"
    cmd.directMessage.timestamp = 1_700_000_000_000 + n
    cmd.directMessage.fromPeerId = "pub0"
    cmd.directMessage.transient = True
    message = Message(CID, f"{n:020d}", "pub0", 1_700_000_000_000 + n, "m" * 100)
    return Prepared(cmd, told_priority(1) if told else None), message


def _records(hub: RedisHub, publisher: Session, first: int, count: int, told: bool) -> list[bytes]:
    """Node A's records of ``count`` messages from ``first``."""
    for n in range(first, first + count):
        hub.to_room(_message(n, told)[0], CID, Priority.HIGH, publisher)
    return [entry.record for entry in hub.outgoing.take()]


def _feed(args: argparse.Namespace) -> None:
    """The feeder of ``--role b``: ``--frames`` records on the room's channel for each
    byte read from stdin, in ``--publishes`` PUBLISHes written at once; exits at the
    end of stdin."""
    hub = RedisHub("nodeA", prefix=PREFIX)
    hub.connected = True  # queue records, as node A does while Redis answers
    publisher = Session("pub0", cast(Any, None), token="tpub")
    hub.attach(publisher)
    channel = hub.channel("room", CID)
    address = resp.parse_url(args.feed)
    with socket.socket(socket.AF_UNIX) as redis:
        redis.connect(address.path)
        sent = 0
        while sys.stdin.buffer.read(1):
            records = _records(hub, publisher, sent, args.frames, args.told)
            sent += args.frames
            step = -(-len(records) // args.publishes)
            parts = [b"".join(records[at : at + step]) for at in range(0, len(records), step)]
            redis.sendall(b"".join(resp.encode("PUBLISH", channel, part) for part in parts))
            reply = b""
            while reply.count(b"\r\n") < len(parts):
                reply += redis.recv(64)


async def _run(args: argparse.Namespace, url: str | None, feeder: int | None = None) -> int:
    config = Config(db=":memory:")
    ctx = fake_context(config)
    subprotocol = parse_subprotocol("lc.protobuf2.3")
    assert subprotocol is not None
    # ``--flusher``: the server's flusher task, as configured by default; else one
    # sweep by hand per round.
    flusher = Flusher(
        config.write_delay,
        config.write_delay_threshold,
        max_pause=config.write_max_pause,
        slice_size=config.write_slice,
        latency=config.write_latency,
    )
    written = 0  # sockets the flusher wrote
    flushed = trio.Event()
    wrote = flusher.wrote

    def counted(sockets: int, elsewhere: float = 0.0) -> None:
        nonlocal written
        wrote(sockets, elsewhere)
        written += sockets
        if written >= args.viewers:
            flushed.set()

    flusher.wrote = counted  # type: ignore[method-assign]
    name = "nodeB" if feeder is not None else "nodeA"
    hub: Any = LocalHub() if url is None else RedisHub(name, prefix=PREFIX)
    conns = []
    for number in range(args.viewers):
        conn = Connection(_Sink(), subprotocol, ctx, flusher)  # type: ignore[arg-type]
        conn._omit_peer_id = True  # as the JS SDK 4.x is served
        conn._tasks = cast(Any, conn)  # no writer is ever needed here
        session = Session(f"viewer{number}", conn, token=f"t{number}")
        conn.attach(session)
        hub.attach(session)
        hub.join_room(CID, session)
        conns.append(conn)
    publisher = Session("pub0", cast(Any, None), token="tpub")
    if feeder is None:  # the publisher is on node A
        hub.attach(publisher)
    delivered = 0
    async with trio.open_nursery() as nursery:
        if args.flusher:
            await nursery.start(flusher.run)
        link = None
        arrived = trio.Event()
        wanted = 1 << 62  # none before the first round (a record heard then is not one)
        if url is not None:
            link = redis_link.RedisLink(hub, url)
            if args.flusher:
                link.flusher = flusher  # as the server sets it
            receive = hub.receive

            def heard(data: bytes, now: float) -> None:
                receive(data, now)
                if hub.statistics().deliveries >= wanted:
                    arrived.set()

            hub.receive = heard
            await nursery.start(link.run)
            await link.ready.wait()
            await link.hearing(CID)
            assert CID in hub.subscribed, "Redis did not confirm the subscription"
        sent = 0
        for _ in range(args.rounds):
            wanted = hub.statistics().deliveries + args.frames * args.viewers
            if feeder is not None:  # node A (the feeder) publishes this round's records
                os.write(feeder, b"r")
            for _ in range(args.frames if feeder is None else 0):
                prepared, message = _message(sent, args.told)
                if link is not None and args.kept:
                    link.keep(message, Priority.NORMAL)
                hub.to_room(prepared, CID, Priority.HIGH, publisher)
                sent += 1
            if args.flusher:
                await flushed.wait()  # every viewer written
                flushed, written = trio.Event(), 0
                await trio.sleep(0.05)  # beyond the flusher's pause: idle, as at a fixed rate
                continue
            if link is not None:
                await arrived.wait()
                arrived = trio.Event()
            dirty, flusher._dirty = flusher._dirty, []
            for each in dirty:
                each.flush_nowait()
        delivered = int(hub.statistics().deliveries)
        nursery.cancel_scope.cancel()
    return delivered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("viewers", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--frames", type=int, default=10, help="messages per drain")
    parser.add_argument("--hub", choices=("local", "redis"), default="redis")
    parser.add_argument("--kept", action="store_true", help="keep every message in Redis")
    parser.add_argument("--role", choices=("a", "b"), default="a", help="the node measured")
    parser.add_argument("--feed", metavar="URL", help=argparse.SUPPRESS)  # --role b's feeder
    parser.add_argument(
        "--flusher",
        action="store_true",
        help="the server's flusher task writes the viewers (50 ms between rounds: it is idle)",
    )
    parser.add_argument(
        "--publishes", type=int, default=1, help="--role b: PUBLISHes per round, written at once"
    )
    parser.add_argument(
        "--told",
        action="store_true",
        help="each push carries the priority told to flat JSON viewers (a second body)",
    )
    args = parser.parse_args()
    if args.feed:
        _feed(args)
        return
    redis_link.HEARTBEAT = 3600.0  # once, at the start
    if args.hub == "local":
        delivered = trio.run(_run, args, None)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="bench-clusterpath-") as tmp,
            redis_server(Path(tmp)) as (url, _),
        ):
            if args.role == "a":
                delivered = trio.run(_run, args, url)
            else:
                command = [sys.executable, "-m", "bench.clusterpath", "0", "0", "--feed", url]
                command += ["--frames", str(args.frames), "--publishes", str(args.publishes)]
                command += ["--told"] if args.told else []
                with subprocess.Popen(command, stdin=subprocess.PIPE) as feeder:
                    assert feeder.stdin is not None
                    try:
                        delivered = trio.run(_run, args, url, feeder.stdin.fileno())
                    finally:
                        feeder.stdin.close()
    print(f"{args.viewers} viewers, {args.rounds * args.frames} messages, {delivered} deliveries")


if __name__ == "__main__":
    main()
