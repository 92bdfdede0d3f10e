"""Where a server's CPU time goes in Python, by stack, with a CPU-time sampler
(``bench/cpusampler/sitecustomize.py``): for a running bench, and its report.

    CHATROOM_CPU_SAMPLES=/tmp/s PYTHONPATH=bench/cpusampler python -m bench.cluster \\
        --viewers 1000 --rounds 1 --spin --record "python -m bench.cpusample record {pid} {name}"
    python -m bench.cpusample top /tmp/s/A.txt [--under "serve (connection.py:480)"]

``record PID NAME`` starts the sampler in process PID (SIGUSR1), and when interrupted
(``--record`` interrupts it at the end of the fixed-rate step) stops it (SIGUSR2) and
renames the samples to ``NAME.txt`` in the same folder; Redis (``redis``) is left
alone. ``top`` prints the frames with the most samples of their own and with the most
under them, or the tree under one frame (``--under``).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import time
from pathlib import Path


class _Node:
    """A frame in the tree under ``--under``: its samples, the frames it called."""

    def __init__(self) -> None:
        self.count = 0
        self.kids: dict[str, _Node] = {}


def _record(pid: int, name: str) -> int:
    if name == "redis":
        return 0
    folder = Path(os.environ["CHATROOM_CPU_SAMPLES"])
    os.kill(pid, signal.SIGUSR1)
    try:
        while True:
            time.sleep(0.1)
    except KeyboardInterrupt:
        os.kill(pid, signal.SIGUSR2)
    written = folder / f"{pid}.txt"
    for _ in range(50):  # the process writes it between two bytecodes
        if written.exists():
            written.rename(folder / f"{name}.txt")
            return 0
        time.sleep(0.1)
    print(f"no samples from {pid}", file=sys.stderr)
    return 1


def _stacks(path: Path) -> list[tuple[list[str], int]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        out.append((stack.split(";"), int(count)))
    return out


def _top(path: Path, shown: int) -> None:
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    stacks = _stacks(path)
    for frames, count in stacks:
        own[frames[-1]] += count
        for frame in set(frames):
            under[frame] += count
    print(f"{sum(c for _, c in stacks)} samples")
    for label, counter in (("own", own), ("under", under)):
        for frame, count in counter.most_common(shown):
            print(f"{label:>5} {count:6} {frame}")


def _tree(path: Path, root: str, least: int) -> None:
    tree = _Node()
    for frames, count in _stacks(path):
        if root not in frames:
            continue
        node = tree
        for frame in frames[frames.index(root) :]:
            node = node.kids.setdefault(frame, _Node())
            node.count += count

    def show(node: _Node, depth: int) -> None:
        for frame, kid in sorted(node.kids.items(), key=lambda kv: -kv[1].count):
            if kid.count >= least:
                print(f"{'  ' * depth}{kid.count} {frame}")
                show(kid, depth + 1)

    show(tree, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cpusample", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    record = sub.add_parser("record", help="sample process PID until interrupted")
    record.add_argument("pid", type=int)
    record.add_argument("name")
    top = sub.add_parser("top", help="the frames with the most samples")
    top.add_argument("file", type=Path)
    top.add_argument("--shown", type=int, default=25)
    top.add_argument("--under", metavar="FRAME", help="the tree of samples under this frame")
    top.add_argument("--least", type=int, default=2, help="with --under: smaller branches left out")
    args = parser.parse_args(argv)
    if args.what == "record":
        return _record(args.pid, args.name)
    if args.under:
        _tree(args.file, args.under, args.least)
    else:
        _top(args.file, args.shown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
