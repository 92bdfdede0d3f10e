"""Opening the connections of a scenario on the generator, in each server's protocol.

The peers are one-room broadcast servers: connecting is joining. chatroom needs a
login, a live-stream room (a transient conversation) created by the first
publisher, and a join per viewer; or, for ``persist``, a normal group.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

from bench import lc
from bench.generator import (
    IDLE,
    PUBLISHER,
    SLOW,
    VIEWER,
    Conn,
    Connected,
    Generator,
    Plan,
    handshake,
)
from bench.servers import ServerSpec

SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
SIO_PREFIX, SIO_SUFFIX = b'42["msg","', b'"]'


class CannotRun(RuntimeError):
    """This scenario cannot run against this server (the reason is the message)."""


@dataclass
class Room:
    first_viewer: int
    viewers: int
    slow: list[int]
    connect_secs: float


def explain(spec: ServerSpec, error: str) -> str:
    """gen.c's ``first_error`` (what, then the bytes in hex) in words."""
    what, _, payload = error.partition(":")
    if spec.mode == "lc" and what in ("setup reply", "error", "ack", "undecodable"):
        return f"{what}: {lc.describe(bytes.fromhex(payload))}"
    if what == "close frame":
        raw = bytes.fromhex(payload)
        code = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else None
        return f"closed by the server: code {code}, {raw[2:].decode(errors='replace')!r}"
    if what in ("http", "connect"):
        text = bytes.fromhex(payload).decode(errors="replace")
        return f"{what}: {text.splitlines()[0] if text else ''}"
    return error


def _check(spec: ServerSpec, done: Connected, what: str) -> None:
    if done.failed:
        raise CannotRun(
            f"{done.failed} of {done.count} {what} connections failed "
            f"({explain(spec, done.first_error)})"
        )


# descriptors the generator needs besides its connections (stdio, epoll, the plan file)
FD_MARGIN = 16


def _fits(connections: int) -> None:
    """One generator process holds every connection of a scenario (as the server
    does): say so plainly when the file-descriptor limit, which the generator inherits
    from the harness, is too low for them."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and connections + FD_MARGIN > soft:
        raise CannotRun(
            f"{connections} connections need more file descriptors than a process may "
            f"open here ({soft}; ulimit -n)"
        )


def _plan(spec: ServerSpec, conns: list[Conn]) -> Plan:
    if spec.mode == "lc":
        return Plan("lc", handshake("/", lc.SUBPROTOCOL), conns)
    return Plan(spec.mode, handshake(SIO_PATH if spec.mode == "sio" else "/"), conns)


def _templates(gen: Generator, spec: ServerSpec, cid: str, size: int, transient: bool) -> None:
    gen.size(size)
    for prio in (1, 2, 3):
        if spec.mode == "lc":
            pre, suf = lc.direct_template(cid, size, prio, transient=transient)
            gen.template(prio, pre, suf, ack_tail=True)
        elif spec.mode == "sio":
            gen.template(prio, SIO_PREFIX, SIO_SUFFIX, ack_tail=False)
        else:
            gen.template(prio, b"", b"", ack_tail=False)


def _create_room(gen: Generator, spec: ServerSpec) -> str:
    """chatroom: the first publisher logs in and creates the live-stream room; its id."""
    creator = Conn(
        PUBLISHER,
        [(lc.login("pub0", 1), 1), (lc.start_conversation(["pub0"], 2, transient=True), 2)],
    )
    done = gen.connect(_plan(spec, [creator]))
    _check(spec, done, "room creator")
    try:
        return lc.started_cid(gen.reply(done.first))
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc


def _member(spec: ServerSpec, cid: str, role: int, peer: str) -> Conn:
    if spec.mode != "lc":
        return Conn(role)
    return Conn(role, [(lc.login(peer, 1), 1), (lc.join(cid, peer, 2), 2)])


def _publishers(gen: Generator, spec: ServerSpec, publishers: int) -> str:
    """The publishers (the first one creates the room, for chatroom); the room's id."""
    cid = _create_room(gen, spec) if spec.mode == "lc" else ""
    first_pub = 1 if spec.mode == "lc" else 0
    pubs = [_member(spec, cid, PUBLISHER, f"pub{k}") for k in range(first_pub, publishers)]
    if pubs:
        _check(spec, gen.connect(_plan(spec, pubs)), "publisher")
    return cid


def open_room(
    gen: Generator,
    spec: ServerSpec,
    viewers: int,
    publishers: int,
    *,
    slow: int = 0,
    size: int = 100,
) -> Room:
    """Publishers first (the first one creates the room), then viewers, then slow viewers."""
    _fits(publishers + viewers + slow)
    cid = _publishers(gen, spec, publishers)
    plan = _plan(spec, [_member(spec, cid, VIEWER, f"viewer{k}") for k in range(viewers)])
    done = gen.connect(plan)
    _check(spec, done, "viewer")
    slow_idx: list[int] = []
    if slow:
        plan = _plan(spec, [_member(spec, cid, SLOW, f"slow{k}") for k in range(slow)])
        s = gen.connect(plan)
        _check(spec, s, "slow viewer")
        slow_idx = list(range(s.first, s.first + s.count))
    _templates(gen, spec, cid, size, transient=True)
    return Room(done.first, done.ok, slow_idx, done.secs)


def open_crowd(gen: Generator, spec: ServerSpec, viewers: int, deadline: float) -> Connected:
    """A flash crowd: one publisher (and, for chatroom, the room) first, untimed; then
    ``viewers`` clients connect, log in and join all at once. Failures are figures
    here, not a reason to stop: the result says how many and why."""
    _fits(1 + viewers)
    cid = _publishers(gen, spec, 1)
    members = [_member(spec, cid, VIEWER, f"crowd{k}") for k in range(viewers)]
    plan = _plan(spec, members)
    plan.batch, plan.deadline = 0, deadline
    done = gen.connect(plan)
    _templates(gen, spec, cid, 100, transient=True)
    return done


def open_group(gen: Generator, spec: ServerSpec, members: int, size: int = 100) -> None:
    """A normal (persisted) conversation whose members are all online and all send."""
    if spec.mode != "lc":
        raise CannotRun("persisted conversations are chatroom's own feature")
    ids = [f"member{k}" for k in range(members)]
    creator = Conn(
        PUBLISHER, [(lc.login(ids[0], 1), 1), (lc.start_conversation(ids, 2, transient=False), 2)]
    )
    done = gen.connect(_plan(spec, [creator]))
    _check(spec, done, "group creator")
    try:
        cid = lc.started_cid(gen.reply(done.first))
    except ValueError as exc:
        raise CannotRun(str(exc)) from exc
    rest = [Conn(PUBLISHER, [(lc.login(peer, 1), 1)]) for peer in ids[1:]]
    _check(spec, gen.connect(_plan(spec, rest)), "member")
    _templates(gen, spec, cid, size, transient=False)


def open_idle(gen: Generator, spec: ServerSpec, count: int) -> Connected:
    """Idle connections: logged in (chatroom) or just open (peers)."""
    conns = [
        Conn(IDLE, [(lc.login(f"idle{k}", 1), 1)] if spec.mode == "lc" else [])
        for k in range(count)
    ]
    done = gen.connect(_plan(spec, conns))
    _check(spec, done, "idle")
    return done
