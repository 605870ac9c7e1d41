"""Checks of user input that must fail before any I/O, with a message that says what to fix."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from ._errors import ConfigurationError

__all__ = ["check_text", "check_model", "check_params", "unicode_problem", "to_json"]


def unicode_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be sent as UTF-8 (a lone surrogate), or ``None`` when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (invalid Unicode) at position {exc.start}"
    return None


def check_text(value: Any, what: str, *, optional: bool = False) -> Optional[str]:
    """``value`` if it is a str that can be sent (``None`` too when ``optional``).

    Raises:
        ConfigurationError: not a str, or text that is not valid Unicode.
    """
    if value is None and optional:
        return None
    if not isinstance(value, str):
        allowed = "a str or None" if optional else "a str"
        raise ConfigurationError(f"{what} must be {allowed}, got {type(value).__name__}")
    problem = unicode_problem(value)
    if problem is not None:
        raise ConfigurationError(f"{what} cannot be sent: it holds {problem}")
    return value


def check_model(model: Any) -> str:
    """A model name: a non-empty str of valid Unicode."""
    if not isinstance(model, str) or not model.strip():
        raise ConfigurationError(f"model must be a non-empty str, got {model!r}")
    check_text(model, "model")
    return model


def to_json(value: Any, what: str, **kwargs: Any) -> str:
    """``value`` as strict JSON text (no NaN or Infinity, which JSON does not have).

    Raises:
        ConfigurationError: the value has no JSON form, or holds invalid Unicode.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, **kwargs)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ConfigurationError(f"{what} cannot be sent as JSON: {exc}") from None
    problem = unicode_problem(text)
    if problem is not None:
        raise ConfigurationError(f"{what} cannot be sent: it holds {problem}")
    return text


def check_params(params: Mapping[str, Any]) -> None:
    """Request parameters (``temperature``, ``max_tokens``, ...) must be finite, valid JSON."""
    for key, value in params.items():
        to_json(value, f"the request parameter {key!r}")
