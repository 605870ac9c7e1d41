"""Tests for promptkit.testing on the Responses API endpoint (``POST /v1/responses``).

The wire format is read with http.client, raw sockets and a small SSE split here, and then
by the official openai-python SDK as an independent client (its event models and its own
stream accumulator check the ids, indexes and order). Nothing sleeps: ordering comes from
blocking reads and server.close().
"""

from __future__ import annotations

import http.client
import json
from typing import Any, Dict, Iterator, List, Optional, Tuple

import openai
import pytest

from promptkit.testing import MockReply, MockServer
from tests import _mock_wire as wire
from tests._mock_wire import CHAT, RESPONSES, Event, check_keys, open_stream, only, parse, read_event, types


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def request(text: str = "Say hello.", stream: bool = True, **extra: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"model": "gpt-5-mini", "input": text, **extra}
    if stream:
        body["stream"] = True
    return body


def post(srv: MockServer, body: Dict[str, Any], path: str = RESPONSES, method: str = "POST",
         headers: Optional[Dict[str, str]] = None) -> Tuple[http.client.HTTPResponse, bytes]:
    return wire.post(srv, body, path, method, headers)


def stream(srv: MockServer, body: Optional[Dict[str, Any]] = None) -> List[Event]:
    """POST a streamed request and check what every Responses stream has in common."""
    resp, data = post(srv, body or request())
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert b"[DONE]" not in data  # the Responses API has no [DONE] line
    events = parse(data)
    for n, (name, payload) in enumerate(events):
        assert payload["type"] == name and payload["sequence_number"] == n
    return events


TEXT_EVENTS = ["response.output_item.added", "response.content_part.added"]
TEXT_DONE = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
OPENING = ["response.created", "response.in_progress"]


# --------------------------------------------------------------------------- text


def test_text_stream_events_and_payloads(server: MockServer) -> None:
    server.enqueue(MockReply.text("Hello there, wonderful world!"))
    events = stream(server)
    deltas = [p["delta"] for n, p in events if n == "response.output_text.delta"]
    assert "".join(deltas) == "Hello there, wonderful world!" and deltas[:2] == ["Hello", " there,"]
    assert types(events) == OPENING + TEXT_EVENTS + ["response.output_text.delta"] * len(deltas) + TEXT_DONE + [
        "response.completed"]
    created, in_progress, completed = (only(events, n)["response"] for n in OPENING + ["response.completed"])
    assert created["id"].startswith("resp_mock") and created["id"] == in_progress["id"] == completed["id"]
    for response in (created, in_progress):
        assert response["status"] == "in_progress" and response["output"] == [] and response["usage"] is None
        assert response["object"] == "response" and response["model"] == "gpt-5-mini"
    added = only(events, "response.output_item.added")
    item_id = added["item"]["id"]
    assert item_id.startswith("msg_mock")
    assert added == {"type": "response.output_item.added", "sequence_number": 2, "output_index": 0,
                     "item": {"id": item_id, "type": "message", "status": "in_progress", "content": [],
                              "role": "assistant"}}
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    assert only(events, "response.content_part.added") == {
        "type": "response.content_part.added", "sequence_number": 3, **where, "part": part}
    first = events[4][1]
    assert {k: first[k] for k in where} == where and first["logprobs"] == []
    assert isinstance(first["obfuscation"], str) and first["obfuscation"]  # random padding, as OpenAI sends
    assert only(events, "response.output_text.done")["text"] == "Hello there, wonderful world!"
    full = dict(part, text="Hello there, wonderful world!")
    assert only(events, "response.content_part.done")["part"] == full
    item = {"id": item_id, "type": "message", "status": "completed", "content": [full], "role": "assistant"}
    assert only(events, "response.output_item.done")["item"] == item
    assert completed["status"] == "completed" and completed["output"] == [item]
    assert completed["error"] is None and completed["incomplete_details"] is None
    usage = completed["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] == len(deltas)
    assert usage == {"input_tokens": usage["input_tokens"], "input_tokens_details": {"cached_tokens": 0},
                     "output_tokens": len(deltas), "output_tokens_details": {"reasoning_tokens": 0},
                     "total_tokens": usage["input_tokens"] + len(deltas)}


def test_text_options_chunk_size_model_headers_keepalive_and_no_obfuscation(server: MockServer) -> None:
    server.enqueue(MockReply.text("abcdefg", chunk_size=3, model="other", keepalive_comments=2, include_done=True,
                                  headers={"X-Extra": "1"}))
    resp, data = post(server, request(stream_options={"include_obfuscation": False}))
    assert resp.getheader("X-Extra") == "1"
    assert data.startswith(b": keep-alive\n\n: keep-alive\n\nevent: response.created\n")
    assert b"[DONE]" not in data  # include_done is a chat-completions thing
    events = parse(data)
    deltas = [p for n, p in events if n == "response.output_text.delta"]
    assert [d["delta"] for d in deltas] == ["abc", "def", "g"]
    assert all("obfuscation" not in d for d in deltas)
    assert {p["response"]["model"] for n, p in events if "response" in p} == {"other"}


@pytest.mark.parametrize("override, expected", [
    ({"prompt_tokens": 100, "prompt_tokens_details": {"cached_tokens": 40}},
     {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40}, "total_tokens": 103}),
    ({"input_tokens": 50, "output_tokens_details": {"reasoning_tokens": 1}, "cost": 0.5},
     {"input_tokens": 50, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 53, "cost": 0.5}),
    ({"completion_tokens": 7, "total_tokens": 1}, {"output_tokens": 7, "total_tokens": 1}),
])
def test_usage_overrides_in_chat_or_responses_names(server: MockServer, override: Dict[str, Any],
                                                    expected: Dict[str, Any]) -> None:
    server.enqueue(MockReply.text("one two three", usage=override))
    usage = only(stream(server), "response.completed")["response"]["usage"]
    assert {k: usage[k] for k in expected} == expected
    assert not {"prompt_tokens", "completion_tokens", "prompt_tokens_details"} & set(usage)
    if "output_tokens" not in expected:
        assert usage["output_tokens"] == 3


