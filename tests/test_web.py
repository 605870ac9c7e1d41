"""promptkit.web against real servers: Flask (werkzeug), Django under WSGI (its dev server) and ASGI
(uvicorn), flask-sock WebSockets, read by real clients as the bytes arrive; and the examples as programs.

Servers run in threads on 127.0.0.1, port 0, and are stopped (request threads joined) by each test.
Waits use Events, queues and socket reads with timeouts, never sleeps.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import re
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections import deque
from http.client import HTTPConnection, HTTPResponse
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import pytest

import promptkit
from promptkit._sse import ServerSentEvent, SSEParser
from promptkit.stores._values import StoredTurn
from promptkit.testing import MockReply, MockServer
from tests._dialect_views import sent_texts
from tests._processes import example_program

if os.environ.get("CI") != "true":  # in CI the test extra installs them: a missing one must fail, not skip
    pytest.importorskip("flask")
    pytest.importorskip("flask_sock")
    pytest.importorskip("django")
    pytest.importorskip("uvicorn")
    pytest.importorskip("websocket")


pytestmark = pytest.mark.usefixtures("every_dialect")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# How long to wait for the upstream request to be cancelled. The upstream replies here stall
# for ever, so only the cancel can end them: the bound is a handshake's timeout, not a latency
# target (the latency is measured and reported by report_latency, never asserted).
CANCEL_WAIT = 10.0


def load_example(name: str) -> Any:
    """Import ``examples/<name>/app.py`` once, as module ``examples_<name>``."""
    module_name = f"examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # Django's ROOT_URLCONF and Flask's root path look it up by name
    spec.loader.exec_module(module)
    return module


class RecordingStore(promptkit.MemoryStore):
    """A MemoryStore that also queues every committed turn, so a test can wait for a commit."""

    def __init__(self) -> None:
        super().__init__()
        self.commits: "queue.Queue[Tuple[str, StoredTurn]]" = queue.Queue()

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: Any) -> None:
        super().append_turn(conversation_id, turn, index=index, meta=meta)
        self.commits.put((conversation_id, turn))

    def next_commit(self, timeout: float = 5.0) -> Tuple[str, StoredTurn]:
        """The next committed turn (waits up to ``timeout`` seconds)."""
        return self.commits.get(timeout=timeout)


@contextlib.contextmanager
def serve_in_thread(server: socketserver.BaseServer, name: str) -> Iterator[str]:
    """Run a socketserver-based HTTP server in a thread; on exit stop it and join its request threads."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()  # ThreadingMixIn.block_on_close: joins the request threads too
        thread.join(5)
        assert not thread.is_alive()


@contextlib.contextmanager
def serve_werkzeug(app: Any) -> Iterator[str]:
    """A WSGI app on werkzeug's threaded server (Flask's development server) on 127.0.0.1, port 0."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serve_in_thread(server, "test-werkzeug") as url:
        yield url


@contextlib.contextmanager
def serve_django_wsgi(app: Any) -> Iterator[str]:
    """A WSGI app on Django's own development server (wsgiref-based, threaded, as runserver makes it)."""
    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    server_class = type("ThreadedWSGIServer", (socketserver.ThreadingMixIn, WSGIServer), {"daemon_threads": True})
    server = server_class(("127.0.0.1", 0), QuietHandler, ipv6=False)
    server.set_app(app)
    with serve_in_thread(server, "test-django-wsgi") as url:
        yield url


