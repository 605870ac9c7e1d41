"""Resumable streams: resume and stop latency across workers, Redis memory per turn, followers per worker.

:func:`resumable` starts a ``redis-server`` of its own (a free loopback port,
a temporary directory, no persistence) and three web workers
(:mod:`benchmarks.resumable_worker`, each a Flask app on werkzeug's threaded
server in its own process): a *producer* and a *follower* on one
``RedisStreamLog``, and a *memory* worker on a ``MemoryStreamLog``. The
benchmark process is the browser (``http.client``, one connection per
request, ``Last-Event-ID`` as ``EventSource`` sends it) and a third worker
that stops streams with its own ``RedisStreamLog``. The model is the
benchmark's MockServer process.

Without ``redis-server``, redis-py, Flask or psutil the measurement is
reported as skipped, with the reason, and the rest of the run goes on.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from benchmarks._env import REPO_ROOT, child_env
from benchmarks.mock import Scenario

__all__ = ["resumable", "missing"]

PREFIX = "bench:"
_TEXT = "abcd"  # one delta: 4 characters, about a token
_LIVE_PACE = 0.25  # seconds between the deltas of the followed live streams
_LIVE_DELTAS = 2000  # far more than a measurement lasts: the streams end when stopped
_START_TIMEOUT = 30.0


def missing() -> Optional[str]:
    """Why the measurement cannot run here (a missing binary or package), or ``None``."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    for module, extra in (("redis", "redis"), ("flask", "flask"), ("psutil", "bench")):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _summary(samples_ms: Sequence[float]) -> Dict[str, Any]:
    return {
        "median_ms": statistics.median(samples_ms) if samples_ms else None,
        "max_ms": max(samples_ms) if samples_ms else None,
        "samples_ms": list(samples_ms),
    }


# -- processes --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free loopback port in ``directory``, without persistence; yields its URL."""
    import redis

    binary = shutil.which("redis-server")
    assert binary is not None
    for _ in range(3):  # the free port can be taken between the probe and the bind
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(directory), "--logfile", str(directory / "redis.log"), "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        ping = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + 15.0
        up = False
        while proc.poll() is None and time.monotonic() < deadline and not up:
            try:
                up = bool(ping.ping())
            except redis.RedisError:
                time.sleep(0.02)
        ping.close()
        if up:
            try:
                yield f"redis://127.0.0.1:{port}/0"
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    raise RuntimeError(f"redis-server did not start; log: {(directory / 'redis.log').read_text(errors='replace')[-1000:]}")


