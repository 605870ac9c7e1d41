"""Hostile servers: bounded memory (issue 12, point 3) and hostile JSON shapes (point 4).

Every turn here runs against a real local server and checks the same things:
exactly one terminal event, last; the error's type and message; the worker
thread ended and the socket closed; the API key nowhere (error, its body and
partial, events, logs); no ERROR log (a hostile server is not a promptkit
bug); and the history unchanged, since a failed turn commits nothing.

The memory scenarios run in a subprocess (tests/_limits_memory.py) under an
RLIMIT_AS cap, against a flooding server in this process that generates its
body as it sends, and report peak RSS growth against the limit that stopped
them.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import attrs
import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from tests._processes import read_request
from tests.test_faults import client_sockets

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-hostile-SECRET-0123456789"
MiB = 1024 * 1024


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def chunk(delta: Any, finish: Any = None, index: Any = 0) -> Dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


GOOD_START = sse(chunk({"role": "assistant", "content": "Hel"}))
DONE = b"data: [DONE]\n\n"


# -- the invariants ----------------------------------------------------------------


def worker_threads() -> List[threading.Thread]:
    """The promptkit threads alive now, the mock server's own excepted (workers are named ``promptkit-*``)."""
    return [t for t in threading.enumerate()
            if t.name.startswith("promptkit") and not t.name.startswith("promptkit-mock")]  # fmt: skip


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="promptkit")
    return caplog


def hostile_turn(
    server: MockServer,
    logs: pytest.LogCaptureFixture,
    body: Sequence[bytes],
    *,
    limits: Optional[promptkit.Limits] = None,
) -> promptkit.StreamError:
    """Run one committed turn, then one against ``body``; check the invariants and return its error."""
    with promptkit.Client(
        base_url=server.url, api_key=KEY, timeout=promptkit.Timeout(idle=10, total=60), limits=limits
    ) as client:
        conv = client.conversation(system_prompt="be brief")
        server.enqueue(MockReply.text("first"))
        assert conv.send("one").content == "first"
        before = conv.messages
        server.enqueue(MockReply.raw(body))
        threads_before = set(worker_threads())
        stream = conv.send_stream("two")
        events = list(stream)
        stream.close(timeout=5)  # returns once the worker thread has exited
        assert stream.done and [t.name for t in worker_threads() if t not in threads_before] == []
        assert [e.type for e in events].count("error") + [e.type for e in events].count("done") == 1
        assert events[-1].type == "error", [e.type for e in events]
        error = events[-1].error
        assert isinstance(error, promptkit.StreamError), repr(error)
        assert error.__cause__ is None, "a hostile server must not look like a promptkit bug"
        assert conv.messages == before  # a failed turn commits nothing
        assert client_sockets(server) == []  # the broken connection was closed, not pooled
        seen = [str(error), repr(error), repr(error.body)[:10000], repr(error.partial)]
        seen += [json.dumps(e.to_dict(), default=str) for e in events]
        seen += [r.getMessage() for r in logs.records]
        assert not any(KEY in text for text in seen)
        assert [r.getMessage() for r in logs.records if r.levelno >= logging.ERROR] == []
    return error


# -- configuration ------------------------------------------------------------------


def test_limits_defaults_are_documented_values() -> None:
    limits = promptkit.Limits()
    assert attrs.asdict(limits) == {
        "max_line_bytes": 4 * MiB,
        "max_event_bytes": 8 * MiB,
        "max_reply_chars": 8 * MiB,
        "max_tool_calls": 128,
        "max_choices": 128,
        "max_json_depth": 64,
        "max_json_values": 250_000,
    }
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        limits.max_tool_calls = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "8", None])
@pytest.mark.parametrize("field", [f.name for f in attrs.fields(promptkit.Limits)])
def test_limits_reject_anything_but_a_positive_int(field: str, bad: Any) -> None:
    with pytest.raises(promptkit.ConfigurationError, match=f"Limits.{field} must be an int >= 1"):
        promptkit.Limits(**{field: bad})


