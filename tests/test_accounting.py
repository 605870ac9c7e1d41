"""TurnAccount: rounds counted once, estimates when the server sends no usage, a live figure."""

from __future__ import annotations

from promptkit._accounting import TurnAccount
from promptkit._dialects.chat_decoder import Accumulator
from promptkit.pricing import PriceTable
from promptkit._tokens import count_text

PRICES = PriceTable({"m": {"input": 1.0, "cached_input": 0.5, "output": 2.0}})


def text_round(text: str, usage: "dict | None" = None) -> Accumulator:
    acc = Accumulator()
    chunk = {"model": "m", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": "stop"}]}
    if usage is not None:
        chunk["usage"] = usage
    acc.feed(chunk)
    return acc


def test_server_usage_is_counted_once() -> None:
    account = TurnAccount(model="m", prices=PRICES, tools=None)
    acc = text_round("hi", {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110})
    account.count(acc, [])
    account.count(acc, [])  # the same round again: ignored
    assert account.usage.total_tokens == 110 and not account.usage.estimated
    assert account.cost == (100 * 1.0 + 10 * 2.0) / 1e6


def test_rounds_add_up_and_missing_usage_is_estimated() -> None:
    account = TurnAccount(model="m", prices=PRICES, tools=None)
    account.count(text_round("one", {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}), [])
    account.count(text_round("two words"), [{"role": "user", "content": "q"}])
    assert account.usage.estimated
    assert account.usage.completion_tokens == 1 + count_text("two words", "m")


def test_progress_counts_the_live_round_and_then_the_reported_one() -> None:
    account = TurnAccount(model="m", prices=PRICES, tools=None)
    acc = Accumulator()
    acc.feed({"choices": [{"index": 0, "delta": {"content": "Hello there"}}]})
    prompts = []
    usage, cost = account.progress(acc, lambda: prompts.append(1) or [{"role": "user", "content": "q"}])
    assert usage.estimated and usage.completion_tokens == count_text("Hello there", "m") and cost > 0
    acc.feed({"choices": [{"index": 0, "delta": {"content": ", friend"}}]})
    usage, _ = account.progress(acc, lambda: prompts.append(1) or [])
    assert usage.completion_tokens == count_text("Hello there, friend", "m")
    assert prompts == [1]  # the prompt is counted once per round, not per call
    acc.feed({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
    account.count(acc, [])
    assert account.progress(acc, list) == (account.usage, account.cost)
    assert account.usage.total_tokens == 10
