"""OpenTelemetry GenAI spans and metrics (``Client(telemetry=...)``), checked with the real SDK.

Every test gets its own TracerProvider (an in-memory exporter, plus a processor that
checks every started span is ended) and MeterProvider (an in-memory reader), passed
explicitly: no global OpenTelemetry state is set or left behind.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from urllib.parse import urlsplit
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the test extras install opentelemetry-sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

import promptkit  # noqa: E402
from promptkit import Telemetry  # noqa: E402
from tests._processes import free_port  # noqa: E402
from promptkit.testing import MockReply, MockServer  # noqa: E402

API_KEY = "sk-telemetry-test-key-0123456789"
CONTENT_KEYS = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
                "gen_ai.tool.call.arguments", "gen_ai.tool.call.result")  # fmt: skip


class Unended(SpanProcessor):
    """Remembers spans started and not ended: a span left open is telemetry state leaked."""

    def __init__(self) -> None:
        self.open: Set[int] = set()
        self.lock = threading.Lock()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        with self.lock:
            self.open.add(span.context.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.open.discard(span.context.span_id)


class Otel:
    """One test's SDK: providers, the span exporter and the metric reader."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.unended = Unended()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(self.unended)
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options)

    def spans(self) -> List[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {[s.name for s in self.spans()]}"
        return found[0]

    def points(self, name: str) -> List[Any]:
        """The data points of the metric ``name`` (checked to be promptkit's, with one unit)."""
        data = self.reader.get_metrics_data()
        found = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        assert scope.scope.name == "promptkit" and scope.scope.version == promptkit.__version__
                        found.append(metric)
        assert len(found) == 1, f"metric {name!r}: {len(found)} found"
        return list(found[0].data.data_points)

    def unit(self, name: str) -> str:
        data = self.reader.get_metrics_data()
        return next(m.unit for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics if m.name == name)


@pytest.fixture
def otel() -> Iterator[Otel]:
    sdk = Otel()
    yield sdk
    assert not sdk.unended.open, "a span was started and never ended"
    sdk.tracer_provider.shutdown()
    sdk.meter_provider.shutdown()


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


def otel_client(server: Optional[MockServer], telemetry: Telemetry, **options: Any) -> promptkit.Client:
    """A client of ``server`` (or of ``base_url=``) reporting to ``telemetry``."""
    options.setdefault("base_url", server.url if server is not None else None)
    return promptkit.Client(api_key=API_KEY, telemetry=telemetry, **options)


def port_of(server: MockServer) -> int:
    return int(urlsplit(server.url).port or 0)


def parent_id(span: ReadableSpan) -> Optional[int]:
    return span.parent.span_id if span.parent is not None else None


def chats(otel: Otel) -> List[ReadableSpan]:
    return sorted((s for s in otel.spans() if s.attributes and s.attributes.get("gen_ai.operation.name") == "chat"),
                  key=lambda s: s.start_time or 0)  # fmt: skip


def every_attribute(otel: Otel) -> List[Dict[str, Any]]:
    """The attributes of every span, span event and metric data point."""
    out = [dict(s.attributes or {}) for s in otel.spans()]
    out += [dict(e.attributes or {}) for s in otel.spans() for e in s.events]
    data = otel.reader.get_metrics_data()
    out += [dict(p.attributes or {}) for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics for p in m.data.data_points]
    return out


# ---------------------------------------------------------------- a text turn, on every dialect


def test_a_text_turn_is_an_agent_span_with_a_chat_span_under_the_callers_span(
    otel: Otel, server: MockServer, every_dialect: str
) -> None:
    server.enqueue(MockReply.text("Hello there, friend.", reasoning="think first"))
    with otel_client(server, otel.telemetry()) as client:
        conv = client.conversation(system_prompt="Be brief.", temperature=0.25, max_tokens=64, top_p=0.9)
        with otel.tracer_provider.get_tracer("app").start_as_current_span("http request") as caller:
            response = conv.send("Say hello.")
    provider = "anthropic" if every_dialect == "anthropic" else "openai"
    turn, chat = otel.span("invoke_agent promptkit"), otel.span(f"chat {client.model}")
    assert parent_id(turn) == caller.get_span_context().span_id  # the caller's trace goes on
    assert parent_id(chat) == turn.context.span_id and chat.context.trace_id == caller.get_span_context().trace_id
    assert (turn.kind, chat.kind) == (SpanKind.INTERNAL, SpanKind.CLIENT)
    assert turn.status.status_code == chat.status.status_code == StatusCode.UNSET
    assert turn.attributes == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": provider, "gen_ai.agent.name": "promptkit",
        "gen_ai.request.model": client.model, "gen_ai.conversation.id": conv.id, "promptkit.api": every_dialect,
        "gen_ai.request.temperature": 0.25, "gen_ai.request.max_tokens": 64, "gen_ai.request.top_p": 0.9,
        "gen_ai.usage.input_tokens": response.usage.prompt_tokens, "gen_ai.usage.output_tokens": response.usage.completion_tokens,
        **({"gen_ai.usage.reasoning.output_tokens": response.usage.reasoning_tokens} if response.usage.reasoning_tokens else {}),
        "promptkit.cost_usd": response.cost, "promptkit.rounds": 1, "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.response.model": response.model,
    }  # fmt: skip
    attrs = dict(chat.attributes or {})
    assert attrs.pop("gen_ai.response.time_to_first_chunk") >= 0
    assert attrs.pop("gen_ai.response.id") == response.id != ""
    assert attrs == {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": client.model,
        "gen_ai.request.stream": True, "gen_ai.conversation.id": conv.id, "promptkit.api": every_dialect,
        "server.address": "127.0.0.1", "server.port": port_of(server),
        "gen_ai.request.temperature": 0.25, "gen_ai.request.max_tokens": 64, "gen_ai.request.top_p": 0.9,
        "gen_ai.response.model": response.model, "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": response.usage.prompt_tokens, "gen_ai.usage.output_tokens": response.usage.completion_tokens,
        **({"gen_ai.usage.reasoning.output_tokens": response.usage.reasoning_tokens} if response.usage.reasoning_tokens else {}),
        "promptkit.cost_usd": response.cost,
    }  # fmt: skip
    assert chat.start_time >= turn.start_time and chat.end_time <= turn.end_time  # type: ignore[operator]