def test_client_takes_limits_keyword_only(server: MockServer) -> None:
    limits = promptkit.Limits(max_reply_chars=10)
    with promptkit.Client(base_url=server.url, api_key=KEY, limits=limits) as client:
        assert client.limits is limits
        # Its conversations apply them: a reply longer than 10 characters is stopped.
        server.enqueue(MockReply.text("a reply of more than ten characters"))
        with pytest.raises(promptkit.StreamError, match=r"Limits\.max_reply_chars \(10 characters\)"):
            client.conversation().send("q")
    with promptkit.Client(base_url="http://127.0.0.1:9") as client:
        assert client.limits == promptkit.Limits()
    with pytest.raises(promptkit.ConfigurationError, match="limits must be a promptkit.Limits"):
        promptkit.Client(base_url="http://127.0.0.1:9", limits={"max_tool_calls": 7})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, depth, values, verdict",
    [
        ("[" * 5 + "]" * 5, 5, 100, None),
        ("[" * 6 + "]" * 6, 5, 100, "max_json_depth"),
        ('{"a": {"b": {"c": 1}}}', 3, 100, None),
        ('{"a": {"b": {"c": [1]}}}', 3, 100, "max_json_depth"),
        ('["[[[[[[[[", "{{{{{{{{{{", "\\"[[[[[[["]', 2, 100, None),  # brackets in strings are text
        ('"' + "[" * 50, 2, 1000, None),  # an unterminated string runs to the end
        ("[" * 100_000, 64, 10**6, "max_json_depth"),  # unclosed: what a parser would enter
        ("[1,2,3]", 64, 4, None),
        ("[1,2,3,4]", 64, 4, "max_json_values"),
        ('{"a":1,"b":2}', 64, 5, None),
        ('{"a":1,"b":2,"c":3}', 64, 5, "max_json_values"),
        ('["a,b,c,d,e,f,g,h"]', 64, 3, None),  # commas in strings are text
    ],
)
def test_json_excess(text: str, depth: int, values: int, verdict: Optional[str]) -> None:
    from promptkit._limits import json_excess

    error = json_excess(text, promptkit.Limits(max_json_depth=depth, max_json_values=values))
    if verdict is None:
        assert error is None
    else:
        assert error is not None and f"Limits.{verdict} " in str(error)


# -- point 3: every limit ends the turn, naming itself ---------------------------------------


