"""The chat app that tests/test_scale_out.py runs under gunicorn, several servers of several workers each.

Run as ``python -m gunicorn 'tests._scale_app:create_app()'`` with, in the environment:

- ``SCALE_REDIS_URL``: the redis-server holding the history (RedisStore) and the published streams (RedisStreamLog);
- ``SCALE_MODEL_URL``: the model's base URL (a MockServer in the test process);
- ``SCALE_LEASE``: the producers' lease in seconds (default 1.0);
- ``SCALE_PREFIX``: the prefix of every Redis key (default ``promptkit:``), one per test run.

Routes: ``POST /chat`` ``{"conversation_id", "message"}`` publishes the reply and follows it
(``X-Stream-Id`` names it); ``GET /streams/<sid>`` resumes it after ``Last-Event-ID``;
``POST /stop`` ``{"conversation_id"}`` stops the conversation's current reply wherever it
runs; ``GET /history/<cid>`` the committed turns; ``GET /health``. Every response carries
``X-Worker-Pid``, so a test knows which process answered.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from flask import Flask, Response, jsonify, request

import promptkit
from promptkit.web import RedisStreamLog, flask_error_response, flask_response, flask_resume_response

PID_HEADER = "X-Worker-Pid"


def create_app() -> Flask:
    """One worker's app: its own model client, store and stream log, all on the shared Redis."""
    url = os.environ["SCALE_REDIS_URL"]
    prefix = os.environ.get("SCALE_PREFIX", "promptkit:")
    store = promptkit.RedisStore(url, prefix=prefix)
    log = RedisStreamLog(url, lease=float(os.environ.get("SCALE_LEASE", "1.0")), prefix=prefix)
    # One connection per model request: the model's connection threads (in the test process) end with
    # their reply, instead of idling in a keep-alive that the tests' thread-leak guard would flag.
    client = promptkit.Client(base_url=os.environ["SCALE_MODEL_URL"], api_key="k", max_retries=0, store=store,
                              headers={"Connection": "close"})

    app = Flask(__name__)

    @app.after_request
    def stamp(response: Response) -> Response:
        response.headers[PID_HEADER] = str(os.getpid())
        return response

    @app.get("/health")
    def health() -> Response:
        return jsonify({"pid": os.getpid()})

    @app.post("/chat")
    def chat() -> Response:
        body = request.get_json(force=True)
        cid = body["conversation_id"]
        try:
            stream = client.conversation(conversation_id=cid).send_stream(body["message"])
        except Exception as exc:
            return flask_error_response(exc)
        return flask_response(stream, log=log, key=cid)

    @app.get("/streams/<sid>")
    def resume(sid: str) -> Response:
        return flask_resume_response(log, sid)  # Last-Event-ID from the request's header

    @app.post("/stop")
    def stop() -> Response:
        cid = request.get_json(force=True)["conversation_id"]
        sid = log.current(cid)
        return jsonify({"stream_id": sid, "stopped": sid is not None and log.stop(sid)})

    @app.get("/history/<cid>")
    def history(cid: str) -> Response:
        stored = store.load(cid)
        turns: List[Dict[str, Any]] = []
        for turn in stored.turns if stored is not None else ():
            turns.append({"messages": turn.messages, "finish_reason": turn.finish_reason})
        return jsonify({"conversation_id": cid, "turns": turns})

    return app
