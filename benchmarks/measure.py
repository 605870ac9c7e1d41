"""The measurements. Each returns a JSON-ready dict; the runner assembles them.

One function per measurement: :func:`throughput`, :func:`ttft`,
:func:`cancel`, :func:`close_race`, :func:`concurrent` and :func:`imports`
here, and :func:`benchmarks.cancel_phases.cancel_phases`. Throughput, TTFT
and the concurrent streams use the server in its own process
(:class:`benchmarks.mock.ServerProcess`); the cancel measurements, whose
server only waits, run ``promptkit.testing.MockServer`` in this process and
ask it directly whether the client hung up. The concurrency and import
measurements run in fresh child processes, so that one client's memory,
threads and imports never colour another's numbers.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from benchmarks._env import REPO_ROOT, child_env
from benchmarks.clients import BenchClient, make_client
from benchmarks.mock import MODEL, Scenario, ServerProcess, respond
from promptkit.testing import MockServer

__all__ = [
    "throughput",
    "ttft",
    "cancel",
    "close_race",
    "concurrent",
    "imports",
]

_mono = time.monotonic


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _clients(base_url: str, names: Sequence[str], pool_size: int = 10) -> Dict[str, BenchClient]:
    return {name: make_client(name, base_url, pool_size) for name in names}


def _close_all(clients: Dict[str, BenchClient]) -> None:
    for client in clients.values():
        client.close()


# -- 1. throughput -------------------------------------------------------------------


def throughput(
    server: ServerProcess,
    names: Sequence[str],
    *,
    chunks: int,
    reps: int,
    text: str = "abcd",
    framings: Sequence[str] = ("chunked", "close"),
) -> Dict[str, Any]:
    """Chunks per second for a reply of ``chunks`` deltas sent back to back (``MockReply(bulk=True)``).

    The rate is ``(chunks - 1) / (end of stream - first content)``: the
    request's round trip and the server rendering the reply (a few ms for
    20,000 events) are left out alike for every client. ``chunked`` (each SSE
    event its own HTTP chunk, as servers flush them) is the headline number
    the targets use; ``close``-delimited bodies let a reader take many events
    per read, which shows what the per-read costs are. Repetitions are
    interleaved across clients so that drift (thermal, other load) hits them
    alike. Every run must deliver all ``len(text) * chunks`` characters.
    """
    clients = _clients(server.base_url, names)
    out: Dict[str, Any] = {"chunks": chunks, "text": text, "reps": reps, "framings": {}}
    try:
        for client in clients.values():
            client.run(Scenario(n=200, text=text))  # warm-up: connection, lazy imports
        for framing in framings:
            runs: Dict[str, List[float]] = {name: [] for name in names}
            scenario = Scenario(n=chunks, text=text, framing=framing)
            for _ in range(reps):
                for name, client in clients.items():
                    result = client.run(scenario)
                    if result.chars != chunks * len(text) or result.first is None:
                        raise RuntimeError(f"{name} delivered {result.chars} characters, expected {chunks * len(text)}")
                    runs[name].append((chunks - 1) / (result.end - result.first))
            out["framings"][framing] = {
                name: {
                    "chunks_per_s": _median(values),
                    "min": min(values),
                    "max": max(values),
                    "runs": values,
                }
                for name, values in runs.items()
            }
    finally:
        _close_all(clients)
    out["headline_framing"] = "chunked" if "chunked" in out["framings"] else framings[0]
    out["clients"] = out["framings"][out["headline_framing"]]  # what the targets use
    return out


# -- 2. time to first event ------------------------------------------------------------


def ttft(
    server: ServerProcess,
    names: Sequence[str],
    *,
    runs: int,
    delay: float = 0.3,
    framings: Sequence[str] = ("chunked", "close"),
) -> Dict[str, Any]:
    """First-content overhead: (first content delta reaches the consumer) - start - ``delay``.

    The server sends the headers and the role chunk at once, then waits
    ``delay`` seconds before the deltas. The overhead therefore holds the
    request round trip, the server's timer overshoot and the client's
    delivery cost; the floor shows how much of it any client pays.
    """
    clients = _clients(server.base_url, names)
    out: Dict[str, Any] = {"delay_ms": delay * 1000.0, "runs": runs, "framings": {}}
    try:
        for client in clients.values():
            client.run(Scenario(n=5, first_delay=0.01))  # warm-up
        for framing in framings:
            per: Dict[str, List[float]] = {name: [] for name in names}
            for _ in range(runs):
                for name, client in clients.items():
                    result = client.run(Scenario(n=5, framing=framing, first_delay=delay))
                    if result.first is None:
                        raise RuntimeError(f"{name} saw no content")
                    per[name].append((result.first - result.start - delay) * 1000.0)
            out["framings"][framing] = {
                name: {"overhead_ms": _median(values), "runs_ms": values} for name, values in per.items()
            }
    finally:
        _close_all(clients)
    return out


# -- 3. cancel latency ---------------------------------------------------------------------


def _promptkit_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("promptkit-stream")]


def _cancel_once(server: MockServer, client: BenchClient, hold: float, settle: float) -> Dict[str, Any]:
    seen = server.disconnects
    handle = client.open_cancellable(Scenario(silent=hold))
    handle.started.wait(5)
    time.sleep(settle)  # let the consumer block in its read (there is nothing to signal that)
    t0 = _mono()
    handle.stop()
    t_stop = _mono()
    handle.thread.join(hold + 5)
    t_consumer = _mono()
    handle.finish()
    t_end = _mono()
    # The hang-up reaches the server within milliseconds, or never (the body ended after `hold`: no hang-up to see).
    server_eof = server.wait_for_disconnects(seen + 1, timeout=1.0)
    t_eof = _mono()  # the wait wakes when the server's connection thread saw the hang-up
    return {
        "latency_ms": (t_end - t0) * 1000.0,
        "cancel_call_ms": (t_stop - t0) * 1000.0,
        "consumer_ended_ms": (t_consumer - t0) * 1000.0,
        "consumer_ended": not handle.thread.is_alive(),
        "consumer_outcome": handle.outcome.get("result", handle.outcome.get("error")),
        "server_eof": server_eof,
        "server_eof_ms": (t_eof - t0) * 1000.0 if server_eof else None,
        "worker_threads_left": _promptkit_threads() if client.name == "promptkit" else [],
    }


def cancel(
    names: Sequence[str],
    *,
    runs: int,
    hold: float,
    slow_runs: int,
    settle: float = 0.05,
) -> Dict[str, Any]:
    """Cancel a stream whose server went silent after the headers, from a thread other than its consumer.

    Latency is from the cancel call until the consumer has seen the end and
    the client's own cleanup has returned (promptkit: ``cancel()``, the
    consumer receives ``done``, ``close()`` joins the worker; openai:
    ``stream.close()``; floor: ``socket.shutdown``). The server (a
    ``MockServer`` in this process) reports whether, and when, it saw the
    client hang up. A client whose consumer only wakes when the server ends
    the body after ``hold`` seconds is measured ``slow_runs`` times only.
    """
    out: Dict[str, Any] = {"hold_s": hold, "clients": {}}
    with MockServer(model=MODEL, responder=respond) as server:
        clients = _clients(server.url, names)
        try:
            for name, client in clients.items():
                _cancel_once(server, client, hold, settle)  # warm-up (promptkit: the first token estimate)
                samples: List[Dict[str, Any]] = []
                for _ in range(runs):
                    samples.append(_cancel_once(server, client, hold, settle))
                    if samples[-1]["latency_ms"] >= hold * 1000.0 * 0.9 and len(samples) >= slow_runs:
                        break
                latencies = [s["latency_ms"] for s in samples]
                eofs = [s["server_eof_ms"] for s in samples if s["server_eof_ms"] is not None]
                out["clients"][name] = {
                    "latency_ms": _median(latencies),
                    "latency_max_ms": max(latencies),
                    "server_eof_ms": _median(eofs),
                    "all_server_eof": all(s["server_eof"] for s in samples),
                    "all_consumers_ended": all(s["consumer_ended"] for s in samples),
                    "threads_left": sorted({n for s in samples for n in s["worker_threads_left"]}),
                    "runs": samples,
                }
        finally:
            _close_all(clients)
    return out


def close_race(*, runs: int, wait: float = 1.0, settle: float = 0.05) -> Dict[str, Any]:
    """promptkit only: ``cancel(); close()`` from another thread while a consumer iterates.

    ``close()`` must never take the terminal event that the blocked consumer
    is waiting for (that would leave the consumer blocked in ``queue.get()``
    for good). This counts how often the consumer is still blocked ``wait``
    seconds later. A stranded consumer is released afterwards by re-queueing
    the terminal event (private access, for the benchmark only).
    """
    stranded = 0
    with MockServer(model=MODEL, responder=respond) as server:
        client = make_client("promptkit", server.url)
        try:
            for _ in range(runs):
                seen = server.disconnects
                handle = client.open_cancellable(Scenario(silent=5.0))
                stream = handle.handle
                handle.started.wait(5)
                time.sleep(settle)
                stream.cancel()
                stream.close()
                handle.thread.join(wait)
                if handle.thread.is_alive():
                    stranded += 1
                    stream.control.finish(stream._terminal)  # release it (see docstring)
                    handle.thread.join(5)
                server.wait_for_disconnects(seen + 1, timeout=5)
        finally:
            client.close()
    return {"runs": runs, "consumer_stranded": stranded, "wait_s": wait}


# -- 4. concurrent streams (child processes) -------------------------------------------------


def concurrent(
    server: ServerProcess,
    names: Sequence[str],
    *,
    streams: int,
    deltas: int,
    pace: float,
    rounds: int = 1,
    timeout: float = 180.0,
) -> Dict[str, Any]:
    """Run :mod:`benchmarks.concurrent` in a fresh process per client (``floor_2t`` included).

    The streams are paced ``pace`` seconds apart (``MockReply(delay=pace)``);
    the headline is process CPU per content event. One run of one client
    varies by about 10% from the next on this 2-core machine, so the clients
    take turns for ``rounds`` rounds and each figure is the run with the
    median CPU per event (``cpu_us_per_event_runs`` lists them all).
    """
    out: Dict[str, Any] = {"streams": streams, "deltas": deltas, "pace_ms": pace * 1000.0, "rounds": rounds, "clients": {}}
    runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            runs[name].append(_concurrent_once(server, name, streams=streams, deltas=deltas, pace=pace, timeout=timeout))
    for name, results in runs.items():
        ranked = sorted(results, key=lambda r: r.get("cpu_us_per_event") or 0.0)
        median = dict(ranked[len(ranked) // 2])
        median["cpu_us_per_event_runs"] = [r.get("cpu_us_per_event") for r in results]
        median["all_completed"] = all(r.get("all_completed") for r in results)  # in every round, not only the median one
        out["clients"][name] = median
    # Runs next to each other share the machine's state: the ratio of a round's two runs is
    # steadier than the ratio of two medians. The target is judged on the median of those ratios.
    if "floor_2t" in runs:
        for name, results in runs.items():
            ratios = [
                a["cpu_us_per_event"] / b["cpu_us_per_event"]
                for a, b in zip(results, runs["floor_2t"])
                if a.get("cpu_us_per_event") and b.get("cpu_us_per_event")
            ]
            if ratios:
                out["clients"][name]["cpu_vs_floor_2t_runs"] = ratios
                out["clients"][name]["cpu_vs_floor_2t"] = sorted(ratios)[len(ratios) // 2]
    return out


def _concurrent_once(server: Any, name: str, *, streams: int, deltas: int, pace: float, timeout: float) -> Dict[str, Any]:
    """One fresh child process running ``streams`` paced streams for client ``name``."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.concurrent",
        "--client",
        name,
        "--base-url",
        server.base_url,
        "--streams",
        str(streams),
        "--deltas",
        str(deltas),
        "--pace",
        str(pace),
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=str(REPO_ROOT), env=child_env()
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the concurrency child for {name} failed:\n{proc.stderr[-3000:]}")
    result: Dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# -- 5. import time (child processes) ---------------------------------------------------------

