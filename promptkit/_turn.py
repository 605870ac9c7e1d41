"""One turn: the request rounds between a user message and the final reply.

:meth:`Turn.steps` is a generator: each step reads until the events of one
read (or one tool result) are ready and yields them as a batch; its return
value is the turn's Response. Whichever thread needs the next events runs the
next step (see :mod:`promptkit._stream`): usually the consumer's own, so a
token goes from the socket to the ``for`` loop without a thread hand-off.

It reads each HTTP body as bytes arrive, frames them as server-sent events,
folds the chunks into an :class:`~promptkit._dialects.Decoder` of the turn's
wire dialect, and yields events. When a round
ends with tool calls that all have handlers, it runs them and starts the next
round on the same stream. It retries a dropped or silent connection only
before that request has produced any output, and never after.

One retry loop (:meth:`Turn._attempts`) covers a request from opening to its
first output: a failure to connect, a retryable status, a timeout, or a broken,
silent, truncated or malformed stream before anything reached the consumer is
retried under the :class:`~promptkit._retry.RetryPolicy`, and nothing after.
Every wait (connecting, the headers, a backoff, ``Retry-After``, the body, a
tool handler) can be cancelled through the turn's
:class:`~promptkit._stream.StreamControl`.

The turn reports its outcome through :class:`TurnSink` (the conversation),
*before* the terminal event is queued, so history is committed by the time
the consumer sees ``done``.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Generator, List, Optional, Protocol, Sequence, Tuple

import attrs

from ._secrets import log_text
from ._timeouts import TimeoutPlan
from ._accounting import TurnAccount
from ._dialects import Decoder, Dialect, dialect_for
from ._dialects.base import assistant_message
from ._errors import APIError, APITimeoutError, BudgetExceededError, OutputValidationError, ToolError
from ._limits import DEFAULT_LIMITS, Limits
from ._pool import run_parallel
from .pricing import PriceTable
from ._retry import RetryPolicy
from ._reader import read_body
from ._stream import StreamControl
from ._tools import ToolRegistry
from ._types import Response, StreamEvent, Timeout, ToolCall, ToolResult, Usage

if TYPE_CHECKING:  # pragma: no cover - the transport (and requests) load with the first Client
    from ._hooks import HookRunner
    from ._structured import OutputFormat
    from ._transport import HTTPStream, Transport

__all__ = ["TurnSettings", "Turn", "TurnSink"]

logger = logging.getLogger(__name__)
_monotonic = time.monotonic

# A turn's steps: batches of events for the consumer, then (as the generator's value) its Response.
Steps = Generator[List[StreamEvent], None, Response]
_Attempts = Generator[List[StreamEvent], None, None]
_turn_ids = itertools.count(1)


class TurnSink(Protocol):
    """Where a turn reports how it ended (implemented by the conversation)."""

    def commit(self, messages: List[Dict[str, Any]], response: Response) -> None:
        """The turn ended with ``done`` (success or cancelled): record ``messages``."""

    def fail(self, partial: Optional[Response]) -> None:
        """The turn ended with an error, or was cancelled before anything reached the user:
        record nothing but the tokens it consumed."""

    @property
    def renews(self) -> bool:
        """Whether :meth:`renew` does anything (a store's turn lock to keep alive)."""

    def renew(self) -> None:
        """The turn goes on to another round: keep any turn lock alive."""


@attrs.frozen
class TurnSettings:
    """What a turn needs from its client and conversation."""

    model: str
    params: Dict[str, Any]
    timeout: Timeout
    policy: RetryPolicy
    prices: PriceTable
    max_rounds: int = 10
    tool_workers: int = 4
    include_usage: bool = True
    limits: Limits = DEFAULT_LIMITS
    dialect: Dialect = attrs.field(factory=lambda: dialect_for("chat"))
    hooks: Optional["HookRunner"] = None  # None: no hook is ever called (nothing to pay, nothing loaded)
    output: Optional["OutputFormat"] = None  # response_format: the structured output asked for
    tool_call_deltas: bool = False  # tool_call_delta events, with the arguments parsed so far


@attrs.define
class _Round:
    """What a turn carries across its rounds (usage and cost: :class:`TurnAccount`)."""

    tool_calls: List[ToolCall] = attrs.Factory(list)
    tool_results: List[ToolResult] = attrs.Factory(list)
    messages: List[Dict[str, Any]] = attrs.Factory(list)
    rounds: int = 0
    ttft: Optional[float] = None
    reasoning: List[str] = attrs.Factory(list)  # the reasoning of the finished rounds


class Turn:
    """Runs one turn, one step at a time, on whichever thread drives its stream (see the module docstring)."""

    def __init__(
        self,
        *,
        transport: "Transport",
        settings: TurnSettings,
        history: List[Dict[str, Any]],
        new_messages: List[Dict[str, Any]],
        tools: ToolRegistry,
        sink: TurnSink,
        started: float,
        budget: Optional[float] = None,
        conversation_id: str = "",
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._history = history  # messages before this turn (system prompt included)
        self._tools = tools
        self._sink = sink
        self._t0 = started
        self._plan = TimeoutPlan.start(settings.timeout, now=started)  # computed once for the whole turn
        self._totals = _Round(messages=list(new_messages))
        self._http: Optional["HTTPStream"] = None
        self._attempt = 1
        self._acc: Optional[Decoder] = None  # the current round's
        self._account = TurnAccount(
            model=settings.model,
            prices=settings.prices,
            tools=tools.to_openai() or None,
            estimates=settings.dialect.provider.estimates,
        )
        self._reported = False  # the sink hears exactly once how the turn ended
        self._budget = budget  # USD this turn may spend, or None
        self._emitted = False  # whether the current attempt has queued any event for the consumer
        self._content_before = 0  # characters of content in this turn's finished rounds
        self._hooks = settings.hooks if settings.hooks else None
        self._id = next(_turn_ids)
        self._conversation_id = conversation_id
        self._request_at = started  # when the current attempt's request was sent
        self._round_at = started  # when the current round began (its first attempt)
        self._round_output = False  # the current round's first output was announced
        self._last_output_at = started  # when the current attempt's output last arrived (kept for the hooks)
        self._hooks_told = False  # turn_finished was announced

    # -- requests --------------------------------------------------------
    def payload(self) -> Dict[str, Any]:
        """The request body for the next round."""
        settings = self._settings
        return settings.dialect.payload(
            model=settings.model,
            messages=self._history + self._totals.messages,
            params=settings.params,
            tools=self._tools.to_openai() if len(self._tools) else [],
            include_usage=settings.include_usage,
            base_url=self._transport.base_url,
            output=settings.output,
        )

    def start(self, control: StreamControl) -> None:
        """Open the first request, retrying under the policy, and return once its headers are in.

        Runs on the caller's thread, so that ``send_stream()`` raises what ended
        the turn before any stream existed. Returns quietly when ``control`` is
        cancelled meanwhile; :meth:`run` then ends the turn as cancelled.
        """
        hooks = self._hooks
        if hooks is not None:
            from ._hooks import TurnStarted

            settings = self._settings
            hooks("turn_started", TurnStarted(
                turn_id=self._id, conversation_id=self._conversation_id, api=settings.dialect.name,
                provider=settings.dialect.provider.estimates, model=settings.model, base_url=self._transport.base_url,
                messages=tuple(self._history + self._totals.messages), params=dict(settings.params), started=self._t0,
            ))  # fmt: skip
        try:
            for _ in self._attempts(control, read=False):  # pragma: no cover - opening yields no events
                raise AssertionError("opening a request yielded events")
        except BaseException as error:
            self.abandon(error)
            raise

    def discard(self) -> None:
        """Close the open response of a turn that will never run."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def abandon(self, error: BaseException) -> None:
        """Tell the hooks the turn ended with ``error`` before it could run (``send_stream`` raises it)."""
        self._tell_finished(None, error)

    def _tell_finished(self, response: Optional[Response], error: Optional[BaseException]) -> None:
        if self._hooks is not None and not self._hooks_told:
            from ._hooks import TurnFinished

            self._hooks_told = True
            self._hooks("turn_finished", TurnFinished(self._id, response, error, _monotonic() - self._t0))

    # -- the stream's entry point ----------------------------------------
    def steps(self, control: StreamControl) -> Steps:
        """Run every round, yielding each batch of events; return the final (or cancelled)
        Response, or raise with ``partial`` set."""
        if self._hooks is None:
            return (yield from self._run(control))
        try:
            response = yield from self._run(control)
        except BaseException as error:
            self._tell_finished(None, error)
            raise
        self._tell_finished(response, None)
        return response

    def _run(self, control: StreamControl) -> Steps:
        totals = self._totals
        try:
            while True:
                if control.cancelled:
                    return self._end_cancelled(control)
                totals.rounds += 1
                self._round_output = False
                if totals.rounds > 1:  # the first round's request was opened by start(), at the turn's start
                    self._round_at = _monotonic()
                yield from self._attempts(control, read=True)
                acc = self._acc
                if control.cancelled or acc is None:
                    return self._end_cancelled(control)
                self._count_usage()
                self._tell_round(acc, acc.finish_reason)
                calls = acc.tool_calls()
                if acc.finish_reason != "tool_calls" and not calls:
                    return self._end(acc)
                totals.tool_calls.extend(calls)
                assistant = acc.assistant_message(calls)
                if not calls or not all(self._runs(c) for c in calls):
                    return self._end(acc, assistant)  # pending calls: the application answers them
                if totals.rounds >= self._settings.max_rounds:
                    raise ToolError(f"the tool loop reached max_rounds={self._settings.max_rounds} without a final answer")
                results = self._run_tools(control, calls)
                if results is None:
                    return self._end_cancelled(control)
                totals.messages.append(assistant)
                totals.messages.extend(r.to_message() for r in results)
                totals.tool_results.extend(results)
                for result in results:
                    yield [StreamEvent("tool_result", tool_result=result)]
                if self._plan.expired():
                    raise self._plan.error("total")
                self._content_before += len(acc.content)
                totals.reasoning.append(acc.reasoning)
                self._acc = None
                self._sink.renew()
        except (APIError, BudgetExceededError) as error:
            if control.cancelled and control.cancel_error is None:
                return self._end_cancelled(control)
            if isinstance(error, APIError):
                self._transport.redact_error(error)
            self._count_usage()  # a failed round's tokens reach the hooks in turn_finished (error.partial.usage)
            error.partial = self._response(finish_reason=None)
            self._report(None, error.partial)
            raise
        except (ToolError, OutputValidationError) as error:
            error.partial = self._response(finish_reason=None)
            self._report(None, error.partial)
            raise
        except BaseException:
            self._report(None, None)
            raise
        finally:
            self._release(control)

    # -- one request, with retries -----------------------------------------
    def _attempts(self, control: StreamControl, *, read: bool) -> _Attempts:
        """The one retry loop: open this round's request and, with ``read``, read it into ``self._acc``
        (yielding the events of each read).

        A failure is retried while nothing of the attempt reached the consumer,
        within the policy and the total deadline. Returns quietly when cancelled.
        """
        while not control.cancelled:
            try:
                if self._http is None:
                    self._emitted = False  # a new attempt: retryable until its first output
                    payload = self.payload()
                    self._request_at = _monotonic()
                    if self._hooks is not None:
                        from ._hooks import RequestSent

                        self._hooks("request_sent", RequestSent(self._id, self._totals.rounds or 1, self._attempt, self._settings.model))
                    self._http = self._transport.open(payload, self._plan, control)
                    # The round's decoder exists once its request is answered, so that the live usage
                    # counts the prompt before the first event is read (whenever the consumer asks).
                    self._acc = self._settings.dialect.decoder(self._settings.limits, self._settings.output)
                if not read:
                    return
                yield from self._read(control, self._http)
                self._release(control)
                return
            except APIError as error:
                self._release(control)
                if control.cancelled:
                    return
                self._transport.redact_error(error)  # before it is logged below
                if not self._emitted and self._settings.dialect.refused(error, self._transport.base_url):
                    continue  # the same attempt again, without what the server refused
                self._backoff(control, error)

    def _backoff(self, control: StreamControl, error: APIError) -> None:
        """Wait before the next attempt (cancellable), or raise ``error`` when it is not retried."""
        # Retried only while nothing of this attempt reached the consumer: a refused or reset
        # connection, a retryable status, a stall, a truncation, a malformed chunk or a
        # transient in-band error all qualify.
        retryable = not self._emitted and not (isinstance(error, APITimeoutError) and error.kind == "total")
        delay = self._settings.policy.next_delay(error, self._attempt) if retryable else None
        if delay is None or not self._plan.allows(delay):
            error.attempts = self._attempt
            raise error
        logger.info("attempt %d failed (%s); retrying in %.2fs", self._attempt, log_text(error), delay)
        if self._hooks is not None:
            from ._hooks import RetryScheduled

            self._hooks("retry_scheduled", RetryScheduled(self._id, self._totals.rounds or 1, self._attempt, delay, error))
        if control.sleep(delay):
            self._attempt += 1

    def _read(self, control: StreamControl, http: "HTTPStream") -> _Attempts:
        """Read one response body into ``self._acc`` (the attempt's new decoder), yielding each read's events at once."""
        acc = self._acc
        assert acc is not None
        self._emitted = False
        control.attach(http)
        # Only a store's turn lock or a budget needs a look after each read; the hooks need its time.
        between = self._between_reads if self._budget is not None or self._sink.renews else None
        stamp = self._hooks is not None
        acc.tool_deltas = self._settings.tool_call_deltas
        parse = self._partial_parser(self._settings.output is not None) if self._settings.output is not None or acc.tool_deltas else None
        for events, last in read_body(control, http, acc, self._plan):
            if not self._emitted:
                self._first_output()
            if parse is not None:
                events = parse(events)
            if stamp:
                self._last_output_at = _monotonic()  # when it was read, not when the consumer came back for more
            yield events
            if between is not None and not last:
                between()

    @staticmethod
    def _partial_parser(content: bool) -> Callable[[List[StreamEvent]], List[StreamEvent]]:
        """What gives each content event of a round the structured value parsed so far, and each
        ``tool_call_delta`` event its call's arguments so far (``event.parsed``)."""
        from ._structured import PartialParser

        feed = PartialParser().feed  # the structured reply's text
        calls: Dict[str, Any] = {}  # a parser per tool call's arguments

        def parsed(event: StreamEvent) -> StreamEvent:
            if event.type == "content":
                return attrs.evolve(event, parsed=feed(event.content)) if content else event
            if event.type == "tool_call_delta" and event.tool_call is not None:
                key = event.tool_call.id  # the decoders give every call an id, its position when the server gave none
                parser = calls.get(key)
                if parser is None:
                    parser = calls[key] = PartialParser()
                return attrs.evolve(event, parsed=parser.feed(event.content))
            return event

        def parse(events: List[StreamEvent]) -> List[StreamEvent]:
            return [parsed(e) for e in events]

        return parse

    def _release(self, control: StreamControl) -> None:
        """Close the current response (pooled if read to its end) and stop aborting it on cancel."""
        if self._http is not None:
            control.detach()
            self._http.close()
            self._http = None

    def _between_reads(self) -> None:
        """After a read's events were handed on, before the next read: keep any turn lock alive, stop at the budget."""
        self._sink.renew()
        if self._budget is not None:
            self._check_budget()

    def _first_output(self) -> None:
        self._emitted = True  # from here on, this attempt is never retried
        now = _monotonic()
        if self._totals.ttft is None:
            self._totals.ttft = now
        if self._hooks is not None and not self._round_output:
            from ._hooks import FirstToken

            self._round_output = True
            self._hooks("first_token", FirstToken(self._id, self._totals.rounds or 1, now - self._request_at))

    # -- live usage --------------------------------------------------------
    def progress(self) -> Tuple[Usage, float]:
        """Usage and cost so far: finished rounds as reported, the current one estimated (any thread)."""
        return self._account.progress(self._acc, lambda: self._history + self._totals.messages)

    def _check_budget(self) -> None:
        assert self._budget is not None
        _, cost = self.progress()
        if cost > self._budget:
            raise BudgetExceededError(
                f"the conversation's max_cost budget is spent: this turn reached an estimated ${cost:.6f} "
                f"of the ${self._budget:.6f} left"
            )

    # -- tools -------------------------------------------------------------
    def _runs(self, call: ToolCall) -> bool:
        """Whether promptkit answers this call itself: it has a handler, or it names no known tool
        while the app uses handler tools (a hallucinated name then gets an "unknown tool" error
        result instead of stalling a loop nobody answers by hand)."""
        tools = self._tools
        if tools.has_handler(call.name):
            return True
        return call.name not in tools and any(tool.handler is not None for tool in tools)

    def _run_tools(self, control: StreamControl, calls: Sequence[ToolCall]) -> Optional[List[ToolResult]]:
        tools = self._tools
        hooks = self._hooks
        if hooks is None:
            tasks = [lambda call=call: tools.execute(call) for call in calls]
        else:
            tasks = [lambda call=call: self._execute_told(hooks, call) for call in calls]
        timeouts = [getattr(tools.get(call.name), "timeout", None) for call in calls]

        def timed_out(i: int, at_deadline: bool) -> ToolResult:
            call = calls[i]
            if at_deadline:
                message = f"tool {call.name!r} was still running when the turn's total deadline passed"
            else:
                message = f"tool {call.name!r} timed out after {timeouts[i]}s"
            logger.warning("%s", message)
            return ToolResult(call.id, call.name, json.dumps({"error": message}), is_error=True)

        return run_parallel(
            control,
            tasks, max_workers=self._settings.tool_workers, timeouts=timeouts, on_timeout=timed_out, deadline=self._plan.deadline
        )

    def _execute_told(self, hooks: "HookRunner", call: ToolCall) -> ToolResult:
        """Run one tool call on its thread between ``tool_started`` and ``tool_finished``."""
        from ._hooks import ToolFinished, ToolStarted

        round_no = self._totals.rounds
        hooks("tool_started", ToolStarted(self._id, round_no, call))
        started = _monotonic()
        raised: List[BaseException] = []  # the handler's exception (execute() turns it into an error result)
        try:
            result = self._tools.execute(call, raised)
        except BaseException as exc:  # not the handler's failure (that is a result): told, then raised
            failed = ToolResult(call.id, call.name, json.dumps({"error": type(exc).__name__}), is_error=True)
            hooks("tool_finished", ToolFinished(self._id, round_no, call, failed, _monotonic() - started, exc))
            raise
        hooks("tool_finished", ToolFinished(self._id, round_no, call, result, _monotonic() - started, raised[0] if raised else None))
        return result

    # -- results -----------------------------------------------------------
    def _count_usage(self) -> Optional[Tuple[Usage, float]]:
        """Add the current round's usage (the server's, or an estimate) and cost to the totals, once;
        return them (``None`` when there is no round, or it was counted already)."""
        if self._acc is not None:
            return self._account.count(self._acc, self._history + self._totals.messages)
        return None

    def _tell_round(self, acc: Decoder, finish_reason: Optional[str], counted: Optional[Tuple[Usage, float]] = None) -> None:
        """Tell the hooks a round ended, with its own usage and cost."""
        if self._hooks is None:
            return
        from ._hooks import RoundFinished

        usage, cost = counted if counted is not None else self._account.round_of(acc)
        self._hooks("round_finished", RoundFinished(
            turn_id=self._id, round=self._totals.rounds or 1, model=acc.model or self._settings.model, response_id=acc.id,
            finish_reason=finish_reason, usage=usage, cost=cost, content=acc.content, reasoning=acc.reasoning,
            tool_calls=acc.tool_calls(complete_only=True), chunks=len(acc.output_parts()), duration=_monotonic() - self._round_at,
            last_chunk=max(0.0, self._last_output_at - self._request_at),
        ))  # fmt: skip

    def _response(self, finish_reason: Optional[str], content: Optional[str] = None) -> Response:
        totals = self._totals
        acc = self._acc
        now = _monotonic()
        if content is None:
            content = acc.content if acc is not None else ""
        return Response(
            content=content,
            tool_calls=tuple(totals.tool_calls),
            finish_reason=finish_reason,
            usage=self._account.usage,
            cost=self._account.cost,
            cost_known=self._account.cost_known,
            cost_source=self._account.cost_source,
            latency_ms=(now - self._t0) * 1000.0,
            ttft_ms=None if totals.ttft is None else (totals.ttft - self._t0) * 1000.0,
            model=(acc.model if acc is not None and acc.model else self._settings.model),
            id=acc.id if acc is not None else "",
            reasoning="".join(totals.reasoning) + (acc.reasoning if acc is not None else ""),
            refusal=acc.refusal if acc is not None else "",
            tool_results=tuple(totals.tool_results),
            rounds=totals.rounds,
            choices=acc.choices() if acc is not None else (),
        )

    def _report(self, response: Optional[Response], partial: Optional[Response] = None) -> None:
        """Tell the sink how the turn ended: commit ``response``, or fail with ``partial``. Once only."""
        if self._reported:
            return
        self._reported = True
        if response is not None:
            self._sink.commit(self._totals.messages, response)
        else:
            self._sink.fail(partial)

    def _end(self, acc: Decoder, assistant: Optional[Dict[str, Any]] = None) -> Response:
        if assistant is None:
            assistant = acc.assistant_message(())
        # A structured reply is checked before anything is committed: one that does not fit
        # fails the turn (OutputValidationError); a refusal is a refusal, with nothing parsed.
        output = self._settings.output
        parsed = None
        if output is not None and not assistant.get("tool_calls") and not acc.refusal:
            parsed = output.parse(acc.content)
        self._totals.messages.append(assistant)
        # Calls left for the application end the turn as "tool_calls", whatever the
        # server said (Ollama and some vLLM parsers send "stop").
        response = self._response("tool_calls" if assistant.get("tool_calls") else acc.finish_reason)
        if parsed is not None:
            response = attrs.evolve(response, parsed=parsed)
        self._report(response)
        return response

    def _end_cancelled(self, control: StreamControl) -> Response:
        """A stopped turn: keep the partial text (as chat UIs do), never unanswered tool calls."""
        counted = self._count_usage()
        if self._acc is not None and counted is not None:
            self._tell_round(self._acc, "cancelled", counted)
        if control.cancel_error is not None:
            self._report(None, self._response(finish_reason=None))
            raise control.cancel_error
        acc = self._acc
        # Keep the text the consumer was given, not what had been read ahead of it.
        seen = max(0, control.delivered - self._content_before)
        text = acc.content[:seen] if acc is not None else ""
        response = self._response("cancelled", content=text)
        if not text and not self._totals.tool_results:
            # Nothing reached the user: commit nothing (no lone user message in the history),
            # but count the tokens the request cost.
            self._report(None, response)
            return response
        if text:
            self._totals.messages.append(assistant_message(text, ()))
        self._report(response)
        return response

