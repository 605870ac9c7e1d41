"""Tests for promptkit.testing: the embedded OpenAI-compatible mock server.

These talk to the server with http.client and raw sockets only, so they do not
depend on promptkit's own HTTP client. Nothing here sleeps: ordering is
established with blocking reads, Events and server.close().
"""

from __future__ import annotations

import http.client
import json
import pathlib
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from promptkit.testing import MockReply, MockServer
from tests._mock_wire import http_chunks, open_stream, port_of, raw_request, read_until, read_until_eof

RECORDINGS = pathlib.Path(__file__).parent / "data" / "recordings"
MESSAGES = [{"role": "user", "content": "Say hello."}]


# --------------------------------------------------------------------------- helpers


def mock_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("promptkit")]


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv
    assert mock_threads() == []


def payload(stream: bool = True, usage: bool = False, messages: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": "gpt-4o-mini", "messages": messages or MESSAGES}
    if stream:
        body["stream"] = True
    if usage:
        body["stream_options"] = {"include_usage": True}
    return body


def post(srv: MockServer, body: Dict[str, Any], headers: Optional[Dict[str, str]] = None,
         conn: Optional[http.client.HTTPConnection] = None) -> Tuple[http.client.HTTPResponse, bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port_of(srv), timeout=10)
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Content-Type": "application/json", **(headers or {})})
    resp = conn.getresponse()
    data = resp.read()
    if own:
        conn.close()
    return resp, data


def events(body: bytes) -> List[str]:
    """The data payloads of an SSE body (comments and event names dropped)."""
    out = []
    for block in body.decode("utf-8").split("\n\n"):
        data = [line[6:] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            out.append("\n".join(data))
    return out


def chunks(body: bytes) -> List[Dict[str, Any]]:
    return [json.loads(e) for e in events(body) if e != "[DONE]"]


def read_event(resp: http.client.HTTPResponse) -> str:
    """Read one SSE event (up to its blank line) from a streaming response; blocks until it arrives."""
    lines = []
    while True:
        line = resp.readline()
        assert line, "body ended before the event was complete"
        if line in (b"\n", b"\r\n"):
            return "".join(lines)
        lines.append(line.decode())


# --------------------------------------------------------------------------- streaming text


def test_text_stream_shape_without_usage(server: MockServer) -> None:
    server.enqueue(MockReply.text("Hello there, wonderful world!"))
    resp, body = post(server, payload())
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("x-request-id")
    assert events(body)[-1] == "[DONE]"
    parsed = chunks(body)
    for c in parsed:
        assert c["object"] == "chat.completion.chunk"
        assert c["id"].startswith("chatcmpl-") and c["id"] == parsed[0]["id"]
        assert c["model"] == "gpt-4o-mini" and isinstance(c["created"], int)
        assert "usage" not in c  # not requested: OpenAI sends none
        assert len(c["choices"]) == 1 and c["choices"][0]["index"] == 0
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert parsed[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    middle = parsed[1:-1]
    assert all(c["choices"][0]["finish_reason"] is None for c in middle)
    assert "".join(c["choices"][0]["delta"]["content"] for c in middle) == "Hello there, wonderful world!"
    assert [c["choices"][0]["delta"]["content"] for c in middle][:2] == ["Hello", " there,"]
    assert len(middle) >= 5  # "wonderful" is long enough to be split into token-ish pieces


def test_text_stream_usage_only_when_requested(server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three"), MockReply.text("one two three", usage=None))
    _, body = post(server, payload(usage=True))
    parsed = chunks(body)
    last = parsed[-1]
    assert last["choices"] == []
    usage = last["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert all(c["usage"] is None for c in parsed[:-1])  # like OpenAI once include_usage is set
    assert events(body)[-1] == "[DONE]"
    _, body = post(server, payload(usage=True))  # usage disabled on the reply: no usage chunk at all
    assert all(c["choices"] for c in chunks(body))


def test_text_options_reasoning_chunk_size_usage_dict_and_no_done(server: MockServer) -> None:
    server.enqueue(MockReply.text("abcdefg", chunk_size=3, reasoning="think first", model="other",
                                  usage={"prompt_tokens": 100}, include_done=False, finish_reason="length",
                                  keepalive_comments=2, headers={"X-Extra": "1"}))
    resp, body = post(server, payload(usage=True))
    assert resp.getheader("X-Extra") == "1"
    assert body.startswith(b": keep-alive\n\n: keep-alive\n\ndata: ")
    assert events(body)[-1] != "[DONE]"
    parsed = chunks(body)
    deltas = [c["choices"][0]["delta"] for c in parsed if c["choices"]]
    assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d] == ["think", " first"]
    assert [d["content"] for d in deltas if d.get("content")] == ["abc", "def", "g"]
    assert parsed[-2]["choices"][0]["finish_reason"] == "length"
    assert parsed[-1]["usage"]["prompt_tokens"] == 100
    assert parsed[-1]["usage"]["total_tokens"] == 100 + 5
    assert parsed[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 2
    assert {c["model"] for c in parsed} == {"other"}


# --------------------------------------------------------------------------- tool calls


def test_tool_call_deltas_and_reassembly(server: MockServer) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": "call_abc"},
             {"name": "lookup", "arguments": '{"q": "x"}'}]
    server.enqueue(MockReply.tool_calls(calls, content="Let me check.", split_arguments=5))
    _, body = post(server, payload())
    parsed = chunks(body)
    assert parsed[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert parsed[-1]["choices"][0]["finish_reason"] == "tool_calls"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed)
    assert text == "Let me check."
    tool_deltas = [tc for c in parsed for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assembled: Dict[int, Dict[str, Any]] = {}
    for tc in tool_deltas:
        if tc["index"] not in assembled:  # the first delta of a call carries everything but the arguments
            assert set(tc) == {"index", "id", "type", "function"}
            assert tc["type"] == "function" and tc["function"]["arguments"] == ""
            assembled[tc["index"]] = {"id": tc["id"], "name": tc["function"]["name"], "arguments": ""}
        else:
            assert set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"}
            assert 0 < len(tc["function"]["arguments"]) <= 5
            assembled[tc["index"]]["arguments"] += tc["function"]["arguments"]
    assert assembled[0]["id"] == "call_abc" and assembled[0]["name"] == "get_weather"
    assert json.loads(assembled[0]["arguments"]) == {"city": "Paris", "unit": "celsius"}
    assert assembled[1]["id"].startswith("call_") and assembled[1]["arguments"] == '{"q": "x"}'


def test_non_streaming_text_and_tool_calls(server: MockServer) -> None:
    server.enqueue(MockReply.text("Plain answer."),
                   MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}, "id": "call_1"}]))
    resp, body = post(server, payload(stream=False))
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Content-Length") == str(len(body))
    data = json.loads(body)
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"]["content"] == "Plain answer."
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    _, body = post(server, payload(stream=False))
    choice = json.loads(body)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]


