"""Where promptkit's per-chunk time goes: ``python -m benchmarks.profile [--chunks N]``.

Four views of the same 20,000-chunk run (chunked framing, as fast as the
server can send):

1. **cProfile** of both threads (the stream's worker and the consumer), the
   top functions by own time, in microseconds per chunk. cProfile inflates
   small Python calls, so read it for the shape, not the absolute numbers.
2. **py-spy** (sampling, ``--gil``: only the thread holding the GIL), when
   the ``py-spy`` executable is available: own and inclusive time per chunk
   of the worker and the consumer, with no instrumentation overhead.
3. **Stages in isolation**: each step of the path timed alone on the same
   bytes, single-threaded, so the cost of the thread hand-off is the rest.
4. **What-ifs**: the throughput under variants (now ``send_stream``'s
   ``buffer_size``; add monkeypatched variants there to size a change
   before making it).

Writes a text report (``benchmarks/profile.txt`` by default) and returns a
JSON-ready summary.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._env import REPO_ROOT, child_env, prepare  # noqa: E402
from benchmarks.clients import make_client  # noqa: E402
from benchmarks.mock import MODEL, Scenario, ServerProcess  # noqa: E402

__all__ = ["run", "main"]

HERE = Path(__file__).resolve().parent


# -- 1. cProfile ------------------------------------------------------------------------


@contextlib.contextmanager
def _profile_workers(profiles: List[cProfile.Profile]) -> Iterator[None]:
    """Profile every stream worker started inside the block (each thread has its own profiler).

    A stream consumed by a plain loop starts no worker: its consumer runs the turn, and the
    consumer's own profiler covers it."""
    import promptkit._stream as stream_module

    original = stream_module._worker

    def profiled(*args: Any) -> None:
        profiler = cProfile.Profile()
        profiles.append(profiler)
        profiler.enable()
        try:
            original(*args)
        finally:
            profiler.disable()

    setattr(stream_module, "_worker", profiled)  # noqa: B010 - a monkeypatch, on purpose
    try:
        yield
    finally:
        setattr(stream_module, "_worker", original)  # noqa: B010


def _short(path: str) -> str:
    for prefix in (str(REPO_ROOT) + os.sep, sys.prefix + os.sep, sys.base_prefix + os.sep):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return path.replace("lib/python3.11/site-packages/", "").replace("lib/python3.11/", "")


def cprofile_run(base_url: str, chunks: int, top: int = 25) -> Dict[str, Any]:
    """One profiled run: the top functions by own time, per chunk."""
    client = make_client("promptkit", base_url)
    try:
        client.run(Scenario(n=200))
        profiles: List[cProfile.Profile] = []
        consumer = cProfile.Profile()
        with _profile_workers(profiles):
            consumer.enable()
            result = client.run(Scenario(n=chunks))
            consumer.disable()
    finally:
        client.close()
    stats = pstats.Stats(consumer)
    for profile in profiles:
        stats.add(profile)
    rows = []
    raw: Dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for (filename, line, name), (_cc, nc, tottime, cumtime, _callers) in raw.items():
        rows.append(
            {
                "function": f"{_short(filename)}:{line}({name})" if line else name,
                "calls_per_chunk": nc / chunks,
                "own_us_per_chunk": tottime / chunks * 1e6,
                "cum_us_per_chunk": cumtime / chunks * 1e6,
            }
        )
    rows.sort(key=lambda r: r["own_us_per_chunk"], reverse=True)
    return {"chunks_per_s_under_profiler": chunks / result.elapsed, "top": rows[:top]}


# -- 2. py-spy ----------------------------------------------------------------------------


def _pyspy() -> Optional[str]:
    local = Path(sys.executable).with_name("py-spy")
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def _workload(base_url: Optional[str], chunks: int, reps: int) -> Dict[str, Any]:
    """The py-spy child's job: ``reps`` promptkit runs of ``chunks`` chunks (its own server if none given)."""
    prepare()
    with contextlib.ExitStack() as stack:
        if base_url is None:
            base_url = stack.enter_context(ServerProcess()).base_url
        client = make_client("promptkit", base_url)
        client.run(Scenario(n=200))
        elapsed = [client.run(Scenario(n=chunks)).elapsed for _ in range(reps)]
        client.close()
    return {"chunks": chunks, "reps": reps, "seconds": sum(elapsed)}


