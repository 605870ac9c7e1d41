"""Targets, the printed table and the chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["TARGETS", "evaluate", "table", "chart", "REQUIRED_METRICS"]

CLIENT_ORDER = ("promptkit", "openai", "floor")

# The keys results.json always has under "metrics" (the smoke test checks them).
REQUIRED_METRICS: Dict[str, Sequence[str]] = {
    "throughput": ("chunks", "reps", "clients"),
    "ttft": ("delay_ms", "runs", "framings"),
    "cancel": ("hold_s", "clients"),
    "close_race": ("runs", "consumer_stranded"),
    "concurrent": ("streams", "deltas", "pace_ms", "clients"),
    "imports": ("runs", "modules"),
}

TARGETS = {
    "throughput_vs_openai": 8.0,  # promptkit chunks/s >= 8x openai-python
    "throughput_vs_floor": 0.4,  # and >= 0.4x the single-thread floor
    "ttft_overhead_ms": 5.0,  # median, each framing
    "cancel_latency_ms": 100.0,  # the slowest run
    "rss_per_stream_mb": 1.0,
    "import_ms": 150.0,
}


def _get(data: Dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _target(name: str, target: str, value: str, passed: bool, **numbers: Any) -> Dict[str, Any]:
    return {"name": name, "target": target, "value": value, "pass": bool(passed), **numbers}


def evaluate(metrics: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Pass or fail for each target of the issue."""
    out: List[Dict[str, Any]] = []
    tp = _get(metrics, "throughput", "clients") or {}
    pk = _get(tp, "promptkit", "chunks_per_s")
    oa = _get(tp, "openai", "chunks_per_s")
    fl = _get(tp, "floor", "chunks_per_s")
    vs_openai = pk / oa if pk and oa else None
    vs_floor = pk / fl if pk and fl else None
    limit = TARGETS["throughput_vs_openai"]
    out.append(
        _target(
            "throughput_vs_openai",
            f"promptkit chunks/s >= {limit:g}x openai-python",
            f"{vs_openai:.2f}x" if vs_openai else "n/a",
            vs_openai is not None and vs_openai >= limit,
            ratio=vs_openai,
            shortfall=(limit / vs_openai if vs_openai and vs_openai < limit else None),
        )
    )
    limit = TARGETS["throughput_vs_floor"]
    out.append(
        _target(
            "throughput_vs_floor",
            f"promptkit chunks/s >= {limit:g}x the floor",
            f"{vs_floor:.2f}x" if vs_floor else "n/a",
            vs_floor is not None and vs_floor >= limit,
            ratio=vs_floor,
            shortfall=(limit / vs_floor if vs_floor and vs_floor < limit else None),
        )
    )
    limit = TARGETS["ttft_overhead_ms"]
    for framing, numbers in (_get(metrics, "ttft", "framings") or {}).items():
        value = _get(numbers, "promptkit", "overhead_ms")
        out.append(
            _target(
                f"ttft_overhead_{framing}",
                f"TTFT overhead ({framing}) <= {limit:g} ms median",
                f"{value:.2f} ms" if value is not None else "n/a",
                value is not None and value <= limit,
                ms=value,
            )
        )
    cancel = _get(metrics, "cancel", "clients", "promptkit") or {}
    limit = TARGETS["cancel_latency_ms"]
    worst = cancel.get("latency_max_ms")
    ok = (
        worst is not None
        and worst <= limit
        and bool(cancel.get("all_server_eof"))
        and bool(cancel.get("all_consumers_ended"))
        and not cancel.get("threads_left")
    )
    out.append(
        _target(
            "cancel_latency",
            f"cancel -> worker joined <= {limit:g} ms (every run), server sees EOF",
            f"{worst:.2f} ms max" if worst is not None else "n/a",
            ok,
            ms=worst,
        )
    )
    conc = _get(metrics, "concurrent", "clients", "promptkit") or {}
    streams = _get(metrics, "concurrent", "streams")
    per_stream_mb = (conc.get("rss_per_stream_kb") or 0) / 1024
    limit = TARGETS["rss_per_stream_mb"]
    ok = bool(conc.get("all_completed")) and bool(conc.get("threads_back")) and bool(conc) and per_stream_mb <= limit
    out.append(
        _target(
            "concurrent_streams",
            f"{streams} concurrent streams all complete, threads back to baseline, <= {limit:g} MB RSS/stream",
            f"{conc.get('completed')}/{streams}, threads {conc.get('threads_after')}/{conc.get('threads_before')}, "
            f"{per_stream_mb * 1024:.0f} KB/stream",
            ok,
        )
    )
    imp = _get(metrics, "imports", "modules", "promptkit") or {}
    limit = TARGETS["import_ms"]
    ms = imp.get("ms")
    out.append(
        _target(
            "import_time",
            f"import promptkit <= {limit:g} ms median, tiktoken not imported",
            f"{ms:.0f} ms, tiktoken {'imported' if imp.get('tiktoken_imported') else 'not imported'}"
            if ms is not None
            else "n/a",
            ms is not None and ms <= limit and imp.get("tiktoken_imported") is False,
            ms=ms,
        )
    )
    return out