# --------------------------------------------------------------------------- errors and whole replies


def test_error_reply_status_body_and_headers(server: MockServer) -> None:
    server.enqueue(MockReply.error(429, "slow down", headers={"Retry-After": "0"}),
                   MockReply.error(503, "overloaded", type="server_error", code="busy"))
    resp, body = post(server, payload())
    assert resp.status == 429
    assert resp.getheader("Retry-After") == "0"
    assert resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("x-request-id")
    error = json.loads(body)["error"]
    assert error["message"] == "slow down" and error["type"] and "code" in error
    resp, body = post(server, payload())
    assert resp.status == 503
    assert json.loads(body)["error"] == {"message": "overloaded", "type": "server_error", "param": None,
                                         "code": "busy"}


def test_error_reply_raw_body_and_wrong_content_type(server: MockServer) -> None:
    server.enqueue(MockReply.error(200, "", body="<html><body>Gateway</body></html>"),
                   MockReply.error(502, "", body=b"bad gateway", content_type="text/plain"))
    resp, body = post(server, payload())
    assert resp.status == 200 and resp.getheader("Content-Type").startswith("text/html")
    assert body == b"<html><body>Gateway</body></html>"
    resp, body = post(server, payload())
    assert (resp.status, resp.getheader("Content-Type"), body) == (502, "text/plain", b"bad gateway")


def test_json_reply(server: MockServer) -> None:
    server.enqueue(MockReply.json({"hello": "world"}, status=201))
    resp, body = post(server, payload(stream=False))
    assert resp.status == 201 and json.loads(body) == {"hello": "world"}


def test_api_key_required(server: MockServer) -> None:
    with MockServer(api_key="sk-test") as secured:
        secured.enqueue(MockReply.text("ok"))
        resp, body = post(secured, payload())
        assert resp.status == 401
        error = json.loads(body)["error"]
        assert set(error) >= {"message", "type", "code"} and error["code"] == "invalid_api_key"
        resp, body = post(secured, payload(), {"Authorization": "Bearer wrong"})
        assert resp.status == 401
        resp, body = post(secured, payload(), {"Authorization": "Bearer sk-test"})
        assert resp.status == 200 and "".join(c["choices"][0]["delta"].get("content", "")
                                              for c in chunks(body)) == "ok"
        assert len(secured.requests) == 3  # rejected requests are recorded too, and consumed no reply