@contextlib.contextmanager
def serve_uvicorn(app: Any) -> Iterator[str]:
    """An ASGI app on uvicorn in a thread (a socket bound here, so the port is known before it starts)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue in the backlog until uvicorn accepts: no startup wait needed
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        assert not thread.is_alive()


class WebClient:
    """A tiny browser: a cookie jar, JSON calls, and streamed POSTs read as they arrive."""

    def __init__(self, base_url: str, *, csrf: bool = False) -> None:
        import requests

        self.base_url = base_url
        self.http = requests.Session()
        self.csrf = csrf
        self.streams: List["SSEStream"] = []

    def close(self) -> None:
        """Hang up every stream still open (a failed test must not leave a server thread streaming)."""
        for stream in self.streams:
            stream.hang_up()
        self.http.close()

    def headers(self) -> Dict[str, str]:
        headers = {"Content-Type": "application/json"}
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        if cookies:
            headers["Cookie"] = cookies
        token = self.http.cookies.get("csrftoken")
        if self.csrf and token:
            headers["X-CSRFToken"] = token
        return headers

    def get(self, path: str) -> Any:
        return self.http.get(self.base_url + path, timeout=10)

    def post(self, path: str, body: Any) -> Any:
        return self.http.post(self.base_url + path, data=json.dumps(body), headers=self.headers(), timeout=10)

    def history(self) -> Dict[str, Any]:
        response = self.get("/history")
        assert response.status_code == 200, response.text
        return response.json()

    def open_stream(self, path: str, body: Any, *, method: str = "POST",
                    headers: Optional[Dict[str, str]] = None) -> "SSEStream":
        """POST ``body`` as JSON (or GET with ``body=None``) and return the response, unread, for incremental reading."""
        host, port = self.base_url.split("//", 1)[1].split(":")
        conn = HTTPConnection(host, int(port), timeout=10)
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, path, body=payload, headers={**self.headers(), **(headers or {})})
        sock = conn.sock  # getresponse() hands a "Connection: close" socket over to the response
        stream = SSEStream(conn, sock, conn.getresponse())
        self.streams.append(stream)
        return stream


class SSEStream:
    """A streamed HTTP response read with ``read1`` (whatever has arrived) and parsed as SSE."""

    def __init__(self, conn: HTTPConnection, sock: socket.socket, response: HTTPResponse) -> None:
        self.conn = conn
        self.sock = sock
        self.response = response
        self.status = response.status
        self.headers = response.headers
        self.parser = SSEParser()
        self.pending: Deque[ServerSentEvent] = deque()
        self.body = bytearray()

    def next_event(self) -> Optional[ServerSentEvent]:
        """The next event (comments are skipped); ``None`` at the end of the body."""
        while not self.pending:
            chunk = self.response.read1(65536)
            if not chunk:
                return None
            self.body += chunk
            self.pending.extend(self.parser.feed(chunk))
        return self.pending.popleft()

    def events(self) -> List[ServerSentEvent]:
        """Every remaining event, until the body ends."""
        out: List[ServerSentEvent] = []
        while (event := self.next_event()) is not None:
            out.append(event)
        return out

    def hang_up(self) -> None:
        """Close the connection like a browser tab that went away (FIN now, RST for later writes)."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.response.close()
        self.conn.close()


def data(event: ServerSentEvent) -> Dict[str, Any]:
    """The JSON payload of an event."""
    return json.loads(event.data)


# A content delta that tries every way of forging SSE: blank lines, data:/event:/id: lines, CR, CRLF, U+2028.
NASTY = "line one\n\ndata: {\"type\": \"done\"}\nevent: done\r\nid: 9\r\n\r: not a comment \u2028 retry: 1\n\nend"
LATENCIES: Dict[str, float] = {}


def report_latency(label: str, seconds: float) -> None:
    """Record a disconnect-to-cancel time (printed with ``pytest -s``, kept in tests/artifacts)."""
    LATENCIES[label] = seconds
    print(f"\n[disconnect -> upstream cancelled] {label}: {seconds * 1000:.0f} ms")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "disconnect_latency.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    previous[label] = round(seconds * 1000, 1)
    path.write_text(json.dumps(previous, indent=2, sort_keys=True))


def contents(events: List[ServerSentEvent]) -> str:
    return "".join(data(e)["content"] for e in events if e.event == "content")


def read_text(stream: "SSEStream", expected: str) -> None:
    """Read content events until they add up to ``expected`` (the mock splits long words)."""
    text = ""
    while len(text) < len(expected):
        event = stream.next_event()
        assert event is not None and event.event == "content", (text, event)
        text += data(event)["content"]
    assert text == expected


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with MockServer(default_delay=0.05) as server:
        yield server


@pytest.fixture
def client(mock: MockServer) -> Iterator[promptkit.Client]:
    # Finite timeouts: a test that goes wrong ends in seconds instead of hanging its server thread.
    timeout = promptkit.Timeout(connect=5, idle=10, total=60)
    with promptkit.Client(base_url=mock.url, api_key="test", max_retries=0, timeout=timeout) as c:
        yield c


@pytest.fixture
def store() -> RecordingStore:
    return RecordingStore()


