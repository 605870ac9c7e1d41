"""Prices, model-name resolution and cost arithmetic."""

from __future__ import annotations

import datetime
import logging
import sys
import threading
import uuid
from fractions import Fraction
from typing import Any, Dict, Optional

import pytest

from promptkit._errors import ConfigurationError
from promptkit.pricing import (
    BUILTIN_PRICES,
    PRICES_AS_OF,
    GenAIPricesTable,
    ModelPrice,
    PriceTable,
    format_cost,
    normalize_model,
)
from promptkit._types import Usage


def exact_cost(
    usage: Usage,
    *,
    input: str,
    output: str,
    cached: Optional[str] = None,
    reasoning: Optional[str] = None,
    audio_in: Optional[str] = None,
    audio_out: Optional[str] = None,
) -> Fraction:
    """The straightforward formula, in exact rational arithmetic from decimal price strings."""
    f = Fraction
    text_in = usage.prompt_tokens - (usage.audio_prompt_tokens if audio_in else 0)
    text_out = usage.completion_tokens - (usage.audio_completion_tokens if audio_out else 0)
    total = (
        (text_in - usage.cached_tokens) * f(input)
        + usage.cached_tokens * f(cached or input)
        + (text_out - usage.reasoning_tokens) * f(output)
        + usage.reasoning_tokens * f(reasoning or output)
    )
    if audio_in:
        total += usage.audio_prompt_tokens * f(audio_in)
    if audio_out:
        total += usage.audio_completion_tokens * f(audio_out)
    return total / 1_000_000


def unique_model() -> str:
    return f"unknown-model-{uuid.uuid4().hex[:12]}"


def unknown_warnings(caplog: pytest.LogCaptureFixture, model: str) -> int:
    return sum(
        1
        for r in caplog.records
        if r.name == "promptkit.pricing" and r.levelno == logging.WARNING and repr(model) in r.getMessage()
    )


# (model, usage, exact formula arguments)
COST_CASES = [
    ("gpt-4o", Usage(prompt_tokens=1000, completion_tokens=500), dict(input="2.5", output="10")),
    (
        "gpt-4o",
        Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=800),
        dict(input="2.5", cached="1.25", output="10"),
    ),
    (
        "gpt-4o-mini",
        Usage(prompt_tokens=123_456, completion_tokens=7_890, cached_tokens=100_000),
        dict(input="0.15", cached="0.075", output="0.6"),
    ),
    (
        "o3",
        Usage(prompt_tokens=100, completion_tokens=1000, reasoning_tokens=800),
        dict(input="2", cached="0.5", output="8"),
    ),
    (
        "gpt-4o-audio-preview",
        Usage(prompt_tokens=1000, completion_tokens=500, audio_prompt_tokens=600, audio_completion_tokens=300),
        dict(input="2.5", output="10", audio_in="40", audio_out="80"),
    ),
    (
        # No audio prices: audio tokens are billed as text.
        "gpt-4o",
        Usage(prompt_tokens=1000, completion_tokens=500, audio_prompt_tokens=600, audio_completion_tokens=300),
        dict(input="2.5", output="10"),
    ),
    (
        "gpt-5",
        Usage(prompt_tokens=10**9 + 7, completion_tokens=3 * 10**8 + 1, cached_tokens=10**8 + 3, reasoning_tokens=10**8),
        dict(input="1.25", cached="0.125", output="10"),
    ),
    ("gpt-4.1-nano", Usage(prompt_tokens=1, completion_tokens=1), dict(input="0.1", output="0.4")),
]


@pytest.mark.parametrize("model,usage,formula", COST_CASES)
def test_cost_matches_the_formula(model: str, usage: Usage, formula: Dict[str, Any]) -> None:
    cost, known = PriceTable().cost(usage, model)
    assert known is True
    assert abs(Fraction(cost) - exact_cost(usage, **formula)) <= Fraction(1, 10**9)


def test_cost_literal_values() -> None:
    table = PriceTable()
    assert table.cost(Usage(prompt_tokens=1000, completion_tokens=500), "gpt-4o") == (pytest.approx(0.0075, abs=1e-12), True)
    # 200 uncached x 2.5 + 800 cached x 1.25 + 100 x 10 = 2500 per 1M
    assert table.cost(Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=800), "gpt-4o")[0] == pytest.approx(
        0.0025, abs=1e-12
    )
    assert table.cost(Usage(), "gpt-4o") == (0.0, True)


