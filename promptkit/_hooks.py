"""Hooks: what happens in a turn, told to the application as it happens.

Subclass :class:`Hooks`, override the methods you need, and pass instances to
``promptkit.Client(hooks=[...])``. Each method receives one frozen event object.
Structured logging (:class:`LoggingHooks`) and OpenTelemetry
(``Client(telemetry=True)``) are built on this interface.

When they run:

* ``turn_started`` on the thread that called ``send``/``send_stream``, before
  the request is opened (so the caller's tracing context is current there);
* ``request_sent`` before each attempt's request (the first one on the
  caller's thread, later ones on the thread running the turn: the one
  consuming the stream, or a worker when the stream is relayed with
  heartbeats);
* ``first_token`` when a round's first output (text, reasoning or a tool
  call) has been read, ``round_finished`` when a round's reply has ended,
  ``retry_scheduled`` before a backoff, all on the thread running the turn;
* ``tool_started`` and ``tool_finished`` on the thread that runs the tool
  handler, just before and just after it (so a context a hook sets in
  ``tool_started`` is current inside the handler);
* ``turn_finished`` exactly once per turn that ``turn_started`` announced, with
  the Response or the error, on the thread running the turn (or on the
  caller's thread when ``send_stream`` itself raises).

Whatever thread runs them, the turn's steps run in a copy of the context
``send_stream`` was called in, so a hook sees the caller's tracing context.

Never on the consumer's per-event path: a turn without hooks pays nothing, and
one with hooks pays per request, round and tool, not per token. A hook that
raises is logged (once per hook method and exception type) and never breaks the
turn.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

import attrs

from ._types import Response, ToolCall, ToolResult, Usage

__all__ = [
    "Hooks", "LoggingHooks", "HookRunner", "TurnStarted", "RequestSent", "FirstToken", "RoundFinished",
    "RetryScheduled", "ToolStarted", "ToolFinished", "TurnFinished",
]  # fmt: skip

logger = logging.getLogger(__name__)


@attrs.frozen
class TurnStarted:
    """A turn begins: ``turn_id`` names it in every later event of the turn."""

    turn_id: int
    conversation_id: str
    api: str  # the wire dialect: "chat", "responses", "anthropic"
    provider: str  # "openai" or "anthropic": whose API the dialect is
    model: str  # requested
    base_url: str
    messages: Tuple[Dict[str, Any], ...]  # the history the turn sends, this turn's messages last
    params: Dict[str, Any]  # the request parameters (temperature, max_tokens...)
    started: float  # time.monotonic()


@attrs.frozen
class RequestSent:
    """An attempt's request is about to be sent."""

    turn_id: int
    round: int  # 1 for the first request of the turn, one more per tool round
    attempt: int  # 1, then one more per retry of this round
    model: str


@attrs.frozen
class FirstToken:
    """A round's first output arrived (``elapsed``: seconds since its request was sent)."""

    turn_id: int
    round: int
    elapsed: float


@attrs.frozen
class RoundFinished:
    """A round's reply ended (the turn may go on with tools)."""

    turn_id: int
    round: int
    model: str  # as the server reported it (else the requested one)
    response_id: str
    finish_reason: Optional[str]
    usage: Usage  # this round's (the server's, or an estimate)
    cost: float  # this round's, USD
    content: str
    reasoning: str
    tool_calls: Tuple[ToolCall, ...]
    chunks: int  # output pieces read (for time per output chunk)
    duration: float  # seconds from the round's request to its end
    last_chunk: float = 0.0  # seconds from the request (the attempt that answered) to its last output


@attrs.frozen
class RetryScheduled:
    """An attempt failed before any output reached the consumer, and another will follow after ``delay`` seconds."""

    turn_id: int
    round: int
    attempt: int  # the one that failed
    delay: float
    error: BaseException


@attrs.frozen
class ToolStarted:
    """A tool handler is about to run (on its own thread)."""

    turn_id: int
    round: int
    call: ToolCall


@attrs.frozen
class ToolFinished:
    """A tool handler returned (or raised: ``result.is_error``, and ``error`` when it raised)."""

    turn_id: int
    round: int
    call: ToolCall
    result: ToolResult
    duration: float
    error: Optional[BaseException]


@attrs.frozen
class TurnFinished:
    """A turn ended: ``response`` (done, possibly cancelled) or ``error`` (with ``error.partial``)."""

    turn_id: int
    response: Optional[Response]
    error: Optional[BaseException]
    duration: float