def _tool_start(i: int, index: Any = None) -> Dict[str, Any]:
    call: Dict[str, Any] = {"id": f"call_{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    if index is not None:
        call["index"] = index
    return call


LIMIT_CASES: Dict[str, Any] = {
    "line": (
        promptkit.Limits(max_line_bytes=1000),
        [GOOD_START, b"data: " + b"x" * 600, b"y" * 600, b"\n\n", DONE],
        "Limits.max_line_bytes (1000 bytes)",
    ),
    "line-in-one-read": (
        promptkit.Limits(max_line_bytes=1000),
        [GOOD_START + b": " + b"z" * 2000 + b"\n" + DONE],
        "Limits.max_line_bytes (1000 bytes)",
    ),
    "event": (
        promptkit.Limits(max_event_bytes=5000),
        [GOOD_START] + [b"data: " + b"d" * 90 + b"\n"] * 100 + [b"\n", DONE],
        "Limits.max_event_bytes (5000 bytes)",
    ),
    "reply": (
        promptkit.Limits(max_reply_chars=5000),
        [GOOD_START] + [sse(chunk({"content": "w" * 100}))] * 60 + [DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "reply-reasoning": (
        promptkit.Limits(max_reply_chars=5000),
        [GOOD_START] + [sse(chunk({"reasoning_content": "r" * 100}))] * 60 + [DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "reply-one-char-deltas": (
        promptkit.Limits(max_reply_chars=5000),
        [GOOD_START] + [sse(chunk({"content": "w"}))] * 400 + [DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "reply-other-choice": (
        promptkit.Limits(max_reply_chars=5000),
        [GOOD_START] + [sse(chunk({"content": "w" * 100}, index=1))] * 60 + [DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "tool-arguments": (
        promptkit.Limits(max_reply_chars=5000),
        [sse(chunk({"tool_calls": [_tool_start(0, 0)]}))]
        + [sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "a" * 100}}]}))] * 60
        + [DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "tool-name": (
        promptkit.Limits(max_reply_chars=5000),
        [sse(chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "n" * 6000}}]})), DONE],
        "Limits.max_reply_chars (5000 characters)",
    ),
    "tool-calls": (
        promptkit.Limits(max_tool_calls=5),
        [sse(chunk({"tool_calls": [_tool_start(i, i)]})) for i in range(6)] + [DONE],
        "Limits.max_tool_calls (5 calls)",
    ),
    "choices": (
        promptkit.Limits(max_choices=3),
        [GOOD_START] + [sse(chunk({"content": "c"}, index=i)) for i in range(1, 4)] + [DONE],
        "Limits.max_choices (3 choices)",
    ),
    "chunk-depth": (
        None,
        [GOOD_START, sse(chunk({"content": "x", "extra": json.loads("[" * 70 + "]" * 70)})), DONE],
        "Limits.max_json_depth (64 levels)",
    ),
    "chunk-values": (
        promptkit.Limits(max_json_values=1000),
        [GOOD_START, sse(chunk({"content": "x", "extra": [[] for _ in range(1000)]})), DONE],
        "Limits.max_json_values (1000 values)",
    ),
    "chunk-values-default": (
        None,
        [GOOD_START, b'data: {"x": [' + b"[]," * 300_000 + b"1]}\n\n", DONE],
        "Limits.max_json_values (250000 values)",
    ),
    "arguments-values": (
        promptkit.Limits(max_json_values=1000),
        [sse(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "[" + "1," * 1000 + "1]"}}]})),
         sse(chunk({}, "tool_calls")), DONE],
        "Limits.max_json_values (1000 values)",
    ),
    "arguments-depth": (
        None,
        [sse(chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": "[" * 100}}]})),
         sse(chunk({}, "tool_calls")), DONE],
        "Limits.max_json_depth (64 levels)",
    ),
}


@pytest.mark.parametrize("case", sorted(LIMIT_CASES))
def test_point3_each_limit_ends_the_turn_with_a_stream_error_naming_it(
    server: MockServer, logs: pytest.LogCaptureFixture, case: str
) -> None:
    limits, body, message = LIMIT_CASES[case]
    error = hostile_turn(server, logs, body, limits=limits)
    assert type(error) is promptkit.StreamError
    assert str(error).startswith(f"the server exceeded {message}"), str(error)


def test_point3_within_the_limits_a_turn_succeeds(server: MockServer) -> None:
    limits = promptkit.Limits(max_line_bytes=1000, max_event_bytes=2000, max_reply_chars=3000, max_tool_calls=2)
    body = [GOOD_START] + [sse(chunk({"content": "x" * 100}))] * 20
    body += [sse(chunk({"tool_calls": [_tool_start(i, i)]})) for i in range(2)]
    body += [sse(chunk({}, "tool_calls")), DONE]
    with promptkit.Client(base_url=server.url, api_key=KEY, limits=limits) as client:
        server.enqueue(MockReply.raw(body))
        response = client.conversation().send("go")
    assert response.content == "Hel" + "x" * 2000
    assert [c.id for c in response.tool_calls] == ["call_0", "call_1"]


# -- point 3: memory under an address-space cap ------------------------------------------------

HEADROOM = 256 * MiB  # the address space a scenario may add: far below the floods it is sent
FLOOD_CAP = 400 * MiB  # a server stops after this much even when nobody stops it


def _repeat(head: bytes, block: bytes) -> Iterator[bytes]:
    yield head
    for _ in range(FLOOD_CAP // len(block) + 1):
        yield block


def _tool_flood(piece: str) -> Iterator[bytes]:
    start = sse(chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}))
    delta = sse(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    return _repeat(start, delta * max(1, 65536 // len(delta)))


FLOODS: Dict[str, Callable[[], Iterator[bytes]]] = {
    "ok": lambda: iter([sse(chunk({"content": "warm"})), sse(chunk({}, "stop")), DONE]),
    "line": lambda: _repeat(b"data: ", b"x" * MiB),  # one 400 MB line, sent as fast as it goes
    "comment": lambda: _repeat(b": ", b"c" * 65536),
    "event-field": lambda: _repeat(b"event: ", b"e" * 65536),
    "id-field": lambda: _repeat(b"id: ", b"i" * 65536),
    "data-flood": lambda: _repeat(GOOD_START, b"data: x\n" * 8192),  # many small lines, one event
    "empty-data-flood": lambda: _repeat(GOOD_START, b"data:\n" * 13000),
    "tool-arguments": lambda: _tool_flood("a" * 4000),
    "tool-arguments-tiny": lambda: _tool_flood("ab"),
    "content-tiny": lambda: _repeat(GOOD_START, sse(chunk({"content": "ab"})) * 800),
    # 7.5 MiB of "[]," would parse to about 250 MB of lists: refused before parsing. In
    # lines of 3 MB (one event's data lines join with newlines, which JSON ignores).
    "json-values": lambda: iter([GOOD_START, b'data: {"x": [\n' + (b"data: " + b"[]," * 1_000_000 + b"\n") * 2
                                 + b"data: " + b"[]," * 600_000 + b"1]}\n\n", DONE]),
    "done-then-flood": lambda: _repeat(sse(chunk({"content": "fine"}, "stop")) + DONE, b"data: more\n\n" * 5000),
}


class FloodServer:
    """An HTTP server whose reply to ``POST /<scenario>/chat/completions`` is that flood, generated as sent."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.sent: Dict[str, int] = {}
        self.finished: Dict[str, threading.Event] = {name: threading.Event() for name in FLOODS}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="flood-server", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(30)
                try:
                    self._answer(conn)
                except OSError:
                    pass  # the client hung up: that is how a flood ends

    def _answer(self, conn: socket.socket) -> None:
        request = read_request(conn)
        if request is None:
            return
        scenario = request[0].split()[1].strip("/").split("/")[0]
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        sent = 0
        try:
            for block in FLOODS[scenario]():
                conn.sendall(block)
                sent += len(block)
        finally:
            self.sent[scenario] = sent
            self.finished[scenario].set()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sock.close()
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def flood_server() -> Iterator[FloodServer]:
    srv = FloodServer()
    yield srv
    srv.close()


MEMORY_CASES = {  # scenario: (the limit that must stop it, its default value, the bytes it bounds)
    "line": ("max_line_bytes", 4 * MiB, 4 * MiB),
    "comment": ("max_line_bytes", 4 * MiB, 4 * MiB),
    "event-field": ("max_line_bytes", 4 * MiB, 4 * MiB),
    "id-field": ("max_line_bytes", 4 * MiB, 4 * MiB),
    "data-flood": ("max_event_bytes", 8 * MiB, 8 * MiB),
    "empty-data-flood": ("max_event_bytes", 8 * MiB, 8 * MiB),
    "tool-arguments": ("max_reply_chars", 8 * MiB, 8 * MiB),
    "tool-arguments-tiny": ("max_reply_chars", 8 * MiB, 8 * MiB),
    "content-tiny": ("max_reply_chars", 8 * MiB, 8 * MiB),
    "json-values": ("max_json_values", 250_000, 8 * MiB),  # the event it arrives in is the memory
}
MEMORY_FACTOR = 4  # peak RSS growth allowed, in multiples of the limit (plus a fixed 16 MiB)


@pytest.mark.parametrize("scenario", list(MEMORY_CASES))
def test_point3_memory_stays_within_a_small_multiple_of_the_limit(flood_server: FloodServer, scenario: str) -> None:
    limit_name, limit, bound = MEMORY_CASES[scenario]
    env = dict(os.environ, PYTHONPATH=str(ROOT), MALLOC_ARENA_MAX="2")
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.run(
        [sys.executable, "-m", "tests._limits_memory", flood_server.url, scenario, "{}", str(HEADROOM)],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["terminals"] == 1 and report["last"] == "error", report
    assert report["error_type"] == "StreamError", report
    assert f"the server exceeded Limits.{limit_name} ({limit} " in report["message"], report
    assert report["threads"] == []
    assert report["history_unchanged"]
    assert not report["key_leaked"]
    assert report["error_logs"] == []
    assert flood_server.finished[scenario].wait(10)  # the server saw the client hang up
    growth = report["peak_growth"]
    print(f"\nMEMORY {scenario}: peak RSS growth {growth / MiB:.1f} MiB, {limit_name} = {limit} "
          f"(bounding {bound / MiB:.0f} MiB), server sent {flood_server.sent[scenario] / MiB:.0f} MiB")
    assert growth < MEMORY_FACTOR * bound + 16 * MiB, report
    assert flood_server.sent[scenario] < FLOOD_CAP  # the client stopped the flood, not the server


def test_point3_a_flood_after_done_does_not_hold_the_turn(flood_server: FloodServer) -> None:
    """[DONE] ends the turn: what follows is drained up to 64 KiB, then the connection is closed."""
    with promptkit.Client(base_url=f"{flood_server.url}/done-then-flood", api_key=KEY,
                          timeout=promptkit.Timeout(idle=10, total=60)) as client:
        conv = client.conversation()
        before = set(worker_threads())
        stream = conv.send_stream("go")
        events = list(stream)
        stream.close(timeout=5)
    assert [e.type for e in events] == ["content", "done"]
    assert events[-1].final.content == "fine"
    assert flood_server.finished["done-then-flood"].wait(10)
    assert flood_server.sent["done-then-flood"] < FLOOD_CAP
    assert len(conv.messages) == 2
    assert [t.name for t in worker_threads() if t not in before] == []


# -- point 4: hostile JSON shapes are server errors ------------------------------------------------


def _body(*events: bytes) -> List[bytes]:
    return [GOOD_START, *events, DONE]


def _tool(call: Any) -> bytes:
    return sse(chunk({"tool_calls": [call]}))


SHAPES: Dict[str, Any] = {
    # nesting
    "deep-array": (_body(b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n"), "Limits.max_json_depth (64 levels)"),
    "deep-object-unclosed": (_body(b"data: " + b'{"a":' * 50_000 + b"\n\n"), "Limits.max_json_depth (64 levels)"),
    "deep-in-a-valid-chunk": (
        _body(sse(chunk({"content": "x", "meta": json.loads("[" * 65 + "]" * 65)}))), "Limits.max_json_depth"
    ),
    # numbers Python refuses or mangles
    "nine-to-a-million-digits": (_body(b'data: {"created": ' + b"9" * 1_000_000 + b"}\n\n"), "not JSON"),
    "usage-infinity": (_body(b'data: {"choices": [], "usage": {"prompt_tokens": 1e999999}}\n\n'),
                       "usage.prompt_tokens is float inf"),
    "usage-nan": (_body(b'data: {"choices": [], "usage": {"completion_tokens": NaN}}\n\n'),
                  "usage.completion_tokens is float nan"),
    "usage-string": (_body(sse({"choices": [], "usage": {"prompt_tokens": "12"}})), "usage.prompt_tokens is the string '12'"),
    "usage-negative": (_body(sse({"choices": [], "usage": {"total_tokens": -5}})), "usage.total_tokens is int -5"),
    "usage-huge": (_body(sse({"choices": [], "usage": {"total_tokens": 10**4000}})), "usage.total_tokens is int"),
    "usage-list": (_body(sse({"choices": [], "usage": [1, 2]})), "usage is a list of 2 items"),
    "usage-details-string": (
        _body(sse({"choices": [], "usage": {"prompt_tokens_details": {"cached_tokens": "x"}}})),
        "usage.prompt_tokens_details.cached_tokens",
    ),
    # chunks that are not objects
    "chunk-list": (_body(b"data: []\n\n"), "expected a JSON object, got list"),
    "chunk-string": (_body(b'data: "str"\n\n'), "expected a JSON object, got str"),
    "chunk-null": (_body(b"data: null\n\n"), "expected a JSON object, got NoneType"),
    "chunk-number": (_body(b"data: 42\n\n"), "expected a JSON object, got int"),
    # choices
    "choices-dict": (_body(sse({"choices": {"0": {"delta": {}}}})), "'choices' is an object of 1 keys, expected a list"),
    "choices-string": (_body(sse({"choices": "abc"})), "'choices' is the string 'abc', expected a list"),
    "choice-not-object": (_body(sse({"choices": [7]})), "a choice is int 7, expected an object"),
    "choice-index-list": (_body(sse(chunk({"content": "x"}, index=[]))), "a choice's index is a list of 0 items"),
    "choice-index-string": (_body(sse(chunk({"content": "x"}, index="0"))), "a choice's index is the string '0'"),
    "choice-index-negative": (_body(sse(chunk({"content": "x"}, index=-1))), "a choice's index is int -1"),
    "choice-index-bool": (_body(sse(chunk({"content": "x"}, index=True))), "a choice's index is bool True"),
    "never-choice-0": ([sse(chunk({"content": "x"}, index=1)), sse(chunk({}, "stop", index=1)), DONE],
                       "the stream carried no choice 0, only choices [1]"),
    "no-choices-at-all": ([sse({"id": "c", "choices": []}), DONE], "without any choice"),
    # delta and its fields
    "delta-list": (_body(sse(chunk(["content", "x"]))), "a choice's delta is a list of 2 items, expected an object"),
    "delta-string": (_body(sse(chunk("x"))), "a choice's delta is the string 'x'"),
    "content-number": (_body(sse(chunk({"content": 5}))), "delta.content is int 5, expected a string"),
    "content-object": (_body(sse(chunk({"content": {"text": "x"}}))), "delta.content is an object"),
    "reasoning-number": (_body(sse(chunk({"reasoning_content": 1.5}))), "delta.reasoning_content is float 1.5"),
    "refusal-list": (_body(sse(chunk({"refusal": ["no"]}))), "delta.refusal is a list"),
    "finish-reason-number": (_body(sse(chunk({}, finish=1))), "finish_reason is int 1, expected a string"),
    "finish-reason-object": (_body(sse(chunk({}, finish={"type": "stop"}))), "finish_reason is an object of 1 keys"),
    "finish-reason-true": (_body(sse(chunk({}, finish=True))), "finish_reason is bool True"),
    # tool calls
    "tool-calls-dict": (_body(sse(chunk({"tool_calls": {"index": 0}}))), "delta.tool_calls is an object"),
    "tool-calls-string": (_body(sse(chunk({"tool_calls": "call"}))), "delta.tool_calls is the string 'call'"),
    "tool-call-not-object": (_body(_tool(3)), "a tool_calls entry is int 3"),
    "tool-index-string": (_body(_tool({"index": "0", "id": "a"})), "a tool call's index is the string '0'"),
    "tool-index-negative": (_body(_tool({"index": -3, "id": "a"})), "a tool call's index is int -3"),
    "tool-index-list": (_body(_tool({"index": [0], "id": "a"})), "a tool call's index is a list of 1 items"),
    "tool-index-float": (_body(_tool({"index": 0.5, "id": "a"})), "a tool call's index is float 0.5"),
    "tool-id-number": (_body(_tool({"index": 0, "id": 12})), "a tool call's id is int 12"),
    "tool-function-string": (_body(_tool({"index": 0, "id": "a", "function": "f()"})), "a tool call's function is the string"),
    "tool-name-list": (_body(_tool({"index": 0, "id": "a", "function": {"name": ["f"]}})), "function.name is a list"),
    "tool-arguments-number": (
        _body(_tool({"index": 0, "id": "a", "function": {"name": "f", "arguments": 42}})),
        "a tool call's function.arguments is int 42, expected a string",
    ),
    "tool-arguments-object": (
        _body(_tool({"index": 0, "id": "a", "function": {"name": "f", "arguments": {"x": 1}}})),
        "function.arguments is an object",
    ),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_point4_hostile_json_shapes_are_stream_errors(server: MockServer, logs: pytest.LogCaptureFixture, shape: str) -> None:
    body, message = SHAPES[shape]
    error = hostile_turn(server, logs, body)
    assert type(error) is promptkit.StreamError
    assert message in str(error), str(error)
    assert len(str(error)) < 600  # the message describes the value; it never quotes megabytes of it


def test_point4_harmless_oddities_still_succeed(server: MockServer) -> None:
    """Odd but well-typed values are not errors: null fields, a huge index, an infinite timestamp."""
    body = [
        b'data: {"id": "c", "created": 1e999999, "model": "m", "choices": [{"index": 0, "delta": '
        b'{"role": "assistant", "content": null, "tool_calls": null}, "finish_reason": null}], "usage": null}\n\n',
        sse(chunk({"content": "ok"}, index=None)),
        _tool({"index": 10**9, "id": "far", "function": {"name": "f", "arguments": "{}"}}),
        sse(chunk({"content": [{"type": "thinking", "thinking": []}]})),  # Mistral's thinking parts are skipped
        sse(chunk({}, "tool_calls")),
        sse({"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                                                 "prompt_tokens_details": None}}),
        DONE,
    ]
    with promptkit.Client(base_url=server.url, api_key=KEY) as client:
        server.enqueue(MockReply.raw(body))
        response = client.conversation().send("go")
    assert response.content == "ok"
    assert [(c.id, c.arguments) for c in response.tool_calls] == [("far", {})]
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (3, 5)


def test_point4_tool_calls_without_index_assemble_in_linear_time(server: MockServer) -> None:
    """Thousands of calls identified only by id, continued by id and by position, against a real server.

    The assembly is linear (dicts by id and index; see test_accumulator for the
    operation count); here the whole path is exercised at a size where a
    quadratic search would be millions of comparisons.
    """
    n = 3000
    body = []
    for i in range(n):
        body.append(_tool({"id": f"call_{i}", "function": {"name": "f", "arguments": '{"i": '}}))
        body.append(_tool({"function": {"arguments": f"{i}"}}))  # neither index nor id: the last open call
        body.append(_tool({"id": f"call_{i}", "function": {"arguments": "}"}}))  # an id seen before: that call
    body += [sse(chunk({}, "tool_calls")), DONE]
    payload = [b"".join(body)]
    with promptkit.Client(base_url=server.url, api_key=KEY, limits=promptkit.Limits(max_tool_calls=n)) as client:
        server.enqueue(MockReply.raw(payload))
        response = client.conversation().send("go")
    assert len(response.tool_calls) == n
    assert all(c.id == f"call_{i}" and c.arguments == {"i": i} for i, c in enumerate(response.tool_calls))
