"""Telemetry example: one tool-calling turn traced with OpenTelemetry, spans printed by the console exporter.

``promptkit.Client(telemetry=True)`` reports each turn to the globally configured
OpenTelemetry providers as GenAI spans and metrics: an ``invoke_agent promptkit``
span for the turn (here under the application's own ``handle question`` span), a
``chat {model}`` span per request round and an ``execute_tool {name}`` span per
tool call, under which the tool handler's own spans nest. The spans are printed
as JSON by OpenTelemetry's ``ConsoleSpanExporter``, then as a tree, followed by a
summary of the GenAI metrics.

    pip install -e '.[otel]' opentelemetry-sdk
    python examples/telemetry.py [--model NAME] [--capture-content]

``--capture-content`` also records the messages, tool arguments and results on
the spans (off by default: they may hold personal data). With OPENAI_API_KEY set
it talks to OpenAI (or to OPENAI_BASE_URL); with neither set it starts
promptkit's embedded mock server, scripted with a tool call and an answer, and
says so. A failure prints one line (``error: ...``) and exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Sequence

import promptkit
from promptkit.testing import MockReply, MockServer

try:
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
except ImportError:  # pragma: no cover - said once, in main()
    trace = None  # type: ignore[assignment]

QUESTION = "What's the weather in Paris?"
tracer: Any = None  # the application's tracer, set in main()


@promptkit.tool
def get_weather(city: str) -> Dict[str, Any]:
    """Get the current weather in a city (demo data).

    Args:
        city: the city name, e.g. "Paris".
    """
    with tracer.start_as_current_span("weather service lookup") as span:  # nests under execute_tool get_weather
        span.set_attribute("app.city", city)
        return {"city": city.strip().title(), "temp_c": 18, "conditions": "partly cloudy"}


@contextlib.contextmanager
def make_client(telemetry: Any, model: Optional[str]) -> Iterator[promptkit.Client]:
    """OpenAI when a key (or a base URL) is configured, else the scripted embedded mock server."""
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        with promptkit.Client(model=model, telemetry=telemetry) as client:
            yield client
        return
    print("ℹ️  No OPENAI_API_KEY or OPENAI_BASE_URL: using promptkit's embedded mock server (promptkit.testing.MockServer).")
    with MockServer() as server, promptkit.Client(base_url=server.url, model=model, telemetry=telemetry) as client:
        server.enqueue(
            MockReply.tool_calls([{"id": "call_paris", "name": "get_weather", "arguments": {"city": "Paris"}}]),
            MockReply.text("It's 18°C and partly cloudy in Paris.", delay=0.01),
        )
        yield client


def tree(spans: Sequence[ReadableSpan]) -> List[str]:
    """The spans as an indented tree, children in start order, with their durations."""
    ids = {s.context.span_id for s in spans}
    children: Dict[Optional[int], List[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: List[str] = []

    def walk(parent: Optional[int], depth: int) -> None:
        for span in children.get(parent, []):
            ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            error = f" ERROR {span.attributes.get('error.type')}" if span.status.status_code.name == "ERROR" else ""
            lines.append(f"{'  ' * depth}{span.name} ({span.kind.name}, {ms:.1f} ms){error}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return lines


def metric_lines(reader: Any) -> List[str]:
    """One line per GenAI metric: its name, unit and what it counted."""
    lines = []
    data = reader.get_metrics_data()
    for scope in (s for r in data.resource_metrics for s in r.scope_metrics if s.scope.name == "promptkit"):
        for metric in scope.metrics:
            parts = []
            for point in metric.data.data_points:
                kind = point.attributes.get("gen_ai.token.type")
                told = f"{point.count} recorded, sum {point.sum:.4g}" if hasattr(point, "count") else f"total {point.value:.4g}"
                parts.append(f"{told} ({kind})" if kind else told)
            lines.append(f"{metric.name} [{metric.unit}]: {'; '.join(parts)}")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    global tracer
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", help="the model (default: $PROMPTKIT_MODEL, else gpt-4o-mini)")
    parser.add_argument("--capture-content", action="store_true", help="record messages and tool arguments on the spans")
    args = parser.parse_args(argv)
    if trace is None:
        print("error: this example needs the OpenTelemetry SDK: pip install -e '.[otel]' opentelemetry-sdk", file=sys.stderr)
        return 1

    # What an application does once at startup: providers with their exporters, set globally.
    resource = Resource.create({"service.name": "promptkit-telemetry-example"})
    spans = InMemorySpanExporter()  # kept to print the tree at the end
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader], resource=resource))
    tracer = trace.get_tracer("telemetry-example")

    telemetry = promptkit.Telemetry(capture_content=True) if args.capture_content else True
    try:
        with make_client(telemetry, args.model) as client, tracer.start_as_current_span("handle question"):
            conv = client.conversation(system_prompt="Answer in one sentence. Use the tools.", tools=[get_weather])
            print(f"User: {QUESTION}")
            response = conv.send(QUESTION)
            print(f"Assistant: {response.content}")
            print(f"{response.summary()} | Rounds: {response.rounds}\n")
    except promptkit.PromptKitError as error:
        print(f"error: {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    finally:
        tracer_provider.force_flush()  # the console exporter prints every span now

    print("\nSpans (trace " + format(spans.get_finished_spans()[0].context.trace_id, "032x") + "):")
    print("\n".join("  " + line for line in tree(spans.get_finished_spans())))
    print("\nMetrics:")
    print("\n".join("  " + line for line in metric_lines(reader)))
    tracer_provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
