"""Run the benchmarks, print one table, write results.json and results.png.

Usage (from the repository root)::

    python -m benchmarks                 # every measurement (a few minutes)
    python -m benchmarks --quick         # seconds: smaller numbers, fewer runs
    python -m benchmarks --only cancel_phases,imports   # some measurements only
    python -m benchmarks --out /tmp/r.json --no-chart
    python -m benchmarks --profile       # also profile the per-chunk path (benchmarks/profile.txt)
    python benchmarks/run.py ...         # the same

The server runs in its own process (``promptkit.testing.MockServer``, see
:mod:`benchmarks.mock`) and is stopped however the run ends. Timing numbers
are for this machine only; compare clients within one run, not runs across
machines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import measure  # noqa: E402
from benchmarks._env import prepare  # noqa: E402
from benchmarks.cancel_phases import cancel_phases  # noqa: E402
from benchmarks.mock import ServerProcess  # noqa: E402
from benchmarks.resumable import resumable  # noqa: E402
from benchmarks.report import chart, evaluate, table  # noqa: E402

__all__ = ["main", "CONFIGS", "MEASUREMENTS"]

HERE = Path(__file__).resolve().parent
CLIENT_NAMES = ("promptkit", "openai", "floor")
CONCURRENT_NAMES = ("promptkit", "openai", "floor", "floor_2t")

CONFIGS: Dict[str, Dict[str, Any]] = {
    "full": {
        "chunks": 20_000,
        "reps": 5,
        "ttft_runs": 10,
        "ttft_delay": 0.3,
        "cancel_runs": 10,
        "cancel_slow_runs": 3,
        "cancel_hold": 2.0,
        "close_race_runs": 20,
        "phase_runs": 5,
        "phase_bound": 2.0,
        "streams": 200,
        "deltas": 50,
        "pace": 0.02,
        "concurrent_rounds": 5,
        "import_runs": 5,
        "resume_runs": 20,
        "stop_runs": 20,
        "followers": 50,
        "follow_hold": 3.0,
        "turn_events": 500,
    },
    "quick": {
        "chunks": 2_000,
        "reps": 1,
        "ttft_runs": 1,
        "ttft_delay": 0.3,
        "cancel_runs": 2,
        "cancel_slow_runs": 1,
        "cancel_hold": 0.5,
        "close_race_runs": 3,
        "phase_runs": 1,
        "phase_bound": 0.5,
        "streams": 20,
        "deltas": 20,
        "pace": 0.01,
        "concurrent_rounds": 1,
        "import_runs": 1,
        "resume_runs": 3,
        "stop_runs": 3,
        "followers": 10,
        "follow_hold": 0.5,
        "turn_events": 100,
    },
}


def _throughput(server: Any, c: Dict[str, Any]) -> Any:
    return measure.throughput(server, CLIENT_NAMES, chunks=c["chunks"], reps=c["reps"])


def _ttft(server: Any, c: Dict[str, Any]) -> Any:
    return measure.ttft(server, CLIENT_NAMES, runs=c["ttft_runs"], delay=c["ttft_delay"])


def _cancel(server: Any, c: Dict[str, Any]) -> Any:
    return measure.cancel(CLIENT_NAMES, runs=c["cancel_runs"], hold=c["cancel_hold"], slow_runs=c["cancel_slow_runs"])


def _close_race(server: Any, c: Dict[str, Any]) -> Any:
    return measure.close_race(runs=c["close_race_runs"])


def _cancel_phases(server: Any, c: Dict[str, Any]) -> Any:
    return cancel_phases(runs=c["phase_runs"], bound=c["phase_bound"])


def _concurrent(server: Any, c: Dict[str, Any]) -> Any:
    return measure.concurrent(
        server, CONCURRENT_NAMES, streams=c["streams"], deltas=c["deltas"], pace=c["pace"], rounds=c["concurrent_rounds"]
    )


def _imports(server: Any, c: Dict[str, Any]) -> Any:
    return measure.imports(("promptkit", "openai"), runs=c["import_runs"])


def _resumable(server: Any, c: Dict[str, Any]) -> Any:
    return resumable(
        server,
        runs=c["resume_runs"],
        stop_runs=c["stop_runs"],
        followers=c["followers"],
        hold=c["follow_hold"],
        turn_events=c["turn_events"],
    )


# name -> (progress label, whether it needs the server process, the step)
MEASUREMENTS: Dict[str, Any] = {
    "throughput": (lambda c: f"throughput: {c['chunks']:,} chunks x {c['reps']}", True, _throughput),
    "ttft": (lambda c: f"time to first token: {c['ttft_runs']} runs per framing", True, _ttft),
    "cancel": (lambda c: f"cancel latency, silent stream: {c['cancel_runs']} runs", False, _cancel),
    "close_race": (lambda c: f"cancel()+close() from another thread: {c['close_race_runs']} runs", False, _close_race),
    "cancel_phases": (
        lambda c: f"cancel latency per phase and session: {c['phase_runs']} runs, {c['phase_bound']:g} s bound",
        False,
        _cancel_phases,
    ),
    "concurrent": (lambda c: f"{c['streams']} concurrent streams (a fresh process per client)", True, _concurrent),
    "imports": (lambda c: f"import time: {c['import_runs']} fresh processes per module", False, _imports),
    "resumable": (
        lambda c: f"resumable streams (redis-server, 3 workers): {c['resume_runs']} resumes, {c['stop_runs']} stops, "
        f"{c['followers']} followers, a {c['turn_events']}-event turn",
        True,
        _resumable,
    ),
}


def _versions() -> Dict[str, Optional[str]]:
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, Optional[str]] = {}
    for name in ("promptkit", "openai", "httpx", "requests", "urllib3", "proxy.py"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run_all(config: Dict[str, Any], only: Optional[List[str]] = None) -> Dict[str, Any]:
    """The selected measurements (all by default), in order; records each step's seconds."""
    metrics: Dict[str, Any] = {}
    steps: Dict[str, float] = {}
    names = [name for name in MEASUREMENTS if only is None or name in only]
    with contextlib.ExitStack() as stack:
        server = None
        if any(MEASUREMENTS[name][1] for name in names):
            server = stack.enter_context(ServerProcess())
        for name in names:
            label, _, work = MEASUREMENTS[name]
            print(f"  {label(config)} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            metrics[name] = work(server, config)
            steps[name] = round(time.perf_counter() - t0, 2)
    metrics["step_seconds"] = steps
    return metrics


def _git_state() -> Dict[str, Any]:
    """The commit measured, and promptkit files changed on top of it (results are for that tree)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", *args], capture_output=True, text=True, cwd=str(HERE.parent), timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return proc.stdout.strip() if proc.returncode == 0 else ""

    changed = [line[3:] for line in git("status", "--porcelain", "--", "promptkit").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD") or None, "promptkit_changes": changed}


def main(argv: Optional[List[str]] = None) -> int:
    """Command line entry point; returns the exit status (0 even when targets fail)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds: small sizes, one repetition")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results.json", help="the JSON file (default: benchmarks/results.json)"
    )
    parser.add_argument("--chart", type=Path, default=None, help="the PNG (default: the --out path with .png)")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG")
    parser.add_argument("--profile", action="store_true", help="also profile promptkit's per-chunk path")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated measurements to run (default: all): {','.join(MEASUREMENTS)}",
    )
    args = parser.parse_args(argv)
    only = None if args.only is None else [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only or ()) - set(MEASUREMENTS))
    if unknown:
        parser.error(f"unknown measurement(s) {', '.join(unknown)}; choose from {', '.join(MEASUREMENTS)}")

    prepare()
    mode = "quick" if args.quick else "full"
    config = dict(CONFIGS[mode], quick=args.quick, only=only)
    print(f"promptkit benchmarks ({mode} mode)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    git_before = _git_state()
    metrics = run_all(config, only)
    results: Dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "versions": _versions(),
            "git": git_before,
            "git_after": None,
            "seconds": None,
            "step_seconds": metrics.pop("step_seconds"),
        },
        "config": config,
        "metrics": metrics,
    }
    if args.profile:
        from benchmarks import profile

        print(f"  profile: {config['chunks']:,} chunks ...", file=sys.stderr, flush=True)
        results["profile"] = profile.run(
            chunks=config["chunks"], out=args.out.with_name("profile.txt"), reps=2 if args.quick else 7
        )
    results["targets"] = evaluate(metrics)
    results["all_pass"] = all(t["pass"] for t in results["targets"])
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    results["meta"]["git_after"] = _git_state()  # differs from "git" if promptkit changed during the run

    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".tmp")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, args.out)
    if not args.no_chart:
        chart(results, args.chart or args.out.with_suffix(".png"))
    print(table(results))
    print(f"\nwrote {args.out}" + ("" if args.no_chart else f" and {args.chart or args.out.with_suffix('.png')}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