def test_unknown_path_is_404(server: MockServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    conn.request("POST", "/v1/completions", "{}")
    resp = conn.getresponse()
    assert resp.status == 404 and "error" in json.loads(resp.read())
    conn.close()


# --------------------------------------------------------------------------- framing and connections


def test_close_delimited_framing() -> None:
    with MockServer(framing="close") as srv:
        srv.enqueue(MockReply.text("closing time"))
        sock = raw_request(srv, payload())
        data = read_until_eof(sock)  # the body ends only because the server closes the socket
        sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    headers = head.decode().lower()
    assert headers.startswith("http/1.1 200")
    assert "connection: close" in headers
    assert "content-length" not in headers and "transfer-encoding" not in headers
    assert body.endswith(b"data: [DONE]\n\n")
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(body)) == "closing time"


def test_length_framing_and_keep_alive_reuse(server: MockServer) -> None:
    server.enqueue(MockReply.text("first", framing="length"), MockReply.text("second"))
    conn = http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=10)
    resp, body = post(server, payload(), conn=conn)
    assert resp.getheader("Content-Length") == str(len(body)) and events(body)[-1] == "[DONE]"
    resp, body = post(server, payload(), conn=conn)
    assert resp.getheader("Transfer-Encoding") == "chunked" and events(body)[-1] == "[DONE]"
    resp, body = post(server, payload(stream=False), conn=conn)
    assert resp.status == 200
    conn.close()
    assert server.connections_opened == 1
    assert len(server.requests) == 3


def test_requests_are_recorded(server: MockServer) -> None:
    body = payload(usage=True)
    post(server, body, {"Authorization": "Bearer abc", "X-Custom": "yes"})
    assert server.wait_for_requests(1, timeout=5)
    assert not server.wait_for_requests(2, timeout=0.01)
    [req] = server.requests
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.body == body and json.loads(req.raw) == body
    assert req.headers["authorization"] == "Bearer abc"
    assert req.headers["AUTHORIZATION"] == "Bearer abc" and "x-CUSTOM" in req.headers
    assert req.headers.get("content-type") == "application/json"


def test_connection_threads_are_named(server: MockServer) -> None:
    server.enqueue(MockReply.stall())
    sock = raw_request(server, payload())
    assert server.wait_for_requests(1)
    assert any(name.startswith("promptkit-mock-conn") for name in mock_threads())
    sock.close()


# --------------------------------------------------------------------------- timing: flushed events, stalls