@pytest.mark.parametrize(
    "api, usage",
    [
        ("chat", {"prompt_tokens": 120, "completion_tokens": 30,
                  "prompt_tokens_details": {"cached_tokens": 100}, "completion_tokens_details": {"reasoning_tokens": 12}}),
        ("responses", {"input_tokens": 120, "output_tokens": 30,
                       "input_tokens_details": {"cached_tokens": 100}, "output_tokens_details": {"reasoning_tokens": 12}}),
        ("anthropic", {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 15, "output_tokens": 30}),
    ],
)  # fmt: skip
def test_cached_and_reasoning_tokens_use_the_conventions_names(otel: Otel, server: MockServer, api: str, usage: Dict[str, Any]) -> None:
    server.enqueue(MockReply.text("ok", usage=usage))
    with otel_client(server, otel.telemetry(), api=api) as client:
        response = client.conversation().send("q")
    chat = otel.span(f"chat {client.model}").attributes or {}
    assert chat["gen_ai.provider.name"] == ("anthropic" if api == "anthropic" else "openai")
    assert chat["gen_ai.usage.input_tokens"] == 120 == response.usage.prompt_tokens  # cached (and written) ones included
    assert chat["gen_ai.usage.output_tokens"] == 30
    assert chat["gen_ai.usage.cache_read.input_tokens"] == 100
    if api == "anthropic":
        assert chat["gen_ai.usage.cache_creation.input_tokens"] == 15 and "gen_ai.usage.reasoning.output_tokens" not in chat
    else:
        assert chat["gen_ai.usage.reasoning.output_tokens"] == 12 and "gen_ai.usage.cache_creation.input_tokens" not in chat


