"""Tests for promptkit._dialects.chat_decoder: real recordings end to end, then crafted quirks.

Every recording under tests/data/recordings is framed by :class:`SSEParser`
(whole, three seeded random splits and, for small files, byte by byte), each
SSE event's data is fed to one :class:`Accumulator`, and the result is
checked against the ``expected`` block of its ``.meta.json`` (computed by an
independent reference assembler; see tests/data/README.md, "Assembly rules").
The crafted tests build chunk dicts by hand for the quirks of design.md
sections 2a ("Tool-call assembly") and 4 ("Quirks").
"""

from __future__ import annotations

import functools
import json
import pathlib
import random
from typing import Any, Dict, List, Optional, Tuple

import attrs
import pytest

from promptkit._dialects.chat_decoder import Accumulator
from promptkit._errors import APIError, StreamError
from promptkit._sse import SSEParser
from promptkit._types import StreamEvent, ToolCall

DATA = pathlib.Path(__file__).parent / "data"
RECORDINGS = DATA / "recordings"
NAMES = sorted(p.name[: -len(".sse")] for p in RECORDINGS.glob("*.sse"))
SEEDS = (1, 2, 3)
BYTEWISE_LIMIT = 8 * 1024


# --------------------------------------------------------------------------- replay helpers


@attrs.define
class Outcome:
    """What one way of reading a recording produced."""

    events: List[StreamEvent]  # returned by feed()
    finish_events: List[StreamEvent]  # returned by finish() (only when the stream ended without an error)
    error: Optional[StreamError]
    content_at_error: Optional[str]  # acc.content when the error was raised
    acc: Accumulator
    chunks_fed: int


def _random_reads(data: bytes, seed: int, max_size: int = 400) -> List[bytes]:
    rng = random.Random(seed)
    reads, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, max_size)
        reads.append(data[pos : pos + size])
        pos += size
    return reads


def _splits(data: bytes) -> Dict[str, List[bytes]]:
    splits = {"whole": [data]}
    for seed in SEEDS:
        splits[f"random-{seed}"] = _random_reads(data, seed)
    if len(data) < BYTEWISE_LIMIT:
        splits["bytewise"] = [data[i : i + 1] for i in range(len(data))]
    return splits


def _replay(reads: List[bytes]) -> Outcome:
    """SSE-frame the reads and feed every chunk to one Accumulator, as the Stream worker does."""
    parser = SSEParser()
    acc = Accumulator()
    events: List[StreamEvent] = []
    error: Optional[StreamError] = None
    content_at_error: Optional[str] = None
    fed = 0
    stopped = False
    for read in reads:
        for sse in parser.feed(read):
            if sse.data == "[DONE]":
                stopped = True
                break
            chunk = json.loads(sse.data)
            fed += 1
            try:
                events.extend(acc.feed(chunk))
            except StreamError as exc:
                error = exc
                content_at_error = acc.content
                stopped = True
                break
        if stopped:
            break
    finish_events = acc.finish() if error is None else []
    return Outcome(events, finish_events, error, content_at_error, acc, fed)


@functools.lru_cache(maxsize=None)
def replay_all(name: str) -> Dict[str, Outcome]:
    data = (RECORDINGS / f"{name}.sse").read_bytes()
    return {label: _replay(reads) for label, reads in _splits(data).items()}


@functools.lru_cache(maxsize=None)
def meta(name: str) -> Dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.meta.json").read_text("utf-8"))


def expected_choice(name: str, index: int = 0) -> Dict[str, Any]:
    return next(c for c in meta(name)["expected"]["choices"] if c["index"] == index)


def expected_reasoning(choice: Dict[str, Any]) -> str:
    if choice.get("reasoning_content") is not None:
        return choice["reasoning_content"]
    return choice.get("reasoning") or ""


def outcomes(name: str) -> List[Tuple[str, Outcome]]:
    return list(replay_all(name).items())


def content_text(events: List[StreamEvent]) -> str:
    return "".join(e.content for e in events if e.type == "content")


def all_events(outcome: Outcome) -> List[StreamEvent]:
    return outcome.events + outcome.finish_events


def expected_usage_numbers(usage: Dict[str, Any]) -> Dict[str, int]:
    pdet = usage.get("prompt_tokens_details") or {}
    cdet = usage.get("completion_tokens_details") or {}
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["total_tokens"],
        "cached_tokens": pdet.get("cached_tokens") or 0,
        "reasoning_tokens": cdet.get("reasoning_tokens") or 0,
    }


# --------------------------------------------------------------------------- the corpus itself


def test_corpus_is_complete() -> None:
    assert len(NAMES) == 42
    for name in NAMES:
        assert (RECORDINGS / f"{name}.meta.json").is_file(), name


