"""The OpenTelemetry hooks: GenAI spans and metrics from a turn's hook events.

Loaded only by ``Client(telemetry=...)`` (see :mod:`promptkit._telemetry`,
which says which semantic conventions version the names follow). Per turn:

* ``invoke_agent {agent_name}`` (INTERNAL), started on the caller's thread in
  ``turn_started``, so the caller's current span is its parent; it ends with
  the turn and carries the turn's summed usage and cost, its finish reason and
  its error.
* ``chat {model}`` (CLIENT), a child of it per request round, from the round's
  first request to its end: every retry of the round is inside it (a
  ``promptkit.retry`` event each), as the conventions ask.
* ``execute_tool {name}`` (INTERNAL), a child of the turn span per tool call,
  made the current span on the handler's thread from ``tool_started`` to
  ``tool_finished``: spans the handler starts nest under it.

Metrics, per round: ``gen_ai.client.operation.duration``,
``gen_ai.client.token.usage`` (``gen_ai.token.type`` ``input`` / ``output``),
``gen_ai.client.operation.time_to_first_chunk``,
``gen_ai.client.operation.time_per_output_chunk`` and the promptkit counter
``promptkit.client.cost`` (US dollars). Hooks are told per round, not per
chunk, so time per output chunk is recorded once per streamed round: the mean
gap between its chunks, (last chunk - first chunk) / (chunks - 1).

``error.type`` is the exception's class name (``RateLimitError``,
``APITimeoutError``, a handler's own exception type...), or ``_OTHER`` for a
tool result that failed without one (an unknown tool, bad arguments, a
timeout). A turn's state is keyed by its ``turn_id`` under a lock and dropped
in ``turn_finished``, which ends whatever spans are still open.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ._dialects.base import assistant_message
from ._hooks import (
    FirstToken, Hooks, RequestSent, RetryScheduled, RoundFinished, ToolFinished, ToolStarted, TurnFinished, TurnStarted,
)
from ._telemetry import (
    SCHEMA_URL, Telemetry, error_type, input_messages, output_messages, request_attributes, server_attributes,
    usage_attributes,
)
from ._types import Response, ToolResult
from ._version import __version__

__all__ = ["OTelHooks"]

_monotonic = time.monotonic
# The conventions' advisory bucket boundaries (gen-ai-metrics.md).
_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]
_TOKENS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]


class _Round:
    """One request round: its span (all its attempts) and its timings."""

    __slots__ = ("span", "model", "started", "ttfc")

    def __init__(self, span: Span, model: str) -> None:
        self.span = span
        self.model = model
        self.started = _monotonic()
        self.ttfc: Optional[float] = None  # seconds from the request (of the attempt that answered) to the first chunk


class _Turn:
    """What the hooks know of one turn in flight; ``lock`` guards the dicts and ``history``."""

    def __init__(self, span: Span, event: TurnStarted, request: Dict[str, Any], capture: bool) -> None:
        self.span = span
        self.context = trace.set_span_in_context(span)
        self.provider = event.provider
        self.conversation_id = event.conversation_id
        self.api = event.api
        self.server = server_attributes(event.base_url)
        self.request = request  # the gen_ai.request.* attributes of its parameters
        self.lock = threading.Lock()
        self.rounds: Dict[int, _Round] = {}
        self.tools: Dict[Tuple[int, str], Span] = {}
        self.error_recorded = False  # the failure's exception was recorded on a round span
        # capture_content only: the messages the next round sends, and its tool results as they come
        self.history: Optional[List[Dict[str, Any]]] = list(event.messages) if capture else None
        self.calls: List[str] = []  # the last round's tool call ids, in order
        self.results: Dict[str, ToolResult] = {}


class OTelHooks(Hooks):
    """GenAI spans and metrics for every turn of a client (see the module docstring)."""

    def __init__(self, options: Telemetry) -> None:
        self._capture = options.capture_content
        self._agent = options.agent_name
        self._tracer = trace.get_tracer("promptkit", __version__, options.tracer_provider, schema_url=SCHEMA_URL)
        meter = metrics.get_meter("promptkit", __version__, options.meter_provider, schema_url=SCHEMA_URL)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKENS,
        )  # fmt: skip
        self._ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk", unit="s",
            description="Time to receive the first chunk, from when the request was sent.",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk", unit="s",
            description="Time per output chunk after the first (one mean value per streamed round).",
            explicit_bucket_boundaries_advisory=_SECONDS,
        )  # fmt: skip
        self._cost = meter.create_counter("promptkit.client.cost", unit="{USD}", description="Cost of GenAI operations, in US dollars.")
        self._turns: Dict[int, _Turn] = {}
        self._lock = threading.Lock()
        self._local = threading.local()  # per tool thread: the contexts attached in tool_started

    def _turn(self, turn_id: int) -> Optional[_Turn]:
        with self._lock:
            return self._turns.get(turn_id)

    def _round(self, turn_id: int, round_no: int) -> Optional[_Round]:
        turn = self._turn(turn_id)
        if turn is None:
            return None
        with turn.lock:
            return turn.rounds.get(round_no)

    # -- the turn ----------------------------------------------------------
    def turn_started(self, event: TurnStarted) -> None:
        """Start the turn's ``invoke_agent`` span under the caller's current span."""
        attributes: Dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.provider.name": event.provider,
            "gen_ai.agent.name": self._agent,
            "gen_ai.request.model": event.model,
            "promptkit.api": event.api,
        }
        if event.conversation_id:
            attributes["gen_ai.conversation.id"] = event.conversation_id
        request = request_attributes(event.params)
        attributes.update(request)
        if self._capture:
            attributes["gen_ai.input.messages"] = input_messages(event.messages)
        span = self._tracer.start_span(f"invoke_agent {self._agent}", kind=SpanKind.INTERNAL, attributes=attributes)
        with self._lock:
            self._turns[event.turn_id] = _Turn(span, event, request, self._capture)

    def turn_finished(self, event: TurnFinished) -> None:
        """End every span of the turn still open, then the turn's own, and forget the turn."""
        with self._lock:
            turn = self._turns.pop(event.turn_id, None)
        if turn is None:
            return
        with turn.lock:
            rounds = list(turn.rounds.values())
            tools = list(turn.tools.values())
            turn.rounds.clear()
            turn.tools.clear()
        try:
            error, response = event.error, event.response
            for rnd in rounds:  # a round cut short: the turn failed, or stopped before the round was told
                self._end_round(turn, rnd, error, None if response is None else response.finish_reason)
                turn.error_recorded = turn.error_recorded or error is not None
            for span in tools:  # a handler still running (timed out, or the turn was cancelled)
                if span.is_recording():
                    span.set_attribute("promptkit.tool.abandoned", True)
                    span.end()
            self._conclude(turn, response, error)
        finally:
            turn.span.end()

    def _conclude(self, turn: _Turn, response: Optional[Response], error: Optional[BaseException]) -> None:
        """The turn span's outcome: the Response's totals, or the error (with the partial usage)."""
        span = turn.span
        if response is not None:
            span.set_attributes(usage_attributes(response.usage))
            span.set_attributes({
                "promptkit.cost_usd": response.cost,
                "promptkit.rounds": response.rounds,
                "gen_ai.response.finish_reasons": [response.finish_reason or "stop"],
            })  # fmt: skip
            if response.model:
                span.set_attribute("gen_ai.response.model", response.model)
            if self._capture:
                answered = {result.call_id for result in response.tool_results}
                pending = [call for call in response.tool_calls if call.id not in answered]  # left for the app
                text = output_messages(response.content, response.reasoning, pending, response.finish_reason)
                span.set_attribute("gen_ai.output.messages", text)
        elif error is not None:
            partial = getattr(error, "partial", None)
            if isinstance(partial, Response):
                span.set_attributes(usage_attributes(partial.usage))
                span.set_attribute("promptkit.cost_usd", partial.cost)
            span.set_attribute("gen_ai.response.finish_reasons", ["error"])
            self._fail(span, error, record=not turn.error_recorded)

    # -- rounds ------------------------------------------------------------
    def request_sent(self, event: RequestSent) -> None:
        """Start the round's ``chat`` span at its first attempt (later attempts are inside it)."""
        turn = self._turn(event.turn_id)
        if turn is None:
            return
        with turn.lock:
            if event.round in turn.rounds:
                return
            history = self._next_history(turn) if turn.history is not None else None
        attributes: Dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": turn.provider,
            "gen_ai.request.model": event.model,
            "gen_ai.request.stream": True,
            "promptkit.api": turn.api,
            **turn.server,
            **turn.request,
        }
        if turn.conversation_id:
            attributes["gen_ai.conversation.id"] = turn.conversation_id
        if history is not None:
            attributes["gen_ai.input.messages"] = input_messages(history)
        name = f"chat {event.model}" if event.model else "chat"
        span = self._tracer.start_span(name, context=turn.context, kind=SpanKind.CLIENT, attributes=attributes)
        with turn.lock:
            turn.rounds[event.round] = _Round(span, event.model)

    def _next_history(self, turn: _Turn) -> List[Dict[str, Any]]:
        """The messages of the round about to be sent: the last round's tool results join, in call order."""
        assert turn.history is not None
        for call_id in turn.calls:
            result = turn.results.pop(call_id, None)
            if result is not None:
                turn.history.append(result.to_message())
        turn.calls = []
        return list(turn.history)

    def first_token(self, event: FirstToken) -> None:
        """Note the round's time to first chunk."""
        rnd = self._round(event.turn_id, event.round)
        if rnd is None:
            return
        rnd.ttfc = event.elapsed
        rnd.span.set_attribute("gen_ai.response.time_to_first_chunk", event.elapsed)

    def retry_scheduled(self, event: RetryScheduled) -> None:
        """A ``promptkit.retry`` event on the round's span (the retried error is not the round's)."""
        rnd = self._round(event.turn_id, event.round)
        if rnd is None:
            return
        rnd.span.add_event("promptkit.retry", {
            "promptkit.retry.attempt": event.attempt,
            "promptkit.retry.delay": event.delay,
            "error.type": error_type(event.error),
            "exception.message": str(event.error),
        })  # fmt: skip

    def round_finished(self, event: RoundFinished) -> None:
        """End the round's span with the response's model, id, finish reason, usage and cost; record its metrics."""
        turn = self._turn(event.turn_id)
        if turn is None:
            return
        with turn.lock:
            rnd = turn.rounds.pop(event.round, None)
            if turn.history is not None:
                turn.history.append(assistant_message(event.content, event.tool_calls))
                turn.calls = [call.id for call in event.tool_calls]
        if rnd is None:
            return
        span = rnd.span
        span.set_attributes(usage_attributes(event.usage))
        span.set_attributes({
            "gen_ai.response.model": event.model,
            "gen_ai.response.finish_reasons": [event.finish_reason or "stop"],
            "promptkit.cost_usd": event.cost,
        })  # fmt: skip
        if event.response_id:
            span.set_attribute("gen_ai.response.id", event.response_id)
        if self._capture:
            text = output_messages(event.content, event.reasoning, event.tool_calls, event.finish_reason)
            span.set_attribute("gen_ai.output.messages", text)
        now = _monotonic()
        labels = self._labels(turn, rnd, event.model)
        self._duration.record(now - rnd.started, labels)
        self._tokens.record(event.usage.prompt_tokens, {**labels, "gen_ai.token.type": "input"})
        self._tokens.record(event.usage.completion_tokens, {**labels, "gen_ai.token.type": "output"})
        self._cost.add(event.cost, labels)
        if rnd.ttfc is not None:
            self._ttfc.record(rnd.ttfc, labels)
        if rnd.ttfc is not None and event.chunks > 1 and event.last_chunk >= rnd.ttfc:
            self._tpoc.record((event.last_chunk - rnd.ttfc) / (event.chunks - 1), labels)
        span.end()

    def _labels(self, turn: _Turn, rnd: _Round, response_model: Optional[str]) -> Dict[str, Any]:
        """The metric attributes of a round (the conventions' set: no ids, no content)."""
        labels: Dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": turn.provider,
            "gen_ai.request.model": rnd.model,
            **turn.server,
        }
        if response_model:
            labels["gen_ai.response.model"] = response_model
        return labels

    def _end_round(self, turn: _Turn, rnd: _Round, error: Optional[BaseException], finish_reason: Optional[str]) -> None:
        """End a round the turn's end interrupted: failed with ``error``, or stopped (``finish_reason``)."""
        labels = self._labels(turn, rnd, None)
        if error is not None:
            rnd.span.set_attribute("gen_ai.response.finish_reasons", ["error"])
            self._fail(rnd.span, error, record=True)
            labels["error.type"] = error_type(error)
        elif finish_reason:
            rnd.span.set_attribute("gen_ai.response.finish_reasons", [finish_reason])
        self._duration.record(_monotonic() - rnd.started, labels)
        if rnd.ttfc is not None:
            self._ttfc.record(rnd.ttfc, labels)
        rnd.span.end()

    # -- tools -------------------------------------------------------------
    def tool_started(self, event: ToolStarted) -> None:
        """Start the tool's span and make it current on this (the handler's) thread."""
        turn = self._turn(event.turn_id)
        if turn is None:
            return
        call = event.call
        attributes: Dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call.name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
        }
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = call.arguments_json
        span = self._tracer.start_span(f"execute_tool {call.name}", context=turn.context, kind=SpanKind.INTERNAL, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        self._attached().append(((event.turn_id, event.round, call.id), token, span))
        with turn.lock:
            turn.tools[(event.round, call.id)] = span

    def tool_finished(self, event: ToolFinished) -> None:
        """Restore this thread's context and end the tool's span (status ERROR when it failed)."""
        key = (event.turn_id, event.round, event.call.id)
        attached = self._attached()
        found = next((i for i in range(len(attached) - 1, -1, -1) if attached[i][0] == key), None)
        if found is None:
            return
        _, token, span = attached.pop(found)
        otel_context.detach(token)
        turn = self._turn(event.turn_id)
        if turn is not None:
            with turn.lock:
                turn.tools.pop((event.round, event.call.id), None)
                if turn.history is not None:
                    turn.results[event.call.id] = event.result
        if not span.is_recording():  # the turn ended first and closed it
            return
        result = event.result
        if self._capture:
            span.set_attribute("gen_ai.tool.call.result", result.content)
        if result.is_error:
            if event.error is not None:
                self._fail(span, event.error, record=True)
            else:
                span.set_status(Status(StatusCode.ERROR, _error_text(result)))
                span.set_attribute("error.type", "_OTHER")
        span.end()

    def _attached(self) -> List[Tuple[Tuple[int, int, str], Any, Span]]:
        """This thread's tool spans made current by ``tool_started``, with their detach tokens."""
        attached: Optional[List[Tuple[Tuple[int, int, str], Any, Span]]] = getattr(self._local, "attached", None)
        if attached is None:
            attached = self._local.attached = []
        return attached

    # -- errors ------------------------------------------------------------
    @staticmethod
    def _fail(span: Span, error: BaseException, *, record: bool) -> None:
        """Status ERROR with the message, ``error.type``, and the exception recorded (once per failure)."""
        span.set_status(Status(StatusCode.ERROR, str(error)))
        span.set_attribute("error.type", error_type(error))
        if record:
            span.record_exception(error)


def _error_text(result: ToolResult) -> str:
    """The message of a tool's error result (``{"error": "..."}``), else its content."""
    text = result.content
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return str(value.get("error")) if isinstance(value, dict) and "error" in value else text
