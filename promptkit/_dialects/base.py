"""What every wire dialect provides: a request builder and a pure stream decoder.

A :class:`Dialect` turns the canonical history (OpenAI chat message dicts,
extended where a dialect needs more: see :mod:`promptkit._dialects`) into one
request, and makes a :class:`Decoder` per request that turns the parsed
server-sent events into promptkit events. The rest of promptkit (the turn, the
reader, the accounting) talks to these two interfaces only and never branches
on the protocol.

Servers differ in what they accept: some refuse a field promptkit sends by
default (``stream_options``, the reasoning a model needs back). A dialect
recognises such a refusal in the 400 it causes, and the feature is then left
out of every later request to that base URL (:class:`ServerQuirks`), for
every client in the process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Protocol, Sequence, Set, Tuple

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from .._structured import OutputFormat

from .._errors import ConfigurationError
from .._images import Provider as ImageRule
from .._limits import Limits
from .._types import Choice, StreamEvent, ToolCall, Usage

__all__ = [
    "Decoder", "Dialect", "Provider", "OPENAI", "ANTHROPIC", "ServerQuirks", "QUIRKS", "assistant_message", "bearer_auth",
    "split_extra_body",
]  # fmt: skip


class Decoder(Protocol):
    """Assembles one request's reply from its parsed events. Pure: no I/O, no threads, no clocks.

    The reader feeds every parsed JSON payload to :meth:`feed` in order and
    hands the events it returns to the consumer. It reads on until ``[DONE]``
    (Chat Completions) or until :attr:`ended` turns true (a protocol whose
    last event says the reply is over), then calls :meth:`finish`. At EOF
    without either, :attr:`complete` decides between a finished reply and a
    truncation (:attr:`truncation` says what was missing).
    """

    limits: Limits
    usage: Optional[Usage]
    cost: Optional[float]
    model: str
    id: str
    ended: bool
    tool_deltas: bool  # set by the turn: emit tool_call_delta events as arguments stream

    def feed(self, chunk: Any) -> List[StreamEvent]:
        """Fold one parsed payload in; return the events it completes (often one, often none)."""

    def finish(self) -> List[StreamEvent]:
        """The events still owed when the reply is over (e.g. tool calls without a closing event)."""

    @property
    def complete(self) -> bool:
        """Whether what arrived so far is a whole reply (an EOF now is not a truncation)."""

    @property
    def truncation(self) -> str:
        """The message of the error raised when the body ends before the reply did."""

    @property
    def finish_reason(self) -> Optional[str]:
        """Why the reply ended, in Chat Completions terms (``stop``, ``length``, ``tool_calls``...)."""

    @property
    def content(self) -> str:
        """The reply's text so far."""

    @property
    def reasoning(self) -> str:
        """The visible reasoning so far."""

    @property
    def refusal(self) -> str:
        """The refusal text so far."""

    def output_parts(self, start: int = 0) -> List[str]:
        """Every output text piece from index ``start`` on, in arrival order (for live token counts)."""

    def tool_calls(self, *, complete_only: bool = False) -> Tuple[ToolCall, ...]:
        """The tool calls assembled so far (or only those already emitted)."""

    def choices(self) -> Tuple[Choice, ...]:
        """Every choice of the reply, the one the events followed first."""

    def assistant_message(self, calls: Sequence[ToolCall]) -> Dict[str, Any]:
        """The canonical assistant message of this reply, with ``calls`` as its tool calls."""


@attrs.frozen
class Provider:
    """Where a dialect's defaults come from: its key's and server's environment variables,
    its server, its model when none is named, and whose documented rules estimate tokens."""

    key_variable: str
    url_variable: str
    base_url: str
    model: str
    estimates: ImageRule  # whose documented rule counts an image's tokens (promptkit._images)