def test_bytewise_split_really_runs() -> None:
    small = [n for n in NAMES if (RECORDINGS / f"{n}.sse").stat().st_size < BYTEWISE_LIMIT]
    assert small, "no recording is small enough for the byte-by-byte split"
    assert "bytewise" in replay_all(small[0])


# --------------------------------------------------------------------------- recordings


@pytest.mark.parametrize("name", NAMES)
def test_every_split_gives_identical_results(name: str) -> None:
    results = replay_all(name)
    whole = results["whole"]
    assert whole.chunks_fed > 0
    for label, out in results.items():
        assert out.events == whole.events, label
        assert out.finish_events == whole.finish_events, label
        assert (str(out.error) if out.error else None) == (str(whole.error) if whole.error else None), label
        assert out.chunks_fed == whole.chunks_fed, label
        assert out.acc.choices() == whole.acc.choices(), label
        assert out.acc.usage == whole.acc.usage, label


@pytest.mark.parametrize("name", NAMES)
def test_content(name: str) -> None:
    want = expected_choice(name)["content"] or ""
    for label, out in outcomes(name):
        assert out.acc.content == want, label
        assert content_text(all_events(out)) == want, label
        # A content event is never empty: an empty delta produces no event.
        assert all(e.content for e in all_events(out) if e.type == "content"), label


@pytest.mark.parametrize("name", NAMES)
def test_reasoning_and_refusal(name: str) -> None:
    choice = expected_choice(name)
    for label, out in outcomes(name):
        assert out.acc.reasoning == expected_reasoning(choice), label
        assert out.acc.refusal == (choice.get("refusal") or ""), label


@pytest.mark.parametrize("name", NAMES)
def test_tool_calls(name: str) -> None:
    want = expected_choice(name).get("tool_calls") or []
    for label, out in outcomes(name):
        calls = out.acc.tool_calls()
        assert [(c.id, c.name, c.arguments_json) for c in calls] == [
            (w["id"], w["name"], w["arguments"]) for w in want
        ], label
        for call, w in zip(calls, want):
            if w["arguments_is_valid_json"] and isinstance(w["arguments_parsed"], dict):
                assert call.arguments == w["arguments_parsed"], label
                assert call.arguments_error is None, label
        events = all_events(out)
        emitted = [e.tool_call for e in events if e.type == "tool_call"]
        assert emitted == list(calls), label  # exactly one event per call, in call order
        assert out.acc.tool_calls(complete_only=True) == calls, label
        positions = [i for i, e in enumerate(events) if e.type == "tool_call"]
        if positions:
            last_content = max((i for i, e in enumerate(events) if e.type == "content"), default=-1)
            assert last_content < positions[0], label


@pytest.mark.parametrize("name", NAMES)
def test_finish_reason(name: str) -> None:
    want = expected_choice(name)["finish_reason"]
    for label, out in outcomes(name):
        assert out.acc.finish_reason == want, label
        if want is not None:
            # The finish chunk already emitted everything: finish() owes nothing.
            assert out.finish_events == [], label


@pytest.mark.parametrize("name", NAMES)
def test_usage(name: str) -> None:
    expected = meta(name)["expected"]
    usage = expected["usage"]
    if usage is None:
        usage = (expected.get("provider_specific") or {}).get("x_groq_usage")
    for label, out in outcomes(name):
        if usage is None:
            assert out.acc.usage is None, label
            continue
        got = out.acc.usage
        assert got is not None, label
        assert {
            "prompt_tokens": got.prompt_tokens,
            "completion_tokens": got.completion_tokens,
            "total_tokens": got.total_tokens,
            "cached_tokens": got.cached_tokens,
            "reasoning_tokens": got.reasoning_tokens,
        } == expected_usage_numbers(usage), label
        assert got.estimated is False, label


@pytest.mark.parametrize("name", NAMES)
def test_in_band_errors(name: str) -> None:
    errors = meta(name)["expected"].get("errors") or []
    want_content = expected_choice(name)["content"] or ""
    for label, out in outcomes(name):
        if not errors:
            assert out.error is None, label
            continue
        assert out.error is not None, label
        assert isinstance(out.error, APIError), label
        error_obj = errors[-1]["error"]
        assert error_obj["message"] in str(out.error), label
        assert out.error.body == error_obj, label
        assert out.content_at_error == want_content, label
        assert content_text(out.events) == want_content, label
        assert out.finish_events == [], label