_WORKER_MARK = "_worker (promptkit/stream.py"
_CONSUMER_MARK = "run (benchmarks/clients.py"
# The per-chunk loop: reader.read_body (turn._pump before the loop moved out of turn.py).
_STREAM_MARKS = ("read_body (promptkit/reader.py", "_pump (promptkit/turn.py")


def _frame_name(frame: str) -> str:
    """``func (path:line)`` -> ``path:func``, with the path shortened."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    return f"{_short(path)}:{name}"


def pyspy_run(base_url: str, chunks: int, reps: int, rate: int = 2000, top: int = 20) -> Dict[str, Any]:
    """Sample a child process running the workload; aggregate own and inclusive time per chunk."""
    exe = _pyspy()
    if exe is None:
        return {"available": False, "reason": "py-spy not found (pip install py-spy)"}
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "pyspy.txt"
        result_path = Path(tmp) / "workload.json"
        command = [
            exe, "record", "--format", "raw", "--rate", str(rate), "--gil", "--nonblocking",
            "-o", str(raw_path), "--",
            sys.executable, "-m", "benchmarks.profile", "--workload", "--base-url", base_url,
            "--chunks", str(chunks), "--reps", str(reps), "--workload-out", str(result_path),
        ]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(REPO_ROOT), env=child_env())
        if proc.returncode != 0 or not raw_path.exists():
            return {"available": False, "reason": f"py-spy failed: {(proc.stderr or proc.stdout)[-500:]}"}
        workload = json.loads(result_path.read_text())
        lines = raw_path.read_text().splitlines()
    own: Dict[str, Dict[str, int]] = {"worker": defaultdict(int), "consumer": defaultdict(int)}
    inclusive: Dict[str, Dict[str, int]] = {"worker": defaultdict(int), "consumer": defaultdict(int)}
    totals = {"worker": 0, "consumer": 0}
    for line in lines:
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        if _WORKER_MARK in stack:
            if not any(mark in stack for mark in _STREAM_MARKS):
                continue  # set-up and tear-down, not the per-chunk path
            side = "worker"
        elif _CONSUMER_MARK in stack:
            side = "consumer"
        else:
            continue
        frames = stack.split(";")
        totals[side] += count
        own[side][_frame_name(frames[-1])] += count
        for name in {_frame_name(f) for f in frames}:
            inclusive[side][name] += count
    n_chunks = workload["chunks"] * workload["reps"]
    per_sample_us = 1e6 / rate

    def table(counts: Dict[str, int]) -> List[Dict[str, Any]]:
        items = sorted(counts.items(), key=lambda kv: kv[1], reverse=True)[:top]
        return [{"function": k, "us_per_chunk": v * per_sample_us / n_chunks} for k, v in items]

    return {
        "available": True,
        "rate_hz": rate,
        "chunks": n_chunks,
        "wall_us_per_chunk": workload["seconds"] / n_chunks * 1e6,
        "gil_us_per_chunk": {side: totals[side] * per_sample_us / n_chunks for side in totals},
        "own": {side: table(own[side]) for side in own},
        "inclusive": {side: table(inclusive[side]) for side in inclusive},
    }


# -- 3. stages in isolation --------------------------------------------------------------


def _best(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _handoff(make_queue: Callable[[], Any], items: Sequence[Any], put: str = "put") -> float:
    """Seconds to pass ``items`` from a producer thread to this one through a queue."""
    q = make_queue()
    done = object()

    def produce() -> None:
        send = getattr(q, put)
        for item in items:
            send(item)
        send(done)

    t0 = time.perf_counter()
    producer = threading.Thread(target=produce)
    producer.start()
    get = q.get
    while get() is not done:
        pass
    producer.join()
    return time.perf_counter() - t0


def stages(base_url: str, chunks: int) -> Dict[str, Any]:
    """Each step of the per-chunk path timed alone on the same bytes (µs per chunk, best of 3)."""
    import requests

    from promptkit._dialects.chat_decoder import Accumulator
    from promptkit._sse import SSEParser
    from promptkit._stream import StreamControl
    from promptkit._transport import Transport
    from promptkit._types import StreamEvent
    from promptkit._timeouts import TimeoutPlan
    from promptkit._types import Timeout

    text = "abcd"
    request: Dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": Scenario(n=chunks, text=text, framing="close").message()}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = requests.post(base_url + "/chat/completions", json=request, timeout=60).content  # the same bytes
    events = [block + b"\n\n" for block in body.split(b"\n\n") if block]
    datas = [e[6:-2].decode() for e in events if e[6:-2] != b"[DONE]"]
    parsed = [json.loads(d) for d in datas]
    per = 1e6 / chunks
    out: Dict[str, float] = {}

    # Reading: requests' raw urllib3 read1 (one HTTP chunk per call), then promptkit's
    # HTTPStream.read1 with a fixed timeout and with one that changes on every call.
    payload: Dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": Scenario(n=chunks).message()}],
        "stream": True,
    }
    session = requests.Session()

    def urllib3_reads() -> None:
        response = session.post(base_url + "/chat/completions", json=payload, stream=True)
        read1 = response.raw.read1
        while read1(65536):
            pass
        response.close()

    out["urllib3 read1 (requests' raw), per chunk"] = _best(urllib3_reads) * per
    transport = Transport(base_url=base_url, api_key=None)

    def stream_reads(changing: bool) -> None:
        http = transport.open(payload, TimeoutPlan.start(Timeout(connect=10, idle=30)))
        start = time.monotonic()
        while http.read1(30.0 - (time.monotonic() - start) if changing else 30.0):
            pass
        http.close()

    out["HTTPStream.read1, fixed timeout (as _pump passes it while events flow)"] = (
        _best(lambda: stream_reads(False)) * per
    )
    out["HTTPStream.read1, timeout changing every read (settimeout per read)"] = _best(lambda: stream_reads(True)) * per
    transport.close()
    session.close()

    def sse() -> None:
        feed = SSEParser().feed
        for event in events:
            feed(event)

    out["SSEParser.feed (one event per call)"] = _best(sse) * per
    loads = json.loads
    out["json.loads"] = _best(lambda: [loads(d) for d in datas]) * per

    def accumulate() -> None:
        feed = Accumulator().feed
        for chunk in parsed:
            feed(chunk)

    out["Accumulator.feed (StreamEvent included)"] = _best(accumulate) * per
    out["  of which StreamEvent('content', ...)"] = (
        _best(lambda: [StreamEvent("content", content=text) for _ in parsed]) * per
    )
    content_events = [StreamEvent("content", content=text) for _ in range(chunks)]

    class _ControlChannel:
        def __init__(self) -> None:
            control = StreamControl(10)
            self.emit = control.emit
            self.get = control.channel.get

    out["StreamControl.emit -> channel(10).get, across threads"] = _handoff(_ControlChannel, content_events, "emit") * per
    out["queue.SimpleQueue put -> get, across threads (for comparison)"] = (
        _handoff(queue.SimpleQueue, content_events) * per
    )
    return {"us_per_chunk": out, "chunks": chunks}


# -- 4. what-ifs ----------------------------------------------------------------------------


def whatifs(base_url: str, chunks: int, reps: int) -> Dict[str, Any]:
    """Median chunks/s of promptkit with different ``send_stream(buffer_size=...)`` (runs interleaved).

    A place to size a change before making it: add a variant (a context
    manager that patches something in this process) and compare it with
    ``as is``. Only public knobs are kept here; patches of internals go stale
    as the library changes.
    """
    client = make_client("promptkit", base_url)

    def buffer(size: int) -> Callable[[], Any]:
        @contextlib.contextmanager
        def patch() -> Iterator[None]:
            setattr(client, "buffer_size", size)  # noqa: B010 - a public send_stream option
            try:
                yield
            finally:
                setattr(client, "buffer_size", 10)  # noqa: B010

        return patch

    variants: Dict[str, Callable[[], Any]] = {
        "as is (buffer_size=10)": contextlib.nullcontext,
        "send_stream(buffer_size=1)": buffer(1),
        "send_stream(buffer_size=100)": buffer(100),
    }
    runs: Dict[str, List[float]] = {name: [] for name in variants}
    try:
        client.run(Scenario(n=200))
        for _ in range(reps):
            for name, patch in variants.items():
                with patch():
                    runs[name].append(chunks / client.run(Scenario(n=chunks)).elapsed)
    finally:
        client.close()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    base = medians["as is (buffer_size=10)"]
    return {
        "chunks": chunks,
        "reps": reps,
        "chunks_per_s": medians,
        "speedup": {name: value / base for name, value in medians.items()},
        "runs": runs,
    }


# -- report -----------------------------------------------------------------------------------


def _format(summary: Dict[str, Any]) -> str:
    lines: List[str] = [
        f"promptkit per-chunk profile: {summary['chunks']:,} chunks of 4 characters, chunked framing",
        "",
    ]
    cp = summary["cprofile"]
    lines.append(
        f"1. cProfile, worker + consumer threads ({cp['chunks_per_s_under_profiler']:,.0f} chunks/s under the profiler)"
    )
    lines.append(f"   {'own µs/chunk':>12} {'cum µs/chunk':>12} {'calls/chunk':>11}  function")
    for row in cp["top"]:
        lines.append(
            f"   {row['own_us_per_chunk']:12.2f} {row['cum_us_per_chunk']:12.2f} "
            f"{row['calls_per_chunk']:11.2f}  {row['function']}"
        )
    lines.append("")
    ps = summary["pyspy"]
    if ps.get("available"):
        lines.append(
            f"2. py-spy --gil at {ps['rate_hz']} Hz over {ps['chunks']:,} chunks: "
            f"wall {ps['wall_us_per_chunk']:.1f} µs/chunk; GIL held by the worker "
            f"{ps['gil_us_per_chunk']['worker']:.1f}, by the consumer {ps['gil_us_per_chunk']['consumer']:.1f} µs/chunk"
        )
        for side in ("worker", "consumer"):
            lines.append(f"   {side}: own time (µs/chunk)")
            for row in ps["own"][side][:12]:
                lines.append(f"   {row['us_per_chunk']:8.2f}  {row['function']}")
            lines.append(f"   {side}: inclusive time (µs/chunk)")
            for row in ps["inclusive"][side][:14]:
                lines.append(f"   {row['us_per_chunk']:8.2f}  {row['function']}")
    else:
        lines.append(f"2. py-spy: skipped ({ps.get('reason')})")
    lines.append("")
    lines.append("3. stages alone, single-threaded unless noted (µs per chunk, best of 3)")
    for name, value in summary["stages"]["us_per_chunk"].items():
        lines.append(f"   {value:8.2f}  {name}")
    lines.append("")
    wi = summary["whatifs"]
    lines.append(f"4. what-ifs: promptkit chunks/s, median of {wi['reps']} interleaved runs")
    for name, value in wi["chunks_per_s"].items():
        lines.append(f"   {value:10,.0f}  x{wi['speedup'][name]:.2f}  {name}")
    return "\n".join(lines) + "\n"


def run(
    chunks: int = 20_000, out: Optional[Path] = None, reps: int = 7, base_url: Optional[str] = None
) -> Dict[str, Any]:
    """Every view; writes the text report to ``out`` and returns the summary."""
    prepare()
    with contextlib.ExitStack() as stack:
        if base_url is None:
            base_url = stack.enter_context(ServerProcess()).base_url
        summary: Dict[str, Any] = {"chunks": chunks}
        summary["cprofile"] = cprofile_run(base_url, chunks)
        summary["pyspy"] = pyspy_run(base_url, chunks, reps)
        summary["stages"] = stages(base_url, chunks)
        summary["whatifs"] = whatifs(base_url, chunks, reps)
    text = _format(summary)
    out = out or HERE / "profile.txt"
    out.write_text(text)
    summary["report"] = str(out)
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    """Command line: the report, or (``--workload``) the py-spy child's job."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "profile.txt")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    parser.add_argument("--workload", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.workload:
        result = _workload(args.base_url, args.chunks, args.reps)
        if args.workload_out is not None:
            args.workload_out.write_text(json.dumps(result))
        return
    summary = run(args.chunks, args.out, args.reps)
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(_format(summary))


if __name__ == "__main__":
    main()
