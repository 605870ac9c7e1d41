"""Bounds on what a server may make promptkit hold in memory.

Every buffer a server fills has a limit here. Crossing one ends the turn with
a :class:`~promptkit.StreamError` naming it, such as ``the server exceeded
Limits.max_line_bytes (4194304 bytes)``, so a broken or hostile server costs
a bounded amount of memory instead of all of it.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, Optional

import attrs

from ._errors import ConfigurationError, StreamError

__all__ = ["Limits", "DEFAULT_LIMITS", "exceeded", "json_excess"]

_MiB = 1024 * 1024


def _positive_int(instance: Any, attribute: "attrs.Attribute[int]", value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigurationError(f"Limits.{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class Limits:
    """How much one reply may make promptkit hold. Pass it as ``Client(limits=...)``.

    The defaults are far above what real servers send, and low enough that
    no server can exhaust memory. Change one with :func:`attrs.evolve` or by
    naming it: ``Limits(max_tool_calls=512)``.

    Attributes:
        max_line_bytes: the longest line of the event stream, in bytes: a
            ``data:`` line, a comment, an ``event:`` or ``id:`` field
            (default 4 MiB; real chunks are rarely above a few kB, even a
            whole tool call sent in one chunk).
        max_event_bytes: the most ``data`` bytes one event may collect over
            all its lines (default 8 MiB).
        max_reply_chars: the most characters one response may hold: text,
            reasoning, refusal, and tool-call ids, names and arguments, over
            all choices. Every delta also counts 32, for the bookkeeping it
            costs, so a flood of one-character deltas is bounded too
            (default 8 Mi; a 128k-token reply, about the longest models
            produce, counts about 4.6 Mi).
        max_tool_calls: the most tool calls in one response (default 128).
        max_choices: the most choices (``n``) in one response (default 128).
        max_json_depth: the deepest nesting of arrays and objects in one chunk,
            or in one tool call's arguments (default 64; real chunks nest 6 deep).
        max_json_values: the most values (strings, numbers, arrays, objects)
            in one chunk, or in one tool call's arguments: parsing is where
            JSON multiplies memory, by up to about 100 bytes a value (default
            250 000; a chunk holds a few dozen, a few thousand with logprobs).

    Raises:
        ConfigurationError: a value is not an int >= 1.
    """

    max_line_bytes: int = attrs.field(default=4 * _MiB, validator=_positive_int)
    max_event_bytes: int = attrs.field(default=8 * _MiB, validator=_positive_int)
    max_reply_chars: int = attrs.field(default=8 * _MiB, validator=_positive_int)
    max_tool_calls: int = attrs.field(default=128, validator=_positive_int)
    max_choices: int = attrs.field(default=128, validator=_positive_int)
    max_json_depth: int = attrs.field(default=64, validator=_positive_int)
    max_json_values: int = attrs.field(default=250_000, validator=_positive_int)


DEFAULT_LIMITS = Limits()


def exceeded(name: str, value: int, unit: str, what: str) -> StreamError:
    """The error for a server that crossed ``Limits.<name>`` (``what`` says how)."""
    return StreamError(f"the server exceeded Limits.{name} ({value} {unit}): {what}")


# A JSON string (the unrolled form: no backtracking), or an unterminated one up to the end.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_excess(text: str, limits: Limits) -> Optional[StreamError]:
    """The error for a JSON ``text`` that nests or holds too much to parse, else ``None``.

    Checked on the text, before any parser recurses into a hostile nesting or
    multiplies memory (8 MiB of ``[],`` parse to over 250 MB of lists). Most
    texts pass on the first lines: nesting needs a ``[`` or ``{`` per level,
    and a value takes at least two characters with its separator. Otherwise
    the strings are removed (their brackets and commas are text) and what is
    left is counted, at C speed, in time linear in ``len(text)``. For invalid
    JSON the answer only needs to never underestimate what a parser would build.
    """
    if len(text) < 2 * limits.max_json_values and text.count("[") + text.count("{") <= limits.max_json_depth:
        return None
    rest = _STRING.sub("", text)
    opens = rest.count("[") + rest.count("{")
    values = opens + rest.count(",") + rest.count(":") + 1  # a colon: an object key, itself a string
    if values > limits.max_json_values:
        return exceeded("max_json_values", limits.max_json_values, "values", f"a JSON text holds about {values}")
    if opens > limits.max_json_depth:
        brackets = _NOT_BRACKET.sub("", rest)
        if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limits.max_json_depth:
            return exceeded("max_json_depth", limits.max_json_depth, "levels", "a JSON text nests deeper")
    return None