def test_error_chunk_usage_is_kept() -> None:
    name = "openrouter__error_chunk_with_comments"
    want = expected_usage_numbers(meta(name)["expected"]["usage"])
    for label, out in outcomes(name):
        assert out.error is not None, label
        usage = out.acc.usage
        assert usage is not None, label
        assert usage.prompt_tokens == want["prompt_tokens"] == 43, label
        assert usage.completion_tokens == want["completion_tokens"], label
        assert usage.reasoning_tokens == want["reasoning_tokens"] == 11, label
        # The finish_reason sent before the error chunk is not lost.
        assert out.acc.finish_reason == "length", label


@pytest.mark.parametrize("name", NAMES)
def test_choices_match_expected(name: str) -> None:
    want = sorted(meta(name)["expected"]["choices"], key=lambda c: c["index"])
    for label, out in outcomes(name):
        got = out.acc.choices()
        assert [c.index for c in got] == [c["index"] for c in want], label
        for g, w in zip(got, want):
            assert g.content == (w["content"] or ""), label
            assert g.finish_reason == w["finish_reason"], label
            assert g.reasoning == expected_reasoning(w), label
            assert g.refusal == (w.get("refusal") or ""), label
            assert len(g.tool_calls) == len(w.get("tool_calls") or []), label


@pytest.mark.parametrize("name", NAMES)
def test_saw_output_and_identity(name: str) -> None:
    expected = meta(name)["expected"]
    choice = expected_choice(name)
    output = bool(choice["content"]) or bool(choice.get("tool_calls"))
    first_model = next((m for m in expected["models"] if m), "")
    for label, out in outcomes(name):
        assert out.acc.saw_output is output, label
        assert out.acc.model == first_model, label
        assert out.acc.id in [i for i in expected["response_ids"] if i] or (
            out.acc.id == "" and not any(expected["response_ids"])
        ), label


def test_multiple_choices_events_follow_choice_0_only() -> None:
    name = "openai__multiple_choices_n3"
    want = sorted(meta(name)["expected"]["choices"], key=lambda c: c["index"])
    assert len(want) == 3
    assert len({c["content"] for c in want}) == 3  # the choices really differ
    for label, out in outcomes(name):
        assert content_text(all_events(out)) == want[0]["content"], label
        got = out.acc.choices()
        assert [c.index for c in got] == [0, 1, 2], label
        assert [c.content for c in got] == [c["content"] for c in want], label
        assert [c.finish_reason for c in got] == ["stop", "stop", "stop"], label
        assert out.acc.content == want[0]["content"], label


def test_groq_usage_comes_from_x_groq() -> None:
    name = "groq__compound_changing_chunk_ids"
    expected = meta(name)["expected"]
    assert expected["usage"] is None
    x_groq = expected["provider_specific"]["x_groq_usage"]
    for label, out in outcomes(name):
        assert out.acc.usage is not None, label
        assert out.acc.usage.prompt_tokens == x_groq["prompt_tokens"] == 5003, label
        assert out.acc.usage.total_tokens == x_groq["total_tokens"], label


def test_tool_call_without_finish_reason_is_emitted_by_finish() -> None:
    name = "openrouter_novita__tool_call_repeated_id_name"
    for label, out in outcomes(name):
        assert out.acc.finish_reason is None, label
        assert [e.type for e in out.events] == [], label
        assert [e.type for e in out.finish_events] == ["tool_call"], label
        call = out.finish_events[0].tool_call
        assert call is not None
        assert (call.id, call.name, call.arguments) == ("0", "llm_version", {}), label


# --------------------------------------------------------------------------- crafted chunks


def chunk(
    delta: Optional[Dict[str, Any]] = None,
    finish: Optional[str] = None,
    index: int = 0,
    **extra: Any,
) -> Dict[str, Any]:
    body: Dict[str, Any] = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": index, "delta": delta if delta is not None else {}, "finish_reason": finish}],
    }
    body.update(extra)
    return body


def tool_chunk(*deltas: Dict[str, Any], finish: Optional[str] = None) -> Dict[str, Any]:
    return chunk({"tool_calls": list(deltas)}, finish=finish)


def fn(name: Optional[str] = None, arguments: Optional[str] = None) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if name is not None:
        out["name"] = name
    if arguments is not None:
        out["arguments"] = arguments
    return out


def feed_all(acc: Accumulator, chunks: List[Any]) -> List[StreamEvent]:
    events: List[StreamEvent] = []
    for c in chunks:
        events.extend(acc.feed(c))
    return events


def calls_summary(calls: Any) -> List[Tuple[str, str, str]]:
    return [(c.id, c.name, c.arguments_json) for c in calls]


def test_plain_content_events() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, finish="stop"),
        ],
    )
    assert events == [StreamEvent("content", content="Hel"), StreamEvent("content", content="lo")]
    assert acc.content == "Hello"
    assert acc.finish_reason == "stop"
    assert acc.finish() == []


