"""The measurements. Each returns a JSON-ready dict; the runner assembles them.

Every measurement drives the same local server (:mod:`benchmarks.server`)
with each client (:mod:`benchmarks.clients`). The concurrency and import
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
import uuid
from typing import Any, Dict, List, Optional, Sequence

from benchmarks._env import REPO_ROOT, child_env
from benchmarks.clients import BenchClient, make_client
from benchmarks.server import BenchServer, Scenario

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


def _clients(server: BenchServer, names: Sequence[str], pool_size: int = 10) -> Dict[str, BenchClient]:
    return {name: make_client(name, server.base_url, pool_size) for name in names}


def _close_all(clients: Dict[str, BenchClient]) -> None:
    for client in clients.values():
        client.close()


# -- 1. throughput -------------------------------------------------------------------


def throughput(
    server: BenchServer,
    names: Sequence[str],
    *,
    chunks: int,
    reps: int,
    text: str = "abcd",
    framings: Sequence[str] = ("chunked", "close"),
) -> Dict[str, Any]:
    """Chunks per second for a reply of ``chunks`` deltas sent as fast as the server can.

    ``chunked`` (each SSE event its own HTTP chunk, as servers flush them) is
    the headline number the targets use; ``close``-delimited bodies let a
    reader take many events per read, which shows what the per-read costs are.
    Repetitions are interleaved across clients so that drift (thermal, other
    load) hits them alike. Every run must deliver all ``len(text) * chunks``
    characters.
    """
    clients = _clients(server, names)
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
                    if result.chars != chunks * len(text):
                        raise RuntimeError(f"{name} delivered {result.chars} characters, expected {chunks * len(text)}")
                    runs[name].append(chunks / result.elapsed)
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
    server: BenchServer,
    names: Sequence[str],
    *,
    runs: int,
    delay: float = 0.3,
    framings: Sequence[str] = ("chunked", "close"),
) -> Dict[str, Any]:
    """First-content overhead: (first content delta reaches the consumer) - start - ``delay``.

    The server sends the headers at once, then waits ``delay`` seconds
    before the first delta. The overhead therefore holds the request round
    trip, the server's sleep overshoot and the client's delivery cost; the
    floor shows how much of it any client pays. ``delivery_ms`` is the
    client's part alone: from the server finishing the write of the first
    delta to the consumer holding it.
    """
    clients = _clients(server, names)
    out: Dict[str, Any] = {"delay_ms": delay * 1000.0, "runs": runs, "framings": {}}
    try:
        for client in clients.values():
            client.run(Scenario(n=5, first_delay=0.01))  # warm-up
        for framing in framings:
            per: Dict[str, List[float]] = {name: [] for name in names}
            delivery: Dict[str, List[float]] = {name: [] for name in names}
            for _ in range(runs):
                for name, client in clients.items():
                    tag = uuid.uuid4().hex
                    result = client.run(Scenario(n=5, framing=framing, first_delay=delay, id=tag))
                    if result.first is None:
                        raise RuntimeError(f"{name} saw no content")
                    per[name].append((result.first - result.start - delay) * 1000.0)
                    sent = server.first_sent(tag)
                    if sent is not None:
                        delivery[name].append((result.first - sent) * 1000.0)
            out["framings"][framing] = {
                name: {
                    "overhead_ms": _median(values),
                    "delivery_ms": _median(delivery[name]),
                    "runs_ms": values,
                    "delivery_runs_ms": delivery[name],
                }
                for name, values in per.items()
            }
    finally:
        _close_all(clients)
    return out


# -- 3. cancel latency ---------------------------------------------------------------------


def _promptkit_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("promptkit-stream")]


def _cancel_once(server: BenchServer, client: BenchClient, hold: float, settle: float) -> Dict[str, Any]:
    tag = uuid.uuid4().hex
    handle = client.open_cancellable(Scenario(silent=True, hold=hold, id=tag))
    handle.started.wait(5)
    time.sleep(settle)  # let the consumer block in its read (there is nothing to signal that)
    t0 = _mono()
    handle.stop()
    t_stop = _mono()
    handle.thread.join(hold + 5)
    t_consumer = _mono()
    handle.finish()
    t_end = _mono()
    eof = server.wait_eof(tag, timeout=hold + 5)
    server_eof = eof is not None and eof["outcome"] in ("eof", "reset")
    return {
        "latency_ms": (t_end - t0) * 1000.0,
        "cancel_call_ms": (t_stop - t0) * 1000.0,
        "consumer_ended_ms": (t_consumer - t0) * 1000.0,
        "consumer_ended": not handle.thread.is_alive(),
        "consumer_outcome": handle.outcome.get("result", handle.outcome.get("error")),
        "server_outcome": None if eof is None else eof["outcome"],
        "server_eof": server_eof,
        "server_eof_ms": (eof["at"] - t0) * 1000.0 if server_eof and eof is not None else None,
        "worker_threads_left": _promptkit_threads() if client.name == "promptkit" else [],
    }


def cancel(
    server: BenchServer,
    names: Sequence[str],
    *,
    runs: int,
    hold: float,
    slow_runs: int,
    settle: float = 0.05,
) -> Dict[str, Any]:
    """Cancel a stream whose server is silent, from a thread other than its consumer.

    Latency is from the cancel call until the consumer has seen the end and
    the client's own cleanup has returned (promptkit: ``cancel()``, the
    consumer receives ``done``, ``close()`` joins the worker). The server
    reports whether, and when, it saw the client hang up. A client whose
    consumer only wakes when the server gives up after ``hold`` seconds is
    measured ``slow_runs`` times only.
    """
    clients = _clients(server, names)
    out: Dict[str, Any] = {"hold_s": hold, "clients": {}}
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


def close_race(server: BenchServer, *, runs: int, wait: float = 1.0, settle: float = 0.05) -> Dict[str, Any]:
    """promptkit only: ``cancel(); close()`` from another thread while a consumer iterates.

    ``close()`` collects the terminal event itself when it finds none taken
    yet, so it can take the ``done`` the blocked consumer was about to get,
    leaving the consumer blocked in ``queue.get()`` for good. This counts how
    often that happens. A stranded consumer is released afterwards by
    re-queueing the terminal event (private access, for the benchmark only).
    """
    client = make_client("promptkit", server.base_url)
    stranded = 0
    try:
        for _ in range(runs):
            tag = uuid.uuid4().hex
            handle = client.open_cancellable(Scenario(silent=True, hold=5.0, id=tag))
            stream = handle.handle
            handle.started.wait(5)
            time.sleep(settle)
            stream.cancel()
            stream.close()
            handle.thread.join(wait)
            if handle.thread.is_alive():
                stranded += 1
                stream._control.queue.put(stream._terminal)  # release it (see docstring)
                handle.thread.join(5)
            server.wait_eof(tag, timeout=5)
    finally:
        client.close()
    return {"runs": runs, "consumer_stranded": stranded, "wait_s": wait}


# -- 4. concurrent streams (child processes) -------------------------------------------------


def concurrent(
    server: BenchServer,
    names: Sequence[str],
    *,
    streams: int,
    deltas: int,
    pace: float,
    timeout: float = 180.0,
) -> Dict[str, Any]:
    """Run :mod:`benchmarks.concurrent` in a fresh process per client."""
    out: Dict[str, Any] = {"streams": streams, "deltas": deltas, "pace_ms": pace * 1000.0, "clients": {}}
    for name in names:
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
        out["clients"][name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# -- 5. import time (child processes) ---------------------------------------------------------

_IMPORT_CODE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "dt = time.perf_counter() - t\n"
    "print(json.dumps({{'ms': dt * 1000.0, 'tiktoken': 'tiktoken' in sys.modules,"
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
            "modules_loaded": samples[-1]["modules"],
            "slowest": _import_profile(module) if n == 0 else [],
        }
    return out
