"""Tables for people (stdout), ratios of chatroom to each peer.

Every scenario's table is followed by its headline figure as a ratio of each
chatroom (each commit measured) to every peer, and by its main figures as ratios to
Bun and to Node ``ws`` and, when several commits ran, to the first of them.

``python -m bench.report RESULTS.json`` prints the tables of a saved run again.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import cast

from bench.scenarios import BY_NAME, Scenario, describe_limit
from bench.servers import REFERENCE_PEERS

Record = dict[str, object]
Summary = dict[str, object]


def _fmt(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if 0 < abs(value) < 0.1:
            return f"{value:.4f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-style markdown table."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[k]) for r in cells)]) for k, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells:
        lines.append("| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return "\n".join(lines)


def _summary(record: Record) -> Summary:
    return cast(Summary, record.get("summary") or {})


def scenario_table(scenario: Scenario, records: list[Record]) -> str:
    mine = [r for r in records if r["scenario"] == scenario.name]
    keys: list[str] = []
    for r in mine:
        keys += [k for k in _summary(r) if k not in keys and k != "first_error"]
    headers = ["server", "run", *keys, "note"]
    rows = [[r["server"], r["run"], *(_summary(r).get(k) for k in keys), _note(r)] for r in mine]
    out = [f"### {scenario.name}: {scenario.title}", "", table(headers, rows)]
    ratios = ratio_lines(scenario, mine)
    if ratios:
        out += ["", *ratios]
    compared = compare_table(scenario, mine)
    if compared:
        out += ["", compared]
    return "\n".join(out)


def _note(record: Record) -> str:
    note = str(record.get("note", ""))
    err = _summary(record).get("first_error")
    if err and not note:
        note = f"first error: {err}"
    return note[:300]


def _headline(scenario: Scenario, records: list[Record], server: str) -> float | None:
    values = [
        float(cast(float, v))
        for r in records
        if r["server"] == server
        and isinstance(v := _summary(r).get(scenario.headline), int | float)
    ]
    return mean(values) if values else None


def _mean_of(records: list[Record], server: str, key: str) -> float | None:
    values = [
        float(v)
        for r in records
        if r["server"] == server and isinstance(v := _summary(r).get(key), int | float)
    ]
    return mean(values) if values else None


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return "-"
    return f"{mine / theirs:.2f}x"


def _servers(records: list[Record]) -> list[str]:
    return list(dict.fromkeys(str(r["server"]) for r in records))


def baselines(servers: Sequence[str]) -> dict[str, str]:
    """``chatroom@B`` -> ``chatroom@A`` when A was the first ``--chatroom-ref`` (the
    same for every chatroom variant, e.g. ``chatroom_wd5@B``)."""
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for name in servers:
        variant, at, _ = name.partition("@")
        if not at or not variant.startswith("chatroom"):
            continue
        if variant in first:
            out[name] = first[variant]
        else:
            first[variant] = name
    return out


def compare_table(scenario: Scenario, records: list[Record]) -> str:
    """The scenario's main figures, chatroom's over Bun's, over Node ``ws``'s and over
    the baseline commit's (mean of runs)."""
    servers = _servers(records)
    ours = [s for s in servers if s.startswith("chatroom")]
    peers = [p for p in REFERENCE_PEERS if p in servers]
    base = baselines(servers)
    if not scenario.compare or not ours or not (peers or base):
        return ""
    headers = ["server", "figure", "better", "value"]
    for p in peers:
        headers += [p, f"/ {p}"]
    if base:
        headers += ["baseline", "/ baseline"]
    rows: list[list[object]] = []
    for mine in ours:
        for key, higher in scenario.compare:
            value = _mean_of(records, mine, key)
            row: list[object] = [mine, key, "higher" if higher else "lower", value]
            for p in peers:
                theirs = _mean_of(records, p, key)
                row += [theirs, _ratio(value, theirs)]
            if base:
                ref = base.get(mine)
                theirs = _mean_of(records, ref, key) if ref else None
                row += [ref or "", _ratio(value, theirs)]
            rows.append(row)
    return "ratios (mean of runs):\n\n" + table(headers, rows)


def ratio_lines(scenario: Scenario, records: list[Record]) -> list[str]:
    if not scenario.headline:
        return []
    servers = list(dict.fromkeys(str(r["server"]) for r in records))
    ours = [s for s in servers if s.startswith("chatroom")] or ["chatroom"]
    peers = [s for s in servers if not s.startswith("chatroom")]
    better = "higher" if scenario.higher_is_better else "lower"
    lines: list[str] = []
    for mine in ours:
        value = _headline(scenario, records, mine)
        lines.append(f"{mine} / peer, {scenario.headline} (mean of runs; {better} is better):")
        for peer in peers:
            theirs = _headline(scenario, records, peer)
            if value is None or theirs is None or theirs == 0:
                why = f"no {mine} figure" if value is None else f"no {peer} figure"
                lines.append(f"  vs {peer}: - ({why})")
            else:
                lines.append(
                    f"  vs {peer}: {value / theirs:.2f}x ({_fmt(value)} vs {_fmt(theirs)})"
                )
    return lines