def test_tool_call_deltas_without_index_continue_the_last_open_call() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            chunk({"role": "assistant", "content": None}),
            tool_chunk({"id": "call_a", "type": "function", "function": fn("f", "")}),
            tool_chunk({"function": fn(arguments='{"x":')}),
            tool_chunk({"function": fn(arguments=" 1}")}),
            tool_chunk({"id": "call_b", "type": "function", "function": fn("g", "{")}),
            tool_chunk({"function": fn(arguments="}")}),
            chunk({}, finish="tool_calls"),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("call_a", "f", '{"x": 1}'), ("call_b", "g", "{}")]
    assert acc.tool_calls()[0].arguments == {"x": 1}
    assert [e.type for e in events] == ["tool_call", "tool_call"]
    assert [e.tool_call for e in events] == list(acc.tool_calls())


def test_two_calls_sharing_one_index_with_different_ids_are_two_calls() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "call_a", "function": fn("f", "")}),
            tool_chunk({"index": 0, "function": fn(arguments='{"a": 1}')}),
            tool_chunk({"index": 0, "id": "call_b", "function": fn("g", "")}),
            tool_chunk({"index": 0, "function": fn(arguments='{"b": 2}')}),
            chunk({}, finish="tool_calls"),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("call_a", "f", '{"a": 1}'), ("call_b", "g", '{"b": 2}')]
    assert [e.tool_call.id for e in events if e.tool_call] == ["call_a", "call_b"]


def test_whole_tool_call_in_the_finish_chunk() -> None:
    acc = Accumulator()
    events = feed_all(acc, [chunk({"role": "assistant", "content": "Let me check."})])
    assert [e.type for e in events] == ["content"]
    assert acc.tool_calls() == ()
    finish_chunk = tool_chunk(
        {"index": 0, "id": "call_w", "type": "function", "function": fn("weather", '{"city": "Paris"}')},
        finish="tool_calls",
    )
    events = acc.feed(finish_chunk)
    assert len(events) == 1
    assert events[0].type == "tool_call"
    assert events[0].tool_call == ToolCall.create("call_w", "weather", '{"city": "Paris"}')
    assert events[0].tool_call.arguments == {"city": "Paris"}
    assert acc.finish_reason == "tool_calls"
    assert acc.finish() == []


def test_content_and_finish_in_one_chunk_put_content_first() -> None:
    acc = Accumulator()
    acc.feed(tool_chunk({"index": 0, "id": "c1", "function": fn("f", "{}")}))
    events = acc.feed(chunk({"content": "tail"}, finish="tool_calls"))
    assert [e.type for e in events] == ["content", "tool_call"]


def test_repeated_id_and_name_are_not_concatenated() -> None:
    acc = Accumulator()
    repeat = {"index": 0, "id": "0", "type": "function"}
    feed_all(
        acc,
        [
            tool_chunk({**repeat, "function": fn("llm_version", "")}),
            tool_chunk({**repeat, "function": fn("llm_version", '{"a":')}),
            tool_chunk({**repeat, "function": fn("llm_version", " 1}")}),
        ],
    )
    calls = acc.tool_calls()
    assert calls_summary(calls) == [("0", "llm_version", '{"a": 1}')]
    assert calls[0].arguments == {"a": 1}


def test_delta_with_only_an_id_continues_the_matching_call() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "call_a", "function": fn("f", '{"a":')}),
            tool_chunk({"index": 1, "id": "call_b", "function": fn("g", '{"b": 2}')}),
            tool_chunk({"id": "call_a", "function": fn(arguments=" 1}")}),
            chunk({}, finish="tool_calls"),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("call_a", "f", '{"a": 1}'), ("call_b", "g", '{"b": 2}')]
    assert len([e for e in events if e.type == "tool_call"]) == 2


def test_interleaved_parallel_calls_by_index() -> None:
    acc = Accumulator()
    feed_all(
        acc,
        [
            tool_chunk(
                {"index": 0, "id": "a", "function": fn("f", "")},
                {"index": 1, "id": "b", "function": fn("g", "")},
            ),
            tool_chunk({"index": 1, "function": fn(arguments='{"y":')}),
            tool_chunk({"index": 0, "function": fn(arguments='{"x":')}),
            tool_chunk({"index": 0, "function": fn(arguments="1}")}, {"index": 1, "function": fn(arguments="2}")}),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("a", "f", '{"x":1}'), ("b", "g", '{"y":2}')]


def test_id_arriving_after_the_first_delta_is_set_once() -> None:
    acc = Accumulator()
    feed_all(
        acc,
        [
            tool_chunk({"index": 0, "function": fn("f", "")}),
            tool_chunk({"index": 0, "id": "late", "function": fn(arguments="{}")}),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("late", "f", "{}")]


def test_id_of_an_earlier_call_at_a_reused_index_continues_that_call() -> None:
    # design.md 2a: only a *new* id starts a new call; call_a is not new.
    acc = Accumulator()
    feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "call_a", "function": fn("f", '{"a":')}),
            tool_chunk({"index": 0, "id": "call_b", "function": fn("g", '{"b": 2}')}),
            tool_chunk({"index": 0, "id": "call_a", "function": fn(arguments=" 1}")}),
        ],
    )
    assert calls_summary(acc.tool_calls()) == [("call_a", "f", '{"a": 1}'), ("call_b", "g", '{"b": 2}')]


