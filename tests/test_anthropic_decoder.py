"""promptkit._dialects.anthropic_decoder: real Anthropic Messages recordings end to end, then crafted cases.

Every recording in ``tests/data/anthropic/`` (copied from the shared corpus; see
its README for provenance and how ``expected`` was computed by the official
SDK) is read through :func:`promptkit._reader.read_body` as a turn reads a
body: whole, in random reads, and byte by byte. Each way must give the
expected text, thinking (and its signatures), tool calls, stop reason and usage.
"""

from __future__ import annotations

import functools
import json
import pathlib
from typing import Any, Dict, List

import pytest

from promptkit import Limits
from promptkit._dialects.anthropic_decoder import FINISH_REASONS, AnthropicDecoder
from promptkit._errors import StreamTruncatedError
from promptkit._retry import is_retryable
from tests._decoder_replay import HOWS, Outcome, reads_of
from tests._decoder_replay import read as replay_reads

DATA = pathlib.Path(__file__).parent / "data" / "anthropic"
NAMES = sorted(p.name[: -len(".sse")] for p in DATA.glob("*.sse"))


def read(reads: List[bytes], limits: Limits = Limits()) -> "Outcome[AnthropicDecoder]":
    return replay_reads(reads, AnthropicDecoder(limits))


@functools.lru_cache(maxsize=None)
def meta(name: str) -> Dict[str, Any]:
    return json.loads((DATA / f"{name}.meta.json").read_text("utf-8"))


@functools.lru_cache(maxsize=None)
def replay(name: str, how: str) -> Outcome:
    return read(reads_of((DATA / f"{name}.sse").read_bytes(), how))


def test_the_corpus_is_here() -> None:
    assert len(NAMES) == 24


@pytest.mark.parametrize("name,how", [(n, h) for n in NAMES for h in HOWS])
def test_recording_assembles_to_the_expected_reply(name: str, how: str) -> None:
    expected = meta(name)["expected"]
    out = replay(name, how)
    assert out.error is None and out.finished
    text = "".join(e.content for e in out.events if e.type == "content")
    thinking = "".join(e.reasoning for e in out.events if e.type == "reasoning")
    calls = [e.tool_call for e in out.events if e.type == "tool_call"]
    assert text == out.decoder.content == expected["text"]
    assert thinking == out.decoder.reasoning == (expected["thinking"] or "")
    assert [(c.id, c.name, c.arguments) for c in calls] == [(c["id"], c["name"], c["input"]) for c in expected["tool_calls"]]  # type: ignore[union-attr]
    assert out.decoder.stop_reason == expected["stop_reason"]
    assert out.decoder.finish_reason == FINISH_REASONS[expected["stop_reason"]]
    signatures = [b["signature"] for b in out.decoder.thinking_blocks() if b["type"] == "thinking"]
    assert signatures == (expected["thinking_signatures"] or [])
    want = {k: v or 0 for k, v in expected["usage"].items()}
    usage = out.decoder.usage
    assert usage is not None
    assert usage.prompt_tokens == want["input_tokens"] + want["cache_read_input_tokens"] + want["cache_creation_input_tokens"]
    assert (usage.completion_tokens, usage.cached_tokens) == (want["output_tokens"], want["cache_read_input_tokens"])
    assert out.decoder.model == expected["model"] and out.decoder.id == expected["message_id"]


@pytest.mark.parametrize("name", NAMES)
def test_history_keeps_thinking_with_its_signature(name: str) -> None:
    expected = meta(name)["expected"]
    decoder = replay(name, "whole").decoder
    message = decoder.assistant_message(decoder.tool_calls())
    json.dumps(message)
    blocks = message.get("thinking_blocks", [])
    assert [b["signature"] for b in blocks if b["type"] == "thinking"] == (expected["thinking_signatures"] or [])
    if expected["thinking"]:
        assert message["reasoning_content"] == expected["thinking"] == "".join(b["thinking"] for b in blocks)


# --------------------------------------------------------------------------- crafted streams


def sse(event: Dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def start(input_tokens: int = 10, **usage: int) -> bytes:
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x", "content": [],
               "stop_reason": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage}}  # fmt: skip
    return sse({"type": "message_start", "message": message})


def block(index: int, kind: str, **fields: Any) -> bytes:
    return sse({"type": "content_block_start", "index": index, "content_block": {"type": kind, **fields}})