# -- the table ----------------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:{spec}}{suffix}"


def _row(label: str, values: Dict[str, str], target: str = "", verdict: str = "") -> List[str]:
    return [label] + [values.get(c, "-") for c in CLIENT_ORDER] + [target, verdict]


def table(results: Dict[str, Any]) -> str:
    """The one table: a row per measurement, a column per client, then target and verdict."""
    m = results["metrics"]
    verdicts = {t["name"]: ("PASS" if t["pass"] else "FAIL") + f" ({t['value']})" for t in results["targets"]}
    rows: List[List[str]] = [["metric", *CLIENT_ORDER, "target", "result"]]

    tp = m["throughput"]
    for framing, per in tp["framings"].items():
        if tp["reps"] > 1:
            values = {c: f"{v['chunks_per_s']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f})" for c, v in per.items()}
            label = f"chunks/s, {framing} ({tp['chunks']:,} x {len(tp['text'])} chars, median (range) of {tp['reps']})"
        else:
            values = {c: f"{v['chunks_per_s']:,.0f}" for c, v in per.items()}
            label = f"chunks/s, {framing} ({tp['chunks']:,} x {len(tp['text'])} chars, 1 run)"
        if framing == tp["headline_framing"]:
            rows.append(
                _row(
                    label,
                    values,
                    f">= {TARGETS['throughput_vs_openai']:g}x openai",
                    verdicts.get("throughput_vs_openai", ""),
                )
            )
            rows.append(
                _row("", {}, f">= {TARGETS['throughput_vs_floor']:g}x floor", verdicts.get("throughput_vs_floor", ""))
            )
        else:
            rows.append(_row(label, values, "(information)"))

    tt = m["ttft"]
    for framing, per in tt["framings"].items():
        values = {c: f"{_fmt(v['overhead_ms'], '.2f')} ({_fmt(v['delivery_ms'], '.2f')}) ms" for c, v in per.items()}
        rows.append(
            _row(
                f"TTFT overhead (client part), {framing}, median of {tt['runs']}",
                values,
                f"<= {TARGETS['ttft_overhead_ms']:g} ms",
                verdicts.get(f"ttft_overhead_{framing}", ""),
            )
        )

    ca = m["cancel"]["clients"]
    values = {}
    for c, v in ca.items():
        text = f"{v['latency_ms']:.2f} / {v['latency_max_ms']:.2f} ms"
        if not v["all_server_eof"]:
            text += " (no EOF)"
        values[c] = text
    rows.append(
        _row(
            "cancel latency, median / max (silent server)",
            values,
            f"<= {TARGETS['cancel_latency_ms']:g} ms",
            verdicts.get("cancel_latency", ""),
        )
    )
    values = {c: _fmt(v["server_eof_ms"], ".2f", " ms") if v["all_server_eof"] else "never" for c, v in ca.items()}
    rows.append(_row("cancel -> server sees EOF, median", values))
    cr = m["close_race"]
    rows.append(
        _row(
            "cancel()+close() from another thread: consumer stranded",
            {"promptkit": f"{cr['consumer_stranded']}/{cr['runs']} runs"},
            "0 (a correctness check)",
            "BUG" if cr["consumer_stranded"] else "ok",
        )
    )

    co = m["concurrent"]
    cc = co["clients"]
    label = f"{co['streams']} streams x {co['deltas']} deltas / {co['pace_ms']:.0f} ms"
    rows.append(
        _row(
            f"{label}: completed",
            {c: f"{v['completed']}/{v['streams']}" for c, v in cc.items()},
            "all, threads back, <= 1 MB/stream",
            verdicts.get("concurrent_streams", ""),
        )
    )
    rows.append(
        _row(
            "  wall time (ideal)",
            {c: f"{v['wall_s']:.2f} s ({v['ideal_wall_s']:.2f})" for c, v in cc.items()},
        )
    )
    rows.append(
        _row("  peak RSS growth per stream", {c: _fmt(v["rss_per_stream_kb"], ".0f", " KB") for c, v in cc.items()})
    )
    rows.append(_row("  CPU per event", {c: _fmt(v["cpu_us_per_event"], ".0f", " us") for c, v in cc.items()}))
    rows.append(
        _row("  threads after / before", {c: f"{v['threads_after']} / {v['threads_before']}" for c, v in cc.items()})
    )

    im = m["imports"]
    values = {}
    for module, v in im["modules"].items():
        values["promptkit" if module == "promptkit" else "openai"] = f"{v['ms']:.0f} ms"
    rows.append(
        _row(
            f"import time (fresh process, median of {im['runs']})",
            values,
            f"<= {TARGETS['import_ms']:g} ms, no tiktoken",
            verdicts.get("import_time", ""),
        )
    )

    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    passed = sum(t["pass"] for t in results["targets"])
    lines.append("")
    lines.append(f"targets passed: {passed}/{len(results['targets'])}")
    return "\n".join(lines)


