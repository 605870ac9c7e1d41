"""Targets, the printed tables and the chart (each covers only the measurements that ran)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["TARGETS", "evaluate", "table", "chart", "REQUIRED_METRICS"]

CLIENT_ORDER = ("promptkit", "openai", "floor", "floor_2t")
SESSION_ORDER = ("own", "session", "proxy")

# The keys results.json has under "metrics" for each measurement that ran (the smoke test checks them).
REQUIRED_METRICS: Dict[str, Sequence[str]] = {
    "throughput": ("chunks", "reps", "clients"),
    "ttft": ("delay_ms", "runs", "framings"),
    "cancel": ("hold_s", "clients"),
    "close_race": ("runs", "consumer_stranded"),
    "cancel_phases": ("runs", "bound_s", "phases"),
    "concurrent": ("streams", "deltas", "pace_ms", "clients"),
    "imports": ("runs", "modules"),
    "resumable": ("skipped", "runs", "stop_runs", "followers_n", "turn_events"),
}

TARGETS = {
    "throughput_vs_openai": 5.0,  # bulk chunked: promptkit chunks/s >= 5x openai-python
    "throughput_vs_floor": 0.4,  # and >= 0.4x the single-thread floor
    "ttft_overhead_ms": 5.0,  # median, each framing
    "cancel_latency_ms": 100.0,  # the slowest run, silent stream and every phase
    "rss_per_stream_mb": 1.0,
    "cpu_vs_floor_2t": 1.1,  # concurrent streams: promptkit CPU/event <= 1.1x the two-thread floor
    "import_ms": 150.0,
    "resumable_stop_ms": 200.0,  # stop from another worker -> the follower's client has `done`, every run
}


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _target(name: str, target: str, value: str, passed: bool, **numbers: Any) -> Dict[str, Any]:
    return {"name": name, "target": target, "value": value, "pass": bool(passed), **numbers}


def _ratio_target(
    name: str, what: str, mine: Optional[float], other: Optional[float], limit: float, at_most: bool = False
) -> Dict[str, Any]:
    ratio = mine / other if mine and other else None
    ok = ratio is not None and (ratio <= limit if at_most else ratio >= limit)
    return _target(
        name, f"{what} {'<=' if at_most else '>='} {limit:g}x", f"{ratio:.2f}x" if ratio else "n/a", ok, ratio=ratio
    )


def evaluate(metrics: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Pass or fail for each target of the issue whose measurement ran."""
    out: List[Dict[str, Any]] = []
    if "throughput" in metrics:
        tp = _get(metrics, "throughput", "clients") or {}
        pk = _get(tp, "promptkit", "chunks_per_s")
        out.append(
            _ratio_target(
                "throughput_vs_openai",
                "promptkit chunks/s (bulk, chunked) vs openai-python",
                pk,
                _get(tp, "openai", "chunks_per_s"),
                TARGETS["throughput_vs_openai"],
            )
        )
        out.append(
            _ratio_target(
                "throughput_vs_floor",
                "promptkit chunks/s (bulk, chunked) vs the floor",
                pk,
                _get(tp, "floor", "chunks_per_s"),
                TARGETS["throughput_vs_floor"],
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
    limit = TARGETS["cancel_latency_ms"]
    if "cancel" in metrics:
        cancel = _get(metrics, "cancel", "clients", "promptkit") or {}
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
                f"cancel a silent stream -> worker joined <= {limit:g} ms, server sees EOF",
                f"{worst:.2f} ms max" if worst is not None else "n/a",
                ok,
                ms=worst,
            )
        )
    for phase, cells in (_get(metrics, "cancel_phases", "phases") or {}).items():
        worst_ms = [c.get("latency_max_ms") for c in cells.values()]
        ok = (
            bool(cells)
            and all(c.get("all_cancelled") for c in cells.values())
            and all(w is not None and w <= limit for w in worst_ms)
        )
        failing = [f"{kind}: {c['note']}" for kind, c in cells.items() if c.get("note")]
        value = (
            f"{max(w for w in worst_ms if w is not None):.1f} ms max"
            if all(w is not None for w in worst_ms) and worst_ms
            else "; ".join(failing) or "n/a"
        )
        out.append(
            _target(
                f"cancel_phase_{phase}",
                f"cancel while {phase.replace('_', '-')} <= {limit:g} ms, every session kind and run",
                value,
                ok,
            )
        )
    if "concurrent" in metrics:
        conc = _get(metrics, "concurrent", "clients", "promptkit") or {}
        streams = _get(metrics, "concurrent", "streams")
        per_stream_mb = (conc.get("rss_per_stream_kb") or 0) / 1024
        limit = TARGETS["rss_per_stream_mb"]
        ok = bool(conc.get("all_completed")) and bool(conc.get("threads_back")) and per_stream_mb <= limit
        out.append(
            _target(
                "concurrent_streams",
                f"{streams} concurrent streams all complete, threads back to baseline, <= {limit:g} MB RSS/stream",
                f"{conc.get('completed')}/{streams}, threads {conc.get('threads_after')}/{conc.get('threads_before')}, "
                f"{per_stream_mb * 1024:.0f} KB/stream",
                ok,
            )
        )
        out.append(
            _ratio_target(
                "concurrent_cpu_vs_floor_2t",
                f"{streams} paced streams: promptkit CPU/event vs the two-thread floor (median of per-round ratios)",
                conc.get("cpu_vs_floor_2t"),
                1.0,
                TARGETS["cpu_vs_floor_2t"],
                at_most=True,
            )
        )
    if "imports" in metrics:
        imp = _get(metrics, "imports", "modules", "promptkit") or {}
        limit = TARGETS["import_ms"]
        ms = imp.get("ms")
        tiktoken = "imported" if imp.get("tiktoken_imported") else "not imported"
        otel = "imported" if imp.get("opentelemetry_imported") else "not imported"
        out.append(
            _target(
                "import_time",
                f"import promptkit <= {limit:g} ms median, tiktoken and opentelemetry not imported",
                f"{ms:.0f} ms, tiktoken {tiktoken}, opentelemetry {otel}" if ms is not None else "n/a",
                ms is not None and ms <= limit and imp.get("tiktoken_imported") is False
                and imp.get("opentelemetry_imported") is False,
                ms=ms,
            )
        )
    stop = _get(metrics, "resumable", "stop")
    if stop:
        limit = TARGETS["resumable_stop_ms"]
        worst = stop.get("max_ms")
        out.append(
            _target(
                "resumable_stop_latency",
                f"stop a silent published turn from another worker -> follower gets done (cancelled) <= {limit:g} ms",
                f"{worst:.1f} ms max, {stop.get('cancelled')}/{stop.get('runs')} cancelled" if worst is not None else "n/a",
                worst is not None and worst <= limit and bool(stop.get("all_cancelled")),
                ms=worst,
            )
        )
    return out


