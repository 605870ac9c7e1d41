"""What the event-based decoders (Responses API, Anthropic) share: the reply's text, bounded.

A subclass feeds pieces in with :meth:`Assembly.add_text`,
:meth:`Assembly.add_reasoning` and :meth:`Assembly.spend`; this base keeps the
text, the reasoning and every output piece in arrival order (read by the live
token count from another thread: list appends are atomic), and counts what the
reply holds against ``Limits.max_reply_chars`` as the chat decoder does.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from .._limits import DEFAULT_LIMITS, Limits, exceeded
from .._shapes import malformed
from .._types import StreamEvent, Usage

__all__ = ["Assembly", "MAX_TOKENS", "string_field", "error_text"]

_PIECE_CHARS = 32  # each stored piece also costs its list slot and object header (see Limits)
MAX_TOKENS = 2**53  # usage counts beyond this are not counts


class Assembly:
    """The growing reply of one request: text, reasoning and output pieces, within the limits."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.usage: Optional[Usage] = None
        self.cost: Optional[float] = None
        self.model = ""
        self.id = ""
        self.ended = False  # the protocol's last event arrived
        self.tool_deltas = False  # emit tool_call_delta events (send_stream(tool_call_deltas=True))
        self.saw_output = False
        self._content: List[str] = []
        self._reasoning: List[str] = []
        self._output: List[str] = []
        self._chars = 0
        self._max_chars = limits.max_reply_chars

    def spend(self, chars: int) -> None:
        """Count a stored piece of ``chars`` characters against ``max_reply_chars``."""
        total = self._chars + chars + _PIECE_CHARS
        if total > self._max_chars:
            raise exceeded("max_reply_chars", self._max_chars, "characters", "the response grew past it")
        self._chars = total

    def add_piece(self, text: str, into: Optional[List[str]] = None) -> None:
        """Keep an output piece (also in ``into``): counted, and seen by the live token count."""
        self.spend(len(text))
        if into is not None:
            into.append(text)
        self._output.append(text)
        self.saw_output = True

    def add_text(self, text: str, events: List[StreamEvent]) -> None:
        """A piece of the reply's text: kept, and a ``content`` event."""
        self.add_piece(text, self._content)
        events.append(StreamEvent("content", content=text))

    def add_reasoning(self, text: str, events: List[StreamEvent]) -> None:
        """A piece of the visible reasoning: kept, and a ``reasoning`` event."""
        self.add_piece(text, self._reasoning)
        events.append(StreamEvent("reasoning", reasoning=text))

    @property
    def content(self) -> str:
        """The text so far."""
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        """The visible reasoning so far."""
        return "".join(self._reasoning)

    def output_parts(self, start: int = 0) -> List[str]:
        """Every output piece from index ``start`` on, in arrival order."""
        return self._output[start:]


def string_field(data: Dict[str, Any], key: str, what: str, body: Any = None) -> str:
    """``data[key]`` as a string (``""`` when absent or null); another type is the server's error, named ``what``."""
    value = data.get(key)
    if value is None:
        return ""
    if value.__class__ is not str:
        raise malformed(what, value, data if body is None else body, "a string")
    return value


def error_text(error: Any) -> str:
    """The message of a server's error object, with its code (or type), cut to a readable length."""
    if isinstance(error, dict):
        message = error.get("message")
        code = error.get("code") or error.get("type")
        text = str(message)[:2000] if message else "the server reported an error"
        return f"{text} (code: {str(code)[:200]})" if code else text
    return str(error)[:2000]
