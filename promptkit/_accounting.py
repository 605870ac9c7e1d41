"""The tokens and cost of one turn: its rounds as reported (or estimated), and a live estimate.

The turn counts each finished round once; any thread may ask for the
running figures at any time (``stream.usage_so_far``), so both go through one
lock. The live estimate counts completion tokens incrementally: each call
encodes only the text that arrived since the previous one.

A round's cost is the one the server reported, when it reports one (LiteLLM
and OpenRouter send ``cost`` with the usage): behind a proxy, the model name
is often an alias no price table knows. Otherwise the price table prices the
round's usage. ``cost_source`` records which it was, over all rounds.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ._dialects import Decoder
from .pricing import PriceTable
from ._images import Provider as ImageRule
from ._tokens import CompletionCounter, count_messages, estimate_usage
from ._types import Usage

__all__ = ["TurnAccount"]

Messages = Sequence[Dict[str, Any]]


class _Live:
    """The running estimate of the round in progress."""

    __slots__ = ("acc", "prompt", "counter", "seen")

    def __init__(self, acc: Decoder, prompt: int, counter: CompletionCounter) -> None:
        self.acc = acc
        self.prompt = prompt
        self.counter = counter
        self.seen = 0


class TurnAccount:
    """Usage and cost summed over a turn's rounds. Thread-safe.

    Args:
        model: the requested model (the served one, when the server names it, prices a round).
        prices: the price table.
        tools: the tool definitions sent, counted in estimated prompts.
        estimates: whose documented rules count an image's tokens in an estimate
            (``"openai"`` or ``"anthropic"``: the dialect's provider).
    """

    def __init__(
        self, *, model: str, prices: PriceTable, tools: Optional[List[Dict[str, Any]]], estimates: "ImageRule" = "openai"
    ) -> None:
        self._estimates: "ImageRule" = estimates
        self._model = model
        self._prices = prices
        self._tools = tools
        self._lock = threading.Lock()
        self.usage = Usage()
        self.cost = 0.0
        self.cost_known = True
        self._sources: Set[str] = set()  # "server" / "table" / "unknown", one per kind of round counted
        self._counted: List[Tuple[Decoder, Usage, float]] = []  # rounds whose usage is in the totals, with it
        self._live: Optional[_Live] = None

    def count(self, acc: Decoder, prompt: Messages) -> Optional[Tuple[Usage, float]]:
        """Add a finished or stopped round once: the server's usage, else an estimate from ``prompt`` and the output.

        Returns the round's usage and cost, or ``None`` when it was counted before.
        """
        if any(done is acc for done, _, _ in self._counted):
            return None
        usage = acc.usage
        model = acc.model or self._model
        if usage is None:
            calls = acc.tool_calls()
            usage = estimate_usage(
                model=model,
                messages=prompt,
                tools=self._tools,
                completion_text=acc.content,
                reasoning_text=acc.reasoning,
                tool_call_arguments=[c.arguments_json for c in calls],
                tool_call_names=[c.name for c in calls],
                provider=self._estimates,
            )
        if acc.cost is not None:
            cost, known, source = acc.cost, True, "server"
        else:
            cost, known = self._prices.cost(usage, model)
            source = "table" if known else "unknown"
        with self._lock:  # progress() sees the round either counted or live, never both
            self._counted.append((acc, usage, cost))
            self.usage = self.usage + usage
            self.cost += cost
            self.cost_known = self.cost_known and known
            self._sources.add(source)
        return usage, cost

    def round_of(self, acc: Decoder) -> Tuple[Usage, float]:
        """The usage and cost counted for round ``acc`` (zero when it was not counted)."""
        with self._lock:
            for done, usage, cost in self._counted:
                if done is acc:
                    return usage, cost
        return Usage(), 0.0

    @property
    def cost_source(self) -> str:
        """Where :attr:`cost` came from: ``"server"``, ``"table"``, ``"mixed"`` (both) or ``"unknown"``."""
        with self._lock:
            sources = set(self._sources)
        if "unknown" in sources:
            return "unknown"
        if len(sources) > 1:
            return "mixed"
        return sources.pop() if sources else "table"

    def progress(self, acc: Optional[Decoder], prompt: Callable[[], Messages]) -> Tuple[Usage, float]:
        """The totals plus an estimate of ``acc``, the round in progress (when it is not counted yet)."""
        with self._lock:
            if acc is None or any(done is acc for done, _, _ in self._counted):
                return self.usage, self.cost
            live = self._live
            if live is None or live.acc is not acc:
                tokens = count_messages(prompt(), self._model, self._tools, provider=self._estimates)
                live = self._live = _Live(acc, tokens, CompletionCounter(self._model))
            for part in acc.output_parts(live.seen):
                live.counter.add(part)
                live.seen += 1
            estimate = Usage(
                prompt_tokens=live.prompt,
                completion_tokens=live.counter.total,
                total_tokens=live.prompt + live.counter.total,
                estimated=True,
            )
            # No warning here: the server may still report the round's cost at its end.
            round_cost, _ = self._prices.cost(estimate, acc.model or self._model, warn=False)
            return self.usage + estimate, self.cost + round_cost