@pytest.fixture
def flask_url(client: promptkit.Client, store: RecordingStore) -> Iterator[str]:
    # heartbeat 0.05 s: werkzeug only notices a departed client when a write fails.
    # resumable=False: these tests are about the live helpers (test_web_resume.py: the published ones).
    app = load_example("flask_chat").create_app(client, store, mode="mock server (test)", mock=True, heartbeat=0.05,
                                                resumable=False)
    with serve_werkzeug(app) as url:
        yield url


@pytest.fixture
def web(flask_url: str) -> Iterator[WebClient]:
    browser = WebClient(flask_url)
    assert browser.get("/").status_code == 200  # sets the session cookie, as the page does
    yield browser
    browser.close()


@pytest.fixture
def django_wsgi_url(client: promptkit.Client, store: RecordingStore) -> Iterator[str]:
    app = load_example("django_chat").create_app(client, store, mode="mock server (test)", mock=True, heartbeat=0.05,
                                                 resumable=False)
    with serve_django_wsgi(app) as url:
        yield url


@pytest.fixture
def django_asgi_url(client: promptkit.Client, store: RecordingStore) -> Iterator[str]:
    # A long heartbeat on purpose: under ASGI the server itself reports the disconnect.
    app = load_example("django_chat").create_app(client, store, mode="mock server (test)", mock=True, heartbeat=30.0,
                                                 asgi=True, resumable=False)
    with serve_uvicorn(app) as url:
        yield url


def _django_browser(url: str) -> Iterator[WebClient]:
    browser = WebClient(url, csrf=True)
    page = browser.get("/")
    assert page.status_code == 200 and "csrftoken" in browser.http.cookies
    yield browser
    browser.close()


@pytest.fixture
def django_wsgi(django_wsgi_url: str) -> Iterator[WebClient]:
    yield from _django_browser(django_wsgi_url)


@pytest.fixture
def django_asgi(django_asgi_url: str) -> Iterator[WebClient]:
    yield from _django_browser(django_asgi_url)


# -- the library, without frameworks ----------------------------------------------------------


