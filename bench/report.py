"""Tables for people (stdout), ratios of chatroom to each peer."""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean
from typing import cast

from bench.scenarios import Scenario

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


def ratio_lines(scenario: Scenario, records: list[Record]) -> list[str]:
    if not scenario.headline:
        return []
    ours = _headline(scenario, records, "chatroom")
    peers = sorted({str(r["server"]) for r in records} - {"chatroom"})
    better = "higher" if scenario.higher_is_better else "lower"
    lines = [f"chatroom / peer, {scenario.headline} (mean of runs; {better} is better):"]
    for peer in peers:
        theirs = _headline(scenario, records, peer)
        if ours is None or theirs is None or theirs == 0:
            why = "no chatroom figure" if ours is None else f"no {peer} figure"
            lines.append(f"  vs {peer}: - ({why})")
        else:
            lines.append(f"  vs {peer}: {ours / theirs:.2f}x ({_fmt(ours)} vs {_fmt(theirs)})")
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
                    round(cast(float, s["gen_cpu_pct"])),
                    round(cast(int, s["server_rss_kb"]) / 1024, 1),
                    "yes" if s["passed"] else "no",
                ]
            )
    return table(headers, rows)