def delta(index: int, kind: str, **fields: Any) -> bytes:
    return sse({"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}})


def stop(index: int) -> bytes:
    return sse({"type": "content_block_stop", "index": index})


def end(reason: str = "end_turn", output_tokens: int = 5, **usage: int) -> List[bytes]:
    return [
        sse({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": {"output_tokens": output_tokens, **usage}}),
        sse({"type": "message_stop"}),
    ]


def run(*reads: bytes, limits: Limits = Limits()) -> Outcome:
    return read(list(reads), limits)


def test_text_thinking_and_a_tool_call_in_order() -> None:
    out = run(
        start(), sse({"type": "ping"}),
        block(0, "thinking", thinking="", signature=""), delta(0, "thinking_delta", thinking="hmm"),
        delta(0, "signature_delta", signature="SIG"), stop(0),
        block(1, "text", text=""), delta(1, "text_delta", text="Let me check."), stop(1),
        block(2, "tool_use", id="toolu_1", name="get", input={}), delta(2, "input_json_delta", partial_json='{"city": '),
        delta(2, "input_json_delta", partial_json='"Oslo"}'), stop(2),
        *end("tool_use"),
    )  # fmt: skip
    assert [(e.type, e.content or e.reasoning) for e in out.events[:2]] == [("reasoning", "hmm"), ("content", "Let me check.")]
    call = out.events[2].tool_call
    assert call is not None and (call.id, call.name, call.arguments) == ("toolu_1", "get", {"city": "Oslo"})
    assert out.decoder.finish_reason == "tool_calls" and out.finished
    message = out.decoder.assistant_message(out.decoder.tool_calls())
    assert message["thinking_blocks"] == [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]


def test_redacted_thinking_is_kept_for_the_history_and_shows_nothing() -> None:
    out = run(start(), block(0, "redacted_thinking", data="opaque"), stop(0), block(1, "text"), delta(1, "text_delta", text="x"), stop(1), *end())
    assert [e.type for e in out.events] == ["content"]
    assert out.decoder.thinking_blocks() == [{"type": "redacted_thinking", "data": "opaque"}]


def test_usage_from_message_delta_updates_message_start() -> None:
    out = run(start(input_tokens=3, cache_read_input_tokens=100, cache_creation_input_tokens=20), *end(output_tokens=42, input_tokens=4))
    usage = out.decoder.usage
    assert usage is not None and (usage.prompt_tokens, usage.cached_tokens, usage.completion_tokens) == (124, 100, 42)
    assert usage.total_tokens == 166


@pytest.mark.parametrize("reason,finish", sorted(FINISH_REASONS.items()) + [("something_new", "something_new")])
def test_stop_reasons_map_onto_finish_reasons(reason: str, finish: str) -> None:
    assert run(start(), *end(reason)).decoder.finish_reason == finish


def test_an_overloaded_error_is_a_retryable_stream_error() -> None:
    out = run(start(), sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    assert out.error is not None and "Overloaded" in str(out.error) and is_retryable(out.error)
    out = run(start(), sse({"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}))
    assert out.error is not None and not is_retryable(out.error)


def test_eof_before_message_stop_is_a_truncation_unless_the_stop_reason_came() -> None:
    out = run(start(), block(0, "text"), delta(0, "text_delta", text="x"))
    assert isinstance(out.error, StreamTruncatedError) and "message_stop" in str(out.error)
    out = run(start(), block(0, "text"), delta(0, "text_delta", text="x"), end()[0])  # message_stop lost
    assert out.error is None and out.decoder.finish_reason == "stop"


def test_a_tool_call_without_deltas_takes_its_starting_input() -> None:
    out = run(start(), block(0, "tool_use", id="t", name="f", input={"a": 1}), stop(0), *end("tool_use"))
    assert out.events[0].tool_call is not None and out.events[0].tool_call.arguments == {"a": 1}
    out = run(start(), block(0, "tool_use", id="t", name="f", input={}), stop(0), *end("tool_use"))
    assert out.events[0].tool_call is not None and out.events[0].tool_call.arguments_json == "{}"


@pytest.mark.parametrize(
    "event,field",
    [
        ({"type": "content_block_delta", "index": "0", "delta": {"type": "text_delta", "text": "x"}}, "index"),
        ({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": 1}}, "text_delta.text"),
        ({"type": "message_delta", "delta": {}, "usage": {"output_tokens": -1}}, "usage.output_tokens"),
        ({"type": "message_start", "message": []}, "message"),
    ],
)
def test_impossible_shapes_name_the_field(event: Dict[str, Any], field: str) -> None:
    out = run(sse(event))
    assert out.error is not None and field in str(out.error)


def test_limits_bound_the_reply_and_the_calls() -> None:
    out = run(start(), block(0, "text"), delta(0, "text_delta", text="x" * 200), *end(), limits=Limits(max_reply_chars=100))
    assert out.error is not None and "max_reply_chars" in str(out.error)
    calls = [block(i, "tool_use", id=f"t{i}", name="f", input={}) for i in range(3)]
    out = run(start(), *calls, limits=Limits(max_tool_calls=2))
    assert out.error is not None and "max_tool_calls" in str(out.error)


def test_usage_is_known_only_from_the_final_counts() -> None:
    # message_start's output_tokens is provisional: a reply cut before message_delta is estimated instead.
    out = run(start(input_tokens=30), block(0, "text"), delta(0, "text_delta", text="partial"))
    assert out.decoder.usage is None
    out = run(start(input_tokens=30), *end(output_tokens=9))
    assert out.decoder.usage is not None and (out.decoder.usage.prompt_tokens, out.decoder.usage.completion_tokens) == (30, 9)


def test_the_output_tool_streams_as_text_and_is_no_call() -> None:
    reads = [
        start(), block(0, "tool_use", id="toolu_1", name="Person", input={}),
        delta(0, "input_json_delta", partial_json=""), delta(0, "input_json_delta", partial_json='{"name": '),
        delta(0, "input_json_delta", partial_json='"Ada"}'), stop(0), *end("tool_use"),
    ]  # fmt: skip
    out = replay_reads(reads, AnthropicDecoder(output_tool="Person"))
    assert [(e.type, e.content) for e in out.events] == [("content", '{"name": '), ("content", '"Ada"}')]
    assert out.decoder.content == '{"name": "Ada"}' and out.decoder.tool_calls() == () and out.decoder.finish_reason == "stop"
    # The same stream without output_tool: an ordinary call.
    out = replay_reads(reads, AnthropicDecoder())
    assert [e.type for e in out.events] == ["tool_call"] and out.decoder.finish_reason == "tool_calls"


def test_a_message_stop_without_its_blank_line_still_ends_the_reply() -> None:
    body = [start(), block(0, "text"), delta(0, "text_delta", text="x"), stop(0), sse({"type": "message_delta", "delta": {}}),
            sse({"type": "message_stop"})[:-1]]  # fmt: skip
    out = run(*body)
    assert out.error is None and out.decoder.ended and out.decoder.content == "x"
