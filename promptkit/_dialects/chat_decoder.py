"""The Chat Completions decoder: one parsed ``chat.completion.chunk`` in, stream events out.

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
because only then is the call known to be complete. Calls are found through
dicts by index and by id, so any number of them assembles in linear time.

Tolerance ends where a shape is impossible: a field promptkit reads that has
the wrong JSON type (a list where an index belongs, a number as ``arguments``,
a non-string ``finish_reason``, negative usage) is a server error, raised as
:class:`~promptkit._errors.StreamError` naming the field; ``null`` always means
absent. The one list tolerated is ``content``: Mistral's magistral models send
their thinking as a list of parts there, which is skipped. What the reply may hold is bounded by :class:`~promptkit.Limits`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._errors import StreamError
from .._shapes import check_usage, malformed
from .._limits import DEFAULT_LIMITS, Limits, exceeded, json_excess
from .._types import Choice, StreamEvent, ToolCall, Usage
from .base import assistant_message

__all__ = ["Accumulator", "reported_cost", "tool_call"]

# Each stored piece also costs its list slots and object header: counting a
# little per delta bounds a flood of one-character deltas (see Limits).
_PIECE_CHARS = 32


class _PendingCall:
    __slots__ = ("index", "id", "name", "parts")

    def __init__(self, index: Optional[int], call_id: str, name: str) -> None:
        self.index = index
        self.id = call_id
        self.name = name
        self.parts: List[str] = []


class _ChoiceState:
    """The assembled state of one choice."""

    __slots__ = (
        "content", "reasoning", "refusal", "calls", "by_index", "by_id", "last_call", "finish_reason", "emitted", "output"
    )

    def __init__(self) -> None:
        self.output: List[str] = []  # every output piece in order, for live token counts
        self.content: List[str] = []
        self.reasoning: List[str] = []
        self.refusal: List[str] = []
        self.calls: List[_PendingCall] = []
        self.by_index: Dict[int, _PendingCall] = {}
        self.by_id: Dict[str, _PendingCall] = {}  # the first call that got each id
        self.last_call: Optional[_PendingCall] = None
        self.finish_reason: Optional[str] = None
        self.emitted = 0  # how many calls already went out as tool_call events

    def add_tool_deltas(
        self, deltas: List[Any], acc: "Accumulator", chunk: Any, events: Optional[List[StreamEvent]] = None
    ) -> None:
        for delta in deltas:
            if delta.__class__ is not dict:
                raise malformed("a tool_calls entry", delta, chunk, "an object")
            index = delta.get("index")
            if index is not None and (index.__class__ is not int or index < 0):
                raise malformed("a tool call's index", index, chunk, "a non-negative integer")
            call_id = delta.get("id")
            if call_id is None:
                call_id = ""
            elif call_id.__class__ is not str:
                raise malformed("a tool call's id", call_id, chunk, "a string")
            function = delta.get("function")
            if function is None:
                function = {}
            elif function.__class__ is not dict:
                raise malformed("a tool call's function", function, chunk, "an object")
            name = function.get("name")
            if name is None:
                name = ""
            elif name.__class__ is not str:
                raise malformed("a tool call's function.name", name, chunk, "a string")
            arguments = function.get("arguments")
            if arguments is not None and arguments.__class__ is not str:
                raise malformed("a tool call's function.arguments", arguments, chunk, "a string")
            call = self._find(index, call_id)
            if call is None:
                if len(self.calls) >= acc.limits.max_tool_calls:
                    raise exceeded("max_tool_calls", acc.limits.max_tool_calls, "calls", "a response has more tool calls")
                acc.spend(len(call_id) + len(name))
                call = _PendingCall(index, call_id, name)
                self.calls.append(call)
                if name:
                    self.output.append(name)
                if index is not None:
                    self.by_index[index] = call
                if call_id:
                    self.by_id.setdefault(call_id, call)
            else:
                if call_id and not call.id:
                    acc.spend(len(call_id))
                    call.id = call_id
                    self.by_id.setdefault(call_id, call)
                if name and not call.name:
                    acc.spend(len(name))
                    call.name = name
                    self.output.append(name)
            if arguments:
                acc.spend(len(arguments))
                call.parts.append(arguments)
                self.output.append(arguments)
                if events is not None:  # asked for (tool_deltas): each piece of the arguments as it streams
                    partial = ToolCall(call.id or f"call_{self.calls.index(call)}", call.name)
                    events.append(StreamEvent("tool_call_delta", content=arguments, tool_call=partial))
            self.last_call = call

    def _find(self, index: Optional[int], call_id: str) -> Optional[_PendingCall]:
        if index is not None:
            call = self.by_index.get(index)
            if call is None:
                return None  # an unseen index: a new call
            if not call_id or not call.id or call.id == call_id:
                return call
            # An id seen before at this index continues that call; a new id starts one.
            earlier = self.by_id.get(call_id)
            if earlier is not None and earlier.index == index:
                self.by_index[index] = earlier
                return earlier
            return None
        if call_id:
            return self.by_id.get(call_id)
        return self.last_call

    def tool_calls(self, limits: Limits, start: int = 0, upto: Optional[int] = None, strict: bool = False) -> List[ToolCall]:
        """Calls ``start:upto`` as ToolCalls (``strict``: arguments over the JSON limits raise)."""
        return [
            tool_call(call.id or f"call_{n}", call.name, "".join(call.parts), limits, strict)
            for n, call in enumerate(self.calls[start:upto], start)
        ]

    def to_choice(self, index: int, limits: Limits) -> Choice:
        return Choice(
            index=index,
            content="".join(self.content),
            reasoning="".join(self.reasoning),
            refusal="".join(self.refusal),
            tool_calls=tuple(self.tool_calls(limits)),
            finish_reason=self.finish_reason,
        )


def tool_call(call_id: str, name: str, text: str, limits: Limits, strict: bool) -> ToolCall:
    """Build a call, checking its arguments against the JSON limits before anything parses them.

    On the reading path (``strict``) arguments over a limit are the server's
    error; when reporting what was assembled they only mark the call, like
    invalid JSON does.
    """
    excess = json_excess(text, limits)
    if excess is None:
        try:
            return ToolCall.create(call_id, name, text)
        except RecursionError:  # a max_json_depth set above what the interpreter can recurse
            excess = StreamError("arguments nest deeper than Python can parse")
    if strict:
        raise StreamError(f"{excess} (in the arguments of tool call {call_id!r})")
    return ToolCall(id=call_id, name=name, arguments_json=text, arguments_error=f"arguments not parsed: {excess}")


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or error.get("error")
        code = error.get("code") or error.get("type")
        text = str(message)[:2000] if message else "the server reported an error"
        return f"{text} (code: {str(code)[:200]})" if code else text
    return str(error)[:2000]  # the whole object stays in the error's body


def reported_cost(value: Any) -> Optional[float]:
    """A server-reported cost: a finite number >= 0 (a bool, a string or NaN is ignored)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