class _Worker:
    """One :mod:`benchmarks.resumable_worker` process; it exits when its stdin closes."""

    def __init__(self, name: str, args: List[str], directory: Path) -> None:
        self.name = name
        self.stderr = directory / f"{name}.stderr"
        with open(self.stderr, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.resumable_worker", *args],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                cwd=str(REPO_ROOT), env=child_env(),
            )  # fmt: skip
        self.port = 0

    def ready(self) -> "_Worker":
        """Wait for the ``URL`` line."""
        line: List[str] = []
        reader = threading.Thread(target=lambda: line.append(self.process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(_START_TIMEOUT)
        if not line or not line[0].startswith("URL "):
            raise RuntimeError(f"the {self.name} worker did not start: {line!r}\n{self.tail()}")
        self.port = int(line[0].split()[1].rsplit(":", 1)[1])
        return self

    def tail(self) -> str:
        return self.stderr.read_text(errors="replace")[-2000:] if self.stderr.exists() else ""

    def call(self, method: str, path: str, body: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """A JSON request to the worker."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        if response.status != 200:
            raise RuntimeError(f"{self.name} worker: {method} {path}: {response.status} {payload[:300]!r}\n{self.tail()}")
        result: Dict[str, Any] = json.loads(payload)
        return result

    def stats(self) -> Dict[str, Any]:
        return self.call("GET", "/stats")

    def steady_stats(self, bound: float = 2.0) -> Dict[str, Any]:
        """The stats once two readings 50 ms apart agree on the thread count (a request thread that
        answered a moment ago may still be exiting), or after ``bound``."""
        deadline = time.monotonic() + bound
        last = self.stats()
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = self.stats()
            if now["threads"] == last["threads"]:
                return now
            last = now
        return last

    def cpu(self) -> float:
        """The worker's CPU seconds so far (without the ``gc.collect()`` of :meth:`stats`)."""
        return float(self.call("GET", "/cpu")["cpu_s"])

    def settle(self, bound: float = 5.0) -> Dict[str, Any]:
        """The stats once no promptkit thread is left (a keeper exits soon after its last stream), or after ``bound``."""
        deadline = time.monotonic() + bound
        while True:
            now = self.stats()
            if not any(n.startswith("promptkit-") for n in now["thread_names"]) or time.monotonic() > deadline:
                return self.steady_stats()
            time.sleep(0.05)

    def close_stdin(self) -> None:
        """Ask the worker to exit (without waiting)."""
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()

    def stop(self) -> None:
        """Ask the worker to exit and wait for it (kill it after 10 s)."""
        self.close_stdin()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


class _Follower:
    """A browser's resume request: ``GET /resume/<sid>`` with ``Last-Event-ID``, read event by event."""

    def __init__(self, port: int, sid: str, last_event_id: Optional[str] = None, heartbeat: float = 15.0) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self._conn.request("GET", f"/resume/{sid}?heartbeat={heartbeat:g}", headers=headers)
        self._response = self._conn.getresponse()
        if self._response.status != 200:
            raise RuntimeError(f"resume {sid}: HTTP {self._response.status} {self._response.read()[:300]!r}")

    def next_event(self) -> Optional[Dict[str, str]]:
        """The next event's fields (``event``, ``id``, ``data``); ``None`` at the end of the body."""
        fields: Dict[str, str] = {}
        while True:
            raw = self._response.readline()
            if not raw:
                return None
            line = raw.rstrip(b"\r\n").decode("utf-8")
            if not line:
                if "data" in fields:
                    return fields
                fields = {}  # the retry: prelude, or a comment block
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value[1:] if value.startswith(" ") else value

    def terminal(self) -> Optional[Dict[str, str]]:
        """Read on to the terminal event (``done`` or ``error``); ``None`` if the body ended without one."""
        while True:
            event = self.next_event()
            if event is None or event.get("event") in ("done", "error"):
                return event

    def close(self) -> None:
        self._response.close()  # the response holds the socket open too
        self._conn.close()


def _cancelled(event: Optional[Dict[str, str]]) -> bool:
    if event is None or event.get("event") != "done":
        return False
    final = json.loads(event["data"]).get("final") or {}
    return bool(final.get("finish_reason") == "cancelled")


def _start(worker: _Worker, scenario: Scenario, count: int = 1, events: int = 0) -> Dict[str, List[str]]:
    """Publish ``count`` turns on ``worker``; wait until each holds ``events`` events (0: until finished)."""
    started = worker.call("POST", "/start", {"scenario": asdict(scenario), "count": count})
    for sid in started["ids"]:
        worker.call("GET", f"/wait/{sid}?events={events}")
    return started


# -- 1. resume latency ---------------------------------------------------------------------------


def _resume_runs(worker: _Worker, sid: str, after: int, runs: int) -> Dict[str, Any]:
    """Open ``runs`` resume requests with ``Last-Event-ID: 0-<after>``; time each to the first replayed event.

    Each run starts once the previous one's follower has ended in the worker
    (a follower of a live stream learns that its client left at its next
    write: here a 50 ms heartbeat), so every run finds an idle pooled Redis
    connection, as a resume does in a worker that is not saturated.
    """
    samples: List[float] = []
    baseline = worker.stats()["threads"]
    for _ in range(runs):
        t0 = time.perf_counter()
        follower = _Follower(worker.port, sid, f"0-{after}", heartbeat=0.05)
        event = follower.next_event()
        elapsed = time.perf_counter() - t0
        follower.close()
        if event is None or event.get("id") != f"0-{after + 1}":
            raise RuntimeError(f"resume after 0-{after} of {sid} began with {event!r}")
        samples.append(_ms(elapsed))
        deadline = time.monotonic() + 3.0
        while worker.stats()["threads"] > baseline and time.monotonic() < deadline:
            time.sleep(0.02)
    return {"after": f"0-{after}", **_summary(samples)}


def _resume(producer: _Worker, follower: _Worker, stop: Any, runs: int, turn_events: int) -> Dict[str, Any]:
    """A finished and a live stream produced on ``producer``, resumed halfway on ``follower``."""
    finished = _start(producer, Scenario(n=turn_events, text=_TEXT))["ids"][0]
    live = _start(producer, Scenario(n=turn_events, text=f" {_TEXT}", stall=True), events=turn_events)["ids"][0]
    out = {
        "finished": _resume_runs(follower, finished, turn_events // 2, runs),
        "live": _resume_runs(follower, live, turn_events // 2, runs),
        # The same finished stream with 10 events left: how the backlog after the id weighs.
        "finished_tail": _resume_runs(follower, finished, turn_events - 10, runs),
    }
    stop(live)  # ends the followers the runs left waiting for the next live event, too
    return out


# -- 2. stop latency across workers -------------------------------------------------------------


def _stop_latency(producer: _Worker, follower: _Worker, log: Any, runs: int) -> Dict[str, Any]:
    """Stop a silent turn produced on ``producer`` from this process; time until ``follower``'s client has ``done``."""
    samples: List[float] = []
    calls: List[float] = []
    cancelled = 0
    for _ in range(runs):
        sid = _start(producer, Scenario(n=1, text=f" {_TEXT}", stall=True), events=1)["ids"][0]
        reader = _Follower(follower.port, sid)
        first = reader.next_event()  # the producer appended it: it holds the lease and listens for stops
        if first is None or first.get("event") != "content":
            raise RuntimeError(f"stream {sid} began with {first!r}")
        t0 = time.perf_counter()
        if not log.stop(sid):
            raise RuntimeError(f"stream {sid} was not running when stopped")
        t1 = time.perf_counter()
        end = reader.terminal()
        t2 = time.perf_counter()
        reader.close()
        cancelled += _cancelled(end)
        samples.append(_ms(t2 - t0))
        calls.append(_ms(t1 - t0))
    return {
        "runs": runs,
        "all_cancelled": cancelled == runs,
        "cancelled": cancelled,
        "stop_call_median_ms": statistics.median(calls) if calls else None,
        **_summary(samples),
    }


# -- 3. Redis memory per turn ----------------------------------------------------------------------


def _redis_memory(producer: _Worker, admin: Any, turn_events: int) -> Dict[str, Any]:
    """``MEMORY USAGE`` (exact: ``SAMPLES 0``) of a finished turn's keys: its log, its meta hash, its current pointer."""
    started = _start(producer, Scenario(n=turn_events, text=_TEXT))
    sid, key = started["ids"][0], started["keys"][0]
    keys = {
        "log": f"{PREFIX}stream:{{{sid}}}:log",
        "meta": f"{PREFIX}stream:{{{sid}}}:meta",
        "current": f"{PREFIX}current:{{{key}}}",
    }
    sizes = {part: int(admin.memory_usage(name, samples=0) or 0) for part, name in keys.items()}
    entries = admin.xrange(keys["log"])
    payload = [len(fields[b"e"]) for _, fields in entries]
    total = sum(sizes.values())
    return {
        "content_events": turn_events,
        "delta_chars": len(_TEXT),
        "events": len(entries),
        "lease_key_left": bool(admin.exists(f"{PREFIX}stream:{{{sid}}}:lease")),
        "bytes": total,
        "bytes_per_event": total / len(entries) if entries else None,
        "keys": sizes,
        "json_bytes": sum(payload),
        "json_bytes_per_content_event": statistics.median(payload[:-1]) if len(payload) > 1 else None,
        "json_bytes_done_event": payload[-1] if payload else None,
    }


# -- 4. concurrent followers per worker ----------------------------------------------------------


def _names_added(before: Dict[str, Any], after: Dict[str, Any]) -> Dict[str, int]:
    a, b = before["thread_names"], after["thread_names"]
    return {name: b.get(name, 0) - a.get(name, 0) for name in sorted(set(a) | set(b)) if b.get(name, 0) != a.get(name, 0)}


def _connections(admin: Any, name: str) -> Dict[str, int]:
    clients = [c for c in admin.client_list() if c.get("name") == name]
    return {"open": len(clients), "blocked": sum("b" in c.get("flags", "") for c in clients)}


def _cost(before: Dict[str, Any], after: Dict[str, Any], n: int) -> Dict[str, Any]:
    return {
        "threads_added": after["threads"] - before["threads"],
        "threads_per_stream": (after["threads"] - before["threads"]) / n,
        "os_threads_added": after["os_threads"] - before["os_threads"],
        "thread_names_added": _names_added(before, after),
        "rss_added_kb": (after["rss"] - before["rss"]) / 1024,
        "rss_per_stream_kb": (after["rss"] - before["rss"]) / 1024 / n,
    }


def _followers(
    engine: str, producer: _Worker, follower: _Worker, stop: Any, admin: Any, n: int, hold: float
) -> Dict[str, Any]:
    """``n`` live paced streams produced on ``producer``, followed at once through ``follower`` for ``hold`` s."""
    p0 = producer.settle()
    if follower is not producer:
        follower.settle()
    conn0 = _connections(admin, "bench-producer") if admin else None
    ids = _start(producer, Scenario(n=_LIVE_DELTAS, text=_TEXT, pace=_LIVE_PACE), count=n, events=1)["ids"]
    p1 = producer.steady_stats()
    conn1 = _connections(admin, "bench-producer") if admin else None
    # The producers alone, for as long as the followers will be measured: their CPU.
    pc0, w0 = producer.cpu(), time.perf_counter()
    time.sleep(hold)
    producer_cpu = (producer.cpu() - pc0) / (time.perf_counter() - w0)
    f0 = follower.steady_stats() if follower is not producer else p1
    c0 = _connections(admin, "bench-follower") if admin else None
    readers: List[_Follower] = []
    t0 = time.perf_counter()
    try:
        for sid in ids:
            readers.append(_Follower(follower.port, sid))
            if readers[-1].next_event() is None:
                raise RuntimeError(f"follower of {sid} ended at once")
        connect_s = time.perf_counter() - t0
        # The hold window: every follower waits in the log's read between two events.
        cpu0, w0 = follower.cpu(), time.perf_counter()
        samples: List[Dict[str, int]] = []
        while time.perf_counter() - w0 < hold:
            if admin:
                samples.append(_connections(admin, "bench-follower"))
            time.sleep(0.1)
        cpu1, window = follower.cpu(), time.perf_counter() - w0
        f1 = follower.steady_stats()
        for sid in ids:
            stop(sid)
        ended = sum(_cancelled(reader.terminal()) for reader in readers)
    finally:
        for reader in readers:
            reader.close()
    out: Dict[str, Any] = {
        "engine": engine,
        "followers": n,
        "connected": len(readers),
        "ended_cancelled": ended,
        "connect_all_s": connect_s,
        "hold_s": window,
        "event_every_ms": _LIVE_PACE * 1000.0,
        "follower": _cost(f0, f1, n),
        "producer": _cost(p0, p1, n),
    }
    # CPU while following: the follower worker's over the window, less (for memory, where they share
    # the process) what its producers used alone; per follower, and per event delivered (n * window / pace).
    follow_cpu = (cpu1 - cpu0) / window - (producer_cpu if follower is producer else 0.0)
    out["follower"].update(
        cpu_pct_per_follower=follow_cpu / n * 100.0,
        cpu_us_per_event=follow_cpu / (n / _LIVE_PACE) * 1e6,
    )
    out["producer"].update(
        cpu_pct_per_stream=producer_cpu / n * 100.0,
        cpu_us_per_event=producer_cpu / (n / _LIVE_PACE) * 1e6,
    )
    if admin and c0 is not None and conn0 is not None and conn1 is not None:
        blocked = [s["blocked"] for s in samples]
        out["follower"].update(
            redis_connections_before=c0["open"],
            redis_connections_max=max(s["open"] for s in samples),
            redis_blocked_median=statistics.median(blocked),
            redis_blocked_max=max(blocked),
            # Connections in use per waiting follower: those blocked in XREAD, sampled every 100 ms.
            redis_connections_per_follower=statistics.median(blocked) / n,
        )
        out["producer"]["redis_connections_added"] = conn1["open"] - conn0["open"]
    return out


# -- the measurement -------------------------------------------------------------------------------


def resumable(
    server: Any, *, runs: int, stop_runs: int, followers: int, hold: float, turn_events: int
) -> Dict[str, Any]:
    """The four measurements; ``{"skipped": reason}`` when redis-server or a package is missing."""
    reason = missing()
    out: Dict[str, Any] = {
        "skipped": reason,
        "runs": runs,
        "stop_runs": stop_runs,
        "followers_n": followers,
        "hold_s": hold,
        "turn_events": turn_events,
        "web_server": "werkzeug threaded (a thread per request), one process per worker",
    }
    if reason:
        return out
    import redis

    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="promptkit-bench-resumable-")))
        url = stack.enter_context(_redis_server(directory))
        admin = redis.Redis.from_url(url)
        stack.callback(admin.close)
        out["redis_version"] = admin.info("server")["redis_version"]

        def worker(name: str, engine: str) -> _Worker:
            args = ["--log", engine, "--prefix", PREFIX, "--base-url", server.base_url]
            if engine == "redis":
                args += ["--redis-url", f"{url}?client_name=bench-{name}"]
            return _Worker(name, args, directory)

        producer, follower, memory = worker("producer", "redis"), worker("follower", "redis"), worker("memory", "memory")
        workers = (producer, follower, memory)
        for each in workers:
            stack.callback(each.stop)
        for each in workers:  # run first: all are asked to exit at once, then waited for
            stack.callback(each.close_stdin)
        for each in workers:
            each.ready()

        from promptkit.web import RedisStreamLog

        log = RedisStreamLog(f"{url}?client_name=bench-stopper", prefix=PREFIX)
        stack.callback(log.close)

        def memory_stop(sid: str) -> None:
            memory.call("POST", f"/stop/{sid}")

        out["redis_memory"] = _redis_memory(producer, admin, turn_events)
        # Warm-up (first requests, imports on first use), then each worker's baseline.
        for each in (follower, memory):
            warm = _start(producer if each is follower else memory, Scenario(n=5, text=_TEXT))["ids"][0]
            reader = _Follower(each.port, warm)
            reader.terminal()
            reader.close()
        out["followers"] = {
            "redis": _followers("redis", producer, follower, log.stop, admin, followers, hold),
            "memory": _followers("memory", memory, memory, memory_stop, None, followers, hold),
        }
        out["resume"] = {
            "redis": _resume(producer, follower, log.stop, runs, turn_events),
            "memory": _resume(memory, memory, memory_stop, runs, turn_events),
        }
        out["stop"] = _stop_latency(producer, follower, log, stop_runs)
    return out
