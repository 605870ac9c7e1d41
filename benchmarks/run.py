"""Run every benchmark, print one table, write results.json and results.png.

Usage (from the repository root)::

    python -m benchmarks                 # the full run (about two minutes)
    python -m benchmarks --quick         # a few seconds: smaller numbers, fewer runs
    python -m benchmarks --out /tmp/r.json --no-chart
    python -m benchmarks --profile       # also profile the per-chunk path (benchmarks/profile.txt)
    python benchmarks/run.py ...         # the same

The server always runs in its own process and is stopped however the run
ends. Timing numbers are for this machine only; compare clients within one
run, not runs across machines.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import measure  # noqa: E402
from benchmarks._env import prepare  # noqa: E402
from benchmarks.report import chart, evaluate, table  # noqa: E402
from benchmarks.server import BenchServer  # noqa: E402

__all__ = ["main", "CONFIGS"]

HERE = Path(__file__).resolve().parent
CLIENT_NAMES = ("promptkit", "openai", "floor")

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
        "streams": 200,
        "deltas": 50,
        "pace": 0.02,
        "import_runs": 5,
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
        "streams": 20,
        "deltas": 20,
        "pace": 0.01,
        "import_runs": 1,
    },
}


def _versions() -> Dict[str, Optional[str]]:
    from importlib.metadata import PackageNotFoundError, version

    out: Dict[str, Optional[str]] = {}
    for name in ("promptkit", "openai", "httpx", "httpx2", "requests", "urllib3"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def run_all(config: Dict[str, Any]) -> Dict[str, Any]:
    """Every measurement, with one server process for the whole run; records each step's seconds."""
    metrics: Dict[str, Any] = {}
    steps: Dict[str, float] = {}

    def step(name: str, label: str, work: Callable[[], Any]) -> None:
        print(f"  {label} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        metrics[name] = work()
        steps[name] = round(time.perf_counter() - t0, 2)

    with BenchServer() as server:
        step(
            "throughput",
            f"throughput: {config['chunks']:,} chunks x {config['reps']}",
            lambda: measure.throughput(server, CLIENT_NAMES, chunks=config["chunks"], reps=config["reps"]),
        )
        step(
            "ttft",
            f"time to first event: {config['ttft_runs']} runs per framing",
            lambda: measure.ttft(server, CLIENT_NAMES, runs=config["ttft_runs"], delay=config["ttft_delay"]),
        )
        step(
            "cancel",
            f"cancel latency: {config['cancel_runs']} runs",
            lambda: measure.cancel(
                server,
                CLIENT_NAMES,
                runs=config["cancel_runs"],
                hold=config["cancel_hold"],
                slow_runs=config["cancel_slow_runs"],
            ),
        )
        step(
            "close_race",
            f"cancel()+close() from another thread: {config['close_race_runs']} runs",
            lambda: measure.close_race(server, runs=config["close_race_runs"]),
        )
        step(
            "concurrent",
            f"{config['streams']} concurrent streams (a fresh process per client)",
            lambda: measure.concurrent(
                server, CLIENT_NAMES, streams=config["streams"], deltas=config["deltas"], pace=config["pace"]
            ),
        )
    step(
        "imports",
        f"import time: {config['import_runs']} fresh processes per module",
        lambda: measure.imports(("promptkit", "openai"), runs=config["import_runs"]),
    )
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
    args = parser.parse_args(argv)

    prepare()
    mode = "quick" if args.quick else "full"
    config = dict(CONFIGS[mode], quick=args.quick)
    print(f"promptkit benchmarks ({mode} mode)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    git_before = _git_state()
    metrics = run_all(config)
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
