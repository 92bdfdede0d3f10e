"""The fan-out hot path without sockets, for instruction counts (not a benchmark).

``python -m bench.hotpath N ROUNDS`` builds N real ``Connection`` objects (a transport
that takes every byte at once stands for the socket), then ROUNDS times pushes one
prepared chatroom message to all of them, as ``LocalHub`` does, and runs one flusher
sweep (``flush_nowait`` on every dirty connection), which is what one message costs
the server in Python, system calls left out. Run it under callgrind at two values of
ROUNDS: the difference divided by N times the difference in ROUNDS is the cost of one
delivery in instructions, start-up cancelled out::

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.hotpath 1000 20
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m bench.hotpath 1000 40

``--frames K`` pushes K messages between sweeps (a busy room: K frames per write).
``--omit-peer-id`` serves viewers as the JS SDK 4.x: pushes without ``peerId``.
``--hub local`` or ``--hub redis`` pushes through that hub's ``to_room`` (the redis
hub alone, as a node before Redis answers: its delivery loop without the wire) rather
than straight into the connections, so that the hub's own loop is counted too.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

from chatroom.config import Config
from chatroom.protocol import messages_pb2 as pb
from chatroom.protocol.codec import Prepared, parse_subprotocol

try:
    from chatroom.core.outbox import Priority, QueuedBytes, ShedTotals
    from chatroom.net.connection import Connection
    from chatroom.net.flusher import Flusher

    def _budget(config: Config) -> object:
        return QueuedBytes(config.queued_bytes_budget)

except ImportError:  # commits before the packages (45d8680 and earlier): no budget either
    _old = importlib.import_module("chatroom.connection")
    Connection = _old.Connection  # type: ignore[misc]
    Flusher = importlib.import_module("chatroom.flusher").Flusher  # type: ignore[misc]
    Priority = importlib.import_module("chatroom.outbox").Priority  # type: ignore[misc]
    ShedTotals = importlib.import_module("chatroom.outbox").ShedTotals  # type: ignore[misc]

    def _budget(config: Config) -> object:
        return None


def fake_context(config: Config) -> Any:
    """The parts of a server's Context that connections and the hub read here."""
    return SimpleNamespace(
        config=config,
        counters=SimpleNamespace(shed=ShedTotals()),
        policies=SimpleNamespace(queued=_budget(config)),
    )


class _Sink:
    """A transport whose socket takes everything at once: /dev/null, which a room's
    flush writes to as to a socket (a system call that costs next to nothing)."""

    backlog = 0

    def __init__(self) -> None:
        self.owner: object = None
        self.fileno = os.open(os.devnull, os.O_WRONLY)

    def write_nowait(self, data: bytes) -> int:
        return os.write(self.fileno, data)


def _broadcaster(hub_kind: str, conns: list[Any], peers: list[str]) -> Callable[[Prepared], Any]:
    """What pushes one message to every viewer: the connections themselves, or a hub
    whose room holds one logged-in session per connection."""
    if hub_kind == "none":

        def push_all(prepared: Prepared) -> None:
            for conn, peer in zip(conns, peers, strict=True):
                conn.push(prepared, peer, Priority.NORMAL)

        return push_all
    from chatroom.core.presence import Session
    from chatroom.hub.local import LocalHub
    from chatroom.hub.redis import RedisHub

    hub: Any = LocalHub() if hub_kind == "local" else RedisHub("n1")
    for number, (conn, peer) in enumerate(zip(conns, peers, strict=True)):
        session = Session(peer, conn, token=f"t{number}")
        conn.attach(session)
        hub.attach(session)
        hub.join_room("room", session)
    return partial(hub.to_room, cid="room", priority=Priority.NORMAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("viewers", type=int)
    parser.add_argument("rounds", type=int)
    parser.add_argument("--frames", type=int, default=1, help="messages between sweeps")
    parser.add_argument("--hub", choices=("none", "local", "redis"), default="none")
    parser.add_argument(
        "--omit-peer-id", action="store_true", help="viewers get no peerId (as JS SDK 4.x)"
    )
    args = parser.parse_args()
    config = Config(db=":memory:")
    ctx = fake_context(config)
    subprotocol = parse_subprotocol("lc.protobuf2.3")
    assert subprotocol is not None
    flusher = Flusher()
    sinks = [_Sink() for _ in range(args.viewers)]
    conns = [Connection(sink, subprotocol, ctx, flusher) for sink in sinks]  # type: ignore[arg-type]
    for conn in conns:
        conn._omit_peer_id = args.omit_peer_id
        conn._tasks = cast(Any, conn)  # as while serving: no writer is ever needed here
    peers = [f"viewer{i}" for i in range(args.viewers)]
    broadcast = _broadcaster(args.hub, conns, peers)
    sent = 0
    for _ in range(args.rounds):
        for _ in range(args.frames):
            cmd = pb.GenericCommand(cmd=pb.direct, peerId="x")
            cmd.directMessage.msg = "m" * 100
            cmd.directMessage.cid = "c" * 24
            cmd.directMessage.id = "i" * 20
            cmd.directMessage.timestamp = 1_700_000_000_000 + sent
            cmd.directMessage.fromPeerId = "pub0"
            cmd.directMessage.transient = True
            prepared = Prepared(cmd)
            broadcast(prepared)
            sent += 1
        dirty, flusher._dirty = flusher._dirty, []
        for each in dirty:
            each.flush_nowait()
    print(f"{args.viewers} viewers, {sent} messages")


if __name__ == "__main__":
    main()