def test_usage_none_and_the_same_counts_as_chat(server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three", usage=None))
    assert only(stream(server), "response.completed")["response"]["usage"] is None
    # The same reply to the same conversation reports the same usage on either endpoint.
    reply = MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}], content="Checking.", reasoning="hm ok")
    server.enqueue(reply, reply)
    usage = only(stream(server), "response.completed")["response"]["usage"]
    _, data = post(server, {"model": "gpt-5-mini", "messages": [{"role": "user", "content": "Say hello."}],
                            "stream": True, "stream_options": {"include_usage": True}}, path=CHAT)
    chat = json.loads(data.decode().split("data: ")[-2])["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        chat["prompt_tokens"], chat["completion_tokens"], chat["total_tokens"])
    assert usage["output_tokens_details"] == chat["completion_tokens_details"] == {"reasoning_tokens": 2}


# --------------------------------------------------------------------------- reasoning


@pytest.mark.parametrize("encrypted", [False, True])
def test_reasoning_item_before_the_message(server: MockServer, encrypted: bool) -> None:
    server.enqueue(MockReply.text("Four.", reasoning="Two plus two is four."))
    include = ["reasoning.encrypted_content"] if encrypted else []
    events = stream(server, request(include=include))
    summary = [p["delta"] for n, p in events if n == "response.reasoning_summary_text.delta"]
    assert "".join(summary) == "Two plus two is four." and len(summary) == 5
    assert types(events) == OPENING + [
        "response.output_item.added", "response.reasoning_summary_part.added"] + [
        "response.reasoning_summary_text.delta"] * 5 + [
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done",
        "response.output_item.done"] + TEXT_EVENTS + ["response.output_text.delta"] + TEXT_DONE + [
        "response.completed"]
    added, done = events[2][1], events[11][1]
    rs_id = added["item"]["id"]
    assert rs_id.startswith("rs_mock") and added["output_index"] == done["output_index"] == 0
    where = {"item_id": rs_id, "output_index": 0, "summary_index": 0}
    for _, payload in events[3:11]:
        assert {k: payload[k] for k in where} == where
    assert events[3][1]["part"] == {"type": "summary_text", "text": ""}
    assert events[10][1]["part"] == {"type": "summary_text", "text": "Two plus two is four."}
    assert events[9][1]["text"] == "Two plus two is four."
    assert added["item"]["summary"] == []
    assert done["item"]["summary"] == [{"type": "summary_text", "text": "Two plus two is four."}]
    assert events[12][1]["output_index"] == 1  # the message comes second
    completed = only(events, "response.completed")["response"]
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message"]
    assert completed["output"][0] == done["item"]
    assert completed["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}
    assert completed["usage"]["output_tokens"] == 6
    if encrypted:  # opaque, and (like OpenAI's) not the same in the added and the done event
        assert added["item"]["encrypted_content"] != done["item"]["encrypted_content"]
        assert done["item"]["encrypted_content"].startswith("gAAAAA")
    else:
        assert "encrypted_content" not in added["item"] and "encrypted_content" not in done["item"]


# --------------------------------------------------------------------------- tool calls


def test_function_call_items(server: MockServer) -> None:
    calls = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}, "id": "call_abc"},
             {"name": "lookup", "arguments": '{"q": "x"}'}, {"name": "now", "arguments": {}}]
    server.enqueue(MockReply.tool_calls(calls, content="Let me check.", split_arguments=5))
    events = stream(server)
    assert types(events)[:2] == OPENING and types(events)[-1] == "response.completed"
    items = [p["item"] for n, p in events if n == "response.output_item.done"]
    assert [item["type"] for item in items] == ["message", "function_call", "function_call", "function_call"]
    assert items[0]["content"][0]["text"] == "Let me check."
    for index, (item, call) in enumerate(zip(items[1:], calls), start=1):
        mine = [(n, p) for n, p in events if p.get("output_index") == index]
        assert [n for n, _ in mine] == ["response.output_item.added"] + [
            "response.function_call_arguments.delta"] * (len(mine) - 3) + [
            "response.function_call_arguments.done", "response.output_item.done"]
        assert mine[0][1]["item"] == dict(item, status="in_progress", arguments="")
        deltas = [p["delta"] for _, p in mine[1:-2]]
        assert all(0 < len(d) <= 5 for d in deltas) and all(p["item_id"] == item["id"] for _, p in mine[1:-1])
        assert "".join(deltas) == item["arguments"] == mine[-2][1]["arguments"]
        assert item["id"].startswith("fc_mock") and item["status"] == "completed" and item["name"] == call["name"]
        args = call["arguments"]
        assert json.loads(item["arguments"]) == (json.loads(args) if isinstance(args, str) else args)
    assert items[1]["call_id"] == "call_abc" and items[2]["call_id"].startswith("call_mock")
    assert items[3]["arguments"] == "{}"
    completed = only(events, "response.completed")["response"]
    assert completed["status"] == "completed" and completed["output"] == items  # finish_reason "tool_calls"
    # the deltas of the calls are spread in output order, never interleaved
    indexes = [p["output_index"] for _, p in events if "output_index" in p]
    assert indexes == sorted(indexes)