# ---------------------------------------------------------------- tools


@pytest.mark.usefixtures("every_dialect")
def test_a_tool_loop_nests_tool_spans_under_the_turn_and_handler_spans_under_their_tool(otel: Otel, server: MockServer) -> None:
    app_tracer = otel.tracer_provider.get_tracer("app")
    both_running = threading.Barrier(2, timeout=10)

    @promptkit.tool
    def lookup(word: str) -> str:
        """Look a word up."""
        both_running.wait()  # the two calls run at once, each on its own thread
        with app_tracer.start_as_current_span(f"db query {word}"):
            if word == "bad":
                raise ValueError("no such word")
            return word.upper()

    server.enqueue(
        MockReply.tool_calls([{"id": "call_a", "name": "lookup", "arguments": {"word": "a"}},
                              {"id": "call_bad", "name": "lookup", "arguments": {"word": "bad"}}]),
        MockReply.text("A, and bad is unknown."),
    )  # fmt: skip
    with otel_client(server, otel.telemetry()) as client:
        response = client.conversation(tools=[lookup]).send("look up a and bad")
    assert response.rounds == 2
    turn = otel.span("invoke_agent promptkit")
    first, second = chats(otel)
    assert [parent_id(first), parent_id(second)] == [turn.context.span_id] * 2
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)  # type: ignore[index]
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)  # type: ignore[index]
    good, bad = otel.span("db query a"), otel.span("db query bad")
    tools = {s.attributes["gen_ai.tool.call.id"]: s for s in otel.spans() if s.name == "execute_tool lookup"}  # type: ignore[index]
    assert set(tools) == {"call_a", "call_bad"}
    for call_id, span in tools.items():
        assert parent_id(span) == turn.context.span_id and span.kind == SpanKind.INTERNAL
        assert span.attributes == {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
                                   "gen_ai.tool.call.id": call_id, "gen_ai.tool.type": "function",
                                   **({"error.type": "ValueError"} if call_id == "call_bad" else {})}  # fmt: skip
        assert first.end_time <= span.start_time and span.end_time <= second.start_time  # type: ignore[operator]
    assert parent_id(good) == tools["call_a"].context.span_id  # the handler's own span nests under its tool span
    assert parent_id(bad) == tools["call_bad"].context.span_id
    assert tools["call_a"].status.status_code == StatusCode.UNSET
    failed = tools["call_bad"]
    assert failed.status.status_code == StatusCode.ERROR and failed.status.description == "no such word"
    assert [e.name for e in failed.events] == ["exception"] and failed.events[0].attributes["exception.type"] == "ValueError"  # type: ignore[index]
    assert turn.status.status_code == StatusCode.UNSET  # a tool's failure went to the model; the turn did not fail
    assert turn.attributes["gen_ai.usage.input_tokens"] == response.usage.prompt_tokens  # type: ignore[index]
    assert turn.attributes["promptkit.cost_usd"] == pytest.approx(first.attributes["promptkit.cost_usd"] + second.attributes["promptkit.cost_usd"])  # type: ignore[index,operator]
    assert turn.attributes["promptkit.rounds"] == 2  # type: ignore[index]