def test_first_event_arrives_before_the_reply_is_finished(server: MockServer) -> None:
    srv = server  # closed explicitly below; the fixture's close() is then a no-op
    srv.enqueue(MockReply.text("never sent in full", first_delay=60))
    conn, resp = open_stream(srv, payload())  # headers were flushed although the reply is still waiting
    first = json.loads(read_event(resp)[6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    srv.close(timeout=5)  # releases the 60 s first_delay: had it waited, its thread would still be alive below
    with pytest.raises((http.client.IncompleteRead, OSError)):
        resp.read()  # the body was cut: no chunked terminator
    conn.close()
    assert mock_threads() == []


def test_delay_between_deltas_streams_incrementally(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("alpha beta gamma", delay=60))
    conn, resp = open_stream(srv, payload())
    read_event(resp)  # role chunk
    assert json.loads(read_event(resp)[6:])["choices"][0]["delta"] == {"content": "alpha"}
    srv.close()
    conn.close()
    assert mock_threads() == []


@pytest.mark.parametrize("before_headers", [False, True])
def test_stall_is_released_by_close(server: MockServer, before_headers: bool) -> None:
    srv = server
    srv.enqueue(MockReply.stall(after_text="partial", before_headers=before_headers))
    sock = raw_request(srv, payload())
    assert srv.wait_for_requests(1)
    if not before_headers:
        received = b""
        while b'"partial"' not in received:  # headers, role chunk and after_text were flushed
            piece = sock.recv(65536)
            assert piece
            received += piece
    srv.close(timeout=5)  # the stall never ends by itself: every thread gone means close released it
    assert mock_threads() == []
    assert srv.disconnects == 0  # the server closed, not the client
    read_until_eof(sock)  # the server shut the connection down
    sock.close()


def test_stall_then_client_disconnect_sets_disconnected(server: MockServer) -> None:
    server.enqueue(MockReply.stall())
    sock = raw_request(server, payload())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    assert server.disconnected.wait(5)
    assert server.disconnects == 1


def test_disconnect_mid_stream_is_quiet_and_counted(server: MockServer, capsys: pytest.CaptureFixture[str]) -> None:
    server.enqueue(MockReply.text(" ".join(["word"] * 2000), delay=0.001))
    conn, resp = open_stream(server, payload())
    read_event(resp)
    read_event(resp)
    resp.close()  # drops the last reference to the socket: the client is gone mid-stream
    conn.close()
    assert server.disconnected.wait(5)
    assert server.disconnects == 1
    # The connection is still usable afterwards for new clients.
    server.enqueue(MockReply.text("still alive"))
    resp, body = post(server, payload(stream=False))
    assert json.loads(body)["choices"][0]["message"]["content"] == "still alive"
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "Traceback" not in captured.out


def test_disconnect_during_a_long_delay_is_seen_at_once(server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three", delay=60))
    conn, resp = open_stream(server, payload())
    read_event(resp)
    read_event(resp)  # "one"; the server now waits 60 s before "two"
    resp.close()
    conn.close()
    # The next delta is 60 s away: seeing the hang-up within 10 s means the pause watches the socket.
    assert server.disconnected.wait(10)


def test_reset_gives_a_connection_error(server: MockServer) -> None:
    server.enqueue(MockReply.reset(after_text="partial"))
    sock = raw_request(server, payload())
    with pytest.raises(ConnectionResetError):
        read_until_eof(sock)
    sock.close()


# --------------------------------------------------------------------------- other failure modes


def test_in_band_error_and_event_name(server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error("model overloaded", after_text="Hi", code="overloaded", event="error"))
    resp, body = post(server, payload())
    assert resp.status == 200
    assert b"event: error\ndata: " in body
    last = json.loads(events(body)[-1])
    assert last["error"]["message"] == "model overloaded" and last["error"]["code"] == "overloaded"
    assert "[DONE]" not in events(body)
    assert chunks(body)[1]["choices"][0]["delta"] == {"content": "Hi"}


def test_truncate_ends_cleanly_without_finish_or_done(server: MockServer) -> None:
    server.enqueue(MockReply.truncate(after_text="half a sen"))
    resp, body = post(server, payload())  # a clean chunked end: read() does not raise
    parsed = chunks(body)
    assert "[DONE]" not in events(body)
    assert all(c["choices"][0]["finish_reason"] is None for c in parsed)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in parsed) == "half a sen"


def test_failure_replies_stream_their_reasoning_before_the_text(server: MockServer) -> None:
    server.enqueue(MockReply.truncate(after_text="half", reasoning="think first"),
                   MockReply.in_band_error("overloaded", reasoning="hmm"))
    _, body = post(server, payload())
    assert [c["choices"][0]["delta"] for c in chunks(body)] == [
        {"role": "assistant", "content": ""}, {"reasoning_content": "think"}, {"reasoning_content": " first"},
        {"content": "half"}]
    assert "[DONE]" not in events(body)
    _, body = post(server, payload())
    *deltas, error = chunks(body)
    assert [c["choices"][0]["delta"] for c in deltas] == [{"role": "assistant", "content": ""}, {"reasoning_content": "hmm"}]
    assert error["error"]["message"] == "overloaded"


def test_keepalive_only(server: MockServer) -> None:
    server.enqueue(MockReply.keepalive_only(0.05, interval=0.01))
    resp, body = post(server, payload())
    assert resp.status == 200 and events(body) == []
    assert body.count(b": keep-alive\n\n") == 5 and body.replace(b": keep-alive\n\n", b"") == b""


def test_raw_chunks_are_separate_writes(server: MockServer) -> None:
    euro = "€".encode()
    server.enqueue(MockReply.raw([b'data: {"x": "' + euro[:1], euro[1:] + b'"}\r\n\r\n', b"data: [DONE]\r\n\r\n"]))
    sock = raw_request(server, payload())
    data = read_until(sock, b"0\r\n\r\n")
    sock.close()
    body = data.partition(b"\r\n\r\n")[2]
    assert body.startswith(b"E\r\ndata: {\"x\": \"\xe2\r\n")  # one HTTP chunk per item, split mid-character


def test_sse_file_replay(server: MockServer) -> None:
    recording = sorted(RECORDINGS.glob("*.sse"))[0]
    server.enqueue(MockReply.sse_file(recording))
    resp, body = post(server, payload())
    assert body == recording.read_bytes()


# --------------------------------------------------------------------------- default reply


def story(srv: MockServer, messages: List[Dict[str, Any]]) -> str:
    _, body = post(srv, payload(messages=messages))
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(body) if c["choices"])


def test_default_reply_is_a_deterministic_story_that_varies(server: MockServer) -> None:
    robot = [{"role": "user", "content": "Tell me a short story about a robot."}]
    first = story(server, robot)
    assert "a robot" in first
    assert 2 <= first.count(". ") + 1 <= 4 and first.endswith(".")
    assert story(server, robot) == first  # deterministic
    dragon = [{"role": "user", "content": "Tell me a short story about a dragon."}]
    assert "a dragon" in story(server, dragon)
    second_turn = robot + [{"role": "assistant", "content": first}, {"role": "user", "content": "Another one?"}]
    assert story(server, second_turn) != first
    with MockServer() as other:  # the same conversation gets the same reply from any server
        assert story(other, robot) == first


def test_close_is_idempotent_and_server_can_be_unused() -> None:
    srv = MockServer()
    assert srv.url.startswith("http://127.0.0.1:") and srv.url.endswith("/v1")
    srv.close()
    srv.close()
    with pytest.raises(RuntimeError):
        srv.start()
    assert mock_threads() == []


# --------------------------------------------------------------------------- benchmark support: responder, bulk


def test_responder_chooses_the_reply_when_the_queue_is_empty() -> None:
    seen: List[Any] = []

    def responder(body: Dict[str, Any]) -> Optional[MockReply]:
        seen.append(body)
        text = body["messages"][-1]["content"]
        if text == "fail":
            raise ValueError("no scenario")
        return None if text == "story" else MockReply.text(text.upper())

    with MockServer(responder=responder) as srv:
        srv.enqueue(MockReply.text("queued first"))
        for message, expected in [("hi there", "queued first"), ("hi there", "HI THERE")]:
            _, body = post(srv, payload(messages=[{"role": "user", "content": message}]))
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(body)) == expected
        _, body = post(srv, payload(messages=[{"role": "user", "content": "story"}]))
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks(body)).endswith(".")
        resp, body = post(srv, payload(messages=[{"role": "user", "content": "fail"}]))
        assert resp.status == 500 and "no scenario" in json.loads(body)["error"]["message"]
    assert [b["messages"][-1]["content"] for b in seen] == ["hi there", "story", "fail"]  # not for the queued reply