# -- the tables -----------------------------------------------------------------------


def _fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:{spec}}{suffix}"


def _render(rows: List[List[str]]) -> List[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append(" | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return lines


def _client_rows(m: Dict[str, Any], verdicts: Dict[str, str]) -> List[List[str]]:
    """One row per client measurement, a column per client."""

    def row(label: str, values: Dict[str, str], target: str = "", verdict: str = "") -> List[str]:
        return [label] + [values.get(c, "-") for c in CLIENT_ORDER] + [target, verdict]

    rows: List[List[str]] = []
    tp = m.get("throughput")
    for framing, per in (tp or {}).get("framings", {}).items():
        assert tp is not None
        shape = f"{tp['chunks']:,} x {len(tp['text'])} chars"
        if tp["reps"] > 1:
            values = {c: f"{v['chunks_per_s']:,.0f} ({v['min']:,.0f}-{v['max']:,.0f})" for c, v in per.items()}
            label = f"chunks/s, bulk {framing} ({shape}, median (range) of {tp['reps']})"
        else:
            values = {c: f"{v['chunks_per_s']:,.0f}" for c, v in per.items()}
            label = f"chunks/s, bulk {framing} ({shape}, 1 run)"
        if framing == tp["headline_framing"]:
            rows.append(
                row(
                    label,
                    values,
                    f">= {TARGETS['throughput_vs_openai']:g}x openai",
                    verdicts.get("throughput_vs_openai", ""),
                )
            )
            rows.append(
                row("", {}, f">= {TARGETS['throughput_vs_floor']:g}x floor", verdicts.get("throughput_vs_floor", ""))
            )
        else:
            rows.append(row(label, values, "(information)"))
    tt = m.get("ttft")
    for framing, per in (tt or {}).get("framings", {}).items():
        assert tt is not None
        rows.append(
            row(
                f"TTFT overhead, {framing}, median of {tt['runs']}",
                {c: _fmt(v["overhead_ms"], ".2f", " ms") for c, v in per.items()},
                f"<= {TARGETS['ttft_overhead_ms']:g} ms",
                verdicts.get(f"ttft_overhead_{framing}", ""),
            )
        )
    if "cancel" in m:
        ca = m["cancel"]["clients"]
        values = {
            c: f"{v['latency_ms']:.2f} / {v['latency_max_ms']:.2f} ms" + ("" if v["all_server_eof"] else " (no EOF)")
            for c, v in ca.items()
        }
        rows.append(
            row(
                "cancel a silent stream, median / max",
                values,
                f"<= {TARGETS['cancel_latency_ms']:g} ms",
                verdicts.get("cancel_latency", ""),
            )
        )
        values = {c: _fmt(v["server_eof_ms"], ".2f", " ms") if v["all_server_eof"] else "never" for c, v in ca.items()}
        rows.append(row("  cancel -> server sees EOF, median", values))
    if "close_race" in m:
        cr = m["close_race"]
        rows.append(
            row(
                "cancel()+close() from another thread: consumer stranded",
                {"promptkit": f"{cr['consumer_stranded']}/{cr['runs']} runs"},
                "0 (a correctness check)",
                "BUG" if cr["consumer_stranded"] else "ok",
            )
        )
    if "concurrent" in m:
        co = m["concurrent"]
        cc = co["clients"]
        label = f"{co['streams']} streams x {co['deltas']} deltas / {co['pace_ms']:.0f} ms"
        rows.append(
            row(
                f"{label}: completed",
                {c: f"{v['completed']}/{v['streams']}" for c, v in cc.items()},
                "all, threads back, <= 1 MB/stream",
                verdicts.get("concurrent_streams", ""),
            )
        )
        rows.append(
            row(
                "  CPU per event",
                {c: _fmt(v["cpu_us_per_event"], ".0f", " us") for c, v in cc.items()},
                f"<= {TARGETS['cpu_vs_floor_2t']:g}x floor_2t",
                verdicts.get("concurrent_cpu_vs_floor_2t", ""),
            )
        )
        rows.append(
            row(
                "  CPU per event / floor_2t's, median of rounds",
                {c: _fmt(v.get("cpu_vs_floor_2t"), ".2f", "x") for c, v in cc.items()},
            )
        )
        rows.append(
            row("  wall time (ideal)", {c: f"{v['wall_s']:.2f} s ({v['ideal_wall_s']:.2f})" for c, v in cc.items()})
        )
        rows.append(
            row("  peak RSS growth per stream", {c: _fmt(v["rss_per_stream_kb"], ".0f", " KB") for c, v in cc.items()})
        )
        rows.append(
            row("  threads after / before", {c: f"{v['threads_after']} / {v['threads_before']}" for c, v in cc.items()})
        )
    if "imports" in m:
        im = m["imports"]
        values = {
            ("promptkit" if k == "promptkit" else "openai"): f"{v['ms']:.0f} ms" for k, v in im["modules"].items()
        }
        rows.append(
            row(
                f"import time (fresh process, median of {im['runs']})",
                values,
                f"<= {TARGETS['import_ms']:g} ms, no tiktoken/otel",
                verdicts.get("import_time", ""),
            )
        )
    return [["metric", *CLIENT_ORDER, "target", "result"]] + rows if rows else []


def _phase_rows(m: Dict[str, Any], verdicts: Dict[str, str]) -> List[List[str]]:
    """promptkit's cancel latency per phase (rows) and session kind (columns)."""
    cp = m.get("cancel_phases")
    if not cp:
        return []
    rows = [[f"cancel per phase (promptkit; median / max of {cp['runs']})", *SESSION_ORDER, "target", "result"]]
    for phase, cells in cp["phases"].items():
        values = []
        for kind in SESSION_ORDER:
            cell = cells.get(kind)
            if cell is None:
                values.append("skipped" if kind in cp.get("skipped_sessions", {}) else "-")
            elif cell["all_cancelled"]:
                values.append(f"{cell['latency_ms']:.1f} / {cell['latency_max_ms']:.1f} ms")
            else:
                values.append("not cancellable" if "not cancellable" in cell["note"] else "not cancelled")
        result = verdicts.get(f"cancel_phase_{phase}", "")
        rows.append([phase, *values, f"<= {TARGETS['cancel_latency_ms']:g} ms", result.split(" (")[0]])
    return rows


def _resumable_rows(m: Dict[str, Any], verdicts: Dict[str, str]) -> List[List[str]]:
    """Resumable streams: a column per stream log engine."""
    rs = m.get("resumable")
    if not rs or rs.get("skipped"):
        return []
    engines = ("redis", "memory")

    def per(path: Sequence[str], fmt: Any) -> List[str]:
        cells = []
        for engine in engines:
            value = _get(rs, *path[:1], engine, *path[1:])
            cells.append(fmt(value) if value is not None else "-")
        return cells

    def both(value: Dict[str, Any]) -> str:
        return f"{value['median_ms']:.1f} / {value['max_ms']:.1f} ms"

    rows = [[f"resumable streams (median / max of {rs['runs']})", *engines, "target", "result"]]
    for state in ("finished", "live", "finished_tail"):
        after = _get(rs, "resume", "redis", state, "after")
        what = "finished" if state == "finished_tail" else state
        rows.append([f"resume a {what} stream (Last-Event-ID {after}) -> first event", *per(("resume", state), both), "", ""])
    stop = rs.get("stop")
    if stop:
        verdict = verdicts.get("resumable_stop_latency", "")
        rows.append(
            [
                f"stop from another worker -> client has done (cancelled), {stop['runs']} runs",
                both(stop),
                "-",
                f"<= {TARGETS['resumable_stop_ms']:g} ms",
                verdict.split(" (")[0],
            ]
        )
    mem = rs.get("redis_memory")
    if mem:
        rows.append(
            [
                f"Redis memory of a finished {mem['content_events']}-event turn (log + meta + current)",
                f"{mem['bytes'] / 1024:.1f} KB, {mem['bytes_per_event']:.0f} B/event",
                "-",
                "(information)",
                "",
            ]
        )
    fo = rs.get("followers") or {}
    n = _get(fo, "redis", "followers") or _get(fo, "memory", "followers")
    if n:
        label = f"{n} followers of live streams in one worker (an event / {_get(fo, 'redis', 'event_every_ms') or 0:.0f} ms)"
        rows.append([label + ": threads per follower", *per(("followers", "follower", "threads_per_stream"), lambda v: f"{v:.2f}"), "", ""])
        rows.append(["  RSS per follower", *per(("followers", "follower", "rss_per_stream_kb"), lambda v: f"{v:.0f} KB"), "", ""])
        rows.append(
            [
                "  Redis connections per waiting follower (blocked in XREAD)",
                *per(("followers", "follower", "redis_connections_per_follower"), lambda v: f"{v:.2f}"),
                "",
                "",
            ]
        )
        rows.append(["  worker CPU per follower", *per(("followers", "follower", "cpu_pct_per_follower"), lambda v: f"{v:.2f}% of a core"), "", ""])
        rows.append(["  producer threads per stream (and its process)", *per(("followers", "producer", "threads_per_stream"), lambda v: f"{v:.2f}"), "", ""])
        rows.append(["  producer RSS per stream", *per(("followers", "producer", "rss_per_stream_kb"), lambda v: f"{v:.0f} KB"), "", ""])
        rows.append(["  producer CPU per stream", *per(("followers", "producer", "cpu_pct_per_stream"), lambda v: f"{v:.2f}% of a core"), "", ""])
    return rows


def table(results: Dict[str, Any]) -> str:
    """The tables: clients side by side, promptkit's cancel per phase, resumable streams; then the targets."""
    m = results["metrics"]
    verdicts = {t["name"]: ("PASS" if t["pass"] else "FAIL") + f" ({t['value']})" for t in results["targets"]}
    lines: List[str] = []
    skipped = _get(m, "resumable", "skipped")
    if skipped:
        lines += [f"resumable streams: skipped: {skipped}", ""]
    for rows in (_client_rows(m, verdicts), _phase_rows(m, verdicts), _resumable_rows(m, verdicts)):
        if rows:
            lines += _render(rows) + [""]
    cp = m.get("cancel_phases")
    if cp:
        for phase, cells in cp["phases"].items():
            for kind, cell in cells.items():
                if cell["note"]:
                    lines.append(f"  {phase}/{kind}: {cell['note']}")
        for kind, why in cp.get("skipped_sessions", {}).items():
            lines.append(f"  {kind}: skipped: {why}")
        lines.append("")
    passed = sum(t["pass"] for t in results["targets"])
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
    colors = {
        "promptkit": "#2a7ab9",
        "openai": "#999999",
        "floor": "#6ab04c",
        "floor_2t": "#3c7a2c",
        "own": "#2a7ab9",
        "session": "#e0a030",
        "proxy": "#9b59b6",
        "chunked": "#2a7ab9",
        "close": "#7fb3de",
    }
    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5))
    panels = iter(axes.flat)
    mode = "quick" if results["config"]["quick"] else "full"
    fig.suptitle(
        f"promptkit streaming benchmarks ({mode} mode; {results['meta']['python']}, {results['meta']['cpus']} CPUs)"
    )

    def bars(
        values: Dict[str, Optional[float]], title: str, unit: str, target: Optional[float] = None, log: bool = False
    ) -> None:
        ax = next(panels)
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

    def grouped(
        groups: Dict[str, Dict[str, Optional[float]]],
        series: Sequence[str],
        title: str,
        unit: str,
        target: Optional[float],
        missing: str = "",
    ) -> None:
        ax = next(panels)
        width = 0.8 / max(1, len(series))
        top = max([v for g in groups.values() for v in g.values() if v is not None] + [target or 1.0])
        for i, name in enumerate(series):
            xs = [j + i * width for j in range(len(groups))]
            raw = [g.get(name) for g in groups.values()]
            drawn = ax.bar(
                xs,
                [v if v is not None else top for v in raw],
                width,
                label=name,
                color=colors[name],
                hatch=["" if v is not None else "//" for v in raw],
                alpha=0.9,
            )
            ax.bar_label(drawn, labels=[_label(v) if v is not None else missing for v in raw], fontsize=7)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))], list(groups), fontsize=8)
        if target is not None:
            ax.axhline(target, color="red", linestyle="--", linewidth=1)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.legend(fontsize=8)

    if "throughput" in m:
        tp = m["throughput"]["clients"]
        floor, oa = _get(tp, "floor", "chunks_per_s"), _get(tp, "openai", "chunks_per_s")
        need = max(TARGETS["throughput_vs_floor"] * (floor or 0), TARGETS["throughput_vs_openai"] * (oa or 0)) or None
        bars(
            {c: v["chunks_per_s"] for c, v in tp.items()},
            f"throughput, {m['throughput']['chunks']:,} chunks, bulk {m['throughput']['headline_framing']} (median)",
            "chunks/s",
            need,
        )
    if "ttft" in m:
        per = m["ttft"]["framings"]
        grouped(
            {c: {f: _get(per, f, c, "overhead_ms") for f in per} for c in CLIENT_ORDER if _get(per, "chunked", c)},
            list(per),
            "TTFT overhead over a 300 ms first delta (median)",
            "ms",
            TARGETS["ttft_overhead_ms"],
        )
    if "cancel" in m:
        bars(
            {c: v["latency_max_ms"] for c, v in m["cancel"]["clients"].items()},
            "cancel a silent stream (max of runs)",
            "ms (log)",
            TARGETS["cancel_latency_ms"],
            log=True,
        )
    if "cancel_phases" in m:
        cp = m["cancel_phases"]
        kinds = [k for k in SESSION_ORDER if any(k in cells for cells in cp["phases"].values())]
        grouped(
            {p: {k: _get(cells, k, "latency_max_ms") for k in kinds} for p, cells in cp["phases"].items()},
            kinds,
            "promptkit cancel per phase, max (n/c: not cancelled)",
            "ms",
            TARGETS["cancel_latency_ms"],
            missing="n/c",
        )
    if "concurrent" in m:
        cc = m["concurrent"]["clients"]
        n = m["concurrent"]["streams"]
        bars(
            {c: v["rss_per_stream_kb"] for c, v in cc.items()},
            f"{n} concurrent streams: peak RSS growth / stream",
            "KB",
            TARGETS["rss_per_stream_mb"] * 1024,
        )
        floor_2t = _get(cc, "floor_2t", "cpu_us_per_event")
        bars(
            {c: v["cpu_us_per_event"] for c, v in cc.items()},
            f"{n} concurrent streams: CPU per event",
            "µs",
            TARGETS["cpu_vs_floor_2t"] * floor_2t if floor_2t else None,
        )
    if "imports" in m:
        bars(
            {("promptkit" if k == "promptkit" else "openai"): v["ms"] for k, v in m["imports"]["modules"].items()},
            "import time (fresh process)",
            "ms",
            TARGETS["import_ms"],
        )
    rs = m.get("resumable")
    if rs and not rs.get("skipped"):
        ax = next(panels)
        cells = {
            f"resume\n{state}\n({engine})": _get(rs, "resume", engine, state)
            for engine in ("redis", "memory")
            for state in ("finished", "live")
        }
        cells["stop across\nworkers\n(redis)"] = rs.get("stop")
        names = [name for name, cell in cells.items() if cell]
        medians = [cells[name]["median_ms"] for name in names]
        drawn = ax.bar(names, medians, color=["#7fb3de"] * (len(names) - 1) + ["#2a7ab9"])
        ax.bar_label(drawn, labels=[_label(v) for v in medians], fontsize=8)
        ax.scatter(names, [cells[name]["max_ms"] for name in names], color="black", marker="_", s=200, label="max")
        ax.axhline(TARGETS["resumable_stop_ms"], color="red", linestyle="--", linewidth=1, label="stop target")
        ax.set_yscale("log")
        ax.set_title("resumable streams: median (bars) and max, over HTTP", fontsize=10)
        ax.set_ylabel("ms (log)")
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=8)
    for ax in panels:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
