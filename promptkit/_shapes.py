"""Checks of the JSON shapes a server sends, and the errors for wrong ones.

``null`` always means absent; any other value of the wrong JSON type is the
server's error, reported with a short description of the value (never the
whole of it: it may be megabytes).
"""

from __future__ import annotations

from typing import Any, Dict

from ._errors import StreamError

__all__ = ["describe", "malformed", "check_usage"]

_MAX_TOKENS = 2**53  # usage counts beyond this are not counts (and overflow cost arithmetic)
_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
_DETAIL_FIELDS = ("cached_tokens", "reasoning_tokens", "audio_tokens")
_COUNT = "a non-negative integer"


def describe(value: Any) -> str:
    """A short description of a wrong value for an error message (never the whole value)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    text = repr(value)  # bool, int (4300 digits at most: json.loads refuses more) or float
    return f"{type(value).__name__} {text[:40]}" + ("..." if len(text) > 40 else "")


def malformed(what: str, value: Any, body: Any, expected: str) -> StreamError:
    """The error for a chunk whose ``what`` is ``value`` where ``expected`` belongs."""
    # Retryable like a corrupted chunk: before any output reached the consumer, another attempt may do.
    return StreamError(f"malformed chunk: {what} is {describe(value)}, expected {expected}", body=body, retryable=True)


def check_usage(usage: Dict[str, Any], chunk: Any) -> None:
    """Reject counts that are not counts: a string, a float, a negative or absurd number."""
    for key in _USAGE_FIELDS:
        value = usage.get(key)
        if value is not None and (value.__class__ is not int or not 0 <= value <= _MAX_TOKENS):
            raise malformed(f"usage.{key}", value, chunk, _COUNT)
    for group in ("prompt_tokens_details", "completion_tokens_details"):
        details = usage.get(group)
        if details is None:
            continue
        if details.__class__ is not dict:
            raise malformed(f"usage.{group}", details, chunk, "an object")
        for key in _DETAIL_FIELDS:
            value = details.get(key)
            if value is not None and (value.__class__ is not int or not 0 <= value <= _MAX_TOKENS):
                raise malformed(f"usage.{group}.{key}", value, chunk, _COUNT)