def test_a_tool_failing_without_an_exception_and_one_outliving_the_turn(otel: Otel, server: MockServer) -> None:
    release = threading.Event()

    @promptkit.tool(timeout=0.05)
    def slow() -> str:
        """Takes its time."""
        release.wait(10)
        return "late"

    server.enqueue(
        MockReply.tool_calls([{"id": "call_slow", "name": "slow", "arguments": {}},
                              {"id": "call_ghost", "name": "ghost", "arguments": {}}]),
        MockReply.text("done"),
    )  # fmt: skip
    with otel_client(server, otel.telemetry()) as client:
        client.conversation(tools=[slow]).send("go")
    release.set()  # the handler returns after its turn ended: its tool_finished finds the span closed
    spans = {s.attributes["gen_ai.tool.call.id"]: s for s in otel.spans() if s.name.startswith("execute_tool")}  # type: ignore[index]
    assert set(spans) == {"call_slow", "call_ghost"}
    ghost = spans["call_ghost"]  # an unknown tool: an error result, no exception
    assert ghost.status.status_code == StatusCode.ERROR and "unknown tool" in (ghost.status.description or "")
    assert ghost.attributes["error.type"] == "_OTHER" and not ghost.events  # type: ignore[index]
    assert spans["call_slow"].attributes["promptkit.tool.abandoned"] is True  # type: ignore[index]


# ---------------------------------------------------------------- cancelled and failed turns


def test_a_cancelled_turn_is_not_an_error(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial answer"))
    with otel_client(server, otel.telemetry()) as client:
        stream = client.conversation().send_stream("q")
        for event in stream:
            if event.type == "content":
                break
        response = stream.result()
    assert response.cancelled
    turn, chat = otel.span("invoke_agent promptkit"), otel.span(f"chat {client.model}")
    for span in (turn, chat):
        assert span.status.status_code == StatusCode.UNSET and "error.type" not in (span.attributes or {})
        assert span.attributes["gen_ai.response.finish_reasons"] == ("cancelled",)  # type: ignore[index]
        assert not span.events
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert "error.type" not in duration.attributes


def test_a_turn_that_send_stream_fails_is_an_error_recorded_once(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "model not supported"))
    with otel_client(server, otel.telemetry()) as client:
        with pytest.raises(promptkit.BadRequestError) as raised:
            client.conversation().send("q")
    turn, chat = otel.span("invoke_agent promptkit"), otel.span(f"chat {client.model}")
    for span in (turn, chat):
        assert span.status.status_code == StatusCode.ERROR and span.status.description == str(raised.value)
        assert span.attributes["error.type"] == "BadRequestError"  # type: ignore[index]
        assert span.attributes["gen_ai.response.finish_reasons"] == ("error",)  # type: ignore[index]
    exceptions = [e for s in otel.spans() for e in s.events if e.name == "exception"]
    assert len(exceptions) == 1 and exceptions[0].attributes["exception.type"].endswith("BadRequestError")  # type: ignore[index]
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "BadRequestError" and duration.count == 1


@pytest.mark.usefixtures("every_dialect")
def test_an_in_band_error_after_content_fails_the_round_and_the_turn(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error("overloaded", after_text="half an answer"))
    with otel_client(server, otel.telemetry()) as client:
        with pytest.raises(promptkit.StreamError) as raised:
            client.conversation().send("q")
    partial = raised.value.partial
    assert partial is not None and partial.content == "half an answer"
    turn, chat = otel.span("invoke_agent promptkit"), otel.span(f"chat {client.model}")
    for span in (turn, chat):
        assert span.status.status_code == StatusCode.ERROR and span.attributes["error.type"] == "StreamError"  # type: ignore[index]
    assert chat.attributes["gen_ai.response.time_to_first_chunk"] >= 0  # type: ignore[index,operator]
    assert turn.attributes["gen_ai.usage.output_tokens"] == partial.usage.completion_tokens > 0  # type: ignore[index]
    assert sum(1 for s in otel.spans() for e in s.events if e.name == "exception") == 1