def test_separate_reasoning_price() -> None:
    table = PriceTable({"thinker": ModelPrice(input=1, output=2, reasoning=3)}, builtin=False)
    usage = Usage(prompt_tokens=0, completion_tokens=100, reasoning_tokens=40)
    assert table.cost(usage, "thinker")[0] == pytest.approx((60 * 2 + 40 * 3) / 1e6, abs=1e-15)
    # Without a reasoning price, reasoning tokens cost the output price.
    plain = PriceTable({"thinker": (1, None, 2)}, builtin=False)
    assert plain.cost(usage, "thinker")[0] == pytest.approx(100 * 2 / 1e6, abs=1e-15)


def test_details_larger_than_totals_never_make_a_negative_cost() -> None:
    usage = Usage(prompt_tokens=10, completion_tokens=10, cached_tokens=50, reasoning_tokens=11)
    cost, known = PriceTable().cost(usage, "gpt-4o")
    assert known and cost == pytest.approx((10 * 1.25 + 10 * 10) / 1e6, abs=1e-15)


def test_unknown_model_costs_zero_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit.pricing")
    first, second = unique_model(), unique_model()
    table = PriceTable()
    usage = Usage(prompt_tokens=10, completion_tokens=10)
    for _ in range(3):
        assert table.cost(usage, first) == (0.0, False)
    assert PriceTable().cost(usage, first) == (0.0, False)  # the set is per process, not per table
    assert unknown_warnings(caplog, first) == 1
    assert table.cost(usage, second) == (0.0, False)
    assert unknown_warnings(caplog, second) == 1


