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
import os
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
PHASES = ("connecting", "headers", "backoff", "retry_after", "streaming", "tool")
TARGETS = {
    "throughput_vs_openai",
    "throughput_vs_floor",
    "ttft_overhead_chunked",
    "ttft_overhead_close",
    "cancel_latency",
    *(f"cancel_phase_{phase}" for phase in PHASES),
    "concurrent_streams",
    "concurrent_cpu_vs_floor_2t",
    "import_time",
}


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


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
            assert _number(row["overhead_ms"])

    for client in CLIENTS:
        row = m["cancel"]["clients"][client]
        assert _number(row["latency_ms"]) and _number(row["latency_max_ms"])
        assert isinstance(row["all_server_eof"], bool) and isinstance(row["all_consumers_ended"], bool)
    assert isinstance(m["close_race"]["consumer_stranded"], int)

    phases = m["cancel_phases"]
    assert tuple(phases["phases"]) == PHASES
    sessions = {"own", "session", "proxy"} - set(phases["skipped_sessions"])
    assert {"own", "session"} <= sessions
    for phase in PHASES:
        assert set(phases["phases"][phase]) == sessions
        for cell in phases["phases"][phase].values():
            assert cell["runs"] >= 1 and isinstance(cell["all_cancelled"], bool)
            assert cell["all_cancelled"] == (cell["note"] == "")
            for sample in cell["samples"]:
                assert sample["in_phase"] is True, (phase, sample)  # every handshake completed
                assert sample["latency_ms"] is None or _number(sample["latency_ms"])
    # Whatever the cancel API, a turn cancelled while a stream exists ends as "cancelled".
    assert all(cell["all_cancelled"] for cell in phases["phases"]["streaming"].values())

    assert m["concurrent"]["streams"] > 0
    for client in (*CLIENTS, "floor_2t"):
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


def test_quick_mode_measures_resumable_streams(quick_run: Dict[str, Any]) -> None:
    rs = quick_run["results"]["metrics"]["resumable"]
    if rs["skipped"]:
        assert not _in_ci(), f"CI provides redis-server, redis-py and Flask: {rs['skipped']}"
        assert f"resumable streams: skipped: {rs['skipped']}" in quick_run["stdout"]
        pytest.skip(rs["skipped"])
    assert "resumable streams" in quick_run["stdout"]
    for engine in ("redis", "memory"):
        for state in ("finished", "live", "finished_tail"):
            row = rs["resume"][engine][state]
            assert len(row["samples_ms"]) == rs["runs"] and all(_number(v) for v in row["samples_ms"])
            assert _number(row["median_ms"]) and _number(row["max_ms"])
        followers = rs["followers"][engine]
        # Every follower got its first event and, when its stream was stopped, a cancelled done.
        assert followers["connected"] == followers["ended_cancelled"] == rs["followers_n"]
        for side in ("follower", "producer"):
            for key in ("threads_per_stream", "rss_per_stream_kb", "os_threads_added", "cpu_us_per_event"):
                assert _number(followers[side][key]), (engine, side, key)
            assert isinstance(followers[side]["thread_names_added"], dict)
        assert _number(followers["follower"]["cpu_pct_per_follower"])
        assert _number(followers["producer"]["cpu_pct_per_stream"])
    redis_followers = rs["followers"]["redis"]
    assert _number(redis_followers["follower"]["redis_connections_per_follower"])
    assert _number(redis_followers["producer"]["redis_connections_added"])
    stop = rs["stop"]
    assert len(stop["samples_ms"]) == stop["runs"] == rs["stop_runs"] and _number(stop["max_ms"])
    assert stop["all_cancelled"] is True  # a stop from another process ends the turn as cancelled
    memory = rs["redis_memory"]
    assert memory["events"] == memory["content_events"] + 1  # the content events and the done
    assert set(memory["keys"]) == {"log", "meta", "current"} and all(v > 0 for v in memory["keys"].values())
    assert memory["bytes"] == sum(memory["keys"].values()) and _number(memory["bytes_per_event"])


def test_quick_mode_reports_every_target(quick_run: Dict[str, Any]) -> None:
    targets = quick_run["results"]["targets"]
    expected = TARGETS if quick_run["results"]["metrics"]["resumable"]["skipped"] else TARGETS | {"resumable_stop_latency"}
    assert {t["name"] for t in targets} == expected
    assert all(isinstance(t["pass"], bool) and t["target"] and t["value"] for t in targets)
    assert isinstance(quick_run["results"]["all_pass"], bool)


def test_only_runs_the_named_measurements(tmp_path: Path) -> None:
    out = tmp_path / "only.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "close_race", "--out", str(out), "--no-chart"],
        cwd=str(ROOT),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["metrics"]) == {"close_race"} and results["targets"] == []
    assert "consumer stranded" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "nonsense"],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "unknown measurement" in bad.stderr


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


def test_resumable_is_skipped_with_its_reason_when_redis_server_is_missing(tmp_path: Path) -> None:
    out = tmp_path / "skipped.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", "resumable,close_race", "--out", str(out), "--no-chart"],
        cwd=str(ROOT),
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PATH=str(tmp_path)),  # no redis-server on it
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert "redis-server is not installed" in results["metrics"]["resumable"]["skipped"]
    assert results["metrics"]["close_race"]["runs"] > 0  # the rest of the run went on
    assert "resumable streams: skipped: redis-server is not installed" in proc.stdout
    assert "resumable_stop_latency" not in {t["name"] for t in results["targets"]}
