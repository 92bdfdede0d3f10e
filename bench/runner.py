"""Runs the chosen scenarios against the chosen servers, peers interleaved
(A1 B1 ... A2 B2 ...), each run on a fresh server process and a fresh generator."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.generator import Generator, GeneratorError
from bench.postgres import PgServer
from bench.procstat import scheduling_of
from bench.rooms import CannotRun
from bench.scenarios import Context, Scenario
from bench.servers import Running, ServerSpec, ServerUnavailable, start

Record = dict[str, object]
# chatroom's member limit is raised for the benchmark's large rooms
SERVER_ENV = {"CHATROOM_MAX_MEMBERS": "100000"}


@dataclass
class Setup:
    gen_binary: Path
    peers_dir: Path
    work_dir: Path
    log_dir: Path
    deadline: float  # time.monotonic() after which no new run starts
    chatroom_env: dict[str, str]  # on top of SERVER_ENV, for chatroom only
    notes: list[str] = field(default_factory=list)
    postgres: PgServer | None = None  # for the scenarios that store in PostgreSQL


def _run_one(setup: Setup, ctx: Context, scenario: Scenario, spec: ServerSpec, n: int) -> Record:
    record: Record = {"scenario": scenario.name, "server": spec.name, "run": n, "steps": []}
    env = {**SERVER_ENV, **dict(spec.env)}
    if spec.is_chatroom:
        env.update(setup.chatroom_env)
    db = setup.work_dir / f"{scenario.name}-{spec.name}-{n}.db"
    db_arg = str(db) if scenario.disk_db else ":memory:"
    database = None
    if scenario.postgres:
        if setup.postgres is None:
            record["note"] = "cannot run: PostgreSQL is not installed (apt-get install postgresql)"
            return record
        database = setup.postgres.create_database()
        db_arg = setup.postgres.url(database)
    try:
        server = start(spec, setup.peers_dir, setup.log_dir, env, db_arg)
    except ServerUnavailable as exc:
        record["note"] = f"cannot run: {exc}"
        _drop(setup, database)
        return record
    record["server_log"] = str(server.log_path)
    gen: Generator | None = None
    try:
        gen = Generator(setup.gen_binary, server.port, setup.work_dir)
        record["scheduling"] = {
            "server": scheduling_of(server.pid),
            "generator": scheduling_of(gen.pid),
        }
        outcome = scenario.fn(ctx, spec, n, server, gen)
        record["summary"] = outcome.summary
        record["steps"] = [asdict(s) for s in outcome.steps]
    except CannotRun as exc:
        record["note"] = f"cannot run: {exc}"
    except GeneratorError as exc:
        record["note"] = f"generator failed: {exc}"
    finally:
        if gen is not None:
            gen.close()
        _stop(server, record)
        for leftover in db.parent.glob(db.name + "*"):  # the database, -wal, -shm
            leftover.unlink()
        _drop(setup, database)
    return record


def _drop(setup: Setup, database: str | None) -> None:
    if setup.postgres is not None and database is not None:
        setup.postgres.drop_database(database)


def _stop(server: Running, record: Record) -> None:
    if not server.alive():
        tail = server.log_tail(800).strip().replace("\n", " | ")
        note = f"SERVER DIED (exit {server.proc.returncode}): {tail}"
        record["note"] = f"{record.get('note', '')} {note}".strip()
    server.stop()


def run_all(
    setup: Setup,
    ctx: Context,
    scenarios: list[Scenario],
    servers: list[ServerSpec],
    runs: int,
    checkpoint: Callable[[list[Record]], None],
) -> list[Record]:
    """Every (scenario, run, server); ``checkpoint`` gets the records after each one,
    so that a run cut short still leaves its figures."""
    records: list[Record] = []
    for scenario in scenarios:
        for n in range(1, runs + 1):
            for spec in servers:
                if scenario.chatroom_only and not spec.is_chatroom:
                    continue
                if scenario.chatroom_only and n > 1:
                    continue
                label = f"{scenario.name} / {spec.name} run {n}"
                if time.monotonic() > setup.deadline:
                    records.append({**_empty(scenario, spec, n), "note": "skipped: time budget"})
                    continue
                ctx.progress(f"== {label}")
                record = _run_one(setup, ctx, scenario, spec, n)
                if "note" in record:
                    ctx.progress(f"   {label}: {record['note']}")
                records.append(record)
                checkpoint(records)
    return records


def _empty(scenario: Scenario, spec: ServerSpec, n: int) -> Record:
    return {"scenario": scenario.name, "server": spec.name, "run": n, "steps": []}