def test_distinct_indexes_with_a_reused_id_stay_distinct_calls() -> None:
    # tests/data/README.md rule 5: tool calls are merged by their index. (Regression: _find
    # used to fall back to _by_id for an unseen index and concatenated '{"a": 1}{"b": 2}'.)
    acc = Accumulator()
    feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "call_0", "function": fn("f", '{"a": 1}')}),
            tool_chunk({"index": 1, "id": "call_0", "function": fn("g", '{"b": 2}')}),
            chunk({}, finish="tool_calls"),
        ],
    )
    calls = acc.tool_calls()
    assert [(c.name, c.arguments) for c in calls] == [("f", {"a": 1}), ("g", {"b": 2})]


@pytest.mark.parametrize(
    "text, error_part",
    [('{"x": 1', "invalid JSON"), ("not json", "invalid JSON"), ("[1, 2]", "not a JSON object")],
)
def test_invalid_json_arguments(text: str, error_part: str) -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [tool_chunk({"index": 0, "id": "c", "function": fn("f", text)}), chunk({}, finish="tool_calls")],
    )
    (call,) = acc.tool_calls()
    assert call.arguments == {}
    assert call.arguments_json == text
    assert call.arguments_error is not None and error_part in call.arguments_error
    assert [e.tool_call for e in events] == [call]


def test_tool_call_with_no_arguments_at_all() -> None:
    acc = Accumulator()
    feed_all(acc, [tool_chunk({"index": 0, "id": "c", "function": fn("ping")}), chunk({}, finish="tool_calls")])
    (call,) = acc.tool_calls()
    assert (call.arguments_json, call.arguments, call.arguments_error) == ("", {}, None)


def test_empty_choices_without_usage_give_no_events() -> None:
    acc = Accumulator()
    azure_first = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": False}}}],
    }
    assert acc.feed(azure_first) == []
    assert acc.usage is None
    assert acc.saw_output is False
    assert acc.finish_reason is None
    assert (acc.id, acc.model) == ("", "")
    events = feed_all(
        acc,
        [
            {"id": "chatcmpl-az", "model": "gpt-35-turbo", "choices": [{"index": 0, "delta": {"content": "Hi"}}]},
            {
                "id": "chatcmpl-az",
                "model": "gpt-35-turbo",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            },
        ],
    )
    assert events == [StreamEvent("content", content="Hi")]
    # Empty id/model of the filter chunk do not stick.
    assert (acc.id, acc.model) == ("chatcmpl-az", "gpt-35-turbo")


