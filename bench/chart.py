"""One PNG per bench run: the ramps (delivered vs offered, p99) and the fixed-load bars."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

matplotlib.use("Agg")  # files only, no display

Record = dict[str, object]
RAMPS = ("fanout-1000", "fanout-5000", "fanout-15000", "fanout-1000x10")
BARS = (
    ("cpu", "server_us_per_delivery", "server CPU us per delivery (N=1000, 20 msg/s)"),
    ("idle", "kb_per_connection", "server KB per idle connection"),
)


# one colour per server, one line style per run
COLORS = {
    "chatroom": "tab:red",
    "chatroom_wd5": "tab:purple",
    "bun_ws": "black",
    "node_ws": "tab:blue",
    "node_ws_prepared": "tab:cyan",
    "node_socketio": "tab:green",
    "picows_ws": "tab:olive",
    "py_websockets": "tab:orange",
    "trio_naive": "tab:gray",
}


# chatroom@REF when several commits ran: one shade per commit, in the order given
REF_SHADES = ("tab:red", "tab:pink", "tab:brown", "darkred", "salmon")
_shade_of: dict[str, str] = {}


def _style(record: Record) -> tuple[str, str]:
    """(colour, line style)"""
    name = str(record["server"])
    variant, at, _ = name.partition("@")
    if at:
        color = _shade_of.setdefault(name, REF_SHADES[len(_shade_of) % len(REF_SHADES)])
    else:
        color = COLORS.get(variant, "gray")
    return color, "-" if record["run"] == 1 else "--"


def _steps(record: Record) -> list[dict[str, object]]:
    return cast(list[dict[str, object]], record["steps"])


def draw(records: list[Record], path: Path) -> Path | None:
    ramps = [s for s in RAMPS if any(r["scenario"] == s and r["steps"] for r in records)]
    bars = [b for b in BARS if any(r["scenario"] == b[0] and r.get("summary") for r in records)]
    if not ramps and not bars:
        return None
    cols = max(len(ramps), len(bars), 1)
    rows = (2 if ramps else 0) + (1 if bars else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows), squeeze=False)
    for col, name in enumerate(ramps):
        _ramp(axes[0][col], axes[1][col], name, [r for r in records if r["scenario"] == name])
    for col, (name, key, title) in enumerate(bars):
        _bar(axes[rows - 1][col], [r for r in records if r["scenario"] == name], key, title)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _ramp(top: Axes, bottom: Axes, name: str, records: list[Record]) -> None:
    for r in records:
        steps = _steps(r)
        if not steps:
            continue
        label = f"{r['server']} #{r['run']}"
        offered = [cast(float, s["rate"]) * cast(int, s["subs"]) for s in steps]
        got = [cast(float, s["deliveries_per_s"]) for s in steps]
        p99 = [max(cast(dict[str, float], s["latency"])["p99"], 0.01) for s in steps]
        color, line = _style(r)
        top.plot(offered, got, marker="o", label=label, color=color, linestyle=line)
        bottom.plot(offered, p99, marker="o", label=label, color=color, linestyle=line)
    top.set_title(f"{name}: delivered vs offered")
    top.set_xlabel("offered deliveries/s")
    top.set_ylabel("deliveries/s")
    top.legend(fontsize=7)
    bottom.set_title(f"{name}: p99 latency")
    bottom.set_xlabel("offered deliveries/s")
    bottom.set_ylabel("ms")
    bottom.set_yscale("log")
    bottom.axhline(200, color="red", linewidth=0.8, linestyle="--")


def _bar(ax: Axes, records: list[Record], key: str, title: str) -> None:
    labels, values, colors = [], [], []
    for r in records:
        value = cast(dict[str, object], r.get("summary") or {}).get(key)
        if isinstance(value, int | float):
            labels.append(f"{r['server']} #{r['run']}")
            values.append(float(value))
            colors.append(_style(r)[0])
    ax.barh(labels, values, color=colors)
    ax.set_title(title)
