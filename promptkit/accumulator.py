"""Chunk assembly: one parsed ``chat.completion.chunk`` in, stream events out.

Pure: no I/O, no threads, no clocks. The :class:`Accumulator` keeps the
growing assistant message of one request (one tool round) and turns each
chunk into the events the user sees. Events follow choice 0; other choices
(``n > 1``) are assembled quietly and reported in ``Response.choices``.

Tool calls are assembled by ``index`` with the tolerance real servers need:
a delta with a new ``id`` starts a new call even when its index is in use;
a delta with neither ``index`` nor ``id`` continues the last open call;
``id``, ``type`` and ``name`` are set once (some servers repeat them in every
delta, and concatenating them would give ``"llm_versionllm_version"``).
A ``tool_call`` event is emitted once per call when the choice finishes,
because only then is the call known to be complete.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import StreamError
from .types import Choice, StreamEvent, ToolCall, Usage

__all__ = ["Accumulator"]


class _PendingCall:
    __slots__ = ("index", "id", "name", "parts")

    def __init__(self, index: Optional[int], call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.parts: List[str] = []


class _ChoiceState:
    """The assembled state of one choice."""

    __slots__ = ("content", "reasoning", "refusal", "calls", "by_index", "last_call", "finish_reason", "emitted", "output")

    def __init__(self) -> None:
        self.output: List[str] = []  # every output piece in order, for live token counts
        self.content: List[str] = []
        self.reasoning: List[str] = []
        self.refusal: List[str] = []
        self.calls: List[_PendingCall] = []
        self.by_index: Dict[int, _PendingCall] = {}
        self.last_call: Optional[_PendingCall] = None
        self.finish_reason: Optional[str] = None
        self.emitted = 0  # how many calls already went out as tool_call events

    def add_tool_deltas(self, deltas: Any) -> None:
        if not isinstance(deltas, list):
            return
        for delta in deltas:
            if not isinstance(delta, dict):
                continue
            index = delta.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = None
            call_id = delta.get("id") or ""
            function = delta.get("function")
            if not isinstance(function, dict):
                function = {}
            name = function.get("name") or ""
            call = self._find(index, call_id)
            if call is None:
                call = _PendingCall(index, call_id, name)
                self.calls.append(call)
                if name:
                    self.output.append(name)
                if index is not None:
                    self.by_index[index] = call
            else:
                if call_id and not call.id:
                    call.id = call_id
                if name and not call.name:
                    call.name = name
                    self.output.append(name)
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                call.parts.append(arguments)
                self.output.append(arguments)
            self.last_call = call

    def _find(self, index: Optional[int], call_id: str) -> Optional[_PendingCall]:
        if index is not None:
            call = self.by_index.get(index)
            if call is not None and (not call_id or not call.id or call.id == call_id):
                return call
            if call is not None:
                # An id seen before at this index continues that call; a new id starts one.
                earlier = self._by_id(call_id)
                if earlier is not None and earlier.index == index:
                    self.by_index[index] = earlier
                return earlier if earlier is not None and earlier.index == index else None
            return None  # an unseen index: a new call
        if call_id:
            return self._by_id(call_id)
        return self.last_call

    def _by_id(self, call_id: str) -> Optional[_PendingCall]:
        for call in self.calls:
            if call.id == call_id:
                return call
        return None

    def tool_calls(self, upto: Optional[int] = None) -> List[ToolCall]:
        calls = self.calls if upto is None else self.calls[:upto]
        return [
            ToolCall.create(call.id or f"call_{n}", call.name, "".join(call.parts)) for n, call in enumerate(calls)
        ]

    def to_choice(self, index: int) -> Choice:
        return Choice(
            index=index,
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            refusal="".join(self.refusal),
            tool_calls=tuple(self.tool_calls()),
            finish_reason=self.finish_reason,
        )


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("error")
        code = error.get("code") or error.get("type")
        text = str(message) if message else "the server reported an error"
        return f"{text} (code: {code})" if code else text
    return str(error)


def _reported_cost(value: Any) -> Optional[float]:
    """A server-reported cost: a finite number >= 0 (a bool, a string or NaN is ignored)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