_IMPORT_CODE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "dt = time.perf_counter() - t\n"
    "print(json.dumps({{'ms': dt * 1000.0, 'tiktoken': 'tiktoken' in sys.modules,"
    " 'opentelemetry': any(m.startswith('opentelemetry') for m in sys.modules),"
    " 'requests': 'requests' in sys.modules, 'modules': len(sys.modules)}}))\n"
)


def _import_env() -> Dict[str, str]:
    """The children's environment with bytecode caching on.

    With ``PYTHONDONTWRITEBYTECODE`` set (as on some sandboxes and CI images)
    no ``.pyc`` is ever written for the editable promptkit, and every fresh
    interpreter would time compiling its sources too (about 60 ms here),
    which no installed user pays.
    """
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _import_once(module: str) -> Dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_CODE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO_ROOT),
        env=_import_env(),
        check=True,
    )
    result: Dict[str, Any] = json.loads(proc.stdout)
    return result


def _import_profile(module: str, top: int = 8) -> List[Dict[str, Any]]:
    """The slowest top-level dependencies of ``import module`` from ``-X importtime`` (cumulative µs)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(REPO_ROOT),
        env=_import_env(),
        check=True,
    )
    rows: List[Dict[str, Any]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line.split(":", 1)[1].split("|")
        rows.append({"module": name.strip(), "self_us": int(self_us), "cumulative_us": int(cumulative_us)})
    # Direct children of the import: the rows with the least indentation other than the module itself
    # are the package's imports; show the biggest cumulative ones.
    rows.sort(key=lambda r: r["cumulative_us"], reverse=True)
    return [r for r in rows if r["module"] != module][:top]


def imports(modules: Sequence[str], *, runs: int) -> Dict[str, Any]:
    """``import <module>`` in a fresh interpreter: median of ``runs``.

    One warm-up import first writes the .pyc files, so that compiling is not
    timed (see :func:`_import_env`). ``-X importtime`` lists the slowest imports of
    the first module only (the others are for comparison).
    """
    out: Dict[str, Any] = {"runs": runs, "modules": {}}
    for n, module in enumerate(modules):
        _import_once(module)
        samples = [_import_once(module) for _ in range(runs)]
        out["modules"][module] = {
            "ms": _median([s["ms"] for s in samples]),
            "runs_ms": [s["ms"] for s in samples],
            "tiktoken_imported": any(s["tiktoken"] for s in samples),
            "opentelemetry_imported": any(s["opentelemetry"] for s in samples),
            "modules_loaded": samples[-1]["modules"],
            "slowest": _import_profile(module) if n == 0 else [],
        }
    return out