def test_tool_calls_without_content_have_no_message(server: MockServer) -> None:
    server.enqueue(MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}]))
    completed = only(stream(server), "response.completed")["response"]
    assert [item["type"] for item in completed["output"]] == ["function_call"]


# --------------------------------------------------------------------------- endings


def test_length_is_incomplete_max_output_tokens(server: MockServer) -> None:
    server.enqueue(MockReply.text("cut short", finish_reason="length"))
    events = stream(server)
    assert types(events)[-2:] == ["response.output_item.done", "response.incomplete"]
    response = events[-1][1]["response"]
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete" == events[-2][1]["item"]["status"]
    assert response["usage"]["output_tokens"] == 2


def test_no_finish_reason_means_no_terminal_event(server: MockServer) -> None:
    server.enqueue(MockReply.text("never finished", finish_reason=None))
    events = stream(server)
    assert types(events)[-1] == "response.output_item.done"
    assert not {"response.completed", "response.incomplete", "response.failed"} & set(types(events))


def test_in_band_error_event_then_failed(server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error("You exceeded your current quota.", after_text="Hi there",
                                           code="insufficient_quota", event="ignored"),
                   MockReply.in_band_error("boom"))
    events = stream(server)
    assert types(events) == OPENING + TEXT_EVENTS + ["response.output_text.delta"] * 2 + [
        "error", "response.failed"]
    # The shape OpenAI sends (see the corpus recording openai__error_event_insufficient_quota_reframed).
    assert events[-2][1] == {"type": "error", "sequence_number": 6, "error": {
        "type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded your current quota.",
        "param": None}}
    failed = events[-1][1]["response"]
    assert failed["status"] == "failed" and failed["usage"] is None
    assert failed["error"] == {"code": "insufficient_quota", "message": "You exceeded your current quota."}
    assert failed["output"][0]["status"] == "incomplete"
    assert failed["output"][0]["content"][0]["text"] == "Hi there"
    events = stream(server)
    assert types(events) == OPENING + ["error", "response.failed"]
    assert events[2][1]["error"]["code"] == "server_error" and events[3][1]["response"]["output"] == []


