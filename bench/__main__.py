"""``python -m bench`` (and ``chatroom bench``): chatroom against its peers.

See bench/README.md for the method. Tables go to stdout, progress to stderr, JSON
and a PNG chart to bench/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib
import json
import os
import platform
import resource
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import procstat, report
from bench.generator import GENERATOR_CORE, GeneratorError, build
from bench.postgres import running_postgres
from bench.runner import Setup, run_all
from bench.scenarios import BY_NAME as SCENARIOS_BY_NAME
from bench.scenarios import GROUPS, SCENARIOS, Context, Scenario
from bench.servers import BY_NAME as SERVERS_BY_NAME
from bench.servers import (
    REPO,
    SERVERS,
    ServerSpec,
    chatroom_snapshot,
    for_refs,
    prepare_peers,
    ref_label,
)

EXTRA = ("matplotlib",)  # what the bench needs beyond chatroom's own dependencies
DEFAULT_SERVERS = [s for s in SERVERS if s.default]

HERE = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short smoke run: few, short steps")
    ap.add_argument(
        "--scenario",
        action="append",
        choices=[*SCENARIOS_BY_NAME, *GROUPS],
        help="scenario to run (repeatable; default all; flash-crowd: both flash-crowd-*)",
    )
    ap.add_argument(
        "--server",
        action="append",
        choices=list(SERVERS_BY_NAME),
        help="server to run (repeatable; default chatroom and every peer, not chatroom_wd5)",
    )
    ap.add_argument("--runs", type=int, default=None, help="runs per server (default 2, quick 1)")
    ap.add_argument(
        "--budget-min",
        type=float,
        default=120.0,
        help="start no new run after this many minutes (default 120)",
    )
    sched = ap.add_mutually_exclusive_group()
    sched.add_argument(
        "--normal-priority",
        dest="scheduling",
        action="store_const",
        const="normal",
        help="server and generator at nice 0, each pinned to its core (the default)",
    )
    sched.add_argument(
        "--nice",
        "--no-realtime",  # its old name, when realtime was the default
        dest="scheduling",
        action="store_const",
        const="nice",
        help="server and generator at nice -10",
    )
    sched.add_argument(
        "--realtime",
        dest="scheduling",
        action="store_const",
        const="realtime",
        help="server and generator under SCHED_RR priority 1: a noise-study option",
    )
    ap.set_defaults(scheduling="normal")
    ap.add_argument(
        "--chatroom-ref",
        action="append",
        default=None,
        metavar="REF",
        help="git commit of chatroom to measure (default HEAD; 'worktree' runs the work "
        "tree); repeatable: each is run as chatroom@REF, the first is the baseline",
    )
    ap.add_argument(
        "--chatroom-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for chatroom runs, e.g. CHATROOM_WRITE_DELAY=0.005 (repeatable)",
    )
    ap.add_argument(
        "--saturation",
        type=float,
        default=None,
        metavar="MSG_PER_S",
        help="fanout-1000's saturation rate, for overload (3x it) and slow (half) when "
        "fanout-1000 is not in the run: skips their ramp (default: ramp to find it)",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    return ap


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _machine() -> dict[str, object]:
    def version(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            return "not installed"

    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": version(["node", "--version"]),
    }


def _worktree_version() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
        return done.stdout.strip()

    edited = git("status", "--porcelain", "--", "chatroom").splitlines()
    return f"work tree at {git('rev-parse', 'HEAD')} with {len(edited)} files edited or new"


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


LOCK_PATH = Path("/tmp/chatroom-bench.lock")


@contextlib.contextmanager
def _exclusive(max_wait_s: float) -> Iterator[bool]:
    """One bench run at a time on this machine: two would load the same cores and
    spoil each other's figures. Waits for a run in progress (bounded); yields False
    if it never ended."""
    with LOCK_PATH.open("a+") as lock:
        deadline, said = time.monotonic() + max_wait_s, 0.0
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    yield False
                    return
                if time.monotonic() - said > 60:
                    lock.seek(0)
                    _say(f"waiting for another bench run to end: {lock.read().strip()}")
                    said = time.monotonic()
                time.sleep(2)
        lock.truncate(0)
        lock.write(f"pid {os.getpid()}: {shlex.join(sys.argv)}\n")
        lock.flush()
        yield True


def _terminate(signum: int, frame: object) -> None:
    # SystemExit unwinds through the runner's finally blocks: server and generator stop
    sys.exit(128 + signum)


def _missing_extras() -> list[str]:
    missing = []
    for name in EXTRA:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if missing := _missing_extras():
        print(
            f"the bench needs {', '.join(missing)}: pip install -e '.[bench]' (from the "
            "repository's root)",
            file=sys.stderr,
        )
        return 2
    command = shlex.join([sys.executable, "-m", "bench", *argv])
    print(f"command: {command}\n", flush=True)
    signal.signal(signal.SIGTERM, _terminate)
    with _exclusive(args.budget_min * 60) as ours:
        if not ours:
            print("another bench run held the machine for the whole budget", file=sys.stderr)
            return 3
        return _run(args, command)


def _run(args: argparse.Namespace, command: str) -> int:
    _raise_fd_limit()
    procstat.SCHEDULING["mode"] = args.scheduling
    os.sched_setaffinity(0, {GENERATOR_CORE})  # the harness itself stays off the server's core
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = args.out / f"{stamp}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        binary = build(HERE / ".build")
        refs = _chatrooms(args.chatroom_ref or ["HEAD"])
    except (GeneratorError, subprocess.CalledProcessError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    print(
        f"scheduling: {procstat.SCHEDULING_LABELS[args.scheduling]}, server on core 0,"
        f" generator on core {GENERATOR_CORE}"
    )
    for label, (_, version) in refs.items():
        named = f" (as chatroom@{label})" if len(refs) > 1 else ""
        print(f"chatroom measured: {version}{named}")
    print(flush=True)
    chosen = [SERVERS_BY_NAME[n] for n in args.server] if args.server else DEFAULT_SERVERS
    servers = prepare_peers(HERE / ".peers", chosen, notes)
    servers = for_refs(servers, [(label, where) for label, (where, _) in refs.items()])
    scenarios = _scenarios(args.scenario)
    for note in notes:
        _say(note)
    deadline = time.monotonic() + args.budget_min * 60
    chatroom_env = dict(kv.split("=", 1) for kv in args.chatroom_env)
    with running_postgres(any(s.postgres for s in scenarios)) as postgres:
        if postgres is not None:
            notes.append(
                "persist-pg: PostgreSQL runs on this machine, durable (fsync on), on every core"
            )
        setup = Setup(
            binary, HERE / ".peers", log_dir, log_dir, deadline, chatroom_env, notes, postgres
        )
        return _measure(args, command, setup, scenarios, servers, refs, stamp)


def _measure(
    args: argparse.Namespace,
    command: str,
    setup: Setup,
    scenarios: list[Scenario],
    servers: list[ServerSpec],
    refs: dict[str, tuple[Path | None, str]],
    stamp: str,
) -> int:
    from bench import chart  # after the check in main: it needs matplotlib

    scheduling = procstat.SCHEDULING_LABELS[args.scheduling]
    chatroom_env, notes = setup.chatroom_env, setup.notes
    json_path = args.out / f"{stamp}.json"
    versions = {label: version for label, (_, version) in refs.items()}
    head: dict[str, object] = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "scheduling": args.scheduling,
        "scheduling_label": scheduling,
        "chatroom_version": "; ".join(versions.values()),
        "chatroom_versions": versions,
        "chatroom_env": chatroom_env,
        "machine": _machine(),
        "notes": notes,
    }
    started = time.monotonic()

    def save(records: list[report.Record], complete: bool) -> None:
        elapsed = round(time.monotonic() - started, 1)
        result = {**head, "elapsed_s": elapsed, "complete": complete, "records": records}
        json_path.write_text(json.dumps(result, indent=1))

    ctx = Context(quick=args.quick, progress=_say, given_saturation=args.saturation)
    runs = args.runs or (1 if args.quick else 2)
    records = run_all(setup, ctx, scenarios, servers, runs, lambda rs: save(rs, False))
    save(records, True)
    report.print_all(scenarios, records, notes)
    png = chart.draw(records, args.out / f"{stamp}.png")
    print(f"JSON: {json_path}\nchart: {png or '(nothing to draw)'}")
    return 0


def _scenarios(names: list[str] | None) -> list[Scenario]:
    if not names:
        return SCENARIOS
    wanted = [m for n in names for m in GROUPS.get(n, (n,))]
    return [SCENARIOS_BY_NAME[n] for n in dict.fromkeys(wanted)]


def _chatrooms(refs: list[str]) -> dict[str, tuple[Path | None, str]]:
    """Each ``--chatroom-ref`` by its label: where it runs from (None: the work tree)
    and what it is, for the output."""
    out: dict[str, tuple[Path | None, str]] = {}
    for ref in dict.fromkeys(refs):
        if ref == "worktree":
            out[ref] = (None, _worktree_version())
            continue
        where, sha = chatroom_snapshot(ref, HERE / ".build")
        out[ref_label(ref, sha)] = (where, sha)
    return out


if __name__ == "__main__":
    sys.exit(main())