def test_usage_after_finish_keeps_the_finish_reason() -> None:
    acc = Accumulator()
    feed_all(acc, [chunk({"content": "ok"}), chunk({}, finish="stop")])
    usage_chunk = {
        "id": "chatcmpl-x",
        "choices": [],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    assert acc.feed(usage_chunk) == []
    assert acc.finish_reason == "stop"
    assert acc.usage is not None
    assert (
        acc.usage.prompt_tokens,
        acc.usage.completion_tokens,
        acc.usage.total_tokens,
        acc.usage.cached_tokens,
        acc.usage.reasoning_tokens,
    ) == (10, 5, 15, 4, 2)
    assert acc.content == "ok"


def test_null_usage_does_not_erase_earlier_usage() -> None:
    acc = Accumulator()
    acc.feed(chunk({}, finish="stop", usage={"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}))
    acc.feed(chunk({"content": ""}, usage=None))
    assert acc.usage is not None and acc.usage.total_tokens == 7


def test_groq_x_groq_usage_only_when_no_top_level_usage() -> None:
    acc = Accumulator()
    groq_usage = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    acc.feed(chunk({}, finish="stop", x_groq={"id": "req", "usage": groq_usage}))
    assert acc.usage is not None and acc.usage.total_tokens == 3
    acc = Accumulator()
    acc.feed(
        chunk(
            {},
            finish="stop",
            usage={"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            x_groq={"usage": groq_usage},
        )
    )
    assert acc.usage is not None and acc.usage.total_tokens == 30


def test_reasoning_content_arrives_as_reasoning_events_never_as_content() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            chunk({"role": "assistant", "content": None, "reasoning_content": "Let me "}),
            chunk({"reasoning_content": "think."}),
            chunk({"content": "Answer", "reasoning_content": None}),
            chunk({}, finish="stop"),
        ],
    )
    assert acc.content == "Answer"
    assert acc.reasoning == "Let me think."
    assert events == [
        StreamEvent("reasoning", reasoning="Let me "),
        StreamEvent("reasoning", reasoning="think."),
        StreamEvent("content", content="Answer"),
    ]
    assert acc.choices()[0].reasoning == "Let me think."
    assert acc.assistant_message(()) == {"role": "assistant", "content": "Answer", "reasoning_content": "Let me think."}


def test_reasoning_field_and_precedence_of_reasoning_content() -> None:
    acc = Accumulator()
    feed_all(
        acc,
        [
            chunk({"reasoning": "a"}),
            chunk({"reasoning_content": "b", "reasoning": "b"}),  # vLLM-style duplicate: taken once
            chunk({"reasoning": "c", "content": "x"}),
        ],
    )
    assert acc.reasoning == "abc"
    assert acc.content == "x"


def test_reasoning_of_other_choices_makes_no_events() -> None:
    acc = Accumulator()
    events = feed_all(acc, [{"choices": [{"index": 1, "delta": {"reasoning_content": "hidden"}}]}, chunk({"content": "x"}, finish="stop")])
    assert [e.type for e in events] == ["content"]
    assert acc.choices()[1].reasoning == "hidden"


def test_refusal_is_kept_apart() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            chunk({"role": "assistant", "content": None, "refusal": ""}),
            chunk({"refusal": "I can't"}),
            chunk({"refusal": " help."}),
        ],
    )
    assert events == []
    assert acc.refusal == "I can't help."
    assert acc.content == ""


def test_saw_output_role_only_then_content() -> None:
    acc = Accumulator()
    acc.feed(chunk({"role": "assistant", "content": ""}))
    assert acc.saw_output is False
    acc.feed(chunk({"role": "assistant"}))
    assert acc.saw_output is False
    acc.feed(chunk({"reasoning_content": "hmm"}))
    assert acc.saw_output is False
    acc.feed(chunk({"content": "x"}))
    assert acc.saw_output is True


def test_saw_output_after_tool_call_delta() -> None:
    acc = Accumulator()
    acc.feed(chunk({"role": "assistant", "content": None}))
    assert acc.saw_output is False
    events = acc.feed(tool_chunk({"index": 0, "id": "c", "function": fn("f", "")}))
    assert events == []  # the call is not complete yet
    assert acc.saw_output is True
    assert acc.tool_calls(complete_only=True) == ()
    assert len(acc.tool_calls()) == 1


@pytest.mark.parametrize("bad", [[], ["x"], "text", 42, None, True])
def test_non_dict_chunk_raises_stream_error(bad: Any) -> None:
    acc = Accumulator()
    with pytest.raises(StreamError) as info:
        acc.feed(bad)
    assert info.value.body == bad
    assert "malformed chunk" in str(info.value)


def test_non_list_choices_raise_stream_error() -> None:
    with pytest.raises(StreamError):
        Accumulator().feed({"choices": {"index": 0}})


@pytest.mark.parametrize("delta", ["oops", ["content"], 5])
def test_non_object_delta_is_not_a_crash(delta: Any) -> None:
    # Regression: _feed_main used to call delta.get() on any truthy delta -> AttributeError.
    acc = Accumulator()
    try:
        events = acc.feed({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
    except StreamError:
        return  # rejecting the chunk as malformed is acceptable
    assert events == []  # so is skipping the bad delta


def test_in_band_error_raises_with_body() -> None:
    acc = Accumulator()
    acc.feed(chunk({"content": "partial"}))
    with pytest.raises(StreamError) as info:
        acc.feed({"error": {"message": "boom", "code": "x"}})
    assert "boom" in str(info.value)
    assert info.value.body == {"message": "boom", "code": "x"}
    assert acc.content == "partial"


def test_in_band_error_keeps_usage_of_the_error_chunk() -> None:
    acc = Accumulator()
    bad = chunk(
        {"content": ""},
        error={"code": 400, "message": "Token limit reached"},
        usage={"prompt_tokens": 43, "completion_tokens": 10, "total_tokens": 53},
    )
    with pytest.raises(StreamError) as info:
        acc.feed(bad)
    assert "Token limit reached" in str(info.value)
    assert acc.usage is not None and acc.usage.total_tokens == 53


def test_string_error_payload() -> None:
    with pytest.raises(StreamError) as info:
        Accumulator().feed({"error": "overloaded"})
    assert "overloaded" in str(info.value)


def test_finish_emits_tool_calls_when_no_finish_chunk_came() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "a", "function": fn("f", '{"k": "v"}')}),
            tool_chunk({"index": 1, "id": "b", "function": fn("g", "{}")}),
        ],
    )
    assert events == []
    assert acc.finish_reason is None
    final = acc.finish()
    assert [e.type for e in final] == ["tool_call", "tool_call"]
    assert [e.tool_call.id for e in final if e.tool_call] == ["a", "b"]
    assert final[0].tool_call is not None and final[0].tool_call.arguments == {"k": "v"}
    assert acc.finish() == []  # never twice
    assert acc.tool_calls(complete_only=True) == acc.tool_calls()