def test_truncate_ends_cleanly_after_text(server: MockServer) -> None:
    server.enqueue(MockReply.truncate(after_text="half a sen"))
    events = stream(server)
    assert types(events) == OPENING + TEXT_EVENTS + ["response.output_text.delta"] * 3
    assert "".join(p["delta"] for n, p in events if n.endswith(".delta")) == "half a sen"


def test_failure_replies_send_their_reasoning_as_a_whole_item_first(server: MockServer) -> None:
    reasoning_events = ["response.output_item.added", "response.reasoning_summary_part.added",
                        "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                        "response.reasoning_summary_part.done", "response.output_item.done"]
    server.enqueue(MockReply.truncate(after_text="half", reasoning="hmm"),
                   MockReply.in_band_error("boom", after_text="Hi", reasoning="hmm"))
    events = stream(server)
    assert types(events) == OPENING + reasoning_events + TEXT_EVENTS + ["response.output_text.delta"]
    assert events[-1][1]["output_index"] == 1  # the message comes second
    events = stream(server)
    assert types(events) == OPENING + reasoning_events + TEXT_EVENTS + [
        "response.output_text.delta", "error", "response.failed"]
    output = events[-1][1]["response"]["output"]
    assert [(item["type"], item.get("status")) for item in output] == [("reasoning", None), ("message", "incomplete")]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "hmm"}]


def test_stall_after_text_is_released_by_close(server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    assert b"event: response.created\n" in wire.stalled(server, request(), RESPONSES, b'"delta":"partial"')


def test_reset_keepalive_only_error_json_and_raw_replies(server: MockServer) -> None:
    server.enqueue(MockReply.reset(after_text="partial"))
    wire.expect_reset(server, request(), RESPONSES)
    server.enqueue(MockReply.keepalive_only(0.03, interval=0.01), MockReply.error(429, "slow down"),
                   MockReply.json({"object": "response", "status": "completed"}),
                   MockReply.raw([b"event: x\ndata: {}\n\n"]))
    resp, data = post(server, request())
    assert resp.status == 200 and data == b": keep-alive\n\n" * 3
    resp, data = post(server, request())
    assert resp.status == 429 and json.loads(data)["error"]["message"] == "slow down"
    resp, data = post(server, request())
    assert json.loads(data) == {"object": "response", "status": "completed"}
    resp, data = post(server, request())
    assert data == b"event: x\ndata: {}\n\n"


# --------------------------------------------------------------------------- whole (not streamed) replies


def test_non_streaming_response_objects(server: MockServer) -> None:
    server.enqueue(MockReply.text("Plain answer.", reasoning="easy"),
                   MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}, "id": "call_1"}]),
                   MockReply.text("cut", finish_reason="length"))
    resp, data = post(server, request(stream=False, include=["reasoning.encrypted_content"]))
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/json"
    body = json.loads(data)
    assert body["object"] == "response" and body["status"] == "completed" and body["id"].startswith("resp_mock")
    reasoning, message = body["output"]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "easy"}] and reasoning["encrypted_content"]
    assert message["content"][0]["text"] == "Plain answer." and message["status"] == "completed"
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + body["usage"]["output_tokens"]
    _, data = post(server, request(stream=False))
    [call] = json.loads(data)["output"]
    assert (call["type"], call["call_id"], call["name"], call["arguments"]) == ("function_call", "call_1", "f",
                                                                                '{"a": 1}')
    _, data = post(server, request(stream=False))
    body = json.loads(data)
    assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}