# -- the chart ----------------------------------------------------------------------------


def _label(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def chart(results: Dict[str, Any], path: Path) -> None:
    """Render a bar chart of the headline numbers to ``path`` (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = results["metrics"]
    colors = {"promptkit": "#2a7ab9", "openai": "#999999", "floor": "#6ab04c"}
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    mode = "quick" if results["config"]["quick"] else "full"
    fig.suptitle(
        f"promptkit streaming benchmarks ({mode} mode; {results['meta']['python']}, {results['meta']['cpus']} CPUs)"
    )

    def bars(
        ax: Any,
        values: Dict[str, Optional[float]],
        title: str,
        unit: str,
        target: Optional[float] = None,
        log: bool = False,
    ) -> None:
        names = [c for c in CLIENT_ORDER if values.get(c) is not None]
        heights = [float(values[c] or 0.0) for c in names]
        drawn = ax.bar(names, heights, color=[colors[c] for c in names])
        ax.bar_label(drawn, labels=[_label(h) for h in heights], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        if log:
            ax.set_yscale("log")
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1, label=f"promptkit target {_label(target)}")
            ax.legend(fontsize=8)

    tp = m["throughput"]["clients"]
    pk_floor = (tp.get("floor") or {}).get("chunks_per_s")
    oa = (tp.get("openai") or {}).get("chunks_per_s")
    need = max(TARGETS["throughput_vs_floor"] * (pk_floor or 0), TARGETS["throughput_vs_openai"] * (oa or 0)) or None
    bars(
        axes[0][0],
        {c: v["chunks_per_s"] for c, v in tp.items()},
        f"throughput, {m['throughput']['chunks']:,} chunks, {m['throughput']['headline_framing']} (median)",
        "chunks/s",
        need,
    )

    ax = axes[0][1]
    framings = list(m["ttft"]["framings"])
    width = 0.8 / max(1, len(framings))
    for i, framing in enumerate(framings):
        per = m["ttft"]["framings"][framing]
        xs = [j + i * width for j in range(len(CLIENT_ORDER))]
        heights = [float((per.get(c) or {}).get("overhead_ms") or 0.0) for c in CLIENT_ORDER]
        drawn = ax.bar(
            xs, heights, width, label=framing, alpha=0.9 if i == 0 else 0.6, color=[colors[c] for c in CLIENT_ORDER]
        )
        ax.bar_label(drawn, labels=[f"{h:.2f}" for h in heights], fontsize=8)
    ax.set_xticks([j + width * (len(framings) - 1) / 2 for j in range(len(CLIENT_ORDER))], list(CLIENT_ORDER))
    ax.axhline(TARGETS["ttft_overhead_ms"], color="red", linestyle="--", linewidth=1)
    ax.set_title("TTFT overhead over a 300 ms first delta (left: chunked, right: close)", fontsize=10)
    ax.set_ylabel("ms")

    ca = m["cancel"]["clients"]
    bars(
        axes[0][2],
        {c: v["latency_max_ms"] for c, v in ca.items()},
        "cancel latency while silent (max of runs)",
        "ms (log)",
        TARGETS["cancel_latency_ms"],
        log=True,
    )

    cc = m["concurrent"]["clients"]
    n = m["concurrent"]["streams"]
    bars(
        axes[1][0],
        {c: v["rss_per_stream_kb"] for c, v in cc.items()},
        f"{n} concurrent streams: peak RSS growth / stream",
        "KB",
        TARGETS["rss_per_stream_mb"] * 1024,
    )
    bars(axes[1][1], {c: v["cpu_us_per_event"] for c, v in cc.items()}, f"{n} concurrent streams: CPU per event", "µs")
    im = m["imports"]["modules"]
    bars(
        axes[1][2],
        {("promptkit" if k == "promptkit" else "openai"): v["ms"] for k, v in im.items()},
        "import time (fresh process)",
        "ms",
        TARGETS["import_ms"],
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