def test_a_turn_that_cannot_connect_fails_with_its_error_type(otel: Otel) -> None:
    with otel_client(None, otel.telemetry(), base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0) as client:
        with pytest.raises(promptkit.APIConnectionError):
            client.conversation().send("q")
    turn, chat = otel.span("invoke_agent promptkit"), otel.span(f"chat {client.model}")
    assert turn.status.status_code == chat.status.status_code == StatusCode.ERROR
    assert turn.attributes["error.type"] == chat.attributes["error.type"] == "APIConnectionError"  # type: ignore[index]
    assert "gen_ai.usage.input_tokens" not in (chat.attributes or {})  # nothing was counted for a request never answered


def test_concurrent_turns_keep_their_own_spans(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.text("first reply", delay=0.01), MockReply.text("second reply", delay=0.01))
    app = otel.tracer_provider.get_tracer("app")
    callers: Dict[str, int] = {}
    both_sending = threading.Barrier(2, timeout=10)
    with otel_client(server, otel.telemetry()) as client:

        def user(name: str) -> None:
            with app.start_as_current_span(name) as caller:
                callers[name] = caller.get_span_context().span_id
                both_sending.wait()
                client.conversation().send(name)

        threads = [threading.Thread(target=user, args=(name,)) for name in ("alice", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    turns = [s for s in otel.spans() if s.name == "invoke_agent promptkit"]
    assert sorted(parent_id(t) for t in turns) == sorted(callers.values())  # type: ignore[type-var]
    for turn in turns:
        (chat,) = [s for s in chats(otel) if parent_id(s) == turn.context.span_id]
        assert chat.attributes["gen_ai.conversation.id"] == turn.attributes["gen_ai.conversation.id"]  # type: ignore[index]


def test_retries_are_events_of_one_chat_span(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.error(503, "busy", headers={"Retry-After": "0"}), MockReply.error(429, "slow down", headers={"Retry-After": "0"}),
                   MockReply.text("finally"))  # fmt: skip
    with otel_client(server, otel.telemetry(), max_retries=2) as client:
        assert client.conversation().send("q").content == "finally"
    chat = otel.span(f"chat {client.model}")  # one span for the round, every attempt inside
    assert chat.status.status_code == StatusCode.UNSET and "error.type" not in (chat.attributes or {})
    retries = [(e.name, e.attributes["promptkit.retry.attempt"], e.attributes["error.type"]) for e in chat.events]  # type: ignore[index]
    assert retries == [("promptkit.retry", 1, "ServerError"), ("promptkit.retry", 2, "RateLimitError")]
    assert all(e.attributes["promptkit.retry.delay"] >= 0 for e in chat.events)  # type: ignore[index,operator]
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert "error.type" not in duration.attributes  # retried errors are not the operation's


# ---------------------------------------------------------------- content capture


def test_content_and_the_key_stay_out_by_default(otel: Otel, server: MockServer) -> None:
    @promptkit.tool
    def secret_tool(code: str) -> str:
        """Returns a secret."""
        return "the vault code is 4242"

    server.enqueue(MockReply.tool_calls([{"name": "secret_tool", "arguments": {"code": "xyzzy"}}]), MockReply.text("The answer is hidden."))
    with otel_client(server, otel.telemetry()) as client:
        client.conversation(system_prompt="You guard secrets.", tools=[secret_tool]).send("What is my password hunter2?")
    text = json.dumps(every_attribute(otel), default=str)
    for secret in ("hunter2", "guard secrets", "xyzzy", "4242", "hidden", API_KEY):
        assert secret not in text
    assert not any(key in attrs for attrs in every_attribute(otel) for key in CONTENT_KEYS)


def test_capture_content_records_the_conventions_message_shapes(otel: Otel, server: MockServer) -> None:
    @promptkit.tool
    def weather(city: str) -> Dict[str, Any]:
        """The weather in a city."""
        return {"city": city, "sky": "clear"}

    server.enqueue(
        MockReply.tool_calls([{"id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}], content="Let me check."),
        MockReply.text("Clear skies in Paris."),
    )
    with otel_client(server, otel.telemetry(capture_content=True)) as client:
        client.conversation(system_prompt="Be brief.", tools=[weather]).send("Weather in Paris?")
    system = {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]}
    user = {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]}
    call = {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
    asked = {"role": "assistant", "parts": [{"type": "text", "content": "Let me check."}, call]}
    result = {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": '{"city": "Paris", "sky": "clear"}'}]}
    answer = [{"role": "assistant", "parts": [{"type": "text", "content": "Clear skies in Paris."}], "finish_reason": "stop"}]
    first, second = chats(otel)
    assert json.loads(first.attributes["gen_ai.input.messages"]) == [system, user]  # type: ignore[index,arg-type]
    assert json.loads(first.attributes["gen_ai.output.messages"]) == [{**asked, "finish_reason": "tool_call"}]  # type: ignore[index,arg-type]
    assert json.loads(second.attributes["gen_ai.input.messages"]) == [system, user, asked, result]  # type: ignore[index,arg-type]
    assert json.loads(second.attributes["gen_ai.output.messages"]) == answer  # type: ignore[index,arg-type]
    turn = otel.span("invoke_agent promptkit")
    assert json.loads(turn.attributes["gen_ai.input.messages"]) == [system, user]  # type: ignore[index,arg-type]
    assert json.loads(turn.attributes["gen_ai.output.messages"]) == answer  # type: ignore[index,arg-type]
    tool = otel.span("execute_tool weather")
    assert json.loads(tool.attributes["gen_ai.tool.call.arguments"]) == {"city": "Paris"}  # type: ignore[index,arg-type]
    assert json.loads(tool.attributes["gen_ai.tool.call.result"]) == {"city": "Paris", "sky": "clear"}  # type: ignore[index,arg-type]
    assert API_KEY not in json.dumps(every_attribute(otel), default=str)


# ---------------------------------------------------------------- metrics


def test_metrics_names_units_and_attribute_sets(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three four five six", usage={"prompt_tokens": 40, "completion_tokens": 6}))
    with otel_client(server, otel.telemetry()) as client:
        response = client.conversation().send("count")
    labels = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": client.model,
              "gen_ai.response.model": response.model, "server.address": "127.0.0.1", "server.port": port_of(server)}  # fmt: skip
    units = {"gen_ai.client.operation.duration": "s", "gen_ai.client.token.usage": "{token}",
             "gen_ai.client.operation.time_to_first_chunk": "s", "gen_ai.client.operation.time_per_output_chunk": "s",
             "promptkit.client.cost": "{USD}"}  # fmt: skip
    for name, unit in units.items():
        assert otel.unit(name) == unit
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert isinstance(duration, HistogramDataPoint) and dict(duration.attributes) == labels and duration.count == 1
    assert list(duration.explicit_bounds) == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert {k: (p.sum, p.count) for k, p in tokens.items()} == {"input": (40, 1), "output": (6, 1)}
    assert dict(tokens["input"].attributes) == {**labels, "gen_ai.token.type": "input"}
    assert list(tokens["input"].explicit_bounds)[:3] == [1, 4, 16]
    (ttfc,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert ttfc.count == 1 and dict(ttfc.attributes) == labels
    (per_chunk,) = otel.points("gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == 1 and 0 <= per_chunk.sum <= duration.sum and dict(per_chunk.attributes) == labels
    (cost,) = otel.points("promptkit.client.cost")
    assert isinstance(cost, NumberDataPoint) and cost.value == pytest.approx(response.cost) and response.cost > 0
    assert dict(cost.attributes) == labels


def test_each_round_is_one_operation(otel: Otel, server: MockServer) -> None:
    @promptkit.tool
    def noop() -> str:
        """Does nothing."""
        return "ok"

    server.enqueue(MockReply.tool_calls([{"name": "noop", "arguments": {}}]), MockReply.text("done"))
    with otel_client(server, otel.telemetry()) as client:
        response = client.conversation(tools=[noop]).send("go")
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.count == 2
    tokens = {p.attributes["gen_ai.token.type"]: p for p in otel.points("gen_ai.client.token.usage")}
    assert tokens["input"].count == 2 and tokens["input"].sum == response.usage.prompt_tokens
    assert tokens["output"].sum == response.usage.completion_tokens


# ---------------------------------------------------------------- robustness and cost when off


def test_telemetry_that_raises_never_breaks_a_turn(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    class BrokenTracer:
        def start_span(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("exporter on fire")

    class BrokenProvider:
        def get_tracer(self, *args: Any, **kwargs: Any) -> BrokenTracer:
            return BrokenTracer()

    server.enqueue(MockReply.text("still fine"), MockReply.text("again"))
    with caplog.at_level(logging.WARNING, logger="promptkit._hooks"):
        with otel_client(server, Telemetry(tracer_provider=BrokenProvider(), meter_provider=MeterProvider())) as client:
            conv = client.conversation()
            assert conv.send("a").content == "still fine" and conv.send("b").content == "again"
    warnings = [r.getMessage() for r in caplog.records if r.name == "promptkit._hooks"]
    assert len(warnings) == 1 and "OTelHooks.turn_started raised RuntimeError" in warnings[0]


def test_telemetry_options_are_checked(server: MockServer) -> None:
    for off in (None, False):
        with promptkit.Client(base_url=server.url, api_key=API_KEY, telemetry=off) as client:
            assert client.hooks is None  # telemetry off adds no hook: nothing is called, nothing is paid
    with pytest.raises(promptkit.ConfigurationError, match="promptkit.Telemetry"):
        promptkit.Client(base_url=server.url, api_key=API_KEY, telemetry="yes")  # type: ignore[arg-type]
    with pytest.raises(promptkit.ConfigurationError, match="capture_content"):
        Telemetry(capture_content="no")  # type: ignore[arg-type]
    with pytest.raises(promptkit.ConfigurationError, match="agent_name"):
        Telemetry(agent_name=" ")


def test_agent_name_names_the_turn_span(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.text("hi"))
    with otel_client(server, otel.telemetry(agent_name="support-bot")) as client:
        client.conversation().send("q")
    assert otel.span("invoke_agent support-bot").attributes["gen_ai.agent.name"] == "support-bot"  # type: ignore[index]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_without_telemetry_nothing_of_opentelemetry_is_imported() -> None:
    code = (
        "import sys, promptkit\n"
        "from promptkit.testing import MockReply, MockServer\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "with MockServer() as server, promptkit.Client(base_url=server.url, api_key='k') as client:\n"
        "    server.enqueue(MockReply.text('hi'))\n"
        "    client.conversation().send('q')\n"
        "    assert client.hooks is None\n"
        "loaded += [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "print(sorted(set(loaded)))\n"
    )
    assert _python(code) == "[]"


def test_telemetry_without_opentelemetry_installed_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None  # as if opentelemetry-api were not installed\n"
        "import promptkit\n"
        "try:\n"
        "    promptkit.Client(base_url='http://127.0.0.1:9/v1', api_key='k', telemetry=True)\n"
        "except promptkit.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    assert "pip install 'promptkit[otel]'" in _python(code)


def names(spans: Sequence[ReadableSpan]) -> List[str]:
    return [s.name for s in spans]


def test_a_conversation_shares_nothing_between_turns(otel: Otel, server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "no"), MockReply.text("yes"))
    with otel_client(server, otel.telemetry()) as client:
        conv = client.conversation()
        with pytest.raises(promptkit.BadRequestError):
            conv.send("first")
        conv.send("second")
    turns = [s for s in otel.spans() if s.name == "invoke_agent promptkit"]
    assert [t.status.status_code for t in turns] == [StatusCode.ERROR, StatusCode.UNSET]
    assert len({t.context.trace_id for t in turns}) == 2  # no current span: each turn is its own trace
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing was left attached on this thread
