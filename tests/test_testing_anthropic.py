"""Tests for promptkit.testing on Anthropic's Messages endpoint (``POST /v1/messages``).

The wire format is read with http.client, raw sockets and a small SSE split, and compared with
Anthropic's real streams (the key sets below come from the shared corpus of recordings); then
the official anthropic SDK reads the mock as an independent client (its own accumulator
assembles the message). Nothing sleeps: ordering comes from blocking reads and server.close().
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from promptkit.testing import MockReply, MockServer
from tests import _mock_wire as wire
from tests._mock_wire import CHAT, MESSAGES, RESPONSES, Event, check_keys, open_stream, only, parse, read_event, types

try:
    import anthropic
except ImportError:  # the SDK needs Python 3.10; the wire tests run without it
    anthropic = None

sdk_only = pytest.mark.skipif(anthropic is None, reason="the official anthropic SDK: pip install -e '.[test]'")
SAY_HELLO = [{"role": "user", "content": "Say hello."}]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def request(text: str = "Say hello.", stream: bool = True, **extra: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": "claude-sonnet-4-5", "max_tokens": 1024,
                            "messages": [{"role": "user", "content": text}], **extra}
    if stream:
        body["stream"] = True
    return body


def post(srv: MockServer, body: Dict[str, Any], path: str = MESSAGES, method: str = "POST",
         headers: Optional[Dict[str, str]] = None) -> Tuple[http.client.HTTPResponse, bytes]:
    return wire.post(srv, body, path, method, headers)


def stream(srv: MockServer, body: Optional[Dict[str, Any]] = None) -> List[Event]:
    """POST a streamed request and check what every Anthropic stream has in common."""
    return exchange(srv, body)[0]


def exchange(srv: MockServer, body: Optional[Dict[str, Any]] = None) -> Tuple[List[Event], bytes]:
    """The events of a streamed request (checked as :func:`stream` says) and the body they came in."""
    resp, data = post(srv, body or request())
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert resp.getheader("request-id") == resp.getheader("x-request-id")  # Anthropic's name for it
    assert b"[DONE]" not in data  # Anthropic has no [DONE] line
    events = parse(data)
    for name, payload in events:
        assert payload["type"] == name
    assert [name for name, _ in events].count("ping") == 1
    return events, data


def deltas(events: List[Event], kind: str, index: Optional[int] = None) -> List[str]:
    """The pieces of the deltas of one kind (``text_delta``, ...), of one block when ``index`` is given."""
    field = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}[kind]
    return [p["delta"][field] for n, p in events if n == "content_block_delta" and p["delta"]["type"] == kind
            and index in (None, p["index"])]


def block(n_deltas: int) -> List[str]:
    return ["content_block_start"] + ["content_block_delta"] * n_deltas + ["content_block_stop"]


def chat_usage(srv: MockServer, messages: List[Dict[str, Any]]) -> Dict[str, Any]:
    _, data = post(srv, {"model": "m", "messages": messages, "stream": True,
                         "stream_options": {"include_usage": True}}, path=CHAT)
    usage: Dict[str, Any] = json.loads(data.decode().split("data: ")[-2])["usage"]
    return usage


END = ["message_delta", "message_stop"]


# --------------------------------------------------------------------------- text


def test_text_stream_events_and_payloads(server: MockServer) -> None:
    server.enqueue(MockReply.text("Hello there, wonderful world!"))
    events, data = exchange(server)
    pieces = deltas(events, "text_delta")
    assert "".join(pieces) == "Hello there, wonderful world!" and pieces[:2] == ["Hello", " there,"]
    assert types(events) == ["message_start", "content_block_start", "ping"] + [
        "content_block_delta"] * len(pieces) + ["content_block_stop"] + END
    start = only(events, "message_start")["message"]
    assert start["id"].startswith("msg_mock")
    prompt = start["usage"]["input_tokens"]
    assert start == {"model": "claude-sonnet-4-5", "id": start["id"], "type": "message", "role": "assistant",
                     "content": [], "stop_reason": None, "stop_sequence": None,
                     "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                               "cache_read_input_tokens": 0, "output_tokens": 1}}
    assert prompt == chat_usage(server, SAY_HELLO)["prompt_tokens"] > 0
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[3][1] == {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                                                 "text": "Hello"}}
    assert only(events, "content_block_stop") == {"type": "content_block_stop", "index": 0}
    assert only(events, "message_delta") == {
        "type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": len(pieces)}}
    assert only(events, "message_stop") == {"type": "message_stop"}
    # As Anthropic sends them: the ping in its own spacing, the other data lines padded before their last brace.
    assert data.count(b'event: ping\ndata: {"type": "ping"}\n\n') == 1
    lines = [line for line in data.split(b"\n") if line.startswith(b"data: ") and b'"ping"' not in line]
    assert any(line.endswith(b" }") for line in lines) and any(line.endswith(b"}}") for line in lines)
    assert not any(b'": ' in line or b'", ' in line for line in lines)  # compact JSON otherwise


def test_text_options_chunk_size_model_headers_and_keepalive(server: MockServer) -> None:
    server.enqueue(MockReply.text("abcdefg", chunk_size=3, model="other", keepalive_comments=2, include_done=True,
                                  headers={"X-Extra": "1", "Request-Id": "req_given"}))
    resp, data = post(server, request())
    assert resp.getheader("X-Extra") == "1" and resp.getheader("request-id") == "req_given"
    assert data.startswith(b": keep-alive\n\n: keep-alive\n\nevent: message_start\n")
    assert b"[DONE]" not in data  # include_done is a chat-completions thing
    events = parse(data)
    assert deltas(events, "text_delta") == ["abc", "def", "g"]
    assert only(events, "message_start")["message"]["model"] == "other"


@pytest.mark.parametrize("override, start, end", [
    # chat names: Anthropic's input_tokens leaves out the cached tokens
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 40}, "completion_tokens": 7},
     {"input_tokens": 60, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 0, "output_tokens": 1},
     {"input_tokens": 60, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 0, "output_tokens": 7}),
    # Anthropic names pass through, extra fields too (as in the corpus' cache_read recording)
    ({"input_tokens": 11, "cache_read_input_tokens": 1031, "cache_creation_input_tokens": 5,
      "service_tier": "standard"},
     {"input_tokens": 11, "cache_read_input_tokens": 1031, "cache_creation_input_tokens": 5, "output_tokens": 1,
      "service_tier": "standard"},
     {"input_tokens": 11, "cache_read_input_tokens": 1031, "cache_creation_input_tokens": 5, "output_tokens": 3,
      "service_tier": "standard"}),
    ({"output_tokens": 50, "total_tokens": 1},
     {"output_tokens": 1}, {"output_tokens": 50}),
])
def test_usage_overrides_in_chat_or_anthropic_names(server: MockServer, override: Dict[str, Any],
                                                    start: Dict[str, Any], end: Dict[str, Any]) -> None:
    server.enqueue(MockReply.text("one two three", usage=override))
    events = stream(server)
    for usage, expected in ((only(events, "message_start")["message"]["usage"], start),
                            (only(events, "message_delta")["usage"], end)):
        assert {k: usage[k] for k in expected} == expected
        assert not {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details"} & set(usage)


def test_usage_none_and_the_same_counts_as_chat(server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three", usage=None))
    events = stream(server)
    assert "usage" not in only(events, "message_start")["message"] and "usage" not in only(events, "message_delta")
    # The same reply to the same conversation reports the same usage on every endpoint.
    reply = MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}], content="Checking.", reasoning="hm ok")
    server.enqueue(reply, reply)
    usage = only(stream(server), "message_delta")["usage"]
    chat = chat_usage(server, SAY_HELLO)
    assert (usage["input_tokens"], usage["output_tokens"]) == (chat["prompt_tokens"], chat["completion_tokens"])
    assert usage["output_tokens_details"] == {"thinking_tokens": chat["completion_tokens_details"]["reasoning_tokens"]}
    assert usage["output_tokens_details"] == {"thinking_tokens": 2}


# --------------------------------------------------------------------------- thinking


def test_thinking_block_before_the_text(server: MockServer) -> None:
    server.enqueue(MockReply.text("Four.", reasoning="Two plus two is four."))
    events = stream(server)
    thinking = deltas(events, "thinking_delta")
    assert "".join(thinking) == "Two plus two is four." and len(thinking) == 5
    assert types(events) == ["message_start", "content_block_start", "ping"] + block(6)[1:] + block(1) + END
    assert events[1][1] == {"type": "content_block_start", "index": 0,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    signature = events[8][1]
    assert signature["index"] == 0 and signature["delta"]["type"] == "signature_delta"  # one, last in the block
    assert isinstance(signature["delta"]["signature"], str) and len(signature["delta"]["signature"]) > 40
    assert [p["index"] for n, p in events if n.startswith("content_block")] == [0] * 8 + [1] * 3
    assert events[10][1]["content_block"] == {"type": "text", "text": ""}
    usage = only(events, "message_delta")["usage"]
    assert usage["output_tokens"] == 6 and usage["output_tokens_details"] == {"thinking_tokens": 5}


# --------------------------------------------------------------------------- tool calls


def test_tool_use_blocks(server: MockServer) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": "toolu_abc"},
             {"name": "lookup", "arguments": '{"q": "x"}'}, {"name": "now", "arguments": {}}]
    server.enqueue(MockReply.tool_calls(calls, content="Let me check.", split_arguments=5))
    events = stream(server)
    text = deltas(events, "text_delta")
    assert "".join(text) == "Let me check."
    starts = [p for n, p in events if n == "content_block_start"]
    assert [p["index"] for p in starts] == [0, 1, 2, 3] and starts[0]["content_block"]["type"] == "text"
    for index, call in enumerate(calls, start=1):
        assert starts[index]["content_block"] == {"type": "tool_use", "id": starts[index]["content_block"]["id"],
                                                  "name": call["name"], "input": {}}
        fragments = deltas(events, "input_json_delta", index)
        assert fragments[0] == ""  # Anthropic's first fragment is always empty
        assert all(0 < len(f) <= 5 for f in fragments[1:])
        args = call["arguments"]
        assert json.loads("".join(fragments) or "{}") == (json.loads(args) if isinstance(args, str) else args)
        mine = [n for n, p in events if p.get("index") == index]
        assert mine == block(len(fragments))
    assert "".join(deltas(events, "input_json_delta", 1)) == json.dumps(calls[0]["arguments"])
    assert deltas(events, "input_json_delta", 3) == [""]  # no arguments: only the empty fragment, as Anthropic
    assert starts[1]["content_block"]["id"] == "toolu_abc" and starts[2]["content_block"]["id"].startswith(
        "toolu_mock")
    assert types(events)[-3:] == ["content_block_stop"] + END
    assert only(events, "message_delta")["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    # the deltas of the blocks come in order, never interleaved
    indexes = [p["index"] for _, p in events if "index" in p]
    assert indexes == sorted(indexes)


def test_tool_calls_without_content_have_no_text_block(server: MockServer) -> None:
    server.enqueue(MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}]), MockReply.text(""))
    events = stream(server)
    assert [p["content_block"]["type"] for n, p in events if n == "content_block_start"] == ["tool_use"]
    assert types(events)[:3] == ["message_start", "content_block_start", "ping"]
    # An empty text is no block at all (Anthropic sends "content": [] when the model says nothing).
    assert types(stream(server)) == ["message_start", "ping"] + END


# --------------------------------------------------------------------------- endings


@pytest.mark.parametrize("reply, stop_reason", [
    (MockReply.text("cut short", finish_reason="length"), "max_tokens"),
    (MockReply.text("x", finish_reason="content_filter"), "refusal"),
    (MockReply.text("x", finish_reason="stop_sequence"), "stop_sequence"),  # Anthropic's own values pass through
    (MockReply.text("x", finish_reason="tool_calls"), "tool_use"),
    (MockReply.tool_calls([{"name": "f", "arguments": {}}], finish_reason="stop"), "tool_use"),
    (MockReply.tool_calls([{"name": "f", "arguments": {}}], finish_reason="length"), "max_tokens"),
])
def test_stop_reasons(server: MockServer, reply: MockReply, stop_reason: str) -> None:
    server.enqueue(reply, reply)
    events = stream(server)
    assert types(events)[-3:] == ["content_block_stop"] + END
    assert only(events, "message_delta")["delta"] == {"stop_reason": stop_reason, "stop_sequence": None}
    _, data = post(server, request(stream=False))
    assert json.loads(data)["stop_reason"] == stop_reason


def test_no_finish_reason_means_no_message_delta_nor_stop(server: MockServer) -> None:
    server.enqueue(MockReply.text("never finished", finish_reason=None))
    events = stream(server)
    assert types(events)[-1] == "content_block_stop"
    assert not {"message_delta", "message_stop"} & set(types(events))


def test_in_band_error_event(server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error("Overloaded", after_text="Hi there", event="ignored"),
                   MockReply.in_band_error("You have run out of credits.", code="billing_error"))
    resp, data = post(server, request())
    events = parse(data)
    assert types(events) == ["message_start", "content_block_start", "ping", "content_block_delta",
                             "content_block_delta", "error"]
    assert deltas(events, "text_delta") == ["Hi", " there"]
    # The shape Anthropic documents (no recording of one exists), serialised like the ping.
    assert data.endswith(b'event: error\ndata: {"type": "error", "error": {"type": "overloaded_error", '
                         b'"message": "Overloaded"}}\n\n')
    assert only(events, "message_start")["message"]["usage"]["input_tokens"] > 0
    events = stream(server)
    assert types(events) == ["message_start", "ping", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "billing_error",
                                                        "message": "You have run out of credits."}}


def test_truncate_ends_cleanly_inside_the_text_block(server: MockServer) -> None:
    server.enqueue(MockReply.truncate(after_text="half a sen"))
    events = stream(server)
    assert types(events) == ["message_start", "content_block_start", "ping"] + ["content_block_delta"] * 3
    assert "".join(deltas(events, "text_delta")) == "half a sen"


def test_stall_after_text_is_released_by_close(server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    assert b"event: message_start\n" in wire.stalled(server, request(), MESSAGES, b'"text":"partial"')


def test_reset_keepalive_only_json_and_raw_replies(server: MockServer) -> None:
    server.enqueue(MockReply.reset(after_text="partial"))
    wire.expect_reset(server, request(), MESSAGES)
    server.enqueue(MockReply.keepalive_only(0.03, interval=0.01), MockReply.json({"type": "message", "x": 1}),
                   MockReply.raw([b"event: x\ndata: {}\n\n"]))
    resp, data = post(server, request())
    assert resp.status == 200 and data == b": keep-alive\n\n" * 3 and resp.getheader("request-id")
    resp, data = post(server, request())
    assert json.loads(data) == {"type": "message", "x": 1} and resp.getheader("request-id")
    resp, data = post(server, request())
    assert data == b"event: x\ndata: {}\n\n" and resp.getheader("request-id") is None  # raw: only what was given


@pytest.mark.parametrize("status, error_type", [
    (400, "invalid_request_error"), (401, "authentication_error"), (402, "billing_error"),
    (403, "permission_error"), (404, "not_found_error"), (413, "request_too_large"), (422, "invalid_request_error"),
    (429, "rate_limit_error"), (500, "api_error"), (503, "api_error"), (504, "timeout_error"),
    (529, "overloaded_error"),
])
def test_error_replies_in_anthropics_shape(server: MockServer, status: int, error_type: str) -> None:
    server.enqueue(MockReply.error(status, "it failed", code="ignored", headers={"Retry-After": "0"}))
    resp, data = post(server, request())
    assert resp.status == status and resp.getheader("Content-Type") == "application/json"
    assert resp.getheader("Retry-After") == "0"
    assert json.loads(data) == {"type": "error", "error": {"type": error_type, "message": "it failed"},
                                "request_id": resp.getheader("request-id")}


def test_error_reply_with_a_given_type_or_body(server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "no", type="custom_error"), MockReply.error(502, "", body="<html>x</html>"))
    _, data = post(server, request())
    assert json.loads(data)["error"] == {"type": "custom_error", "message": "no"}
    resp, data = post(server, request())
    assert data == b"<html>x</html>" and resp.getheader("Content-Type") == "text/html; charset=utf-8"


# --------------------------------------------------------------------------- whole (not streamed) replies


def test_non_streaming_message_objects(server: MockServer) -> None:
    calls = [{"name": "f", "arguments": {"a": 1}, "id": "toolu_1"}, {"name": "g", "arguments": '{"b": [2]}'}]
    server.enqueue(MockReply.text("Plain answer.", reasoning="easy"), MockReply.tool_calls(calls, usage=None))
    resp, data = post(server, request(stream=False))
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    body = json.loads(data)
    thinking, text = body.pop("content")
    usage = body.pop("usage")
    assert body == {"model": "claude-sonnet-4-5", "id": body["id"], "type": "message", "role": "assistant",
                    "stop_reason": "end_turn", "stop_sequence": None}
    assert thinking == {"type": "thinking", "thinking": "easy", "signature": thinking["signature"]}
    assert thinking["signature"] and text == {"type": "text", "text": "Plain answer."}
    assert usage == {"input_tokens": usage["input_tokens"], "cache_creation_input_tokens": 0,
                     "cache_read_input_tokens": 0, "output_tokens": 3, "output_tokens_details": {"thinking_tokens": 1}}
    _, data = post(server, request(stream=False))
    body = json.loads(data)
    assert body["content"] == [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
                               {"type": "tool_use", "id": body["content"][1]["id"], "name": "g",
                                "input": {"b": [2]}}]
    assert body["stop_reason"] == "tool_use" and "usage" not in body


# --------------------------------------------------------------------------- the keys of Anthropic's events


# Keys in Anthropic's recordings (the shared corpus of real Messages streams,
# /work/shared/corpus/anthropic): the keys every recording has, and the keys some have, per event,
# per object inside one and per block and delta type. The mock sends every key of the first set
# and nothing outside the two. No recording has an `error` event: its keys are the documented ones.
REAL_KEYS: Dict[str, Tuple[str, str]] = {
    "message_start": ("message type", ""),
    "content_block_start": ("content_block index type", ""),
    "content_block_delta": ("delta index type", ""),
    "content_block_stop": ("index type", ""),
    "message_delta": ("delta type usage", "context_management"),
    "message_stop": ("type", ""),
    "ping": ("type", ""),
    "error": ("error type", ""),
    "message": ("content id model role stop_reason stop_sequence type usage", "stop_details"),
    "usage:start": ("input_tokens output_tokens",
                    "cache_creation cache_creation_input_tokens cache_read_input_tokens inference_geo service_tier"),
    "usage:delta": ("output_tokens", "cache_creation_input_tokens cache_read_input_tokens input_tokens iterations "
                                     "output_tokens_details server_tool_use"),
    "delta:message": ("stop_reason stop_sequence", "container stop_details"),
    "block:text": ("text type", "citations"),
    "block:thinking": ("signature thinking type", ""),
    "block:tool_use": ("id input name type", "caller"),
    "delta:text_delta": ("text type", ""),
    "delta:thinking_delta": ("thinking type", ""),
    "delta:signature_delta": ("signature type", ""),
    "delta:input_json_delta": ("partial_json type", ""),
}


def test_every_event_has_the_keys_of_anthropics(server: MockServer) -> None:
    server.enqueue(MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}], content="Hi.", reasoning="hm"),
                   MockReply.text("cut", finish_reason="length", usage={"cache_read_input_tokens": 9}),
                   MockReply.in_band_error("no", after_text="a"))
    seen = set()
    for _ in range(3):
        for name, payload in parse(post(server, request())[1]):
            seen.add(name)
            check_keys(REAL_KEYS, name, payload)
            parts = {"message": payload.get("message"), "usage:start": (payload.get("message") or {}).get("usage"),
                     "delta:message": payload["delta"] if name == "message_delta" else None,
                     "usage:delta": payload.get("usage")}
            if name == "content_block_start":
                parts["block:" + payload["content_block"]["type"]] = payload["content_block"]
            if name == "content_block_delta":
                parts["delta:" + payload["delta"]["type"]] = payload["delta"]
            for what, obj in parts.items():
                if obj is not None:
                    seen.add(what)
                    check_keys(REAL_KEYS, what, obj)
    assert seen == set(REAL_KEYS)


# --------------------------------------------------------------------------- timing and framing


def test_first_delay_comes_after_the_first_block_start_and_the_ping(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("never sent in full", first_delay=60))
    conn, resp = open_stream(srv, request(), MESSAGES)
    assert [read_event(resp)[0] for _ in range(3)] == ["message_start", "content_block_start", "ping"]
    wire.close_mid_reply(srv, conn, resp)  # releases the 60 s first_delay


def test_delay_goes_between_deltas(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("alpha beta gamma", delay=60))
    conn, resp = open_stream(srv, request(), MESSAGES)
    events = [read_event(resp) for _ in range(4)]
    assert types(events) == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert events[-1][1]["delta"]["text"] == "alpha"  # "beta" is 60 s away
    srv.close()
    conn.close()


def test_bulk_and_length_framing() -> None:
    with MockServer() as srv:
        srv.enqueue(MockReply.text("abcd" * 20, chunk_size=4, bulk=True), MockReply.text("x y", framing="length"))
        assert deltas(wire.bulk_events(srv, request(), MESSAGES), "text_delta") == ["abcd"] * 20
        resp, data = post(srv, request())
        assert resp.getheader("Content-Length") == str(len(data))
        assert types(parse(data))[-1] == "message_stop"


# --------------------------------------------------------------------------- the server around it


def test_paths_api_key_and_recorded_requests() -> None:
    with MockServer(api_key="sk-test") as srv:
        srv.enqueue(MockReply.text("ok"), MockReply.text("also ok"))
        body = request()
        for headers in ({}, {"x-api-key": "wrong"}, {"Authorization": "Bearer wrong"}):
            resp, data = post(srv, body, headers=headers)
            assert resp.status == 401 and json.loads(data)["error"] == {"type": "authentication_error",
                                                                        "message": "invalid x-api-key"}
        key = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
        resp, data = post(srv, body, path=CHAT, headers=key)
        assert resp.status == 401 and "error" in json.loads(data)  # x-api-key is for Anthropic's endpoint only
        resp, _ = post(srv, body, path="/v1/messages/count_tokens", headers={"Authorization": "Bearer sk-test"})
        assert resp.status == 404  # token counting is not served
        resp, data = post(srv, body, path="/v1/messages?beta=true", headers=key)
        assert resp.status == 200 and "".join(deltas(parse(data), "text_delta")) == "ok"
        resp, data = post(srv, body, path="/v1/messages/", headers={"Authorization": "Bearer sk-test"})
        assert resp.status == 200 and "".join(deltas(parse(data), "text_delta")) == "also ok"
        requests = srv.requests
        assert [r.path for r in requests][-4:] == ["/v1/chat/completions", "/v1/messages/count_tokens",
                                                   "/v1/messages?beta=true", "/v1/messages/"]
        assert requests[-2].body == body and requests[-2].headers["X-Api-Key"] == "sk-test"
        assert requests[-2].headers["anthropic-version"] == "2023-06-01"


def told(srv: MockServer, body: Dict[str, Any], path: str = MESSAGES) -> Tuple[str, int]:
    """The default story an endpoint tells for a conversation, and the prompt size it reports."""
    if path == CHAT:
        _, data = post(srv, dict(body, stream=True, stream_options={"include_usage": True}), path=CHAT)
        chunks = [json.loads(line[6:]) for line in data.decode().split("\n") if line.startswith("data: {")]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        return text, chunks[-1]["usage"]["prompt_tokens"]
    if path == RESPONSES:
        events = parse(post(srv, dict(body, stream=True), path=RESPONSES)[1])
        response = only(events, "response.completed")["response"]
        return response["output"][0]["content"][0]["text"], response["usage"]["input_tokens"]
    events = stream(srv, dict(body, stream=True))
    return "".join(deltas(events, "text_delta")), only(events, "message_delta")["usage"]["input_tokens"]


def test_default_reply_is_the_story_chat_tells_for_the_same_conversation(server: MockServer) -> None:
    robot = "Tell me a short story about a robot."
    chat = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": robot}]
    first = told(server, {"messages": chat}, CHAT)
    assert "a robot" in first[0]
    assert told(server, {"system": "Be kind.", "messages": chat[1:]}) == first
    assert told(server, {"system": [{"type": "text", "text": "Be kind.", "cache_control": {"type": "ephemeral"}}],
                         "messages": chat[1:]}) == first
    assert told(server, {"instructions": "Be kind.", "input": robot}, RESPONSES)[0] == first[0]
    # Images: a base64 source is a data URL in chat, a url source the URL.
    blocks = [{"type": "text", "text": robot},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AA"}},
              {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]
    parts = [{"type": "text", "text": robot}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]
    assert told(server, {"system": "Be kind.", "messages": [{"role": "user", "content": blocks}]}) == told(
        server, {"messages": [chat[0], {"role": "user", "content": parts}]}, CHAT)
    # A tool round: thinking adds nothing, text and tool_use are one assistant message in chat, and each
    # tool_result (its content a string or text blocks) one tool message.
    calls = [{"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
             {"id": "toolu_2", "type": "function", "function": {"name": "g", "arguments": '{"x": 1}'}}]
    chat_round = chat + [{"role": "assistant", "content": "Checking.", "tool_calls": calls},
                         {"role": "tool", "tool_call_id": "toolu_1", "content": "1"},
                         {"role": "tool", "tool_call_id": "toolu_2", "content": "2"}]
    messages = [{"role": "user", "content": [{"type": "text", "text": robot}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Let me use the tools.", "signature": "EqsD"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
                    {"type": "tool_use", "id": "toolu_2", "name": "g", "input": {"x": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "1"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": [{"type": "text", "text": "2"}]}]}]
    after_tools = told(server, {"system": "Be kind.", "messages": messages})
    assert after_tools[0] == told(server, {"messages": chat_round}, CHAT)[0] != first[0]
    assert "a robot" in after_tools[0]  # still about the last user message
    messages[0]["content"] = robot  # the same messages exactly: the same prompt size too
    assert told(server, {"system": "Be kind.", "messages": messages}) == told(server, {"messages": chat_round}, CHAT)
    # The user's next question after the tool results, in the same user message.
    messages[2]["content"].append({"type": "text", "text": "Now about a whale."})
    follow_up = chat_round + [{"role": "user", "content": [{"type": "text", "text": "Now about a whale."}]}]
    assert told(server, {"system": "Be kind.", "messages": messages}) == told(server, {"messages": follow_up}, CHAT)


# --------------------------------------------------------------------------- the official SDK as the client


@pytest.fixture
def sdk(server: MockServer) -> Iterator[anthropic.Anthropic]:
    # The SDK adds /v1/messages to its base URL, which is the server's URL without its /v1.
    assert server.url.endswith("/v1")
    with anthropic.Anthropic(base_url=server.url[:-3], api_key="x", max_retries=0) as client:
        yield client


@sdk_only
def test_sdk_stream_assembles_thinking_text_and_tool_use(server: MockServer, sdk: anthropic.Anthropic) -> None:
    calls = [{"name": "weather", "arguments": {"city": "Paris", "days": [1, 2]}, "id": "toolu_w"},
             {"name": "time", "arguments": {}}]
    server.enqueue(MockReply.tool_calls(calls, content="Let me look.", reasoning="The user wants the weather.",
                                        split_arguments=3, usage={"cache_read_input_tokens": 1031}))
    with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                             messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream_:
        seen = [event.type for event in stream_]
        message = stream_.get_final_message()
    assert seen.count("text") == 3 and seen.count("signature") == 1
    thinking, text, weather, time_ = message.content
    assert thinking.type == "thinking" and thinking.thinking == "The user wants the weather."
    assert thinking.signature and text.type == "text" and text.text == "Let me look."
    assert weather.type == "tool_use" and (weather.id, weather.name, weather.input) == (
        "toolu_w", "weather", {"city": "Paris", "days": [1, 2]})
    assert time_.type == "tool_use" and time_.name == "time" and time_.input == {}
    assert time_.id.startswith("toolu_mock")
    assert message.stop_reason == "tool_use" and message.stop_sequence is None and message.role == "assistant"
    assert message.model == "claude-sonnet-4-5" and message.id.startswith("msg_mock")
    usage = message.usage
    assert usage.input_tokens > 0 and usage.cache_read_input_tokens == 1031
    thinking_tokens = seen.count("thinking")
    assert usage.output_tokens_details is not None and usage.output_tokens_details.thinking_tokens == thinking_tokens
    args = json.dumps(calls[0]["arguments"])  # as many tokens as chat counts deltas: 1 + one per fragment
    assert usage.output_tokens == thinking_tokens + 3 + (1 + -(-len(args) // 3)) + (1 + 1)


@sdk_only
def test_sdk_raw_events_and_max_tokens(server: MockServer, sdk: anthropic.Anthropic) -> None:
    server.enqueue(MockReply.text("cut short", finish_reason="length"))
    events = list(sdk.messages.create(model="claude-sonnet-4-5", max_tokens=2, stream=True,
                                      messages=[{"role": "user", "content": "x"}]))
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta", "content_block_stop", "message_delta",
                                        "message_stop"]  # the SDK skips the ping
    assert events[-2].delta.stop_reason == "max_tokens" and events[-2].usage.output_tokens == 2


@sdk_only
def test_sdk_non_streaming_and_default_reply(server: MockServer, sdk: anthropic.Anthropic) -> None:
    server.enqueue(MockReply.text("Whole answer.", reasoning="ok", usage={"input_tokens": 10}))
    message = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024,
                                  messages=[{"role": "user", "content": "hi"}])
    assert [block.type for block in message.content] == ["thinking", "text"]
    assert message.content[1].text == "Whole answer." and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 3)
    message = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024, system="Short.",
                                  messages=[{"role": "user", "content": "A story about owls."}])
    chat = told(server, {"messages": [{"role": "system", "content": "Short."},
                                      {"role": "user", "content": "A story about owls."}]}, CHAT)[0]
    assert message.content[0].text == chat and "owls" in chat


@sdk_only
def test_sdk_sees_in_band_and_status_errors(server: MockServer, sdk: anthropic.Anthropic) -> None:
    server.enqueue(MockReply.in_band_error("Overloaded", after_text="Hi"), MockReply.error(529, "Overloaded"),
                   MockReply.error(429, "slow down"))
    seen = []
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=1024,
                                 messages=[{"role": "user", "content": "x"}]) as stream_:
            for event in stream_:
                seen.append(event.type)
    assert seen[-1] == "text"  # the SDK raises at the error event
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(anthropic.InternalServerError) as status:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=[{"role": "user", "content": "x"}])
    assert status.value.status_code == 529 and status.value.request_id
    assert status.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"},
                                 "request_id": status.value.request_id}
    with pytest.raises(anthropic.RateLimitError):
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=[{"role": "user", "content": "x"}])


@sdk_only
def test_sdk_authenticates() -> None:
    with MockServer(api_key="sk-ant-test") as srv:
        srv.enqueue(MockReply.text("in"))
        base = srv.url[:-3]
        with anthropic.Anthropic(base_url=base, api_key="sk-ant-test", max_retries=0) as client:
            message = client.messages.create(model="claude-haiku-4-5", max_tokens=10,
                                             messages=[{"role": "user", "content": "x"}])
            assert message.content[0].text == "in"
        headers = srv.requests[-1].headers  # SDK 2.x sends the key as a bearer token, older ones as x-api-key
        assert "sk-ant-test" in (headers.get("x-api-key"), headers.get("authorization", "")[len("Bearer "):])
        assert "anthropic-version" in headers
        with anthropic.Anthropic(base_url=base, api_key="sk-ant-wrong", max_retries=0) as client:
            with pytest.raises(anthropic.AuthenticationError):
                client.messages.create(model="claude-haiku-4-5", max_tokens=10,
                                       messages=[{"role": "user", "content": "x"}])