OPENAI = Provider("OPENAI_API_KEY", "OPENAI_BASE_URL", "https://api.openai.com/v1", "gpt-4o-mini", "openai")
ANTHROPIC = Provider("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "https://api.anthropic.com/v1", "claude-haiku-4-5", "anthropic")


class Dialect(Protocol):
    """One wire protocol: its endpoint, its credentials header, its request body and its decoder."""

    name: str
    path: str  # appended to the base URL
    provider: Provider

    def auth_headers(self, api_key: Optional[str]) -> Dict[str, str]:
        """The headers that carry ``api_key`` (none without a key)."""

    def payload(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        params: Mapping[str, Any],
        tools: List[Dict[str, Any]],
        include_usage: bool,
        base_url: str,
        output: Optional["OutputFormat"] = None,
    ) -> Dict[str, Any]:
        """The JSON body of one request (``output``: the structured output asked for, in this protocol's form).

        ``messages`` is the canonical history, system prompt first, this
        turn's messages (and tool rounds) last. ``tools`` are OpenAI Chat
        Completions tool definitions.
        """

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise :class:`~promptkit.ConfigurationError` for a parameter this protocol cannot send."""

    def decoder(self, limits: Limits, output: Optional["OutputFormat"] = None) -> Decoder:
        """A fresh decoder for one request's reply (``output``: the structured output asked for)."""

    def refused(self, error: BaseException, base_url: str) -> bool:
        """Whether ``error`` is a server refusing an optional feature of the last request.

        If so, the feature is recorded in :data:`QUIRKS` for ``base_url`` and the
        caller sends the request again (:meth:`payload` then leaves it out).
        """


class ServerQuirks:
    """Optional features each base URL refused, remembered for the life of the process. Thread-safe."""

    def __init__(self) -> None:
        self._refused: Dict[str, Set[str]] = {}
        self._lock = threading.Lock()

    def refuses(self, base_url: str, feature: str) -> bool:
        """Whether ``base_url`` refused ``feature`` before."""
        refused = self._refused.get(base_url)
        return refused is not None and feature in refused

    def record(self, base_url: str, feature: str) -> bool:
        """Remember that ``base_url`` refuses ``feature``; ``False`` if it was known already."""
        with self._lock:
            refused = self._refused.setdefault(base_url, set())
            if feature in refused:
                return False
            refused.add(feature)
            return True

    def forget(self, base_url: Optional[str] = None) -> None:
        """Forget what one base URL (or every one) refused (for tests and long-lived processes)."""
        with self._lock:
            if base_url is None:
                self._refused.clear()
            else:
                self._refused.pop(base_url, None)


QUIRKS = ServerQuirks()


def assistant_message(content: str, calls: Sequence[ToolCall]) -> Dict[str, Any]:
    """An OpenAI assistant message: ``content`` (``None`` when empty beside tool calls) and ``calls``."""
    message: Dict[str, Any] = {"role": "assistant", "content": content if content or not calls else None}
    if calls:
        message["tool_calls"] = [call.to_message() for call in calls]
    return message


def bearer_auth(api_key: Optional[str]) -> Dict[str, str]:
    """OpenAI's credentials header, ``Authorization: Bearer <key>`` (none without a key)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def split_extra_body(params: Mapping[str, Any]) -> Tuple[Dict[str, Any], Mapping[str, Any]]:
    """``params`` without ``extra_body``, and ``extra_body``: fields merged into the request body last.

    ``extra_body`` (as in openai-python) sends fields whose names promptkit's own
    arguments take, such as the Responses API's ``store`` beside the conversation's
    ``store=``.

    Raises:
        ConfigurationError: ``extra_body`` is not a mapping.
    """
    extra = params.get("extra_body")
    if extra is None:
        return dict(params), {}
    if not isinstance(extra, Mapping):
        raise ConfigurationError(f"extra_body must be a dict of request fields, got {type(extra).__name__}")
    return {k: v for k, v in params.items() if k != "extra_body"}, extra
