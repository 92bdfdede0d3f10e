"""Conversation queries on a large store: milliseconds per ``conv/query``.

    .venv/bin/python -m bench.conv_query [--conversations 100000] [--repeat 20]

Fills a fresh SQLite file (in a temporary directory) with N conversations (normal
groups of 2-6 members out of 20,000 users, every 50th a chatroom, every 500th a system
conversation, names ``room <i>``, a ``level`` attribute 0-99 and a ``topic``), then runs
representative queries through the same path as the server (``conv_query.run_query``:
store candidates + matcher) and prints the median and worst time of each, and the
longest the event loop was held in one step (what other connections would wait).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import trio

from chatroom.config import Config
from chatroom.core.clock import SystemClock
from chatroom.core.model import Conversation, ConvType
from chatroom.protocol import messages_pb2 as pb
from chatroom.service.conv_query import run_query
from chatroom.store.common import CONV_INSERT, conversation_row
from chatroom.store.sqlite import SqliteStore

USERS = 20_000
T0 = 1_700_000_000_000


def conversations(n: int) -> list[Conversation]:
    rng = random.Random(7)
    out = []
    for i in range(n):
        kind = ConvType.NORMAL
        if i % 500 == 0:
            kind = ConvType.SYSTEM
        elif i % 50 == 0:
            kind = ConvType.TRANSIENT
        members = sorted({f"u{rng.randrange(USERS)}" for _ in range(rng.randint(2, 6))})
        if kind is not ConvType.NORMAL:
            members = []
        created = T0 + i * 1000
        out.append(
            Conversation(
                cid=f"{i:024x}",
                kind=kind,
                creator=members[0] if members else "operator",
                members=members,
                attrs={"name": f"room {i}", "level": i % 100, "topic": rng.choice("abcdefgh")},
                created_at=created,
                updated_at=created,
                last_message_at=created + rng.randrange(10**9) if i % 3 else None,
            )
        )
    return out


def fill(path: str, convs: list[Conversation]) -> None:
    """Bulk insert (one transaction) straight into the schema the store created."""
    db = sqlite3.connect(path)
    with db:
        db.executemany(CONV_INSERT, [conversation_row(c) for c in convs])
        db.executemany(
            "INSERT INTO conversation_members (member, cid) VALUES (?, ?)",
            [(m, c.cid) for c in convs for m in c.members],
        )
    db.close()


class _Cache:
    """No conversation cached: every result is the stored record."""

    def newest(self, stored: Conversation) -> Conversation:
        return stored


class _Caches:
    conversations = _Cache()


class _Ctx:
    """What ``run_query`` reads of a handler's context."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.caches = _Caches()
        self.config = Config()
        self.clock = SystemClock()


class LongestStep(trio.abc.Instrument):
    """The longest single task step: the time the event loop was not available."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._started: float | None = None  # None: the step that added us, not timed

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        if self._started is not None:
            self.longest = max(self.longest, time.perf_counter() - self._started)


def body(where: object = None, sort: str = "", limit: int = 0, skip: int = 0) -> pb.ConvCommand:
    cmd = pb.ConvCommand()
    if where is not None:
        cmd.where.data = orjson.dumps(where).decode()
    if sort:
        cmd.sort = sort
    if limit:
        cmd.limit = limit
    if skip:
        cmd.skip = skip
    return cmd


def iso(ms: int) -> dict[str, str]:
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".000Z"
    return {"__type": "Date", "iso": text}


IDS = [f"{i:024x}" for i in range(0, 20_000, 1000)]
LM_RANGE = {"$gt": iso(T0 + 10**8), "$lt": iso(T0 + 2 * 10**8)}
QUERIES = [
    ("no condition (own conversations)", "u42", body()),
    ("objectId", "u1", body({"objectId": f"{77777:024x}"})),
    (
        "objectId $in (20 ids)",
        "u1",
        body({"objectId": {"$in": IDS}}, limit=999),
    ),
    ("m $all [u42] sort -lm", "u1", body({"m": {"$all": ["u42"]}}, "-lm")),
    ("withMembers [u42,u43] ($size+$all)", "u1", body({"m": {"$size": 2, "$all": ["u42", "u43"]}})),
    ("tr true, default sort", "u1", body({"tr": True})),
    ("sys true", "u1", body({"sys": True}, limit=100)),
    ("name equal", "u1", body({"name": "room 4242"})),
    ("custom attr equal + sort name", "u1", body({"topic": "c", "level": 42}, "name")),
    (
        "lm range, sort -lm, limit 100",
        "u1",
        body({"lm": LM_RANGE}, "-lm", 100),
    ),
    (
        "createdAt $gte, sort createdAt, skip 500",
        "u1",
        body({"createdAt": {"$gte": iso(T0 + 5 * 10**7)}}, "createdAt", 10, 500),
    ),
    ("startsWith name 'room 999' (index range)", "u1", body({"name": {"$regex": "^room 999"}})),
    ("$regex name 'oom 999$' (whole table)", "u1", body({"name": {"$regex": "oom 999$"}})),
    ("$regex matching nothing (worst: whole table)", "u1", body({"topic": {"$regex": "^z"}})),
    ("$or of two names", "u1", body({"$or": [{"name": "room 5"}, {"name": "room 6"}]})),
    ("m $size 7 (whole table through the matcher)", "u1", body({"m": {"$size": 7}})),
    ("$regex '(o+)+$' on topic (whole table)", "u1", body({"topic": {"$regex": "(o+)+$"}})),
    ("does not contain 'room' (whole table)", "u1", body({"name": {"$regex": "^((?!room).)*$"}})),
]


async def run(n: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        store = SqliteStore(path)
        await store.open()
        started = time.perf_counter()
        await trio.to_thread.run_sync(fill, path, conversations(n))
        print(f"{n} conversations stored in {time.perf_counter() - started:.1f} s")
        ctx = _Ctx(store)
        print(f"{'query':45} {'results':>7} {'median ms':>10} {'max ms':>8} {'step ms':>8}")
        for label, caller, cmd in QUERIES:
            times, found, steps = [], 0, LongestStep()
            trio.lowlevel.add_instrument(steps)
            for _ in range(repeat):
                t = time.perf_counter()
                found = len(await run_query(ctx, caller, cmd))  # type: ignore[arg-type]
                times.append((time.perf_counter() - t) * 1000)
            trio.lowlevel.remove_instrument(steps)
            median, worst, step = statistics.median(times), max(times), steps.longest * 1000
            print(f"{label:45} {found:>7} {median:>10.2f} {worst:>8.2f} {step:>8.2f}")
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    trio.run(run, args.conversations, args.repeat)


if __name__ == "__main__":
    main()