class Accumulator:
    """Assembles the chunks of one chat-completions stream.

    Chunks are JSON-decoded, so type checks test ``dict`` (a fast C check),
    not ``Mapping``.

    Call :meth:`feed` with each parsed chunk; it returns the events to deliver
    (often one ``content`` event, often none). :meth:`finish` flushes the
    ``tool_call`` events of a stream that ended without a finish chunk.
    """

    __slots__ = ("_main", "_others", "usage", "cost", "model", "id", "saw_output")

    def __init__(self) -> None:
        self._main = _ChoiceState()
        self._others: Dict[int, _ChoiceState] = {}
        self.usage: Optional[Usage] = None
        self.cost: Optional[float] = None  # USD, when the server reports it (LiteLLM, OpenRouter)
        self.model = ""
        self.id = ""
        self.saw_output = False  # a content or tool-call delta arrived (a role-only chunk is not output)

    # The hot path: keep it to dict lookups on the common shapes.
    def feed(self, chunk: Any) -> List[StreamEvent]:
        """Fold one chunk in and return the events it produces.

        Raises:
            StreamError: the chunk is an in-band error (``{"error": ...}``) or
                not a JSON object. Usage in an error chunk is kept first.
        """
        if not isinstance(chunk, dict):
            raise StreamError(f"malformed chunk: expected a JSON object, got {type(chunk).__name__}", body=chunk)
        if not self.model:
            model = chunk.get("model")
            if isinstance(model, str):
                self.model = model
        if not self.id:
            chunk_id = chunk.get("id")
            if isinstance(chunk_id, str):
                self.id = chunk_id
        usage = chunk.get("usage")
        if usage is None:
            groq = chunk.get("x_groq")
            usage = groq.get("usage") if isinstance(groq, dict) else None
        if isinstance(usage, dict):
            self.usage = Usage.from_openai(usage)
            # OpenRouter and LiteLLM put the request's USD cost in usage; some LiteLLM
            # versions put it beside usage, at the chunk's top level.
            cost = _reported_cost(usage.get("cost"))
            if cost is None:
                cost = _reported_cost(chunk.get("cost"))
            if cost is not None:
                self.cost = cost
        error = chunk.get("error")
        if error is not None:
            raise StreamError(_error_message(error), body=error)
        choices = chunk.get("choices")
        if not choices:
            return []  # usage-only chunk, or Azure's prompt_filter_results
        if not isinstance(choices, list):
            raise StreamError("malformed chunk: 'choices' is not a list", body=chunk)
        events: List[StreamEvent] = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if index == 0 or index is None:
                self._feed_main(choice, events)
            else:
                state = self._others.get(index)
                if state is None:
                    state = self._others[index] = _ChoiceState()
                _feed_state(state, choice)
        return events

    def _feed_main(self, choice: Mapping[str, Any], events: List[StreamEvent]) -> None:
        state = self._main
        delta = choice.get("delta")
        if delta and isinstance(delta, dict):
            text = delta.get("content")
            if text and isinstance(text, str):
                state.content.append(text)
                state.output.append(text)
                events.append(StreamEvent("content", content=text))
                self.saw_output = True
            # Most deltas are {"content": "..."}: skip the rarer fields then.
            if (len(delta) > 1 or text is None) and _feed_extras(state, delta):
                self.saw_output = True
        finish = choice.get("finish_reason")
        if finish:
            state.finish_reason = finish
            self._emit_calls(events)

    def _emit_calls(self, events: List[StreamEvent]) -> None:
        state = self._main
        if state.emitted < len(state.calls):
            for call in state.tool_calls()[state.emitted :]:
                events.append(StreamEvent("tool_call", tool_call=call))
            state.emitted = len(state.calls)

    def finish(self) -> List[StreamEvent]:
        """Events still owed at the end of a successful stream (tool calls with no finish chunk)."""
        events: List[StreamEvent] = []
        self._emit_calls(events)
        return events

    @property
    def finish_reason(self) -> Optional[str]:
        """The last non-null ``finish_reason`` of choice 0."""
        return self._main.finish_reason

    @property
    def content(self) -> str:
        """The text of choice 0 so far."""
        return "".join(self._main.content)

    @property
    def reasoning(self) -> str:
        """``reasoning_content`` / ``reasoning`` text of choice 0 so far."""
        return "".join(self._main.reasoning)

    @property
    def refusal(self) -> str:
        """``refusal`` text of choice 0 so far."""
        return "".join(self._main.refusal)

    def output_parts(self, start: int = 0) -> List[str]:
        """The output text pieces of choice 0 from index ``start`` on, in arrival order.

        Content, reasoning and tool-call argument pieces share one sequence, so a
        reader on another thread can count tokens incrementally while the
        stream is still growing (list appends are atomic).
        """
        return self._main.output[start:]

    def tool_calls(self, *, complete_only: bool = False) -> Tuple[ToolCall, ...]:
        """Tool calls of choice 0: all assembled so far, or only those already emitted."""
        upto = self._main.emitted if complete_only else None
        return tuple(self._main.tool_calls(upto))

    def choices(self) -> Tuple[Choice, ...]:
        """Every choice, choice 0 first."""
        out = [self._main.to_choice(0)]
        out.extend(self._others[i].to_choice(i) for i in sorted(self._others))
        return tuple(out)


def _feed_extras(state: _ChoiceState, delta: Mapping[str, Any]) -> bool:
    """Fold reasoning, refusal and tool-call deltas in; return whether a tool-call delta came."""
    reasoning = delta.get("reasoning_content")
    if reasoning is None:
        reasoning = delta.get("reasoning")
    if reasoning and isinstance(reasoning, str):
        state.reasoning.append(reasoning)
        state.output.append(reasoning)
    refusal = delta.get("refusal")
    if refusal and isinstance(refusal, str):
        state.refusal.append(refusal)
        state.output.append(refusal)
    tool_calls = delta.get("tool_calls")
    if tool_calls:
        state.add_tool_deltas(tool_calls)
        return True
    return False


def _feed_state(state: _ChoiceState, choice: Mapping[str, Any]) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        text = delta.get("content")
        if text and isinstance(text, str):
            state.content.append(text)
        _feed_extras(state, delta)
    finish = choice.get("finish_reason")
    if finish:
        state.finish_reason = finish
