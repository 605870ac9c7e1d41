"""promptkit._dialects.responses_decoder: real Responses API recordings end to end, then crafted cases.

Every recording in ``tests/data/responses/`` (copied from the shared corpus; see
its README for provenance and how ``expected`` was computed by openai-python)
is read through :func:`promptkit._reader.read_body` exactly as a turn reads a
body: whole, in random reads, and byte by byte. Each way must give the
expected text, reasoning, tool calls, refusal, status and usage, and the
events must add up to the same text.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any, Dict, List, Optional, Tuple

import pytest

from promptkit import Limits
from promptkit._dialects.responses_decoder import ResponsesDecoder
from promptkit._errors import StreamTruncatedError
from promptkit._types import StreamEvent
from tests._decoder_replay import HOWS, Outcome, reads_of
from tests._decoder_replay import read as replay_reads

RESPONSES = pathlib.Path(__file__).parent / "data" / "responses"
NAMES = sorted(p.name[: -len(".sse")] for p in RESPONSES.glob("*.sse"))


def read(reads: List[bytes], limits: Limits = Limits()) -> "Outcome[ResponsesDecoder]":
    return replay_reads(reads, ResponsesDecoder(limits))


@functools.lru_cache(maxsize=None)
def meta(name: str) -> Dict[str, Any]:
    return json.loads((RESPONSES / f"{name}.meta.json").read_text("utf-8"))


@functools.lru_cache(maxsize=None)
def replay(name: str, how: str) -> Outcome:
    return read(reads_of((RESPONSES / f"{name}.sse").read_bytes(), how))


CASES = [(name, how) for name in NAMES for how in HOWS]


def test_the_corpus_is_here() -> None:
    assert len(NAMES) == 24  # the README's count: a lost file would silently shrink the checks


@pytest.mark.parametrize("name,how", CASES)
def test_recording_assembles_to_the_expected_reply(name: str, how: str) -> None:
    expected = meta(name)["expected"]
    out = replay(name, how)
    text = "".join(e.content for e in out.events if e.type == "content")
    reasoning = "".join(e.reasoning for e in out.events if e.type == "reasoning")
    calls = [e.tool_call for e in out.events if e.type == "tool_call"]
    assert text == out.decoder.content == expected["text"]
    assert reasoning == out.decoder.reasoning == (expected["reasoning_summary"] or "") + (expected["reasoning_text"] or "")
    assert (out.decoder.refusal or None) == expected["refusal"]
    want_calls = [(c["call_id"], c["name"], c["arguments_json"], c["arguments"]) for c in expected["tool_calls"] or ()]
    assert [(c.id, c.name, c.arguments_json, c.arguments) for c in calls] == want_calls  # type: ignore[union-attr]
    assert [(c.id, c.name) for c in out.decoder.tool_calls()] == [(c[0], c[1]) for c in want_calls]
    if expected["status"] == "failed":
        assert out.error is not None and expected["error"]["message"][:40] in str(out.error)
        assert out.error.body["code"] == expected["error"]["code"]  # type: ignore[index]
        return
    assert out.error is None and out.finished
    assert out.decoder.status == expected["status"]
    assert out.decoder.finish_reason == (
        "length" if expected["incomplete_reason"] == "max_output_tokens" else "tool_calls" if calls else "stop"
    )
    usage, want = out.decoder.usage, expected["usage"]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens, usage.total_tokens) == (
        want["input_tokens"], want["output_tokens"], want["cached_tokens"], want["reasoning_tokens"], want["total_tokens"]
    )  # fmt: skip
    assert out.decoder.model == expected["model"] and out.decoder.id == expected["response_id"]


@pytest.mark.parametrize("name", NAMES)
def test_history_keeps_the_items_to_send_back(name: str) -> None:
    expected = meta(name)["expected"]
    out = replay(name, "whole")
    if expected["status"] == "failed":
        return
    message = out.decoder.assistant_message(out.decoder.tool_calls())
    assert message["role"] == "assistant"
    replayed = [item["type"] for item in message.get("output_items", ())]
    assert replayed == [t for t in expected["output_item_types"] if t in ("reasoning", "message", "function_call")]
    if expected["reasoning_summary"] or expected["reasoning_text"]:
        assert message["reasoning_content"] == out.decoder.reasoning
    json.dumps(message)  # stores keep it as JSON


def test_encrypted_reasoning_is_taken_from_the_finished_reply() -> None:
    # The README's quirk 5: encrypted_content differs between output_item.added, output_item.done
    # and the final object (each is a fresh encryption); the added one is never kept.
    name = "openai__gpt5_reasoning_summary_then_function_call"
    seen: Dict[str, str] = {}
    for line in (RESPONSES / f"{name}.sse").read_bytes().splitlines():
        if not line.startswith(b"data: "):
            continue
        event = json.loads(line[6:])
        items = event["response"]["output"] if event["type"] == "response.completed" else [event.get("item") or {}]
        for item in items:
            if item.get("type") == "reasoning":
                seen[event["type"]] = item["encrypted_content"]
    assert len(set(seen.values())) == 3
    message = replay(name, "whole").decoder.assistant_message(())
    reasoning = [item for item in message["output_items"] if item["type"] == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]["encrypted_content"] == seen["response.completed"]


def test_text_of_a_final_object_with_empty_output_comes_from_the_deltas() -> None:
    out = replay("chatgpt_codex__text_final_output_empty", "whole")
    assert out.decoder.content == "codex-live-ok"
    assert [i["type"] for i in out.decoder.assistant_message(())["output_items"]] == ["reasoning", "message"]


# --------------------------------------------------------------------------- crafted streams


def sse(event: Dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def response(status: str = "completed", output: Optional[List[Any]] = None, **extra: Any) -> Dict[str, Any]:
    body = {"id": "resp_1", "object": "response", "model": "m-1", "status": status, "output": output or []}
    body["usage"] = {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    body.update(extra)
    return body


def completed(**kw: Any) -> bytes:
    return sse({"type": "response.completed", "response": response(**kw)})


def text_delta(delta: str, item: str = "msg_1", index: int = 0) -> bytes:
    return sse({"type": "response.output_text.delta", "item_id": item, "output_index": index, "content_index": 0, "delta": delta})


def run(*reads: bytes, limits: Limits = Limits()) -> Outcome:
    return read(list(reads), limits)


def test_each_delta_is_an_event_of_its_own_and_the_reply_ends_at_completed() -> None:
    out = run(text_delta("Hel"), text_delta("lo"), completed(), b"data: ignored after the end\n\n")
    assert [(e.type, e.content) for e in out.events] == [("content", "Hel"), ("content", "lo")]
    assert out.finished and out.decoder.finish_reason == "stop"
    assert out.decoder.usage is not None and out.decoder.usage.total_tokens == 12


def test_text_that_arrives_only_whole_is_delivered_once() -> None:
    item = {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "whole"}]}
    out = run(
        sse({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": "whole"}),
        sse({"type": "response.output_item.done", "output_index": 0, "item": item}),
        completed(output=[item]),
    )
    assert [e.content for e in out.events if e.type == "content"] == ["whole"]


def test_a_final_object_alone_still_gives_text_and_calls() -> None:
    output = [
        {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "hi"}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}'},
    ]
    out = run(completed(output=output))
    assert [e.type for e in out.events] == ["content", "tool_call"]
    assert out.events[1].tool_call is not None and out.events[1].tool_call.arguments == {"a": 1}
    assert out.decoder.finish_reason == "tool_calls"


def test_a_call_is_emitted_when_its_item_is_done_with_the_finished_arguments() -> None:
    added = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}
    out = run(
        sse({"type": "response.output_item.added", "output_index": 0, "item": added}),
        sse({"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": '{"a"'}),
        sse({"type": "response.output_item.done", "output_index": 0, "item": dict(added, arguments='{"a": 2}')}),
        completed(output=[dict(added, arguments='{"a": 2}')]),
    )
    calls = [e.tool_call for e in out.events if e.type == "tool_call"]
    assert len(calls) == 1 and calls[0] is not None and calls[0].arguments == {"a": 2} and calls[0].id == "call_1"


def test_reasoning_summaries_and_reasoning_text_are_reasoning_events() -> None:
    out = run(
        sse({"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "sum"}),
        sse({"type": "response.reasoning_text.delta", "item_id": "rs_2", "output_index": 1, "content_index": 0, "delta": "raw"}),
        text_delta("answer", "msg_1", 2),
        completed(),
    )
    assert [(e.type, e.reasoning or e.content) for e in out.events] == [
        ("reasoning", "sum"), ("reasoning", "raw"), ("content", "answer")
    ]  # fmt: skip
    assert out.decoder.reasoning == "sumraw"


@pytest.mark.parametrize("reason,finish", [("max_output_tokens", "length"), ("content_filter", "content_filter"), (None, "length")])
def test_incomplete_maps_to_a_finish_reason(reason: Optional[str], finish: str) -> None:
    details = {"reason": reason} if reason else None
    out = run(text_delta("x"), sse({"type": "response.incomplete", "response": response("incomplete", incomplete_details=details)}))
    assert out.error is None and out.decoder.finish_reason == finish


def test_an_error_event_is_a_stream_error_with_the_servers_code() -> None:
    out = run(text_delta("x"), sse({"type": "error", "code": "server_error", "message": "boom", "param": None}))
    assert out.error is not None and "boom" in str(out.error) and "server_error" in str(out.error)
    assert [e.content for e in out.events] == ["x"]  # what came first is delivered first


def test_response_failed_keeps_its_usage_and_raises() -> None:
    failed = response("failed", error={"code": "rate_limit_exceeded", "message": "slow down"})
    out = run(sse({"type": "response.failed", "response": failed}))
    assert out.error is not None and "slow down" in str(out.error)
    assert out.decoder.usage is not None and out.decoder.usage.total_tokens == 12


def test_eof_before_the_terminal_event_is_a_truncation() -> None:
    out = run(text_delta("x"))
    assert isinstance(out.error, StreamTruncatedError) and "response.completed" in str(out.error)


def test_a_done_line_before_the_terminal_event_is_a_truncation() -> None:
    out = run(text_delta("x"), b"data: [DONE]\n\n")
    assert isinstance(out.error, StreamTruncatedError)


@pytest.mark.parametrize(
    "event,field",
    [
        ({"type": "response.output_text.delta", "delta": 5}, "output_text.delta"),
        ({"type": "response.completed", "response": [1]}, "response"),
        ({"type": "response.completed", "response": response(usage={"input_tokens": "5"})}, "usage.input_tokens"),
        ({"type": "response.output_item.done", "item": "x"}, "item"),
        ({"type": 7}, "type"),
    ],
)
def test_impossible_shapes_name_the_field(event: Dict[str, Any], field: str) -> None:
    out = run(sse(event) if isinstance(event["type"], str) else b"data: " + json.dumps(event).encode() + b"\n\n")
    assert out.error is not None and field in str(out.error)


def test_unknown_and_hosted_events_are_not_output() -> None:
    out = run(
        sse({"type": "response.web_search_call.searching", "item_id": "ws_1", "output_index": 0}),
        sse({"type": "response.output_text.annotation.added", "item_id": "msg_1", "annotation": {}}),
        sse({"type": "response.something_new", "payload": [1, 2]}),
        completed(),
    )
    assert out.error is None and out.events == []


def test_limits_bound_the_reply_and_the_calls() -> None:
    out = run(text_delta("x" * 200), completed(), limits=Limits(max_reply_chars=100))
    assert out.error is not None and "max_reply_chars" in str(out.error)
    calls = [
        sse({"type": "response.output_item.added", "output_index": i, "item": {"type": "function_call", "id": f"fc_{i}", "name": "f"}})
        for i in range(3)
    ]
    out = run(*calls, completed(), limits=Limits(max_tool_calls=2))
    assert out.error is not None and "max_tool_calls" in str(out.error)


def _tuple(events: List[StreamEvent]) -> List[Tuple[str, str]]:
    return [(e.type, e.content or e.reasoning) for e in events]


def test_the_same_events_whatever_the_reads() -> None:
    data = (RESPONSES / "openai__o3mini_reasoning_summaries_encrypted_long.sse").read_bytes()
    whole = _tuple(read([data]).events)
    assert _tuple(read(reads_of(data, "random-7")).events) == whole


def test_an_event_named_only_in_the_sse_field_is_understood() -> None:
    out = run(
        b'event: response.output_text.delta\ndata: {"item_id": "m", "output_index": 0, "delta": "hi"}\n\n',
        b'event: response.completed\ndata: {"response": {"id": "r", "status": "completed", "output": []}}\n\n',
    )
    assert out.error is None and [e.content for e in out.events] == ["hi"] and out.decoder.finish_reason == "stop"


def test_a_last_event_without_its_blank_line_still_ends_the_reply() -> None:
    closing = sse({"type": "response.completed", "response": response()})
    out = run(text_delta("hi"), closing[:-1])  # the server closed right after the event's last line
    assert out.error is None and out.decoder.finish_reason == "stop" and [e.content for e in out.events] == ["hi"]
    out = run(text_delta("hi"), closing[: len(closing) // 2])  # cut inside the payload: truncated
    assert isinstance(out.error, StreamTruncatedError)


def test_deltas_without_item_ids_are_one_item_and_indexes_are_checked() -> None:
    item = {"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": "hello"}]}
    out = run(
        sse({"type": "response.output_text.delta", "delta": "hel"}), sse({"type": "response.output_text.delta", "delta": "lo"}),
        sse({"type": "response.output_item.done", "output_index": 0, "item": item}), completed(output=[item]),
    )
    assert out.error is None and out.decoder.content == "hello"
    out = run(sse({"type": "response.output_text.delta", "item_id": "m", "content_index": [0], "delta": "x"}))
    assert out.error is not None and "content_index" in str(out.error)