def test_finish_without_calls_is_empty() -> None:
    acc = Accumulator()
    feed_all(acc, [chunk({"content": "hi"})])
    assert acc.finish() == []


def test_repeated_finish_reason_emits_each_call_once() -> None:
    # OpenRouter sends finish_reason twice (openrouter__advisor_tool_text, ..._error_chunk_with_comments).
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            tool_chunk({"index": 0, "id": "a", "function": fn("f", "{}")}),
            chunk({"content": ""}, finish="tool_calls"),
            chunk({"content": ""}, finish="tool_calls"),
        ],
    )
    assert [e.type for e in events] == ["tool_call"]
    assert acc.finish() == []


def test_later_finish_reason_wins() -> None:
    acc = Accumulator()
    feed_all(acc, [chunk({"content": "a"}, finish="length"), chunk({}, finish=None), chunk({}, finish="stop")])
    assert acc.finish_reason == "stop"


def test_other_choices_are_assembled_quietly() -> None:
    acc = Accumulator()
    events = feed_all(
        acc,
        [
            chunk({"content": "zero"}, index=0),
            chunk({"content": "one"}, index=1),
            chunk({"tool_calls": [{"index": 0, "id": "c1", "function": fn("f", "{}")}]}, index=1),
            chunk({}, finish="stop", index=0),
            chunk({}, finish="tool_calls", index=1),
        ],
    )
    assert events == [StreamEvent("content", content="zero")]
    assert acc.content == "zero"
    assert acc.tool_calls() == ()
    zero, one = acc.choices()
    assert (zero.index, zero.content, zero.finish_reason) == (0, "zero", "stop")
    assert (one.index, one.content, one.finish_reason) == (1, "one", "tool_calls")
    assert calls_summary(one.tool_calls) == [("c1", "f", "{}")]


# --------------------------------------------------------------------------- limits and hostile shapes

import sys  # noqa: E402

from promptkit import Limits  # noqa: E402
from promptkit._dialects import chat_decoder as accumulator_module  # noqa: E402


def _lines_run(chunks: List[Any], limits: Limits) -> int:
    """How many lines of accumulator.py run while these chunks are fed (a deterministic cost measure)."""
    acc = Accumulator(limits)
    count = 0
    target = accumulator_module.__file__

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != target:
            return None
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        feed_all(acc, chunks)
    finally:
        sys.settrace(None)
    return count


def _calls_without_index(n: int) -> List[Any]:
    chunks: List[Any] = []
    for i in range(n):
        chunks.append(chunk({"tool_calls": [{"id": f"call_{i}", "function": fn("f", '{"i": ')}]}))
        chunks.append(chunk({"tool_calls": [{"function": fn(arguments=str(i))}]}))
        chunks.append(chunk({"tool_calls": [{"id": f"call_{i}", "function": fn(arguments="}")}]}))
    return chunks


def test_tool_calls_without_index_assemble_in_linear_time() -> None:
    limits = Limits(max_tool_calls=10_000)
    small = _lines_run(_calls_without_index(200), limits)
    large = _lines_run(_calls_without_index(800), limits)
    # Linear: four times the calls cost four times the lines (a search through
    # the earlier calls would cost sixteen times).
    assert large <= 4.2 * small, (small, large)
    acc = Accumulator(limits)
    feed_all(acc, _calls_without_index(800) + [chunk({}, "tool_calls")])
    assert [(c.id, c.arguments) for c in acc.tool_calls()] == [(f"call_{i}", {"i": i}) for i in range(800)]