def test_bulk_reply_frames_every_event_as_its_own_chunk() -> None:
    with MockServer() as srv:
        bodies = []
        for bulk in (False, True):
            srv.enqueue(MockReply.text("abcd" * 50, chunk_size=4, bulk=bulk))
            sock = raw_request(srv, payload(usage=True))
            data = read_until(sock, b"\r\n0\r\n\r\n")
            sock.close()
            bodies.append(http_chunks(data.partition(b"\r\n\r\n")[2]))
    for pieces in bodies:  # the same event stream either way: one HTTP chunk per SSE event
        assert all(p.endswith(b"\n\n") and p.count(b"\n\n") == 1 for p in pieces)
        parsed = [json.loads(p[6:]) for p in pieces if p != b"data: [DONE]\n\n"]
        assert [c["choices"][0]["delta"].get("content") for c in parsed if c["choices"]][1:51] == ["abcd"] * 50
        assert parsed[-1]["usage"]["completion_tokens"] == 50
    assert len(bodies[0]) == len(bodies[1]) == 54  # role, 50 deltas, finish, usage, [DONE]


def test_bulk_reply_still_pauses_for_first_delay(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("abcd" * 10, chunk_size=4, first_delay=60, bulk=True))
    conn, resp = open_stream(srv, payload())
    first = json.loads(read_event(resp)[6:])  # the role chunk went before the pause
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    srv.close()  # releases the pause: the deltas were never sent
    with pytest.raises((http.client.IncompleteRead, OSError)):
        resp.read()
    conn.close()


def test_wait_for_disconnects(server: MockServer) -> None:
    server.enqueue(MockReply.stall(), MockReply.stall())
    assert not server.wait_for_disconnects(1, timeout=0.01)
    for n in (1, 2):
        sock = raw_request(server, payload())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.close()
        assert server.wait_for_disconnects(n)
    assert server.disconnects == 2
    assert not server.wait_for_disconnects(3, timeout=0.01)