def test_unknown_model_warning_is_thread_safe(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit.pricing")
    model = unique_model()
    table = PriceTable()
    start = threading.Barrier(8)

    def work() -> None:
        start.wait(timeout=10)
        for _ in range(50):
            table.cost(Usage(prompt_tokens=1), model)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert unknown_warnings(caplog, model) == 1


def test_user_override_wins_and_keeps_families_apart() -> None:
    table = PriceTable({"gpt-4o": (1, 0.5, 2)})
    assert table.lookup("gpt-4o") == ModelPrice(input=1, cached_input=0.5, output=2)
    assert table.lookup("openai/gpt-4o-2024-08-06") == ModelPrice(input=1, cached_input=0.5, output=2)
    # The override of gpt-4o does not capture gpt-4o-mini.
    assert table.lookup("gpt-4o-mini-2024-07-18") == BUILTIN_PRICES["gpt-4o-mini"]
    assert PriceTable().lookup("gpt-4o") == BUILTIN_PRICES["gpt-4o"]  # other tables unchanged


def test_register_normalises_user_names() -> None:
    table = PriceTable(builtin=False)
    table.register("Acme/My-Model", {"input": 1, "output": 2})
    assert table.lookup("my-model") is not None
    assert table.lookup("other/my-model-2025-01-01") is not None
    assert table.lookup("my-model-large") is not None  # family prefix on a '-' boundary
    assert table.lookup("my-modelx") is None
    assert table.lookup("gpt-4o") is None  # builtin=False
    table.register("my-model", (3, 4))
    assert table.lookup("my-model") == ModelPrice(3, 4)


@pytest.mark.parametrize(
    "name,expected",
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("gpt-4-0613", "gpt-4"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai/gpt-4o", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("GPT-4o", "gpt-4o"),
        ("gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("chatgpt-4o-latest", "chatgpt-4o-latest"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # its own, older price
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-35-turbo", "gpt-3.5-turbo"),  # Azure spelling
        ("o1-2024-12-17", "o1"),
        ("o3x", "o3x"),  # no '-' boundary: not o3
        ("llama-3.3-70b", "llama-3.3-70b"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
    ],
)
def test_normalize_model(name: str, expected: str) -> None:
    assert normalize_model(name) == expected


def test_mini_and_nano_are_not_their_families() -> None:
    table = PriceTable()
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert table.cost(usage, "gpt-4o")[0] == pytest.approx(12.5)
    assert table.cost(usage, "gpt-4o-mini")[0] == pytest.approx(0.75)
    assert table.cost(usage, "gpt-4.1")[0] == pytest.approx(10.0)
    assert table.cost(usage, "gpt-4.1-nano")[0] == pytest.approx(0.5)


def test_builtin_table_is_dated_and_covers_current_models() -> None:
    datetime.date.fromisoformat(PRICES_AS_OF)
    for model in [
        "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5", "gpt-5-mini", "gpt-5-nano",
        "gpt-5.1", "o1", "o1-mini", "o3", "o3-mini", "o4-mini", "gpt-4-turbo", "gpt-4", "gpt-3.5-turbo",
        "chatgpt-4o-latest", "gpt-4o-audio-preview",
    ]:  # fmt: skip
        assert model in BUILTIN_PRICES
    for price in BUILTIN_PRICES.values():
        assert price.cached_input <= price.input and price.input <= price.output


def test_model_price_defaults_and_coerce() -> None:
    price = ModelPrice(2, 8)
    assert (price.input, price.cached_input, price.output, price.reasoning) == (2.0, 2.0, 8.0, 8.0)
    assert price.audio_input is None and price.audio_output is None
    assert ModelPrice.coerce(price) is price
    assert ModelPrice.coerce((2, 0.5, 8)) == ModelPrice(2, 8, cached_input=0.5)
    assert ModelPrice.coerce((2, 8)) == price
    assert ModelPrice.coerce({"input": 2, "output": 8, "audio_input": 40}).audio_input == 40.0
    assert isinstance(ModelPrice(1, 2).input, float)


@pytest.mark.parametrize(
    "value",
    [
        (-1, None, 2),
        (1, None, float("nan")),
        (1, None, float("inf")),
        ("1", None, 2),
        (True, None, 2),
        (1, -0.5, 2),
        (1, 2, 3, 4),
        (1,),
        {"input": 1},
        {"input": 1, "output": 2, "cache": 1},
        {"input": 1, "output": 2, "reasoning": -1},
        [1, 2],
        "1,2",
        None,
    ],
)
def test_bad_prices_raise(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        ModelPrice.coerce(value)
    with pytest.raises(ConfigurationError):
        PriceTable({"m": value})


def test_bad_model_names_and_overrides_raise() -> None:
    with pytest.raises(ConfigurationError):
        PriceTable().register("  ", (1, 2))
    with pytest.raises(ConfigurationError):
        PriceTable([("m", (1, 2))])  # type: ignore[arg-type]


def test_from_spec_variants() -> None:
    default = PriceTable.from_spec(None)
    assert default.lookup("gpt-4o") == BUILTIN_PRICES["gpt-4o"]
    mapped = PriceTable.from_spec({"my-model": (1, None, 2)})
    assert mapped.lookup("my-model") == ModelPrice(1, 2) and mapped.lookup("gpt-4o") is not None
    assert PriceTable.from_spec(mapped) is mapped
    for bad in ["builtin", 42, ["gpt-4o"], b"genai-prices"]:
        with pytest.raises(ConfigurationError):
            PriceTable.from_spec(bad)  # type: ignore[arg-type]


def test_from_spec_genai_prices_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes `import genai_prices` fail
    with pytest.raises(ConfigurationError, match="pip install genai-prices"):
        PriceTable.from_spec("genai-prices")


def test_from_spec_genai_prices(caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("genai_prices")
    caplog.set_level(logging.WARNING, logger="promptkit.pricing")
    table = PriceTable.from_spec("genai-prices")
    assert isinstance(table, GenAIPricesTable)
    usage = Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=400)
    expected = (600 * 2.5 + 400 * 1.25 + 500 * 10) / 1e6
    for name in ["gpt-4o", "gpt-4o-2024-08-06", "openai/gpt-4o"]:
        cost, known = table.cost(usage, name)
        assert known and cost == pytest.approx(expected, abs=1e-12)
    model = unique_model()
    assert table.cost(usage, model) == (0.0, False)
    assert table.cost(usage, model) == (0.0, False)
    assert unknown_warnings(caplog, model) == 1
    table.register(model, (1, 2))  # registered prices still win
    assert table.cost(usage, model) == (pytest.approx((1000 * 1 + 500 * 2) / 1e6), True)


def test_builtin_prices_agree_with_genai_prices() -> None:
    pytest.importorskip("genai_prices")
    builtin, genai = PriceTable(), GenAIPricesTable(provider_id="openai")
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=500_000)
    for model in BUILTIN_PRICES:
        expected, known = genai.cost(usage, model)
        assert known, model
        assert builtin.cost(usage, model)[0] == pytest.approx(expected, abs=1e-9), model


def test_format_cost() -> None:
    assert format_cost(0.0032, True) == "$0.0032"
    assert format_cost(0.0, True) == "$0.00"
    assert format_cost(0.0, False) == "n/a"
    assert format_cost(1.23456, True) == "$1.23"
    # Two significant digits at every size below $1, cents above: precision never drops as costs grow.
    assert [format_cost(c) for c in (0.000047, 0.000084, 0.00084, 0.0084, 0.084, 0.84)] == [
        "$0.000047", "$0.000084", "$0.00084", "$0.0084", "$0.084", "$0.84"]
    assert [format_cost(c) for c in (0.0000471, 0.0996, 0.996, 12.345, 1234.5)] == [
        "$0.000047", "$0.10", "$1.00", "$12.35", "$1,234.50"]
    assert format_cost(float("nan")) == "n/a"
