"""Smoke test of the benchmarks: quick mode runs and writes complete results.

No timing assertions: the numbers depend on the machine and its load. This
only checks that ``python -m benchmarks --quick`` runs end to end (server
process, every client, every measurement, the chart) and that the JSON it
writes holds every metric. It needs the ``bench`` extra (openai,
matplotlib, psutil) and is skipped without it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

pytest.importorskip("openai", reason="the benchmarks compare against openai-python: pip install -e '.[bench]'")
pytest.importorskip("matplotlib", reason="the benchmarks draw a chart: pip install -e '.[bench]'")
pytest.importorskip("psutil", reason="the benchmarks sample memory with psutil: pip install -e '.[bench]'")

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = ("promptkit", "openai", "floor")
TARGETS = {
    "throughput_vs_openai",
    "throughput_vs_floor",
    "ttft_overhead_chunked",
    "ttft_overhead_close",
    "cancel_latency",
    "concurrent_streams",
    "import_time",
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    committed = ROOT / "benchmarks" / "results.json"
    before = committed.stat().st_mtime_ns if committed.exists() else None
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=str(ROOT),
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    after = committed.stat().st_mtime_ns if committed.exists() else None
    assert before == after, "--out must leave the committed benchmarks/results.json alone"
    return {"out": out, "stdout": proc.stdout, "results": json.loads(out.read_text())}


def test_quick_mode_prints_the_table_and_draws_the_chart(quick_run: Dict[str, Any]) -> None:
    assert "targets passed:" in quick_run["stdout"]
    for client in CLIENTS:
        assert client in quick_run["stdout"]
    png = quick_run["out"].with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_mode_writes_every_metric(quick_run: Dict[str, Any]) -> None:
    results = quick_run["results"]
    assert results["config"]["quick"] is True
    m = results["metrics"]

    for framing in ("chunked", "close"):
        for client in CLIENTS:
            assert _number(m["throughput"]["framings"][framing][client]["chunks_per_s"])
            assert m["throughput"]["framings"][framing][client]["chunks_per_s"] > 0

    for framing in ("chunked", "close"):
        for client in CLIENTS:
            row = m["ttft"]["framings"][framing][client]
            assert _number(row["overhead_ms"]) and _number(row["delivery_ms"])

    for client in CLIENTS:
        row = m["cancel"]["clients"][client]
        assert _number(row["latency_ms"]) and _number(row["latency_max_ms"])
        assert isinstance(row["all_server_eof"], bool) and isinstance(row["all_consumers_ended"], bool)
    assert isinstance(m["close_race"]["consumer_stranded"], int)

    assert m["concurrent"]["streams"] > 0
    for client in CLIENTS:
        row = m["concurrent"]["clients"][client]
        assert isinstance(row["all_completed"], bool) and isinstance(row["threads_back"], bool)
        for key in (
            "wall_s",
            "rss_peak_growth_mb",
            "rss_per_stream_kb",
            "cpu_us_per_event",
            "threads_before",
            "threads_after",
        ):
            assert _number(row[key]), key

    for module in ("promptkit", "openai"):
        row = m["imports"]["modules"][module]
        assert _number(row["ms"]) and isinstance(row["tiktoken_imported"], bool)


def test_quick_mode_reports_every_target(quick_run: Dict[str, Any]) -> None:
    targets = quick_run["results"]["targets"]
    assert {t["name"] for t in targets} == TARGETS
    assert all(isinstance(t["pass"], bool) and t["target"] and t["value"] for t in targets)
    assert isinstance(quick_run["results"]["all_pass"], bool)


def test_run_py_works_as_a_script() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"],
        cwd=str(ROOT),
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "--quick" in proc.stdout and "--out" in proc.stdout
