"""Cost and tokens through the public API: server usage, estimates, live counts, budgets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest

import promptkit
from promptkit.pricing import ModelPrice, PriceTable
from promptkit.testing import MockReply, MockServer
from promptkit._tokens import count_text

RECORDINGS = Path(__file__).parent / "data" / "recordings"
PRICES = {"test-model": {"input": 2.0, "cached_input": 0.5, "output": 8.0}}


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, pricing=PRICES, model="test-model") as c:
        yield c


def expected_cost(prompt: int, cached: int, completion: int, price: dict) -> float:
    return ((prompt - cached) * price["input"] + cached * price["cached_input"] + completion * price["output"]) / 1e6


def test_server_usage_after_finish_reason_is_exact(server: MockServer, client: promptkit.Client) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 50, "total_tokens": 1050, "prompt_tokens_details": {"cached_tokens": 800}}
    server.enqueue(MockReply.text("Hi.", usage=usage))
    resp = client.conversation().send("q")
    assert resp.finish_reason == "stop"  # kept although usage came later in a choices: [] chunk
    assert (resp.usage.prompt_tokens, resp.usage.cached_tokens, resp.usage.completion_tokens) == (1000, 800, 50)
    assert not resp.usage.estimated
    assert resp.cost == pytest.approx(expected_cost(1000, 800, 50, PRICES["test-model"]), abs=1e-12)


def test_estimate_on_cancel_counts_what_arrived(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="The quick brown fox jumps"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    text = ""
    for event in stream:
        text += event.content
        if text == "The quick brown fox jumps":
            break
    resp = stream.result()
    assert resp.finish_reason == "cancelled" and resp.usage.estimated
    assert resp.usage.completion_tokens == count_text("The quick brown fox jumps", "test-model")
    assert resp.usage.prompt_tokens > 0 and resp.cost > 0
    assert conv.total_cost == pytest.approx(resp.cost)


def test_no_usage_from_server_is_estimated(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.text("Four words right here.", usage=None))
    resp = client.conversation().send("q")
    assert resp.usage.estimated and resp.usage.completion_tokens == count_text("Four words right here.", "test-model")
    assert "~" in resp.summary()


def test_failed_turn_tokens_count_in_totals(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.in_band_error("overloaded", after_text="Some partial text"))
    conv = client.conversation()
    with pytest.raises(promptkit.StreamError) as info:
        conv.send("q")
    partial = info.value.partial
    assert partial is not None and partial.usage.estimated and partial.cost > 0
    assert conv.messages == [] and conv.total_cost == pytest.approx(partial.cost)


def test_totals_sum_turns(server: MockServer, client: promptkit.Client) -> None:
    conv = client.conversation()
    first = conv.send("one")
    second = conv.send("two")
    assert conv.usage.total_tokens == first.usage.total_tokens + second.usage.total_tokens
    assert conv.total_cost == pytest.approx(first.cost + second.cost)


def test_live_usage_while_streaming(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="Counting these words as they come"))
    with client.conversation().send_stream("q") as stream:
        assert stream.usage_so_far.prompt_tokens > 0
        text = ""
        events = iter(stream)
        while text != "Counting these words as they come":
            text += next(events).content
        live = stream.usage_so_far
        assert live.estimated and live.completion_tokens == count_text(text, "test-model")
        assert stream.cost_so_far > 0
    final = stream.result()
    assert stream.usage_so_far == final.usage  # reconciled with the final figures


def test_unknown_model_costs_nothing_known_false(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    with promptkit.Client(base_url=server.url, model="mystery-model-9000") as client:
        resp = client.conversation().send("q")
        resp2 = client.conversation().send("q")
    assert resp.cost == 0.0 and not resp.cost_known and resp2.cost == 0.0
    assert resp.summary().startswith("Cost: n/a")
    warnings = [r for r in caplog.records if "mystery-model-9000" in r.getMessage()]
    assert len(warnings) == 1


def test_served_model_wins_over_requested(server: MockServer) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    server.enqueue(MockReply.text("x", usage=usage, model="gpt-4o-2024-08-06"))
    with promptkit.Client(base_url=server.url, model="gpt-4o-mini") as client:
        resp = client.conversation().send("q")
    price = PriceTable().lookup("gpt-4o")
    assert price is not None and resp.model == "gpt-4o-2024-08-06"
    assert resp.cost == pytest.approx((100 * price.input + 10 * price.output) / 1e6, abs=1e-12)


def test_budget_stops_a_stream_midway(server: MockServer) -> None:
    prices = {"test-model": ModelPrice(input=0.0, output=1_000_000.0)}  # one USD per completion token
    server.enqueue(MockReply.text("one two three four five six seven eight nine ten", usage=None, delay=0.01))
    with promptkit.Client(base_url=server.url, model="test-model", pricing=prices) as client:
        conv = client.conversation(max_cost=3.5)
        events = list(conv.send_stream("q"))
        assert events[-1].type == "error" and isinstance(events[-1].error, promptkit.BudgetExceededError)
        assert sum(e.is_terminal for e in events) == 1
        partial = events[-1].error.partial
        assert partial is not None and 0 < len(partial.content) < len("one two three four five six seven eight nine ten")
        assert conv.messages == [] and conv.total_cost > 3.5
        requests_before = len(server.requests)
        with pytest.raises(promptkit.BudgetExceededError, match="max_cost"):
            conv.send("again")
        assert len(server.requests) == requests_before  # refused before any I/O


def test_max_cost_validated(client: promptkit.Client) -> None:
    with pytest.raises(promptkit.ConfigurationError):
        client.conversation(max_cost=-1)


@pytest.mark.parametrize(
    "name",
    sorted(p.name[: -len(".meta.json")] for p in RECORDINGS.glob("*.meta.json")),
)
def test_recordings_cost_through_public_api(name: str, server: MockServer) -> None:
    meta = json.loads((RECORDINGS / f"{name}.meta.json").read_text())
    expected = meta["expected"]
    usage = expected.get("usage")
    if usage is None or expected.get("errors") or expected["choices"][0].get("tool_calls"):
        pytest.skip("no usage, an error stream, or a tool stream")
    server.enqueue(MockReply.sse_file(RECORDINGS / f"{name}.sse"))
    model = (expected.get("models") or ["test-model"])[0]
    price = {"input": 3.0, "cached_input": 0.75, "output": 15.0}
    with promptkit.Client(base_url=server.url, model="x", pricing={model: price}) as client:
        resp = client.conversation().send("q")
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    assert resp.usage.prompt_tokens == usage["prompt_tokens"]
    if "cost" in usage:  # OpenRouter reports what it charged: that wins over the price table
        assert (resp.cost, resp.cost_source) == (pytest.approx(usage["cost"], abs=1e-12), "server")
    else:
        assert resp.cost == pytest.approx(expected_cost(usage["prompt_tokens"], cached, usage["completion_tokens"], price), abs=1e-9)
        assert resp.cost_source == "table"
    assert resp.content == (expected["choices"][0].get("content") or "")