def test_web_module_imports_without_flask_or_django() -> None:
    code = (
        "import sys\n"
        "for name in ('flask', 'django', 'asgiref', 'flask_sock', 'simple_websocket'):\n"
        "    sys.modules[name] = None  # makes 'import name' raise ImportError\n"
        "import promptkit.web as web\n"
        "for helper in (web.flask_response, web.django_response, web.flask_error_response, web.django_error_response):\n"
        "    try:\n"
        "        helper(None)\n"
        "    except ImportError as exc:\n"
        "        assert 'pip install' in str(exc), exc\n"
        "    else:\n"
        "        raise AssertionError(helper)\n"
        "print(sorted(web.__all__))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "relay_websocket" in proc.stdout and "flask_response" in proc.stdout


def test_error_status_maps_errors_raised_before_a_stream() -> None:
    from promptkit.web import error_event, error_reply, error_status

    def status(cls: type, code: int) -> promptkit.APIStatusError:
        return cls(f"{code}: x", status_code=code)

    assert error_status(promptkit.ConversationBusyError("busy")) == 409
    assert error_status(promptkit.StoreConflictError("c", 1, 2)) == 409
    assert error_status(promptkit.ToolError("pending")) == 409
    assert error_status(promptkit.BudgetExceededError("spent")) == 402
    assert error_status(promptkit.ConfigurationError("bad")) == 400
    assert error_status(status(promptkit.RateLimitError, 429)) == 429
    assert error_status(promptkit.APITimeoutError("slow")) == 504
    assert error_status(status(promptkit.AuthenticationError, 401)) == 502  # our key is wrong, not the visitor's
    assert error_status(status(promptkit.ServerError, 503)) == 502
    assert error_status(promptkit.APIConnectionError("refused")) == 502
    assert error_status(promptkit.StreamError("bad chunk")) == 502
    assert error_status(RuntimeError("bug")) == 500

    limited = promptkit.RateLimitError("429: slow", status_code=429, retry_after=2.2)
    reply = error_reply(limited)
    assert reply.status == 429 and reply.headers == {"Retry-After": "3"} and reply.content_type == "application/json"
    assert json.loads(reply.body)["error"] == {"type": "RateLimitError", "message": "429: slow", "status_code": 429}

    hidden = error_event(RuntimeError("password=hunter2 in /srv/app/settings.py"))
    assert set(hidden) >= {"type", "content", "tool_call", "final", "error"}
    assert hidden["type"] == "error" and hidden["error"] == {"type": "InternalServerError", "message": "internal server error"}

    sse = error_reply(promptkit.ConversationBusyError("busy"), sse=True)
    assert sse.status == 200 and sse.content_type == "text/event-stream; charset=utf-8"
    (event,) = SSEParser().feed(sse.body)
    assert event.event == "error" and json.loads(event.data)["error"]["type"] == "ConversationBusyError"


def test_sse_body_closed_before_its_first_frame_cancels_upstream(mock: MockServer, client: promptkit.Client) -> None:
    from promptkit.web import SSEBody

    mock.enqueue(MockReply.stall(after_text="never read"))
    conv = client.conversation()
    body = SSEBody(conv.send_stream("q"), heartbeat=5)
    body.close()  # a server that gives up before iterating (e.g. HEAD, or an error in a middleware)
    assert mock.disconnected.wait(CANCEL_WAIT)
    assert body.stream.result().finish_reason == "cancelled"
    assert conv.messages == []  # the client saw nothing, so nothing is committed
    assert list(body) == []
    body.close()  # idempotent


def test_closing_an_unstarted_iter_sse_cancels_upstream(mock: MockServer, client: promptkit.Client) -> None:
    mock.enqueue(MockReply.stall(after_text="x"))
    stream = client.conversation().send_stream("q")
    frames = stream.iter_sse(heartbeat=5)
    try:
        frames.close()
        assert mock.disconnected.wait(CANCEL_WAIT), "the upstream request is still open"
    finally:
        stream.close()


# -- Flask (werkzeug's threaded server) -----------------------------------------------------------


def test_flask_streams_before_the_model_finishes_and_disconnect_cancels(mock: MockServer, store: RecordingStore,
                                                                         web: WebClient) -> None:
    mock.enqueue(MockReply.stall(after_text="Hello there"))
    cid = web.history()["conversation_id"]
    stream = web.open_stream("/chat", {"message": "hi"})
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["Cache-Control"] == "no-cache"
    assert stream.headers["X-Accel-Buffering"] == "no"
    first = stream.next_event()
    # The model is stalled mid-reply and never finishes: this event did not wait for the end.
    assert first is not None and first.event == "content" and data(first)["content"] == "Hello"
    assert first.id == "1" and set(data(first)) == {"type", "content", "tool_call", "final", "error"}
    read_text(stream, " there")
    assert not mock.disconnected.is_set()

    started = time.monotonic()
    stream.hang_up()
    assert mock.disconnected.wait(CANCEL_WAIT), "the disconnect did not cancel the upstream request"
    report_latency("flask/werkzeug (heartbeat 0.05 s)", time.monotonic() - started)
    committed, turn = store.next_commit()
    assert committed == cid and turn.finish_reason == "cancelled"
    assert turn.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello there"}]
    assert [t["finish_reason"] for t in web.history()["turns"]] == ["cancelled"]


def test_flask_full_turns_history_and_one_conversation_per_session(mock: MockServer, web: WebClient,
                                                                    flask_url: str) -> None:
    mock.enqueue(MockReply.text("The first answer.", delay=0.01), MockReply.text("Second.", delay=0.01))
    events = web.open_stream("/chat", {"message": "one"}).events()
    assert [e.event for e in events][-1] == "done" and contents(events) == "The first answer."
    assert [int(e.id) for e in events] == sorted({int(e.id) for e in events})  # increasing ids
    final = data(events[-1])["final"]
    assert final["finish_reason"] == "stop" and final["content"] == "The first answer." and final["tokens_used"] > 0
    assert contents(web.open_stream("/chat", {"message": "two"}).events()) == "Second."

    history = web.history()
    assert history["mode"] == "mock server (test)" and history["mock"] is True
    assert [t["finish_reason"] for t in history["turns"]] == ["stop", "stop"]
    for turn in history["turns"]:
        assert re.fullmatch(r"Cost: (\$\d+\.\d+|n/a) \| Latency: \d+ms \| Tokens: ~?\d+", turn["summary"])
    assert history["total_tokens"] > 0
    assert sent_texts(mock.requests[-1].body) == ["one", "The first answer.", "two"]  # the second turn carried the session's history

    other = WebClient(flask_url)
    try:
        other.get("/")
        assert other.history()["turns"] == [] and other.history()["conversation_id"] != history["conversation_id"]
    finally:
        other.close()
    fresh = web.post("/reset", {}).json()["conversation_id"]
    assert fresh != history["conversation_id"] and web.history()["turns"] == []


def test_flask_sse_injection_round_trips_to_identical_text(mock: MockServer, web: WebClient) -> None:
    mock.enqueue(MockReply.text(NASTY, chunk_size=5))
    stream = web.open_stream("/chat", {"message": "break the framing"})
    events = stream.events()
    assert {e.event for e in events[:-1]} == {"content"} and events[-1].event == "done"
    assert contents(events) == NASTY
    assert data(events[-1])["final"]["content"] == NASTY
    assert SSEParser().feed(bytes(stream.body)) == events  # the whole body, parsed at once, says the same
    assert b"\ndata: {\\\"type" not in stream.body and b"\nevent: done\r" not in stream.body


def test_flask_errors_before_the_stream_are_json_with_a_status(mock: MockServer, web: WebClient,
                                                                flask_url: str) -> None:
    blank = web.post("/chat", {"message": "   "})
    assert blank.status_code == 400 and blank.json()["error"]["type"] == "ConfigurationError"
    form = web.http.post(flask_url + "/chat", data={"message": "hi"}, timeout=10)  # what a cross-site form sends
    assert form.status_code == 400

    mock.enqueue(MockReply.error(429, "slow down", headers={"Retry-After": "7"}))
    limited = web.post("/chat", {"message": "hi"})
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert limited.headers["Content-Type"] == "application/json"
    assert limited.json()["type"] == "error"
    assert limited.json()["error"]["type"] == "RateLimitError" and limited.json()["error"]["status_code"] == 429

    mock.enqueue(MockReply.error(401, "Incorrect API key provided: sk-abc"))
    denied = web.post("/chat", {"message": "hi"})
    assert denied.status_code == 502 and denied.json()["error"]["type"] == "AuthenticationError"
    assert web.history()["turns"] == []  # failed turns commit nothing


def test_flask_second_message_is_409_and_stop_cancels_the_reply(mock: MockServer, store: RecordingStore,
                                                                 web: WebClient) -> None:
    mock.enqueue(MockReply.stall(after_text="Working"))
    stream = web.open_stream("/chat", {"message": "long job"})
    read_text(stream, "Working")
    busy = web.post("/chat", {"message": "again"})
    assert busy.status_code == 409 and busy.json()["error"]["type"] == "ConversationBusyError"

    assert web.post("/stop", {}).json() == {"stopped": True}
    assert mock.disconnected.wait(CANCEL_WAIT)
    rest = stream.events()
    assert [e.event for e in rest] == ["done"]
    final = data(rest[0])["final"]
    assert final["finish_reason"] == "cancelled" and final["content"] == "Working"
    assert final["usage"]["estimated"] is True
    assert store.next_commit()[1].finish_reason == "cancelled"
    assert web.post("/stop", {}).json() == {"stopped": False}


def test_flask_error_response_sse_and_internal_errors(client: promptkit.Client) -> None:
    import flask

    from promptkit.web import flask_error_response

    app = flask.Flask("error_helpers")

    @app.get("/events")
    def events() -> Any:  # an EventSource endpoint: errors must arrive as an event with status 200
        return flask_error_response(promptkit.ConversationBusyError("busy"), sse=True)

    @app.get("/boom")
    def boom() -> Any:
        return flask_error_response(RuntimeError("db password is hunter2"))

    import requests

    with serve_werkzeug(app) as url:
        sse = requests.get(url + "/events", timeout=10)
        assert sse.status_code == 200 and sse.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert sse.headers["Cache-Control"] == "no-cache" and sse.headers["X-Accel-Buffering"] == "no"
        (event,) = SSEParser().feed(sse.content)
        assert event.event == "error" and json.loads(event.data)["error"]["type"] == "ConversationBusyError"
        internal = requests.get(url + "/boom", timeout=10)
        assert internal.status_code == 500 and "hunter2" not in internal.text
        assert internal.json()["error"]["type"] == "InternalServerError"


# -- WebSocket relay (flask-sock on werkzeug, websocket-client) -------------------------------------


@contextlib.contextmanager
def websocket_to(base_url: str, browser: WebClient) -> Iterator[Any]:
    import websocket

    cookie = "; ".join(f"{c.name}={c.value}" for c in browser.http.cookies)
    ws = websocket.create_connection(base_url.replace("http://", "ws://") + "/ws", timeout=10, cookie=cookie)
    try:
        yield ws
    finally:
        ws.close()


def recv_json(ws: Any) -> Dict[str, Any]:
    return json.loads(ws.recv())


def until_terminal(ws: Any) -> List[Dict[str, Any]]:
    frames = [recv_json(ws)]
    while frames[-1]["type"] not in ("done", "error"):
        frames.append(recv_json(ws))
    return frames


def test_websocket_relays_events_as_json_frames(mock: MockServer, web: WebClient, flask_url: str) -> None:
    mock.enqueue(MockReply.text("Over the socket.", delay=0.01))
    with websocket_to(flask_url, web) as ws:
        ws.send(json.dumps({"action": "send_message", "message": "hello"}))
        frames = until_terminal(ws)
    assert all(set(f) == {"type", "content", "tool_call", "final", "error"} for f in frames)
    assert [f["type"] for f in frames[:-1]] == ["content"] * (len(frames) - 1) and frames[-1]["type"] == "done"
    assert "".join(f["content"] for f in frames) == "Over the socket."
    assert frames[-1]["final"]["finish_reason"] == "stop"
    history = web.history()  # the same session's conversation
    assert history["turns"][0]["messages"][0] == {"role": "user", "content": "hello"}


def test_websocket_stop_cancels_while_another_thread_sends(mock: MockServer, store: RecordingStore, web: WebClient,
                                                            flask_url: str) -> None:
    many = " ".join(f"word{i}" for i in range(400))
    mock.enqueue(MockReply.stall(after_text="Thinking hard"), MockReply.text(many, delay=0.002),
                 MockReply.text("Fresh start.", delay=0.01))
    with websocket_to(flask_url, web) as ws:
        ws.send(json.dumps({"action": "send_message", "message": "first"}))
        assert [recv_json(ws)["content"], recv_json(ws)["content"]] == ["Thinking", " hard"]
        ws.send(json.dumps({"action": "send_message", "message": "too soon"}))
        busy = recv_json(ws)
        assert busy["type"] == "error" and busy["error"]["type"] == "ConversationBusyError"
        ws.send(json.dumps({"action": "stop"}))
        done = recv_json(ws)
        assert done["type"] == "done" and done["final"]["finish_reason"] == "cancelled"
        assert mock.disconnected.wait(CANCEL_WAIT)
        assert store.next_commit()[1].finish_reason == "cancelled"

        # A stop that lands while the relay thread is busy sending a fast reply.
        ws.send(json.dumps({"action": "send_message", "message": "second"}))
        assert recv_json(ws)["type"] == "content"
        ws.send(json.dumps({"action": "stop"}))
        frames = until_terminal(ws)
        assert frames[-1]["type"] == "done" and frames[-1]["final"]["finish_reason"] == "cancelled"
        assert len(frames[-1]["final"]["content"]) < len(many)
        assert store.next_commit()[1].finish_reason == "cancelled"

        ws.send(json.dumps({"action": "send_message", "message": "third"}))  # the socket carries on
        frames = until_terminal(ws)
        assert "".join(f["content"] for f in frames) == "Fresh start." and frames[-1]["final"]["finish_reason"] == "stop"
    assert [t["finish_reason"] for t in web.history()["turns"]] == ["cancelled", "cancelled", "stop"]


def test_websocket_stop_and_a_closed_socket_reach_a_turn_still_waiting_for_headers(
        mock: MockServer, store: RecordingStore, web: WebClient, flask_url: str) -> None:
    # The model server accepts and never answers: the turn waits for its headers, no Stream exists yet.
    mock.enqueue(MockReply.stall(before_headers=True), MockReply.stall(before_headers=True))
    seen = len(mock.requests)
    with websocket_to(flask_url, web) as ws:
        ws.send(json.dumps({"action": "send_message", "message": "first"}))
        assert mock.wait_for_requests(seen + 1, timeout=CANCEL_WAIT)
        ws.send(json.dumps({"action": "stop"}))
        done = recv_json(ws)
        assert done["type"] == "done" and done["final"]["finish_reason"] == "cancelled"
        assert mock.disconnected.wait(CANCEL_WAIT)  # the upstream request was shut down, not left waiting
        mock.disconnected.clear()
        ws.send(json.dumps({"action": "send_message", "message": "second"}))
        assert mock.wait_for_requests(seen + 2, timeout=CANCEL_WAIT)
        ws.sock.shutdown(socket.SHUT_RDWR)  # the tab is gone while the turn still waits for headers
    assert mock.disconnected.wait(CANCEL_WAIT)
    assert [t["finish_reason"] for t in web.history()["turns"]] == []  # nothing reached the user: nothing committed


def test_websocket_bad_frames_and_a_client_that_leaves_mid_reply(mock: MockServer, store: RecordingStore,
                                                                  web: WebClient, flask_url: str) -> None:
    mock.enqueue(MockReply.stall(after_text="Half"))
    with websocket_to(flask_url, web) as ws:
        for bad in ("not json", json.dumps([1, 2]), json.dumps({"action": "dance"}),
                    json.dumps({"action": "send_message", "message": 5})):
            ws.send(bad)
            frame = recv_json(ws)
            assert frame["type"] == "error" and frame["error"]["type"] == "WebSocketRequestError", bad
        ws.send(json.dumps({"action": "stop"}))  # nothing in flight: ignored
        ws.send(json.dumps({"action": "send_message", "message": "q"}))
        assert recv_json(ws)["content"] == "Half"
        started = time.monotonic()
        ws.sock.shutdown(socket.SHUT_RDWR)  # gone without a close frame, like a crashed tab
    assert mock.disconnected.wait(CANCEL_WAIT)
    report_latency("websocket/flask-sock (abrupt close)", time.monotonic() - started)
    assert store.next_commit()[1].finish_reason == "cancelled"


# -- Django under WSGI (Django's own threaded development server) ----------------------------------------


def test_django_wsgi_streams_before_the_model_finishes_and_disconnect_cancels(mock: MockServer, store: RecordingStore,
                                                                              django_wsgi: WebClient) -> None:
    mock.enqueue(MockReply.stall(after_text="Bonjour tout"))
    cid = django_wsgi.history()["conversation_id"]
    stream = django_wsgi.open_stream("/chat", {"message": "salut"})
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["Cache-Control"] == "no-cache" and stream.headers["X-Accel-Buffering"] == "no"
    read_text(stream, "Bonjour tout")
    started = time.monotonic()
    stream.hang_up()
    assert mock.disconnected.wait(CANCEL_WAIT), "the disconnect did not cancel the upstream request"
    report_latency("django/WSGI dev server (heartbeat 0.05 s)", time.monotonic() - started)
    committed, turn = store.next_commit()
    assert committed == cid and turn.finish_reason == "cancelled"
    assert turn.messages[-1] == {"role": "assistant", "content": "Bonjour tout"}


def test_django_wsgi_full_turn_history_and_csrf(mock: MockServer, django_wsgi: WebClient, django_wsgi_url: str) -> None:
    forged = WebClient(django_wsgi_url)  # no CSRF token: what a cross-site request has
    try:
        assert forged.post("/chat", {"message": "hi"}).status_code == 403
    finally:
        forged.close()
    mock.enqueue(MockReply.text("Django answers.", delay=0.01))
    events = django_wsgi.open_stream("/chat", {"message": "hi"}).events()
    assert contents(events) == "Django answers." and data(events[-1])["final"]["finish_reason"] == "stop"
    history = django_wsgi.history()
    assert [t["finish_reason"] for t in history["turns"]] == ["stop"] and history["mock"] is True
    blank = django_wsgi.post("/chat", {"message": ""})
    assert blank.status_code == 400 and blank.json()["error"]["type"] == "ConfigurationError"
    mock.enqueue(MockReply.error(503, "overloaded"))
    failed = django_wsgi.post("/chat", {"message": "hi"})
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "ServerError"


# -- Django under ASGI (uvicorn) -------------------------------------------------------------------------


def test_django_asgi_streams_incrementally_and_disconnect_cancels(mock: MockServer, store: RecordingStore,
                                                                  django_asgi: WebClient, recwarn: Any) -> None:
    mock.enqueue(MockReply.stall(after_text="Streaming under ASGI"))
    cid = django_asgi.history()["conversation_id"]
    stream = django_asgi.open_stream("/chat", {"message": "go"})
    assert stream.status == 200
    assert stream.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["Cache-Control"] == "no-cache" and stream.headers["X-Accel-Buffering"] == "no"
    # Django buffers a synchronous body under ASGI until it ends; this reply never ends, so
    # reading its first events proves the body is asynchronous.
    read_text(stream, "Streaming under ASGI")
    started = time.monotonic()
    stream.hang_up()
    assert mock.disconnected.wait(CANCEL_WAIT), "the disconnect did not cancel the upstream request"
    report_latency("django/ASGI uvicorn (no heartbeat needed)", time.monotonic() - started)
    committed, turn = store.next_commit()
    assert committed == cid and turn.finish_reason == "cancelled"
    assert turn.messages[-1] == {"role": "assistant", "content": "Streaming under ASGI"}
    # Django warns (from the server thread) when it has to buffer a synchronous body under ASGI.
    assert not [w for w in recwarn if "StreamingHttpResponse" in str(w.message)]


def test_django_asgi_streams_more_replies_at_once_than_asgiref_has_threads(mock: MockServer, store: RecordingStore,
                                                                          django_asgi_url: str) -> None:
    # asgiref's shared executor has min(32, cpus + 4) threads (6 on 2 cores); a silent model used to
    # hold one per reply for a whole heartbeat (30 s here), so the 7th reply waited for them.
    count = (os.cpu_count() or 1) + 4 + 4
    mock.enqueue(*[MockReply.stall(after_text="Hello") for _ in range(count)])
    browsers = [WebClient(django_asgi_url, csrf=True) for _ in range(count)]
    try:
        for browser in browsers:
            assert browser.get("/").status_code == 200
        streams = [browser.open_stream("/chat", {"message": "hi"}) for browser in browsers]
        for stream in streams:  # every reply's first event arrives while all the others are silent
            read_text(stream, "Hello")
        assert mock.wait_for_requests(count)
    finally:
        for browser in browsers:
            browser.close()  # hang up: every reply is cancelled
    assert sorted(store.next_commit(timeout=20)[1].finish_reason for _ in range(count)) == ["cancelled"] * count


def test_django_asgi_full_turn_and_stop(mock: MockServer, store: RecordingStore, django_asgi: WebClient) -> None:
    mock.enqueue(MockReply.text("Async answer.", delay=0.01), MockReply.stall(after_text="Wait"))
    events = django_asgi.open_stream("/chat", {"message": "one"}).events()
    assert contents(events) == "Async answer." and data(events[-1])["final"]["finish_reason"] == "stop"
    assert store.next_commit()[1].finish_reason == "stop"
    stream = django_asgi.open_stream("/chat", {"message": "two"})
    read_text(stream, "Wait")
    assert django_asgi.post("/stop", {}).json() == {"stopped": True}
    rest = stream.events()
    assert [e.event for e in rest] == ["done"] and data(rest[0])["final"]["finish_reason"] == "cancelled"
    assert [t["finish_reason"] for t in django_asgi.history()["turns"]] == ["stop", "cancelled"]


# -- the examples as programs ---------------------------------------------------------------------------------


@contextlib.contextmanager
def program(*args: str) -> Iterator[Tuple[subprocess.Popen, str]]:
    """Run an example as a user would (mock mode), yielding the process and the URL it printed."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTKIT_STORE")}
    with example_program(*args, env=env) as (proc, url, _):
        yield proc, url


@pytest.mark.parametrize("name", ["flask_chat", "django_chat"])
def test_example_runs_as_a_program(name: str) -> None:
    with program(f"examples/{name}/app.py", "--port", "0") as (proc, url):
        browser = WebClient(url, csrf=True)
        try:
            page = browser.get("/")
            assert page.status_code == 200 and "<title>promptkit chat</title>" in page.text
            assert page.text == (EXAMPLES / "chat_page.html").read_text(encoding="utf-8")  # one page, both apps
            events = browser.open_stream("/chat", {"message": "Tell me a short story about a robot."}).events()
            assert events[-1].event == "done" and "robot" in contents(events)
            history = browser.history()
            assert history["mock"] is True and [t["finish_reason"] for t in history["turns"]] == ["stop"]
        finally:
            browser.close()
    assert proc.returncode == 0
    assert "mock server" in proc.stderr.read()


def test_django_example_runs_management_commands() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    proc = subprocess.run([sys.executable, "examples/django_chat/app.py", "check"], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "System check identified no issues" in proc.stdout
