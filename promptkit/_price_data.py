"""The data of the built-in price table: USD per 1M tokens, by model family.

Kept apart from :mod:`promptkit.pricing`, which turns it into
:class:`~promptkit.pricing.ModelPrice` values and looks names up in it. An
entry's keys are :class:`~promptkit.pricing.ModelPrice` fields; those it
leaves out take their defaults (``cached_input`` and ``cache_write`` the
input price, ``cache_write_1h`` the ``cache_write`` price).
"""

from __future__ import annotations

from typing import Dict

__all__ = ["PRICES_AS_OF", "OPENAI", "ANTHROPIC", "TABLE"]

PRICES_AS_OF = "2026-11-23"
"""The date on which the prices below were current."""

# Standard-tier (non-batch, non-flex, non-priority) Chat Completions prices,
# USD per 1M tokens. Source: the OpenAI API pricing page
# (https://platform.openai.com/docs/pricing). This machine cannot reach that
# page, so on 2026-11-23 every entry was checked against the OpenAI data bundled
# in genai-prices 0.2.3 (pydantic/genai-prices, released 2026-11); all agree.
# Audio prices (not in that data set) are from the same OpenAI page.
# Snapshots whose price differs from their family have their own entry,
# because exact names are looked up before date suffixes are stripped.
_AUDIO_4O = {"audio_input": 40.0, "audio_output": 80.0}
_AUDIO_MINI = {"audio_input": 10.0, "audio_output": 20.0}

OPENAI: Dict[str, Dict[str, float]] = {
    # GPT-5 family
    "gpt-5": {"input": 1.25, "cached_input": 0.125, "output": 10.0},
    "gpt-5-mini": {"input": 0.25, "cached_input": 0.025, "output": 2.0},
    "gpt-5-nano": {"input": 0.05, "cached_input": 0.005, "output": 0.40},
    "gpt-5-pro": {"input": 15.0, "output": 120.0},
    "gpt-5.1": {"input": 1.25, "cached_input": 0.125, "output": 10.0},
    "gpt-5.1-codex-mini": {"input": 0.25, "cached_input": 0.025, "output": 2.0},
    "gpt-5.2": {"input": 1.75, "cached_input": 0.175, "output": 14.0},
    "gpt-5.2-pro": {"input": 21.0, "output": 168.0},
    "codex-mini-latest": {"input": 1.50, "cached_input": 0.375, "output": 6.0},
    # GPT-4.1 / 4.5
    "gpt-4.1": {"input": 2.0, "cached_input": 0.50, "output": 8.0},
    "gpt-4.1-mini": {"input": 0.40, "cached_input": 0.10, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "cached_input": 0.025, "output": 0.40},
    "gpt-4.5-preview": {"input": 75.0, "cached_input": 37.5, "output": 150.0},
    # GPT-4o
    "gpt-4o": {"input": 2.50, "cached_input": 1.25, "output": 10.0},
    "gpt-4o-2024-05-13": {"input": 5.0, "output": 15.0},
    "gpt-4o-mini": {"input": 0.15, "cached_input": 0.075, "output": 0.60},
    "chatgpt-4o-latest": {"input": 5.0, "output": 15.0},
    "gpt-4o-audio-preview": {"input": 2.50, "output": 10.0, **_AUDIO_4O},
    "gpt-4o-audio-preview-2024-10-01": {"input": 2.50, "output": 10.0, "audio_input": 100.0, "audio_output": 200.0},
    "gpt-4o-mini-audio-preview": {"input": 0.15, "output": 0.60, **_AUDIO_MINI},
    "gpt-audio": {"input": 2.50, "output": 10.0, "audio_input": 32.0, "audio_output": 64.0},
    "gpt-audio-mini": {"input": 0.60, "output": 2.40, **_AUDIO_MINI},
    # o-series reasoning models
    "o1": {"input": 15.0, "cached_input": 7.50, "output": 60.0},
    "o1-mini": {"input": 1.10, "cached_input": 0.55, "output": 4.40},
    "o1-pro": {"input": 150.0, "output": 600.0},
    "o3": {"input": 2.0, "cached_input": 0.50, "output": 8.0},
    "o3-mini": {"input": 1.10, "cached_input": 0.55, "output": 4.40},
    "o3-pro": {"input": 20.0, "output": 80.0},
    "o3-deep-research": {"input": 10.0, "cached_input": 2.50, "output": 40.0},
    "o4-mini": {"input": 1.10, "cached_input": 0.275, "output": 4.40},
    "o4-mini-deep-research": {"input": 2.0, "cached_input": 0.50, "output": 8.0},
    # Legacy
    "gpt-4-turbo": {"input": 10.0, "output": 30.0},
    "gpt-4-1106-preview": {"input": 10.0, "output": 30.0},
    "gpt-4-0125-preview": {"input": 10.0, "output": 30.0},
    "gpt-4": {"input": 30.0, "output": 60.0},
    "gpt-4-32k": {"input": 60.0, "output": 120.0},
    "gpt-3.5-turbo": {"input": 0.50, "output": 1.50},
    "gpt-3.5-turbo-1106": {"input": 1.0, "output": 2.0},
    "gpt-3.5-turbo-0613": {"input": 1.50, "output": 2.0},
    "gpt-3.5-turbo-16k": {"input": 3.0, "output": 4.0},
    "gpt-3.5-turbo-instruct": {"input": 1.50, "output": 2.0},
}