def test_response_object_echoes_the_request(server: MockServer) -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}]
    server.enqueue(MockReply.text("ok"))
    events = stream(server, request(instructions="Be terse.", tools=tools, max_output_tokens=50, store=False,
                                    reasoning={"effort": "low", "summary": "auto"}))
    response = only(events, "response.completed")["response"]
    assert (response["instructions"], response["tools"], response["max_output_tokens"], response["store"]) == (
        "Be terse.", tools, 50, False)
    assert response["reasoning"] == {"effort": "low", "summary": "auto"}


# Top-level keys of each event (and item) in OpenAI's recordings (the shared corpus of real
# Responses streams, /work/shared/corpus/responses): the keys every recording has, and the keys
# some have. The mock sends every key of the first set and nothing outside the two.
REAL_KEYS: Dict[str, Tuple[str, str]] = {
    "error": ("error sequence_number type", ""),
    "response.created": ("response type", "sequence_number"),
    "response.in_progress": ("response type", "sequence_number"),
    "response.completed": ("response type", "sequence_number"),
    "response.incomplete": ("response sequence_number type", ""),
    "response.failed": ("response sequence_number type", ""),
    "response.output_item.added": ("item output_index type", "sequence_number"),
    "response.output_item.done": ("item output_index type", "sequence_number"),
    "response.content_part.added": ("content_index item_id output_index part type", "sequence_number"),
    "response.content_part.done": ("content_index item_id output_index part type", "sequence_number"),
    "response.output_text.delta": ("content_index delta item_id output_index type",
                                   "logprobs obfuscation sequence_number"),
    "response.output_text.done": ("content_index item_id output_index text type", "logprobs sequence_number"),
    "response.function_call_arguments.delta": ("delta item_id output_index type", "obfuscation sequence_number"),
    "response.function_call_arguments.done": ("arguments item_id output_index type", "sequence_number"),
    "response.reasoning_summary_part.added": ("item_id output_index part sequence_number summary_index type", ""),
    "response.reasoning_summary_part.done": ("item_id output_index part sequence_number summary_index type", ""),
    "response.reasoning_summary_text.delta": (
        "delta item_id obfuscation output_index sequence_number summary_index type", ""),
    "response.reasoning_summary_text.done": ("item_id output_index sequence_number summary_index text type", ""),
    "item:message": ("content id role status type", "phase"),
    "item:reasoning": ("id summary type", "content encrypted_content status"),
    "item:function_call": ("arguments call_id id name status type", ""),
    "response": ("created_at error id incomplete_details instructions max_output_tokens metadata model object output "
                 "parallel_tool_calls previous_response_id reasoning status store temperature text tool_choice "
                 "tools top_p truncation usage user",
                 "background completed_at content_filters frequency_penalty max_tool_calls moderation "
                 "presence_penalty prompt_cache_key prompt_cache_retention safety_identifier service_tier "
                 "tool_usage top_logprobs"),
}


def test_every_event_has_the_keys_of_openais(server: MockServer) -> None:
    server.enqueue(MockReply.tool_calls([{"name": "f", "arguments": {"a": 1}}], content="Hi.", reasoning="hm"),
                   MockReply.text("cut", finish_reason="length"), MockReply.in_band_error("no", after_text="a"))
    seen = set()
    for _ in range(3):
        for name, payload in stream(server, request(include=["reasoning.encrypted_content"])):
            seen.add(name)
            check_keys(REAL_KEYS, name, payload)
            for item in [payload["item"]] if "item" in payload else []:
                check_keys(REAL_KEYS, "item:" + item["type"], item)
            if "response" in payload:
                check_keys(REAL_KEYS, "response", payload["response"])
                for item in payload["response"]["output"]:
                    check_keys(REAL_KEYS, "item:" + item["type"], item)
    assert seen == set(REAL_KEYS) - {"item:message", "item:reasoning", "item:function_call", "response"}


# --------------------------------------------------------------------------- timing and framing


