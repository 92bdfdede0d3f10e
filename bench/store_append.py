"""How fast ``SqliteStore.append_messages`` commits: rows/s with fixed-size batches.

Not a test. Writes ``--rows`` messages (about 90-byte JSON bodies, a dedupe token on
each, spread over ``--convs`` conversations, ids growing with time as the server makes
them) in ``--batch``-row batches to a fresh file database, and prints rows/s for each
tenth of the run, so the slowdown as indexes grow is visible.

    .venv/bin/python -m bench.store_append --rows 200000 --batch 1000 --convs 100
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import trio

from chatroom.core.model import Conversation, ConvType, Message
from chatroom.store.sqlite import SqliteStore


async def run(rows: int, batch_size: int, convs: int, path: str) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        for c in range(convs):
            await store.create_conversation(
                Conversation(f"conv{c:05d}", ConvType.NORMAL, "u0", ["u0", "u1"], {}, 0, 0)
            )
        batches = _batches(rows // batch_size, batch_size, convs)  # not timed
        report_every = max(1, len(batches) // 10)
        window_start, window_rows = time.perf_counter(), 0
        total_start = window_start
        for b, batch in enumerate(batches):
            await store.append_messages(batch)
            window_rows += batch_size
            if (b + 1) % report_every == 0:
                elapsed = time.perf_counter() - window_start
                print(
                    f"{(b + 1) * batch_size:>9} rows stored: {window_rows / elapsed:>9,.0f} rows/s"
                )
                window_start, window_rows = time.perf_counter(), 0
        total = time.perf_counter() - total_start
        print(
            f"overall: {rows / total:,.0f} rows/s ({batch_size}-row batches, "
            f"{total / (rows // batch_size) * 1000:.1f} ms per batch)"
        )
    finally:
        await store.aclose()


def _batches(count: int, size: int, convs: int) -> list[list[Message]]:
    rng = random.Random(1)
    body = '{"_lctype":-1,"_lctext":"' + "x" * 60 + '","_lcattrs":{}}'
    now = int(time.time() * 1000)
    batches = []
    seq = 0
    for _ in range(count):
        batch = []
        for _ in range(size):
            seq += 1
            cid = f"conv{rng.randrange(convs):05d}"
            # ids grow with time (as the server makes them), 50 messages per millisecond
            batch.append(
                Message(
                    cid,
                    f"{seq:012x}",
                    f"u{seq % 2}",
                    now + seq // 50,
                    data=body,
                    dedupe_token=f"dt-{rng.getrandbits(64):016x}",
                )
            )
        batches.append(batch)
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--convs", type=int, default=100)
    parser.add_argument("--dir", default=None, help="where to put the database file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        trio.run(run, args.rows, args.batch, args.convs, os.path.join(tmp, "bench.db"))


if __name__ == "__main__":
    main()
