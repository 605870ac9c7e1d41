"""Many paced streams at once in one fresh process: ``python -m benchmarks.concurrent``.

Each stream is consumed by its own thread. The process prints one JSON line:
whether every stream completed, the wall time, peak RSS growth over the
baseline (psutil, sampled every few milliseconds), CPU time per content
event, and the thread count afterwards against the baseline. The baseline
is taken after a warm-up stream, so one-time imports and set-up are not
charged to the streams.
"""

from __future__ import annotations

import argparse
import gc
import json
import threading
import time
from typing import Any, Dict, List, Optional

__all__ = ["run", "main"]


class _Sampler:
    """Samples the process's RSS on a thread until stopped; keeps the peak."""

    def __init__(self, process: Any, interval: float = 0.005) -> None:
        self._process = process
        self._interval = interval
        self._stop = threading.Event()
        self.peak = process.memory_info().rss
        self.samples = 0
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self._process.memory_info().rss
            self.samples += 1
            if rss > self.peak:
                self.peak = rss

    def __enter__(self) -> "_Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def _cpu(process: Any) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def run(client_name: str, base_url: str, *, streams: int, deltas: int, pace: float) -> Dict[str, Any]:
    """Run ``streams`` paced streams of ``deltas`` deltas at once; return the measurements."""
    import psutil

    from benchmarks._env import prepare
    from benchmarks.clients import make_client
    from benchmarks.mock import Scenario

    prepare()
    process = psutil.Process()
    client = make_client(client_name, base_url, pool_size=streams)
    text = "abcd"
    client.run(Scenario(n=5, text=text, pace=0.001))  # warm-up: imports, first connection
    gc.collect()
    threads_before = threading.active_count()
    os_threads_before = process.num_threads()
    rss_before = process.memory_info().rss

    scenario = Scenario(n=deltas, text=text, pace=pace)
    results: List[Optional[int]] = [None] * streams
    errors: List[str] = []

    def consume(i: int) -> None:
        try:
            results[i] = client.run(scenario).chars
        except Exception as exc:  # recorded; the stream counts as incomplete
            errors.append(repr(exc))

    consumers = [threading.Thread(target=consume, args=(i,), name=f"bench-consumer-{i}") for i in range(streams)]
    with _Sampler(process) as sampler:
        cpu0 = _cpu(process)
        t0 = time.perf_counter()
        for thread in consumers:
            thread.start()
        deadline = time.monotonic() + deltas * pace + 60.0
        for thread in consumers:
            thread.join(max(0.0, deadline - time.monotonic()))
        wall = time.perf_counter() - t0
        cpu = _cpu(process) - cpu0
    stuck = sum(t.is_alive() for t in consumers)

    # The worker threads end just after their terminal event is queued: give them a moment.
    settle_deadline = time.monotonic() + 5.0
    while threading.active_count() > threads_before and time.monotonic() < settle_deadline:
        time.sleep(0.01)
    threads_after = threading.active_count()
    os_threads_after = process.num_threads()
    client.close()

    completed = sum(1 for chars in results if chars == deltas * len(text))
    events = sum((chars or 0) // len(text) for chars in results)
    growth = max(0, sampler.peak - rss_before)
    return {
        "client": client_name,
        "streams": streams,
        "completed": completed,
        "all_completed": completed == streams,
        "errors": errors[:3],
        "consumers_stuck": stuck,
        "wall_s": wall,
        "ideal_wall_s": (deltas - 1) * pace,
        "events": events,
        "cpu_s": cpu,
        "cpu_us_per_event": cpu / events * 1e6 if events else None,
        "rss_before_mb": rss_before / 2**20,
        "rss_peak_growth_mb": growth / 2**20,
        "rss_per_stream_kb": growth / streams / 1024,
        "rss_samples": sampler.samples,
        "threads_before": threads_before,
        "threads_after": threads_after,
        "threads_back": threads_after <= threads_before,
        "os_threads_before": os_threads_before,
        "os_threads_after": os_threads_after,
    }


def main(argv: Optional[List[str]] = None) -> None:
    """Command line: the client, the server's base URL and the load; prints one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True, choices=["promptkit", "openai", "floor", "floor_2t"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--deltas", type=int, default=50)
    parser.add_argument("--pace", type=float, default=0.02)
    args = parser.parse_args(argv)
    result = run(args.client, args.base_url, streams=args.streams, deltas=args.deltas, pace=args.pace)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
