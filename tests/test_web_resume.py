"""Resumable replies through the chat examples as shipped: Flask on werkzeug, Django under WSGI and under ASGI.

A reply is published to a stream log, so it goes on when the connection
drops, resumes after ``Last-Event-ID`` (or ``?after=``), answers 204 once the
client has everything, and stops from ``POST /stop``. The log is a
MemoryStreamLog here (one process), and a RedisStreamLog on a real
redis-server for Flask; the multi-process proof is tests/test_scale_out.py.
The AI SDK pair (``POST /api/chat``, ``GET /api/chat/<id>/stream``) is driven
by the real ``ai`` package's transport.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit.web import MemoryStreamLog, RedisStreamLog, StreamLog

from tests.redis_server import redis_server, redis_url  # noqa: F401 - fixtures
from tests.test_ai_sdk import ui_chat_client  # noqa: F401 - fixture
from tests.test_web import client, mock, store  # noqa: F401 - fixtures
from tests.test_web import (
    RecordingStore,
    SSEStream,
    WebClient,
    contents,
    data,
    load_example,
    serve_django_wsgi,
    serve_uvicorn,
    serve_werkzeug,
)

STORY = "Once upon a time a small robot learned to paint the evening sky with a thousand tiny brushes."
SITES = ("flask", "flask-redis", "django-wsgi", "django-asgi")


@pytest.fixture(params=SITES)
def site(request: pytest.FixtureRequest, client: promptkit.Client, store: RecordingStore) -> Iterator[Dict[str, Any]]:
    """A resumable chat example on a real server: ``{"web": WebClient, "url": str, "log": StreamLog}``."""
    kind = str(request.param)
    log: StreamLog
    if kind == "flask-redis":
        log = RedisStreamLog(request.getfixturevalue("redis_url"), prefix=f"w{uuid.uuid4().hex[:8]}:")
    else:
        log = MemoryStreamLog()
    options = dict(mode="mock server (test)", mock=True, heartbeat=0.05, stream_log=log)
    if kind.startswith("flask"):
        served = serve_werkzeug(load_example("flask_chat").create_app(client, store, **options))
    elif kind == "django-wsgi":
        served = serve_django_wsgi(load_example("django_chat").create_app(client, store, **options))
    else:
        served = serve_uvicorn(load_example("django_chat").create_app(client, store, asgi=True, **options))
    with served as url:
        web = WebClient(url, csrf=kind.startswith("django"))
        assert web.get("/").status_code == 200
        try:
            yield {"web": web, "url": url, "log": log, "kind": kind}
        finally:
            web.close()
    log.close()


def _resume(web: WebClient, stream_id: str, last: str = "", *, query: bool = False) -> SSEStream:
    path = f"/chat/streams/{stream_id}"
    if query and last:
        return web.open_stream(f"{path}?after={last}", None, method="GET")
    return web.open_stream(path, None, method="GET", headers={"Last-Event-ID": last} if last else {})


def _ids(events: List[Any]) -> List[str]:
    return [e.id for e in events]


def test_a_dropped_reply_goes_on_and_resumes_after_the_last_event_id(site: Dict[str, Any], mock: MockServer,
                                                                    store: RecordingStore) -> None:
    web: WebClient = site["web"]
    mock.enqueue(MockReply.text(STORY, chunk_size=6, delay=0.01))
    cid = web.history()["conversation_id"]
    live = web.open_stream("/chat", {"message": "a story"})
    assert live.status == 200 and live.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    sid = live.headers["X-Stream-Id"]
    first = [live.next_event() for _ in range(3)]
    assert [e.id for e in first if e] == ["0-1", "0-2", "0-3"]
    live.hang_up()  # the connection drops mid-reply: the reply goes on

    committed, turn = store.next_commit(timeout=20)
    assert committed == cid and turn.finish_reason == "stop" and turn.messages[-1]["content"] == STORY
    assert not mock.disconnected.is_set(), "the dropped connection cancelled the upstream request"

    rest = _resume(web, sid, "0-3").events()
    assert _ids(rest) == [f"0-{n}" for n in range(4, 4 + len(rest))]  # contiguous: nothing lost or repeated
    assert rest[-1].event == "done" and [e.event for e in rest[:-1]] == ["content"] * (len(rest) - 1)
    assert contents(first) + contents(rest) == STORY == data(rest[-1])["final"]["content"]
    assert _resume(web, sid, "0-3", query=True).events() == rest  # ?after= for a first EventSource attempt
    assert contents(_resume(web, sid).events()) == STORY  # a finished reply replays whole until its TTL

    done = _resume(web, sid, rest[-1].id)  # the client has everything: 204 stops EventSource retrying
    assert done.status == 204 and done.events() == []


def test_resume_answers_errors_plainly(site: Dict[str, Any], mock: MockServer, store: RecordingStore) -> None:
    web: WebClient = site["web"]
    sid = web.open_stream("/chat", {"message": "hi"}).headers["X-Stream-Id"]
    store.next_commit(timeout=20)
    bad = _resume(web, sid, "seventeen")
    assert bad.status == 400 and json.loads(bad.response.read())["error"]["type"] == "ConfigurationError"
    beyond = _resume(web, sid, "0-999999")
    assert beyond.status == 400
    missing = _resume(web, "ps_000000000000000000000000")
    assert missing.status == 404 and json.loads(missing.response.read())["error"]["type"] == "StreamNotFoundError"
    stranger = WebClient(site["url"], csrf=web.csrf)  # another session may not read this reply
    try:
        assert stranger.get("/").status_code == 200
        assert _resume(stranger, sid).status == 404
    finally:
        stranger.close()


def test_stop_reaches_a_published_reply_and_a_reload_finds_it_running(site: Dict[str, Any], mock: MockServer,
                                                                     store: RecordingStore) -> None:
    web: WebClient = site["web"]
    mock.enqueue(MockReply.stall(after_text="Let me think"))
    live = web.open_stream("/chat", {"message": "think"})
    sid = live.headers["X-Stream-Id"]
    text = ""
    while text != "Let me think":
        event = live.next_event()
        assert event is not None and event.event == "content"
        text += data(event)["content"]
    live.hang_up()
    assert web.history()["running_stream"] == sid  # a reloaded page resumes this one
    follower = _resume(web, sid)  # as the reloaded page does: from the start
    assert web.post("/stop", {}).json() == {"stopped": True}
    assert mock.disconnected.wait(10.0), "the stop did not cancel the upstream request"
    events = follower.events()
    assert contents(events) == "Let me think" and data(events[-1])["final"]["finish_reason"] == "cancelled"
    assert store.next_commit(timeout=20)[1].finish_reason == "cancelled"
    assert web.history()["running_stream"] is None
    assert web.post("/stop", {}).json() == {"stopped": False}


def test_the_examples_can_still_run_unpublished(client: promptkit.Client, store: RecordingStore,
                                               mock: MockServer) -> None:
    app = load_example("flask_chat").create_app(client, store, mode="m", mock=True, heartbeat=0.05, resumable=False)
    with serve_werkzeug(app) as url:
        web = WebClient(url)
        try:
            web.get("/")
            live = web.open_stream("/chat", {"message": "hi"})
            assert "X-Stream-Id" not in live.headers and live.next_event().id == "1"  # type: ignore[union-attr]
            live.events()
            assert web.history()["running_stream"] is None
        finally:
            web.close()


# -- the Vercel AI SDK's useChat, with the real ai package -------------------------------------------------


def _node(command: List[str], *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen([*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc: "subprocess.Popen[str]") -> Dict[str, Any]:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    parsed: Dict[str, Any] = json.loads(out)
    return parsed


@pytest.mark.parametrize("kind", ["flask", "django-wsgi"])
def test_use_chat_resumes_a_running_reply_on_the_example(kind: str, ui_chat_client: List[str],  # noqa: F811
                                                         client: promptkit.Client, store: RecordingStore,
                                                         mock: MockServer) -> None:
    log = MemoryStreamLog()
    options = dict(mode="m", mock=True, heartbeat=0.05, stream_log=log)
    if kind == "flask":
        served = serve_werkzeug(load_example("flask_chat").create_app(client, store, **options))
    else:
        served = serve_django_wsgi(load_example("django_chat").create_app(client, store, **options))
    # About 3 s of reply: ten times what the resumer needs to start, so it joins while the reply runs.
    mock.enqueue(MockReply.text(STORY, chunk_size=2, delay=0.06))
    chat_id = f"chat-{uuid.uuid4().hex[:10]}"
    with served as url:
        api = url + "/api/chat"
        page = WebClient(url, csrf=kind.startswith("django"))  # the visitor's session: the chat is theirs
        key = f"{page.history()['conversation_id']}:ai:{chat_id}"
        cookie = "Cookie: " + page.headers()["Cookie"]
        sender = _node(ui_chat_client, api, "Tell me a story.", "--chat-id", chat_id, "--header", cookie)
        # Handshake: the reply is published and its first event logged, then useChat resumes it.
        assert mock.wait_for_requests(1, timeout=30)
        deadline = time.monotonic() + 30
        while (sid := log.current(key)) is None:  # set right after send_stream returns
            assert time.monotonic() < deadline and sender.poll() is None
            threading.Event().wait(0.005)
        assert log.read(sid, 0, 30), "no event was published"
        stranger = _result(_node(ui_chat_client, api, "--reconnect", chat_id))  # another session: nothing
        resumer = _node(ui_chat_client, api, "--reconnect", chat_id, "--header", cookie)
        live, resumed = _result(sender), _result(resumer)
        committed = store.next_commit(timeout=20)[1]
        after = _result(_node(ui_chat_client, api, "--reconnect", chat_id, "--header", cookie))  # finished: 204
        stop = page.post(f"/api/chat/{chat_id}/stop", {})
        page.close()
    assert stranger == {"message": None, "chunks": [], "errors": []}
    assert stop.status_code == 200 and stop.json() == {"stopped": False}  # nothing left to stop
    assert live["errors"] == [] == resumed["errors"]
    texts = [[p["text"] for p in m["message"]["parts"] if p["type"] == "text"] for m in (live, resumed)]
    assert texts == [[STORY], [STORY]] and committed.messages[-1]["content"] == STORY
    assert resumed["message"]["id"] == live["message"]["id"]
    assert after == {"message": None, "chunks": [], "errors": []}
