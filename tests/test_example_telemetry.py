"""examples/telemetry.py runs as a user would (mock mode) and prints its spans through the console exporter."""

from __future__ import annotations

import json
import re

import pytest

from tests.test_examples import run_example

pytest.importorskip("opentelemetry.sdk", reason="the example needs opentelemetry-sdk (a test dependency)")


def _console_spans(out: str) -> list:
    """The JSON objects ConsoleSpanExporter printed (one per span, indented JSON)."""
    decoder = json.JSONDecoder()
    spans, at = [], 0
    while True:
        start = out.find("{\n", at)
        if start < 0:
            return spans
        span, at = decoder.raw_decode(out, start)
        spans.append(span)


def test_the_telemetry_example_prints_its_spans() -> None:
    proc = run_example("telemetry.py")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mock server" in out.splitlines()[0]
    assert "Assistant: It's 18°C and partly cloudy in Paris." in out
    spans = {s["context"]["span_id"]: s for s in _console_spans(out)}
    by_name = sorted(s["name"] for s in spans.values())
    assert by_name == ["chat gpt-4o-mini", "chat gpt-4o-mini", "execute_tool get_weather", "handle question",
                       "invoke_agent promptkit", "weather service lookup"]  # fmt: skip
    assert len({s["context"]["trace_id"] for s in spans.values()}) == 1  # one trace, from the app's span down
    name_of = {span_id: s["name"] for span_id, s in spans.items()}
    parents = {s["name"]: name_of.get(s["parent_id"]) for s in spans.values() if s["name"] != "chat gpt-4o-mini"}
    assert parents == {"handle question": None, "invoke_agent promptkit": "handle question",
                       "execute_tool get_weather": "invoke_agent promptkit",
                       "weather service lookup": "execute_tool get_weather"}  # fmt: skip
    assert {name_of[s["parent_id"]] for s in spans.values() if s["name"] == "chat gpt-4o-mini"} == {"invoke_agent promptkit"}
    turn = next(s for s in spans.values() if s["name"] == "invoke_agent promptkit")
    assert turn["attributes"]["gen_ai.operation.name"] == "invoke_agent" and turn["attributes"]["promptkit.rounds"] == 2
    assert "gen_ai.input.messages" not in json.dumps(list(spans.values()))  # content is opt-in
    tree = out.split("Spans (trace ", 1)[1].split("\nMetrics:", 1)[0].splitlines()[1:]
    names = [re.match(r"( *)(.+?) \(", line).groups() for line in tree if line.strip()]  # type: ignore[union-attr]
    assert [(len(indent) // 2, name) for indent, name in names] == [
        (1, "handle question"), (2, "invoke_agent promptkit"), (3, "chat gpt-4o-mini"),
        (3, "execute_tool get_weather"), (4, "weather service lookup"), (3, "chat gpt-4o-mini"),
    ]  # fmt: skip
    metrics = out.split("\nMetrics:\n", 1)[1]
    for name in ("gen_ai.client.operation.duration [s]", "gen_ai.client.token.usage [{token}]",
                 "gen_ai.client.operation.time_to_first_chunk [s]", "promptkit.client.cost [{USD}]"):  # fmt: skip
        assert name in metrics
    assert proc.stderr == ""


def test_capture_content_puts_the_messages_on_the_spans() -> None:
    proc = run_example("telemetry.py", "--capture-content")
    assert proc.returncode == 0, proc.stderr
    spans = _console_spans(proc.stdout)
    tool = next(s for s in spans if s["name"] == "execute_tool get_weather")
    assert json.loads(tool["attributes"]["gen_ai.tool.call.arguments"]) == {"city": "Paris"}
    turn = next(s for s in spans if s["name"] == "invoke_agent promptkit")
    assert json.loads(turn["attributes"]["gen_ai.input.messages"])[-1] == {
        "role": "user", "parts": [{"type": "text", "content": "What's the weather in Paris?"}]
    }
