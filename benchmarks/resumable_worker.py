"""A web worker for the resumable-stream benchmark: ``python -m benchmarks.resumable_worker``.

One process standing for one worker of a web app: a Flask app on werkzeug's
threaded server (a thread per request, as a threaded gunicorn worker has), a
``promptkit.Client`` pointed at the benchmark's MockServer, and one stream
log (``RedisStreamLog`` or ``MemoryStreamLog``). The first stdout line is
``URL http://127.0.0.1:<port>``; it serves until its stdin closes.

Routes (JSON in and out, but the resume route):

- ``POST /start`` ``{"scenario": {...}, "count": n}``: publishes ``n`` turns of
  that :class:`benchmarks.mock.Scenario`, each under its conversation's id as
  key; answers ``{"ids": [...], "keys": [...]}``.
- ``GET /wait/<sid>?events=k``: the stream's info once it holds ``k`` events
  (``0``: once it finished), or after 30 s.
- ``GET /resume/<sid>?heartbeat=s``: ``flask_resume_response`` (reads ``Last-Event-ID``;
  heartbeat default 15 s).
- ``POST /stop/<sid>``: ``log.stop`` from this worker.
- ``GET /stats``: this process's threads (by name), RSS and CPU seconds (after a
  ``gc.collect()``); ``GET /cpu``: its CPU seconds alone.
"""

from __future__ import annotations

import argparse
import collections
import gc
import logging
import re
import sys
import threading
import time
from typing import Any, Dict, List, Optional

__all__ = ["main", "stats"]

_WAIT_BOUND = 30.0


def stats() -> Dict[str, Any]:
    """This process's threads (Python and OS), their names with numbers folded, RSS and CPU seconds."""
    import psutil

    gc.collect()
    process = psutil.Process()
    cpu = process.cpu_times()
    names = collections.Counter(re.sub(r"\d+", "N", thread.name) for thread in threading.enumerate())
    return {
        "threads": threading.active_count(),
        "os_threads": process.num_threads(),
        "rss": process.memory_info().rss,
        "cpu_s": float(cpu.user + cpu.system),
        "thread_names": dict(names),
    }


def _app(log: Any, client: Any) -> Any:
    import flask

    from benchmarks.mock import Scenario
    from promptkit.web import flask_resume_response, publish

    app = flask.Flask("promptkit-bench-worker")

    @app.post("/start")
    def start() -> Any:
        body = flask.request.get_json()
        scenario = Scenario(**body["scenario"])
        ids: List[str] = []
        keys: List[str] = []
        for _ in range(int(body.get("count", 1))):
            conv = client.conversation()
            ids.append(publish(conv.send_stream(scenario.message()), log, key=conv.id))
            keys.append(conv.id)
        return {"ids": ids, "keys": keys}

    @app.get("/wait/<sid>")
    def wait(sid: str) -> Any:
        want = int(flask.request.args.get("events", "0"))
        deadline = time.monotonic() + _WAIT_BOUND
        while True:
            info = log.info(sid)
            if info.finished or (want and info.events >= want) or time.monotonic() > deadline:
                return {"events": info.events, "finished": info.finished}
            log.read(sid, info.events, 0.5)  # returns as soon as the next event is in

    @app.get("/resume/<sid>")
    def resume(sid: str) -> Any:
        return flask_resume_response(log, sid, heartbeat=float(flask.request.args.get("heartbeat", "15")))

    @app.post("/stop/<sid>")
    def stop(sid: str) -> Any:
        return {"stopped": log.stop(sid)}

    @app.get("/stats")
    def get_stats() -> Any:
        return stats()

    @app.get("/cpu")
    def get_cpu() -> Any:
        import psutil

        cpu = psutil.Process().cpu_times()
        return {"cpu_s": float(cpu.user + cpu.system)}

    return app


def main(argv: Optional[List[str]] = None) -> None:
    """Command line: the log engine, its Redis URL, the MockServer's base URL; serves until stdin closes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, choices=["redis", "memory"])
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--prefix", default="bench:")
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args(argv)

    from werkzeug.serving import make_server

    import promptkit
    from benchmarks._env import prepare
    from benchmarks.mock import MODEL
    from promptkit.web import MemoryStreamLog, RedisStreamLog

    prepare()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log: stdout carries the URL only
    log: Any = RedisStreamLog(args.redis_url, prefix=args.prefix) if args.log == "redis" else MemoryStreamLog()
    client = promptkit.Client(base_url=args.base_url, api_key="bench", model=MODEL, max_retries=0, pool_size=64)
    server = make_server("127.0.0.1", 0, _app(log, client), threaded=True)
    serving = threading.Thread(target=server.serve_forever, args=(0.05,), name="bench-serve", daemon=True)
    serving.start()
    print(f"URL http://127.0.0.1:{server.server_port}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.shutdown()
        client.close()
        log.close()


if __name__ == "__main__":
    main()