def test_first_delay_comes_after_the_opening_events(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("never sent in full", first_delay=60))
    conn, resp = open_stream(srv, request(), RESPONSES)
    assert [read_event(resp)[0], read_event(resp)[0]] == OPENING
    wire.close_mid_reply(srv, conn, resp)  # releases the 60 s first_delay


def test_delay_goes_between_deltas(server: MockServer) -> None:
    srv = server
    srv.enqueue(MockReply.text("alpha beta gamma", delay=60))
    conn, resp = open_stream(srv, request(), RESPONSES)
    names = [read_event(resp) for _ in range(5)]
    assert [n for n, _ in names] == OPENING + TEXT_EVENTS + ["response.output_text.delta"]
    assert names[-1][1]["delta"] == "alpha"  # "beta" is 60 s away
    srv.close()
    conn.close()


def test_bulk_and_length_framing() -> None:
    with MockServer() as srv:
        srv.enqueue(MockReply.text("abcd" * 20, chunk_size=4, bulk=True), MockReply.text("x y", framing="length"))
        events = wire.bulk_events(srv, request(), RESPONSES)
        assert [p["delta"] for n, p in events if n.endswith(".delta")] == ["abcd"] * 20
        resp, data = post(srv, request())
        assert resp.getheader("Content-Length") == str(len(data))
        assert types(parse(data))[-1] == "response.completed"


# --------------------------------------------------------------------------- the server around it


def test_paths_api_key_and_recorded_requests() -> None:
    with MockServer(api_key="sk-test") as srv:
        srv.enqueue(MockReply.text("ok"))
        body = request(include=["reasoning.encrypted_content"])
        resp, _ = post(srv, body)
        assert resp.status == 401
        auth = {"Authorization": "Bearer sk-test"}
        resp, _ = post(srv, body, path="/v1/responses/resp_123", method="GET", headers=auth)
        assert resp.status == 404  # retrieving a stored response is not supported
        resp, _ = post(srv, body, path="/v1/embeddings", headers=auth)
        assert resp.status == 404
        resp, data = post(srv, body, path="/v1/responses/?x=1", headers=auth)
        assert resp.status == 200 and only(parse(data), "response.output_text.done")["text"] == "ok"
        requests = srv.requests
        assert [r.path for r in requests] == ["/v1/responses", "/v1/responses/resp_123", "/v1/embeddings",
                                              "/v1/responses/?x=1"]
        assert requests[-1].body == body and requests[-1].headers["authorization"] == "Bearer sk-test"


def story(srv: MockServer, body: Dict[str, Any]) -> str:
    if "messages" in body:
        _, data = post(srv, dict(body, stream=True), path=CHAT)
        chunks = [json.loads(line[6:]) for line in data.decode().split("\n") if line.startswith("data: {")]
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    return only(stream(srv, dict(body, stream=True)), "response.output_text.done")["text"]