def _claude(base: float, write_5m: float, write_1h: float, read: float, output: float) -> Dict[str, float]:
    # The arguments in the column order of Anthropic's pricing table, to check against it at a glance.
    return {"input": base, "cache_write": write_5m, "cache_write_1h": write_1h, "cached_input": read, "output": output}


# Claude Messages API prices, USD per 1M tokens, standard tier, in the
# columns of Anthropic's table: "Base input tokens | 5m cache writes | 1h
# cache writes | Cache hits and refreshes | Output tokens". Sources:
# Anthropic's pricing page (https://platform.claude.com/docs/en/about-claude/pricing)
# and the model pages (https://platform.claude.com/docs/en/models/<model>/overview),
# read through stored copies on 2026-12-03; then every entry was checked
# against the Anthropic data of genai-prices 0.2.3, and all agree (it lacks
# Mythos 5 and 5.1, which the pricing page prices as Fable 5 and 5.1).
# Three entries rest on genai-prices and public changelogs that track the
# pricing page: Sonnet 5.5's cache hits ($0.20 on its stored page, cut to
# $0.10 on 2026-10-07), Fable 5.2's cache prices (its input and output prices
# are on the models overview) and Claude 3.5 Sonnet (retired, off the page).
# Cache writes are 1.25x (5 minutes) and 2x (1 hour) the input price and cache
# hits 0.1x, except on Haiku 3 (5-minute writes 1.2x, hits 0.12x), Fable and
# Mythos 5.1 and Fable 5.2 (hits 0.025x), Opus 5.5 and Sonnet 5.5 (hits 0.05x).
# Not priced here: prompts over 200K tokens, billed higher on Sonnet 4 and 4.5
# (and on Sonnet 4.6 and Opus 4.6 before 2026-03-13); Claude Haiku 5.5, whose
# every price depends on the prompt's length (up to 100K tokens or more), so
# it is an unknown model here; pricing="genai-prices" knows its tiers.
# The "-0" names are Anthropic's aliases of the first Claude 4 models.
_OPUS_4 = _claude(15.0, 18.75, 30.0, 1.50, 75.0)
_OPUS_4_5 = _claude(5.0, 6.25, 10.0, 0.50, 25.0)
_SONNET_4 = _claude(3.0, 3.75, 6.0, 0.30, 15.0)
_FABLE_5 = _claude(10.0, 12.50, 20.0, 1.0, 50.0)
_FABLE_5_1 = _claude(10.0, 12.50, 20.0, 0.25, 50.0)

ANTHROPIC: Dict[str, Dict[str, float]] = {
    # Claude 5 (Mythos: limited availability, at Fable's prices)
    "claude-fable-5-2": _claude(8.0, 10.0, 16.0, 0.20, 40.0),
    "claude-fable-5-1": _FABLE_5_1,
    "claude-mythos-5-1": _FABLE_5_1,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-opus-5-5": _claude(4.0, 5.0, 8.0, 0.20, 20.0),
    "claude-opus-5": _OPUS_4_5,
    "claude-sonnet-5-5": _claude(2.0, 2.50, 4.0, 0.10, 10.0),
    "claude-sonnet-5": _claude(2.0, 2.50, 4.0, 0.20, 10.0),
    # Claude 4
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-sonnet-4-0": _SONNET_4,
    "claude-haiku-4-5": _claude(1.0, 1.25, 2.0, 0.10, 5.0),
    # Claude 3
    "claude-3-7-sonnet": _SONNET_4,
    "claude-3-5-sonnet": _SONNET_4,
    "claude-3-5-haiku": _claude(0.80, 1.0, 1.6, 0.08, 4.0),
    "claude-3-opus": _OPUS_4,
    "claude-3-haiku": _claude(0.25, 0.30, 0.50, 0.03, 1.25),
}

TABLE: Dict[str, Dict[str, float]] = {**OPENAI, **ANTHROPIC}