class Accumulator:
    """Assembles the chunks of one chat-completions stream.

    Chunks are JSON-decoded, so type checks test exact classes (fast), not
    ``Mapping``.

    Call :meth:`feed` with each parsed chunk; it returns the events to deliver
    (often one ``content`` event, often none). :meth:`finish` flushes the
    ``tool_call`` events of a stream that ended without a finish chunk.

    Args:
        limits: ``max_reply_chars``, ``max_tool_calls``, ``max_choices`` and
            ``max_json_depth`` (of tool-call arguments) apply here.
    """

    __slots__ = (
        "_main", "_others", "usage", "cost", "model", "id", "saw_output", "limits", "_chars", "_max_chars", "_saw_main",
        "ended", "tool_deltas",
    )  # fmt: skip

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._main = _ChoiceState()
        self._others: Dict[int, _ChoiceState] = {}
        self.usage: Optional[Usage] = None
        self.cost: Optional[float] = None  # USD, when the server reports it (LiteLLM, OpenRouter)
        self.model = ""
        self.id = ""
        self.saw_output = False  # a content or tool-call delta arrived (a role-only chunk is not output)
        self.limits = limits
        self._chars = 0  # what the reply holds, as Limits.max_reply_chars counts it
        self._max_chars = limits.max_reply_chars
        self._saw_main = False  # some chunk carried choice 0
        self.ended = False  # Chat Completions ends with [DONE] (the usage chunk follows the finish chunk)
        self.tool_deltas = False  # emit tool_call_delta events (send_stream(tool_call_deltas=True))

    def spend(self, chars: int) -> None:
        """Count a stored piece of ``chars`` characters against max_reply_chars."""
        total = self._chars + chars + _PIECE_CHARS
        if total > self._max_chars:
            raise exceeded("max_reply_chars", self._max_chars, "characters", "the response grew past it")
        self._chars = total

    # The hot path: keep it to dict lookups on the common shapes.
    def feed(self, chunk: Any) -> List[StreamEvent]:
        """Fold one chunk in and return the events it produces.

        Raises:
            StreamError: the chunk is an in-band error (``{"error": ...}``),
                has an impossible shape, or crosses a limit. Usage in an
                error chunk is kept first.
        """
        if chunk.__class__ is not dict:
            raise StreamError(
                f"malformed chunk: expected a JSON object, got {type(chunk).__name__}", body=chunk, retryable=True
            )
        if not self.model:
            model = chunk.get("model")
            if model.__class__ is str:
                self.model = model
        if not self.id:
            chunk_id = chunk.get("id")
            if chunk_id.__class__ is str:
                self.id = chunk_id
        usage = chunk.get("usage")
        if usage is None:
            groq = chunk.get("x_groq")
            usage = groq.get("usage") if groq.__class__ is dict else None
        if usage is not None:
            if usage.__class__ is not dict:
                raise malformed("usage", usage, chunk, "an object")
            check_usage(usage, chunk)
            self.usage = Usage.from_openai(usage)
            # OpenRouter and LiteLLM put the request's USD cost in usage; some LiteLLM
            # versions put it beside usage, at the chunk's top level.
            cost = reported_cost(usage.get("cost"))
            if cost is None:
                cost = reported_cost(chunk.get("cost"))
            if cost is not None:
                self.cost = cost
        error = chunk.get("error")
        if error is not None:
            raise StreamError(_error_message(error), body=error)
        choices = chunk.get("choices")
        if choices.__class__ is not list:
            if chunk.get("type") == "error":  # {"type": "error", "message": ...} under an `event: error`
                raise StreamError(_error_message(chunk), body=chunk)
            if choices is None or choices == {} or choices == "":
                return []  # a usage-only chunk, or Azure's prompt_filter_results
            raise malformed("'choices'", choices, chunk, "a list")
        events: List[StreamEvent] = []
        for choice in choices:
            if choice.__class__ is not dict:
                raise malformed("a choice", choice, chunk, "an object")
            index = choice.get("index")
            if index is None or (index == 0 and index.__class__ is int):
                self._saw_main = True
                self._feed_main(choice, events, chunk)
                continue
            if index.__class__ is not int or index < 0:
                raise malformed("a choice's index", index, chunk, "a non-negative integer")
            state = self._others.get(index)
            if state is None:
                if len(self._others) + 1 >= self.limits.max_choices:
                    raise exceeded("max_choices", self.limits.max_choices, "choices", "a response has more choices")
                state = self._others[index] = _ChoiceState()
            self._feed_state(state, choice, chunk)
        return events

    def _feed_main(self, choice: Dict[str, Any], events: List[StreamEvent], chunk: Any) -> None:
        state = self._main
        delta = choice.get("delta")
        if delta.__class__ is dict:
            if delta:
                text = delta.get("content")
                if text.__class__ is str:
                    if text:
                        # spend(), inlined: this is the per-token path.
                        total = self._chars + len(text) + _PIECE_CHARS
                        if total > self._max_chars:
                            self.spend(len(text))  # raises, with the message
                        self._chars = total
                        state.content.append(text)
                        state.output.append(text)
                        events.append(StreamEvent("content", content=text))
                        self.saw_output = True
                elif text is not None and text.__class__ is not list:
                    raise malformed("delta.content", text, chunk, "a string")
                # Most deltas are {"content": "..."}: skip the rarer fields then.
                if (len(delta) > 1 or text is None) and self._feed_extras(state, delta, chunk, events):
                    self.saw_output = True
        elif delta is not None:
            raise malformed("a choice's delta", delta, chunk, "an object")
        finish = choice.get("finish_reason")
        if finish is not None:
            if finish.__class__ is not str:
                raise malformed("finish_reason", finish, chunk, "a string")
            if finish:
                state.finish_reason = finish
                self._emit_calls(events)

    def _feed_state(self, state: _ChoiceState, choice: Dict[str, Any], chunk: Any) -> None:
        delta = choice.get("delta")
        if delta.__class__ is dict:
            text = delta.get("content")
            if text.__class__ is str:
                if text:
                    self.spend(len(text))
                    state.content.append(text)
            elif text is not None and text.__class__ is not list:
                raise malformed("delta.content", text, chunk, "a string")
            self._feed_extras(state, delta, chunk)
        elif delta is not None:
            raise malformed("a choice's delta", delta, chunk, "an object")
        finish = choice.get("finish_reason")
        if finish is not None:
            if finish.__class__ is not str:
                raise malformed("finish_reason", finish, chunk, "a string")
            if finish:
                state.finish_reason = finish

    def _feed_extras(
        self, state: _ChoiceState, delta: Dict[str, Any], chunk: Any, events: Optional[List[StreamEvent]] = None
    ) -> bool:
        """Fold reasoning, refusal and tool-call deltas in; return whether a tool-call delta came.

        With ``events`` (choice 0), a reasoning delta becomes a ``reasoning`` event.
        """
        field = "reasoning_content"
        reasoning = delta.get(field)
        if reasoning is None:
            field = "reasoning"
            reasoning = delta.get(field)
        if reasoning is not None:
            if reasoning.__class__ is not str:
                raise malformed(f"delta.{field}", reasoning, chunk, "a string")
            if reasoning:
                self.spend(len(reasoning))
                state.reasoning.append(reasoning)
                state.output.append(reasoning)
                if events is not None:
                    events.append(StreamEvent("reasoning", reasoning=reasoning))
        refusal = delta.get("refusal")
        if refusal is not None:
            if refusal.__class__ is not str:
                raise malformed("delta.refusal", refusal, chunk, "a string")
            if refusal:
                self.spend(len(refusal))
                state.refusal.append(refusal)
                state.output.append(refusal)
        tool_calls = delta.get("tool_calls")
        if tool_calls is None:
            return False
        if tool_calls.__class__ is not list:
            raise malformed("delta.tool_calls", tool_calls, chunk, "a list")
        if not tool_calls:
            return False
        state.add_tool_deltas(tool_calls, self, chunk, events if self.tool_deltas else None)
        return True

    def _emit_calls(self, events: List[StreamEvent]) -> None:
        state = self._main
        if state.emitted < len(state.calls):
            for call in state.tool_calls(self.limits, state.emitted, strict=True):
                events.append(StreamEvent("tool_call", tool_call=call))
            state.emitted = len(state.calls)

    def finish(self) -> List[StreamEvent]:
        """Events still owed at the end of a successful stream (tool calls with no finish chunk).

        Raises:
            StreamError: no chunk carried choice 0, so there is no reply.
        """
        if not self._saw_main:
            if self._others:
                raise StreamError(f"the stream carried no choice 0, only choices {sorted(self._others)[:10]}")
            raise StreamError("the stream ended without any choice: the server sent no reply")
        events: List[StreamEvent] = []
        self._emit_calls(events)
        return events

    @property
    def finish_reason(self) -> Optional[str]:
        """The last non-null ``finish_reason`` of choice 0."""
        return self._main.finish_reason

    @property
    def complete(self) -> bool:
        """Whether choice 0 finished (a server that omits ``[DONE]`` then ends the body)."""
        return self._main.finish_reason is not None

    @property
    def truncation(self) -> str:
        """Why an early EOF is a truncation."""
        return "the stream ended before [DONE] and without a finish_reason"

    def assistant_message(self, calls: Sequence[ToolCall]) -> Dict[str, Any]:
        """The canonical assistant message: text, ``calls``, and ``reasoning_content`` when the model
        showed reasoning (kept for servers that need it back; see the chat dialect)."""
        message = assistant_message(self.content, calls)
        reasoning = self.reasoning
        if reasoning:
            message["reasoning_content"] = reasoning
        return message

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
        return tuple(self._main.tool_calls(self.limits, 0, upto))

    def choices(self) -> Tuple[Choice, ...]:
        """Every choice, choice 0 first."""
        out = [self._main.to_choice(0, self.limits)]
        out.extend(self._others[i].to_choice(i, self.limits) for i in sorted(self._others))
        return tuple(out)