def test_default_reply_is_the_story_chat_tells_for_the_same_conversation(server: MockServer) -> None:
    robot = "Tell me a short story about a robot."
    chat = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": robot}]
    first = story(server, {"messages": chat})
    assert "a robot" in first
    assert story(server, {"input": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": robot}]}) \
        == first
    parts = [{"type": "input_text", "text": robot}, {"type": "input_image", "image_url": "data:image/png;base64,AA"}]
    chat_parts = [{"type": "text", "text": robot},
                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]
    assert story(server, {"instructions": "Be kind.", "input": [{"type": "message", "role": "user",
                                                                 "content": parts}]}) \
        == story(server, {"messages": [chat[0], {"role": "user", "content": chat_parts}]})
    assert story(server, {"input": robot}) == story(server, {"messages": chat[1:]})
    # A tool round: reasoning, text and calls are one assistant message in chat, each output one tool message.
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
             {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]
    chat_round = chat + [{"role": "assistant", "content": "Checking.", "tool_calls": calls},
                         {"role": "tool", "tool_call_id": "call_1", "content": "1"},
                         {"role": "tool", "tool_call_id": "call_2", "content": "2"}]
    items = [{"role": "user", "content": robot},
             {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
             {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
             {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "1"},
             {"type": "function_call_output", "call_id": "call_2", "output": "2"}]
    after_tools = story(server, {"instructions": "Be kind.", "input": items})
    assert after_tools == story(server, {"messages": chat_round}) != first
    assert "a robot" in after_tools  # still about the last user message


# --------------------------------------------------------------------------- the official SDK as the client


@pytest.fixture
def sdk(server: MockServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0) as client:
        yield client


def test_sdk_streams_text_reasoning_and_function_calls(server: MockServer, sdk: openai.OpenAI) -> None:
    calls = [{"name": "weather", "arguments": {"city": "Paris"}, "id": "call_w"}, {"name": "time", "arguments": {}}]
    server.enqueue(MockReply.tool_calls(calls, content="Let me look.", reasoning="The user wants the weather.",
                                        split_arguments=3))
    events = list(sdk.responses.create(model="gpt-5", input="Weather in Paris?", stream=True,
                                       include=["reasoning.encrypted_content"]))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    completed = events[-1]
    assert completed.type == "response.completed"
    response = completed.response
    assert response.status == "completed" and response.output_text == "Let me look."
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "The user wants the weather."
    assert reasoning.encrypted_content
    got = [(o.call_id, o.name, json.loads(o.arguments)) for o in response.output if o.type == "function_call"]
    assert got == [("call_w", "weather", {"city": "Paris"}), (got[1][0], "time", {})]
    assert response.usage is not None
    summary = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert response.usage.output_tokens_details.reasoning_tokens == len(summary) > 1
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == "Let me look."


def test_sdk_stream_helper_assembles_the_same_response(server: MockServer, sdk: openai.OpenAI) -> None:
    # responses.stream() runs the SDK's own accumulator, which checks item identities and indexes.
    server.enqueue(MockReply.tool_calls([{"name": "f", "arguments": {"a": [1, 2]}}], content="Hmm.",
                                        reasoning="think", split_arguments=2))
    with sdk.responses.stream(model="gpt-5", input="go", include=["reasoning.encrypted_content"]) as stream_:
        texts = [e.snapshot for e in stream_ if e.type == "response.output_text.delta"]
        final = stream_.get_final_response()
    assert texts[-1] == final.output_text == "Hmm."
    assert [o.type for o in final.output] == ["reasoning", "message", "function_call"]
    assert json.loads(final.output[2].arguments) == {"a": [1, 2]}


def test_sdk_non_streaming_and_default_reply(server: MockServer, sdk: openai.OpenAI) -> None:
    server.enqueue(MockReply.text("Whole answer.", usage={"prompt_tokens": 10}))
    response = sdk.responses.create(model="gpt-5", input="hi")
    assert response.status == "completed" and response.output_text == "Whole answer."
    assert response.usage is not None and (response.usage.input_tokens, response.usage.total_tokens) == (10, 12)
    messages: List[Any] = [{"role": "system", "content": "Short."}, {"role": "user", "content": "A story about owls."}]
    via_chat = sdk.chat.completions.create(model="gpt-5", messages=messages).choices[0].message.content
    via_responses = sdk.responses.create(model="gpt-5", instructions="Short.", input="A story about owls.")
    assert via_responses.output_text == via_chat and "owls" in via_chat


def test_sdk_sees_incomplete_truncated_and_failed_streams(server: MockServer, sdk: openai.OpenAI) -> None:
    server.enqueue(MockReply.text("cut", finish_reason="length"), MockReply.truncate(after_text="half"),
                   MockReply.in_band_error("You exceeded your current quota.", after_text="Hi",
                                           code="insufficient_quota"))
    last = list(sdk.responses.create(model="gpt-5", input="x", stream=True))[-1]
    assert last.type == "response.incomplete" and last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    last = list(sdk.responses.create(model="gpt-5", input="x", stream=True))[-1]
    assert last.type == "response.output_text.delta"  # no terminal event: the stream just ended
    seen = []
    with pytest.raises(openai.APIError, match="You exceeded your current quota.") as info:
        for event in sdk.responses.create(model="gpt-5", input="x", stream=True):
            seen.append(event.type)
    assert seen[-1] == "response.output_text.delta"  # the SDK raises at the error event, like with OpenAI's
    assert info.value.body == {"type": "insufficient_quota", "code": "insufficient_quota",
                               "message": "You exceeded your current quota.", "param": None}