def step_table(records: list[Record], scenario: str) -> str:
    """Every measured step of a ramp scenario, for the record."""
    headers = [
        "server",
        "run",
        "msg/s",
        "deliv/s",
        "loss",
        "p50",
        "p99",
        "max",
        "srv CPU %",
        "srv us/deliv",
        "srv kernel %",
        "gen CPU %",
        "RSS MB",
        "pass",
    ]
    rows = []
    for r in records:
        if r["scenario"] != scenario:
            continue
        for s in cast(list[dict[str, object]], r["steps"]):
            lat = cast(dict[str, float], s["latency"])
            rows.append(
                [
                    r["server"],
                    r["run"],
                    s["rate"],
                    round(cast(float, s["deliveries_per_s"])),
                    f"{cast(float, s['loss']):.3%}",
                    lat["p50"],
                    lat["p99"],
                    lat["max"],
                    round(cast(float, s["server_cpu_pct"])),
                    round(cast(float, s["server_us_per_delivery"]), 2),
                    s.get("server_kernel_pct", ""),
                    round(cast(float, s["gen_cpu_pct"])),
                    round(cast(int, s["server_rss_kb"]) / 1024, 1),
                    "yes" if s["passed"] else "no",
                ]
            )
    return table(headers, rows)


RAMPS = ("fanout-1000", "fanout-5000", "fanout-15000", "fanout-1000x10")


# (scenario, summary key, column title) of the one-line-per-server overview
OVERVIEW = (
    ("fanout-1000", "saturation_deliveries_per_s", "sat. N=1000"),
    ("fanout-5000", "saturation_deliveries_per_s", "sat. N=5000"),
    ("fanout-15000", "saturation_deliveries_per_s", "sat. N=15000"),
    ("fanout-15000", "p99_ms", "p99 at sat. N=15000"),
    ("fanout-1000x10", "saturation_deliveries_per_s", "sat. N=1000, 10 pubs"),
    ("cpu", "server_us_per_delivery", "us/delivery @20k/s"),
    ("overload", "high_arrived", "HIGH arrived @3x"),
    ("slow", "after_deliveries_per_s", "deliv/s w/ slow viewer"),
    ("idle", "kb_per_connection", "KB/idle conn"),
    ("flash-crowd-5000", "all_in_s", "5000 in at once, s"),
    ("flash-crowd-15000", "all_in_s", "15000 in at once, s"),
    ("flash-crowd-15000", "kb_per_client", "KB/client after 15000"),
    ("persist", "max_acks_per_s", "acks/s (persist)"),
)


def _runs_text(records: list[Record], scenario: str, server: str, key: str) -> str:
    values = [
        _fmt(_summary(r).get(key))
        for r in records
        if r["scenario"] == scenario and r["server"] == server
    ]
    return ", ".join(values) if values else ""


def overview_table(records: list[Record]) -> str:
    """One row per server, every run's figure side by side (bench.md's table)."""
    columns = [c for c in OVERVIEW if any(r["scenario"] == c[0] for r in records)]
    servers = list(dict.fromkeys(str(r["server"]) for r in records))
    rows = [[s, *(_runs_text(records, sc, s, key) for sc, key, _ in columns)] for s in servers]
    return table(["server", *(title for _, _, title in columns)], rows)


def overview_ratios(records: list[Record]) -> str:
    """The overview's figures, each chatroom's over Bun's, Node ``ws``'s and the
    baseline commit's (mean of runs); empty when none of them ran."""
    columns = [c for c in OVERVIEW if any(r["scenario"] == c[0] for r in records)]
    servers = _servers(records)
    base = baselines(servers)
    rows: list[list[object]] = []
    for mine in (s for s in servers if s.startswith("chatroom")):
        others = [p for p in REFERENCE_PEERS if p in servers]
        others += [base[mine]] if mine in base else []
        for other in others:
            cells = [_scenario_ratio(records, sc, key, mine, other) for sc, key, _ in columns]
            rows.append([f"{mine} / {other}", *cells])
    if not rows:
        return ""
    return table(["ratio", *(title for _, _, title in columns)], rows)


def _scenario_ratio(records: list[Record], scenario: str, key: str, mine: str, other: str) -> str:
    of = [r for r in records if r["scenario"] == scenario]
    return _ratio(_mean_of(of, mine, key), _mean_of(of, other, key))


def print_all(scenarios: Sequence[Scenario], records: list[Record], notes: list[str]) -> None:
    for note in notes:
        print(f"note: {note}")
    print("### overview (each run's figure)\n\n" + overview_table(records) + "\n")
    ratios = overview_ratios(records)
    if ratios:
        print("### overview as ratios (mean of runs)\n\n" + ratios + "\n")
    for scenario in scenarios:
        print(scenario_table(scenario, records) + "\n")
    for name in RAMPS:
        if any(r["scenario"] == name and r["steps"] for r in records):
            print(f"#### {name}: every step\n\n{step_table(records, name)}\n")


def _fill_limits(records: list[Record]) -> None:
    """Runs saved before the ``limit`` column existed get it from their last step."""
    for r in records:
        summary, steps = _summary(r), cast(list[dict[str, object]], r["steps"])
        if r["scenario"] in RAMPS and summary and steps and "limit" not in summary:
            last = steps[-1]
            summary["limit"] = describe_limit(
                bool(last["passed"]),
                bool(last.get("contaminated", False)),
                cast(float, last["server_cpu_pct"]),
                cast(float, last["gen_cpu_pct"]),
            )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__)
    ap.add_argument("results", type=Path, help="a bench/results/*.json file")
    saved = cast(dict[str, object], json.loads(ap.parse_args(argv).results.read_text()))
    records = cast(list[Record], saved["records"])
    _fill_limits(records)
    names = list(dict.fromkeys(str(r["scenario"]) for r in records))
    print(f"command: {saved['command']}\nstarted: {saved['started']}")
    print(f"scheduling: {saved.get('scheduling_label', 'SCHED_RR (runs before 2026-12)')}")
    print(f"chatroom measured: {saved.get('chatroom_version', 'work tree')}\n")
    print_all([BY_NAME[n] for n in names if n in BY_NAME], records, cast(list[str], saved["notes"]))


if __name__ == "__main__":
    main()