def test_repeated_finish_chunks_build_each_call_once() -> None:
    acc = Accumulator()
    feed_all(acc, [chunk({"tool_calls": [{"index": i, "id": f"c{i}", "function": fn("f", "{}")}]}) for i in range(50)])
    built = []
    original = accumulator_module.tool_call

    def counting(*args: Any) -> Any:
        built.append(args[0])
        return original(*args)

    accumulator_module.tool_call = counting  # type: ignore[assignment]
    try:
        for _ in range(20):
            acc.feed(chunk({}, "tool_calls"))
    finally:
        accumulator_module.tool_call = original  # type: ignore[assignment]
    assert built == [f"c{i}" for i in range(50)]


def test_a_huge_tool_call_index_is_a_dict_key_not_a_list_size() -> None:
    acc = Accumulator()
    events = feed_all(acc, [chunk({"tool_calls": [{"index": 10**18, "id": "far", "function": fn("f", "{}")}]}),
                            chunk({}, "tool_calls")])
    assert [e.tool_call.id for e in events if e.tool_call] == ["far"]
    assert len(acc._main.by_index) == 1


def test_a_huge_choice_index_is_a_dict_key_not_a_list_size() -> None:
    acc = Accumulator()
    feed_all(acc, [chunk({"content": "a"}), chunk({"content": "b"}, index=10**18), chunk({}, "stop")])
    assert [c.index for c in acc.choices()] == [0, 10**18]


@pytest.mark.parametrize(
    "chunks, message",
    [
        ([chunk({"content": "x"}, index=1)], "the stream carried no choice 0, only choices [1]"),
        ([{"id": "x", "choices": []}, {"usage": {"prompt_tokens": 1}}], "the stream ended without any choice"),
        ([], "the stream ended without any choice"),
    ],
)
def test_finish_without_choice_0_is_a_stream_error(chunks: List[Any], message: str) -> None:
    acc = Accumulator()
    feed_all(acc, chunks)
    with pytest.raises(StreamError, match=message.replace("[", r"\[").replace("]", r"\]")):
        acc.finish()


def test_reply_limit_counts_content_reasoning_refusal_and_calls_of_every_choice() -> None:
    limits = Limits(max_reply_chars=1000)
    pieces = [
        {"content": "c" * 100},
        {"reasoning_content": "r" * 100},
        {"refusal": "n" * 100},
        {"tool_calls": [{"index": 0, "id": "i" * 100, "function": fn("f" * 100, "a" * 100)}]},
    ]
    acc = Accumulator(limits)
    feed_all(acc, [chunk(p) for p in pieces] + [chunk({"content": "o" * 100}, index=1)])
    assert acc._chars == 700 + 6 * accumulator_module._PIECE_CHARS  # seven texts in six stored pieces
    with pytest.raises(StreamError, match=r"Limits.max_reply_chars \(1000 characters\)"):
        acc.feed(chunk({"content": "x" * 100}, index=2))


def test_too_deep_arguments_fail_the_stream_but_only_mark_a_reported_call() -> None:
    acc = Accumulator(Limits(max_json_depth=3))
    acc.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": fn("f", '{"a": [[[1]]]}')}]}))
    (call,) = acc.tool_calls()  # reporting: never raises
    assert call.arguments == {}
    assert call.arguments_error == (
        "arguments not parsed: the server exceeded Limits.max_json_depth (3 levels): a JSON text nests deeper"
    )
    with pytest.raises(StreamError, match=r"Limits.max_json_depth \(3 levels\)"):
        acc.feed(chunk({}, "tool_calls"))


def test_null_fields_mean_absent() -> None:
    acc = Accumulator()
    events = feed_all(acc, [
        {"choices": [{"index": None, "delta": None, "finish_reason": None}], "usage": None, "model": None},
        chunk({"content": None, "reasoning_content": None, "refusal": None, "tool_calls": None}),
        chunk({"tool_calls": [{"index": None, "id": None, "function": None}]}),
        chunk({"content": "ok"}, "stop"),
    ])
    assert content_text(events) == "ok"
    assert acc.finish() == []


def test_arguments_with_too_many_values_are_not_parsed() -> None:
    acc = Accumulator(Limits(max_json_values=100))
    acc.feed(chunk({"tool_calls": [{"index": 0, "id": "c", "function": fn("f", '{"a": [' + "[]," * 200 + "1]}")}]}))
    (call,) = acc.tool_calls()
    assert call.arguments == {} and "Limits.max_json_values (100 values)" in str(call.arguments_error)
    with pytest.raises(StreamError, match=r"Limits.max_json_values \(100 values\).*tool call 'c'"):
        acc.feed(chunk({}, "tool_calls"))


def test_an_error_typed_chunk_is_the_servers_error() -> None:
    with pytest.raises(StreamError, match="overloaded"):
        Accumulator().feed({"type": "error", "message": "overloaded", "code": "server_error"})