class Hooks:
    """Override the methods you need; each is called with one event (see the module docstring)."""

    def turn_started(self, event: TurnStarted) -> None:
        """A turn begins (caller's thread)."""

    def request_sent(self, event: RequestSent) -> None:
        """An attempt's request is about to be sent."""

    def first_token(self, event: FirstToken) -> None:
        """A round's first output arrived."""

    def round_finished(self, event: RoundFinished) -> None:
        """A round's reply ended."""

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """An attempt failed and will be retried."""

    def tool_started(self, event: ToolStarted) -> None:
        """A tool handler is about to run (its thread)."""

    def tool_finished(self, event: ToolFinished) -> None:
        """A tool handler ended (its thread)."""

    def turn_finished(self, event: TurnFinished) -> None:
        """A turn ended, with its Response or its error."""


class LoggingHooks(Hooks):
    """Structured logging of every hook event: one record each on the ``promptkit.hooks`` logger.

    Each record's message is the event's name and its ``extra`` carries the
    fields (``record.promptkit``: a dict), ready for a JSON formatter. Message
    text and tool arguments are left out; usage, cost, timings and errors are in.
    """

    def __init__(self, logger_name: str = "promptkit.hooks", level: int = logging.INFO) -> None:
        self._log = logging.getLogger(logger_name)
        self._level = level

    def _emit(self, name: str, fields: Dict[str, Any]) -> None:
        if self._log.isEnabledFor(self._level):
            self._log.log(self._level, "%s %s", name, fields, extra={"promptkit": dict(fields, event=name)})

    def turn_started(self, event: TurnStarted) -> None:
        """Logged: ids, dialect, model (not the messages)."""
        self._emit("turn_started", {"turn": event.turn_id, "conversation": event.conversation_id, "api": event.api, "model": event.model})

    def request_sent(self, event: RequestSent) -> None:
        """Logged: round and attempt."""
        self._emit("request_sent", {"turn": event.turn_id, "round": event.round, "attempt": event.attempt})

    def first_token(self, event: FirstToken) -> None:
        """Logged: the time to the first output."""
        self._emit("first_token", {"turn": event.turn_id, "round": event.round, "ms": round(event.elapsed * 1000, 1)})

    def round_finished(self, event: RoundFinished) -> None:
        """Logged: model, finish reason, usage, cost, duration."""
        self._emit("round_finished", {
            "turn": event.turn_id, "round": event.round, "model": event.model, "finish_reason": event.finish_reason,
            "usage": event.usage.to_dict(), "cost": event.cost, "ms": round(event.duration * 1000, 1),
        })  # fmt: skip

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """Logged: the failed attempt, the delay and the error's type."""
        self._emit("retry_scheduled", {
            "turn": event.turn_id, "round": event.round, "attempt": event.attempt, "delay": event.delay,
            "error": type(event.error).__name__,
        })  # fmt: skip

    def tool_finished(self, event: ToolFinished) -> None:
        """Logged: the tool, its duration and whether it failed."""
        self._emit("tool_finished", {
            "turn": event.turn_id, "tool": event.call.name, "call_id": event.call.id, "is_error": event.result.is_error,
            "ms": round(event.duration * 1000, 1),
        })  # fmt: skip

    def turn_finished(self, event: TurnFinished) -> None:
        """Logged: the outcome, tokens, cost and duration."""
        fields: Dict[str, Any] = {"turn": event.turn_id, "ms": round(event.duration * 1000, 1)}
        if event.response is not None:
            fields.update(finish_reason=event.response.finish_reason, tokens=event.response.usage.total_tokens, cost=event.response.cost)
        else:
            fields["error"] = type(event.error).__name__
        self._emit("turn_finished", fields)


class HookRunner:
    """Calls every hook's method with an event; a hook that raises is logged once and skipped."""

    def __init__(self, hooks: Iterable[Hooks]) -> None:
        self.hooks: List[Hooks] = list(hooks)
        self._told: Set[Tuple[int, str, type]] = set()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def __call__(self, method: str, event: Any) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, method)(event)
            except Exception as exc:  # a hook never breaks a turn
                key = (id(hook), method, type(exc))
                with self._lock:
                    first = key not in self._told
                    self._told.add(key)
                if first:
                    logger.warning(
                        "hook %s.%s raised %s (logged once; the turn goes on)", type(hook).__name__, method, type(exc).__name__,
                        exc_info=True,
                    )
