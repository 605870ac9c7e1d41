"""Usage: parsing each provider's usage object, adding usages up, and the cost of real Anthropic usage."""

from __future__ import annotations

from typing import Any, Dict

import attrs
import pytest

from promptkit._types import Response, Usage
from promptkit.pricing import PriceTable

# expected.usage of two real recordings of the shared corpus (not in this repository):
# anthropic/anthropic__cache_creation_max_tokens.meta.json and
# anthropic/anthropic__cache_read_max_tokens.meta.json, both claude-sonnet-4-20250514
# (DataDog/dd-trace-py cassettes): the first writes a 1031-token prefix to the cache,
# the second reads it back.
CACHE_CREATION = {"input_tokens": 18, "output_tokens": 100, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 1031}  # fmt: skip
CACHE_READ = {"input_tokens": 11, "output_tokens": 100, "cache_read_input_tokens": 1031,
              "cache_creation_input_tokens": 0}  # fmt: skip
# anthropic__claude3_opus_2024_no_padding.meta.json: an older reply, its cache counts null.
NULL_CACHE = {"input_tokens": 17, "output_tokens": 15, "cache_read_input_tokens": None,
              "cache_creation_input_tokens": None}  # fmt: skip
# The final message_delta usage of anthropic__advisor_tool_sonnet5.sse (claude-sonnet-5, pydantic-ai),
# as sent: newer servers report thinking tokens apart, and the advisor's own tokens (claude-opus-4-8)
# only among the iterations, outside the top-level counts.
ADVISOR_DELTA: Dict[str, Any] = {
    "input_tokens": 2411, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 145,
    "output_tokens_details": {"thinking_tokens": 47},
    "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
    "iterations": [
        {"input_tokens": 1128, "output_tokens": 135, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "type": "message"},
        {"input_tokens": 2543, "output_tokens": 18, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
         "type": "advisor_message", "model": "claude-opus-4-8"},
        {"input_tokens": 1283, "output_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
         "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0}, "type": "message"},
    ],
}  # fmt: skip


def test_from_anthropic_adds_cache_writes_and_reads_to_the_prompt() -> None:
    assert Usage.from_anthropic(CACHE_CREATION) == Usage(
        prompt_tokens=18 + 1031, completion_tokens=100, total_tokens=1149, cache_write_tokens=1031
    )
    assert Usage.from_anthropic(CACHE_READ) == Usage(
        prompt_tokens=11 + 1031, completion_tokens=100, total_tokens=1142, cached_tokens=1031
    )


def test_from_anthropic_null_and_missing_counts_are_zero() -> None:
    assert Usage.from_anthropic(NULL_CACHE) == Usage(prompt_tokens=17, completion_tokens=15, total_tokens=32)
    assert Usage.from_anthropic({}) == Usage()
    # message_delta of older servers carries output_tokens alone.
    assert Usage.from_anthropic({"output_tokens": 15}) == Usage(completion_tokens=15, total_tokens=15)
    odd = {"input_tokens": "12", "output_tokens": True, "cache_creation": [1], "output_tokens_details": "x"}
    assert Usage.from_anthropic(odd) == Usage()


def test_from_anthropic_thinking_tokens_and_iterations() -> None:
    usage = Usage.from_anthropic(ADVISOR_DELTA)
    # The top-level counts only: 2411 = 1128 + 1283, the two iterations of the model itself.
    assert usage == Usage(prompt_tokens=2411, completion_tokens=145, total_tokens=2556, reasoning_tokens=47)


def test_from_anthropic_splits_one_hour_cache_writes() -> None:
    data = {
        "input_tokens": 10, "cache_read_input_tokens": 200, "cache_creation_input_tokens": 300, "output_tokens": 5,
        "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
    }  # fmt: skip
    usage = Usage.from_anthropic(data)
    assert (usage.prompt_tokens, usage.cached_tokens, usage.cache_write_tokens, usage.cache_write_1h_tokens) == (
        510, 200, 300, 200)  # fmt: skip
    assert usage.total_tokens == 515 and usage.reasoning_tokens == 0


def test_cost_of_the_real_anthropic_usage() -> None:
    table = PriceTable()
    # claude-sonnet-4: $3 input, $3.75 5-minute cache write, $0.30 cache hit, $15 output per 1M tokens.
    # 18 x 3 + 1031 x 3.75 + 100 x 15 = 54 + 3866.25 + 1500 = 5420.25 millionths of a dollar.
    cost, known = table.cost(Usage.from_anthropic(CACHE_CREATION), "claude-sonnet-4-20250514")
    assert known and cost == pytest.approx(0.00542025, abs=1e-12)
    # 11 x 3 + 1031 x 0.30 + 100 x 15 = 33 + 309.3 + 1500 = 1842.3 millionths.
    cost, known = table.cost(Usage.from_anthropic(CACHE_READ), "claude-sonnet-4-20250514")
    assert known and cost == pytest.approx(0.0018423, abs=1e-12)
    # The same 1031-token write to a 1-hour cache, at $6: 54 + 1031 x 6 + 1500 = 7740 millionths.
    one_hour = dict(CACHE_CREATION, cache_creation={"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1031})
    cost, known = table.cost(Usage.from_anthropic(one_hour), "anthropic/claude-sonnet-4-20250514")
    assert known and cost == pytest.approx(0.00774, abs=1e-12)


def test_from_openai_reads_openrouter_cache_writes() -> None:
    # OpenRouter's shape (openrouter.ai/docs/use-cases/usage-accounting): writes among the prompt details.
    data = {"prompt_tokens": 194, "completion_tokens": 2, "total_tokens": 196,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100, "audio_tokens": 0}}  # fmt: skip
    assert Usage.from_openai(data) == Usage(prompt_tokens=194, completion_tokens=2, total_tokens=196, cache_write_tokens=100)
    assert Usage.from_openai({"prompt_tokens": 5}).cache_write_tokens == 0


def test_add_sums_every_count() -> None:
    names = [a.name for a in attrs.fields(Usage) if a.name != "estimated"]
    one = Usage(**{name: i + 1 for i, name in enumerate(names)})
    two = Usage(**{name: 100 * (i + 1) for i, name in enumerate(names)}, estimated=True)
    total = one + two
    assert {name: getattr(total, name) for name in names} == {name: 101 * (i + 1) for i, name in enumerate(names)}
    assert total.estimated is True and (one + one).estimated is False
    assert Usage.from_anthropic(CACHE_CREATION) + Usage.from_anthropic(CACHE_READ) == Usage(
        prompt_tokens=2091, completion_tokens=200, total_tokens=2291, cached_tokens=1031, cache_write_tokens=1031
    )


def test_to_dict_has_the_cache_write_fields() -> None:
    usage = Usage.from_anthropic(CACHE_CREATION)
    data = usage.to_dict()
    assert data["cache_write_tokens"] == 1031 and data["cache_write_1h_tokens"] == 0
    assert set(data) == {a.name for a in attrs.fields(Usage)}
    assert Usage(**data) == usage
    assert Response(usage=usage).to_dict()["usage"] == data
