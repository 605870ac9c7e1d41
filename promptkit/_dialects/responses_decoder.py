"""The Responses API decoder: one parsed event in (``response.output_text.delta``...), stream events out.

Pure: no I/O, no threads, no clocks. It follows what OpenAI documents and what
the recorded streams in ``tests/data/responses/`` show:

* Text comes from ``message`` items only (``response.output_text.delta``), in
  arrival order; hosted items (web search, code interpreter, MCP, custom
  tools) produce no events. A refusal (``response.refusal.delta``) is kept in
  ``refusal``, not in the text, as Chat Completions keeps it.
* Reasoning, as ``reasoning`` events, comes from reasoning summaries
  (``response.reasoning_summary_text.delta``, OpenAI) and from raw reasoning
  text (``response.reasoning_text.delta``, DeepSeek and vLLM), concatenated
  as they arrive.
* A ``function_call`` item becomes a ``tool_call`` event when the item is done
  (``response.output_item.done``), with the arguments of the finished item.
* Text that arrives only whole (a ``*.done`` event, a finished item, or the
  final response object, with no deltas before it) is delivered then, once.
  Each delta is delivered as it arrives; the final object is never trusted
  alone, since some servers send it with ``"output": []``.
* The reply ends with ``response.completed`` or ``response.incomplete``
  (``incomplete_details.reason`` ``max_output_tokens`` is finish reason
  ``length``). ``response.failed`` and an ``error`` event are
  :class:`~promptkit.StreamError`. A body that ends before any of these is
  truncated.
* The items of the finished reply (reasoning with its encrypted content as
  ``response.output_item.done`` or the final object gives it, message and
  function-call items with their ids) are kept for the history as
  ``output_items``, so that the model gets its reasoning back next round.

Tolerance ends where a shape is impossible (a delta that is not a string, usage
counts that are not counts): that is a :class:`~promptkit.StreamError` naming
the field.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .._errors import StreamError, StreamTruncatedError
from .._limits import DEFAULT_LIMITS, Limits, exceeded
from .._shapes import malformed
from .._types import Choice, StreamEvent, ToolCall, Usage
from .assembly import MAX_TOKENS, Assembly, error_text, string_field
from .base import assistant_message
from .chat_decoder import reported_cost, tool_call

__all__ = ["ResponsesDecoder", "REPLAYED_ITEM_TYPES"]

# The output items sent back as input next round; hosted tool items are the server's own business.
REPLAYED_ITEM_TYPES = ("reasoning", "message", "function_call")
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


class _Item:
    """One output item as it arrives."""

    __slots__ = ("type", "id", "call_id", "name", "arguments", "final", "emitted", "seen")

    def __init__(self, kind: str, item_id: str) -> None:
        self.type = kind
        self.id = item_id
        self.call_id = ""
        self.name = ""
        self.arguments: List[str] = []
        self.final: Optional[Dict[str, Any]] = None  # the item as output_item.done (or the final response) gave it
        self.emitted = False  # its tool_call event went out
        self.seen: Set[Tuple[str, int]] = set()  # the (kind, index) parts whose text was delivered


def _usage(usage: Any, chunk: Any) -> Usage:
    if usage.__class__ is not dict:
        raise malformed("response.usage", usage, chunk, "an object")
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        value = usage.get(key)
        if value is not None and (value.__class__ is not int or not 0 <= value <= MAX_TOKENS):
            raise malformed(f"response.usage.{key}", value, chunk, "a non-negative integer")
    for group, key in (("input_tokens_details", "cached_tokens"), ("output_tokens_details", "reasoning_tokens")):
        details = usage.get(group)
        if details is None:
            continue
        if details.__class__ is not dict:
            raise malformed(f"response.usage.{group}", details, chunk, "an object")
        value = details.get(key)
        if value is not None and (value.__class__ is not int or not 0 <= value <= MAX_TOKENS):
            raise malformed(f"response.usage.{group}.{key}", value, chunk, "a non-negative integer")
    return Usage.from_responses(usage)


class ResponsesDecoder(Assembly):
    """Assembles one Responses API stream (see the module docstring).

    Args:
        limits: ``max_reply_chars``, ``max_tool_calls`` and ``max_json_depth``
            (of tool-call arguments) apply here.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__(limits)  # ended: response.completed or response.incomplete arrived
        self.status: Optional[str] = None
        self.incomplete_reason: Optional[str] = None
        self._items: Dict[str, _Item] = {}  # by item id (or "#<output_index>" for an item without one)
        self._order: List[_Item] = []  # in output order
        self._by_index: Dict[int, _Item] = {}
        self._refusal: List[str] = []
        self._final_output: List[Dict[str, Any]] = []

    # -- items -----------------------------------------------------------------
    def _item(self, chunk: Dict[str, Any], kind: str = "") -> _Item:
        """The item an event is about, by ``item_id`` (else ``output_index``); created when new."""
        item_id = chunk.get("item_id")
        index = chunk.get("output_index")
        if index is not None and (index.__class__ is not int or index < 0):
            raise malformed("output_index", index, chunk, "a non-negative integer")
        if item_id is not None and item_id.__class__ is not str:
            raise malformed("item_id", item_id, chunk, "a string")
        item = self._items.get(item_id) if item_id else None
        if item is None and index is not None:
            item = self._by_index.get(index)
        if item is None and not item_id and index is None:  # a server that names neither: the last of its kind
            item = next((i for i in reversed(self._order) if i.type == kind and i.final is None), None)
        if item is None:
            item = self._add(kind, item_id or "", index)
        return item

    @staticmethod
    def _part(chunk: Dict[str, Any], key: str) -> int:
        """A ``content_index`` / ``summary_index``: 0 when absent."""
        value = chunk.get(key)
        if value is None:
            return 0
        if value.__class__ is not int or value < 0:
            raise malformed(key, value, chunk, "a non-negative integer")
        return value

    def _add(self, kind: str, item_id: str, index: Optional[int]) -> _Item:
        item = _Item(kind, item_id)
        self._items[item_id or f"#{index if index is not None else len(self._order)}"] = item
        if index is not None:
            self._by_index[index] = item
        self._order.append(item)
        return item

    def _register(self, data: Any, chunk: Dict[str, Any], index: Any) -> _Item:
        """The item an ``output_item.*`` event (or the final output) carries, updated from ``data``."""
        if data.__class__ is not dict:
            raise malformed("item", data, chunk, "an object")
        kind = string_field(data, "type", "item.type")
        item_id = string_field(data, "id", "item.id")
        if index is not None and (index.__class__ is not int or index < 0):
            raise malformed("output_index", index, chunk, "a non-negative integer")
        item = self._items.get(item_id) if item_id else None
        if item is None and index is not None:
            item = self._by_index.get(index)
        if item is None:  # deltas that named neither id nor index made an item of this kind, unfinished
            item = next((i for i in self._order if i.type == kind and not i.id and i.final is None and i not in self._by_index.values()), None)
            if item is not None and index is not None:
                self._by_index[index] = item
        if item is None:
            if kind == "function_call" and sum(i.type == "function_call" for i in self._order) >= self.limits.max_tool_calls:
                raise exceeded("max_tool_calls", self.limits.max_tool_calls, "calls", "a response has more tool calls")
            item = self._add(kind, item_id, index)
        if kind:
            item.type = kind
        if item_id and not item.id:
            item.id = item_id
            self._items.setdefault(item_id, item)
        if kind == "function_call":
            call_id = string_field(data, "call_id", "function_call.call_id")
            name = string_field(data, "name", "function_call.name")
            if call_id and not item.call_id:
                self.spend(len(call_id))
                item.call_id = call_id
            if name and not item.name:
                self.spend(len(name))
                item.name = name
                self._output.append(name)
        return item

    def _finish_item(self, data: Dict[str, Any], item: _Item, events: List[StreamEvent]) -> None:
        """An item is done: deliver what arrived only whole, emit a finished function call."""
        item.final = data
        if item.type == "message":
            for n, part in enumerate(data.get("content") or ()):
                if part.__class__ is not dict:
                    raise malformed("a message item's content part", part, data, "an object")
                kind = part.get("type")
                if kind == "output_text":
                    self._whole(item, ("text", n), string_field(part, "text", "output_text.text"), events)
                elif kind == "refusal":
                    self._whole(item, ("refusal", n), string_field(part, "refusal", "refusal.refusal"), events)
        elif item.type == "reasoning":
            for n, part in enumerate(data.get("summary") or ()):
                if part.__class__ is dict:
                    self._whole(item, ("summary", n), string_field(part, "text", "summary.text"), events)
            for n, part in enumerate(data.get("content") or ()):
                if part.__class__ is dict and part.get("type") == "reasoning_text":
                    self._whole(item, ("reasoning", n), string_field(part, "text", "reasoning_text.text"), events)
        elif item.type == "function_call":
            arguments = data.get("arguments")
            if arguments is not None:
                if arguments.__class__ is not str:
                    raise malformed("function_call.arguments", arguments, data, "a string")
                joined = "".join(item.arguments)
                if arguments != joined:
                    self.spend(len(arguments))
                    if not joined:
                        self._output.append(arguments)
                    item.arguments = [arguments]  # the finished item is the authority
            if not item.emitted:
                item.emitted = True
                events.append(StreamEvent("tool_call", tool_call=self._call(item, strict=True)))
                self.saw_output = True

    def _whole(self, item: _Item, part: Tuple[str, int], text: str, events: List[StreamEvent]) -> None:
        """Text that arrived whole: delivered unless its deltas (or an earlier whole) already were."""
        if part in item.seen:
            return
        item.seen.add(part)
        if not text:
            return
        kind = part[0]
        if kind == "text":
            self.add_text(text, events)
        elif kind == "refusal":
            self.add_piece(text, self._refusal)
        else:
            self.add_reasoning(text, events)

    def _call(self, item: _Item, strict: bool) -> ToolCall:
        n = self._order.index(item)
        return tool_call(item.call_id or item.id or f"call_{n}", item.name, "".join(item.arguments), self.limits, strict)

    # -- the hot path ------------------------------------------------------------
    def feed(self, chunk: Any) -> List[StreamEvent]:
        """Fold one event in and return the events it produces.

        Raises:
            StreamError: an ``error`` event, ``response.failed``, an impossible
                shape, or a crossed limit. Usage in a failed response is kept first.
        """
        if chunk.__class__ is not dict:
            raise StreamError(
                f"malformed event: expected a JSON object, got {type(chunk).__name__}", body=chunk, retryable=True
            )
        kind = chunk.get("type")
        events: List[StreamEvent] = []
        if kind == "response.output_text.delta":
            delta = string_field(chunk, "delta", "output_text.delta")
            item = self._item(chunk, "message")
            item.seen.add(("text", self._part(chunk, "content_index")))
            if delta:
                self.add_text(delta, events)
        elif kind == "response.reasoning_summary_text.delta" or kind == "response.reasoning_text.delta":
            delta = string_field(chunk, "delta", kind[9:])
            item = self._item(chunk, "reasoning")
            if kind == "response.reasoning_text.delta":
                item.seen.add(("reasoning", self._part(chunk, "content_index")))
            else:
                item.seen.add(("summary", self._part(chunk, "summary_index")))
            if delta:
                self.add_reasoning(delta, events)
        elif kind == "response.function_call_arguments.delta":
            delta = string_field(chunk, "delta", "function_call_arguments.delta")
            item = self._item(chunk, "function_call")
            if delta:
                self.spend(len(delta))
                item.arguments.append(delta)
                self._output.append(delta)
                self.saw_output = True
                if self.tool_deltas:
                    partial = ToolCall(item.call_id or item.id or f"call_{self._order.index(item)}", item.name)
                    events.append(StreamEvent("tool_call_delta", content=delta, tool_call=partial))
        elif kind == "response.refusal.delta":
            delta = string_field(chunk, "delta", "refusal.delta")
            item = self._item(chunk, "message")
            item.seen.add(("refusal", self._part(chunk, "content_index")))
            if delta:
                self.add_piece(delta, self._refusal)
        elif kind == "response.output_item.added":
            self._register(chunk.get("item"), chunk, chunk.get("output_index"))
        elif kind == "response.output_item.done":
            data = chunk.get("item")
            item = self._register(data, chunk, chunk.get("output_index"))
            self._finish_item(data, item, events)  # type: ignore[arg-type]  # _register checked it is a dict
        elif kind == "response.output_text.done":
            item = self._item(chunk, "message")
            self._whole(item, ("text", self._part(chunk, "content_index")), string_field(chunk, "text", "output_text.done.text"), events)
        elif kind == "response.reasoning_summary_text.done":
            item = self._item(chunk, "reasoning")
            self._whole(item, ("summary", self._part(chunk, "summary_index")), string_field(chunk, "text", "summary_text.done.text"), events)
        elif kind == "response.reasoning_text.done":
            item = self._item(chunk, "reasoning")
            self._whole(item, ("reasoning", self._part(chunk, "content_index")), string_field(chunk, "text", "reasoning_text.done.text"), events)
        elif kind == "response.refusal.done":
            item = self._item(chunk, "message")
            self._whole(item, ("refusal", self._part(chunk, "content_index")), string_field(chunk, "refusal", "refusal.done.refusal"), events)
        elif kind == "response.function_call_arguments.done":
            arguments = chunk.get("arguments")
            if arguments is not None and arguments.__class__ is not str:
                raise malformed("function_call_arguments.done.arguments", arguments, chunk, "a string")
            item = self._item(chunk, "function_call")
            if arguments and not item.arguments:
                self.spend(len(arguments))
                item.arguments.append(arguments)
                self._output.append(arguments)
        elif kind in ("response.created", "response.in_progress", "response.queued"):
            self._response(chunk, events, final=False)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            self._response(chunk, events, final=True)
        elif kind == "error":
            error = chunk.get("error")
            body = error if isinstance(error, dict) else chunk
            raise StreamError(error_text(body), body=body)
        elif kind is not None and kind.__class__ is not str:
            raise malformed("type", kind, chunk, "a string")
        # Anything else (annotations, logprobs, hosted tool progress, new event types) is not output.
        return events

    def _response(self, chunk: Dict[str, Any], events: List[StreamEvent], *, final: bool) -> None:
        response = chunk.get("response")
        if response is None:
            if final:
                raise StreamError(f"malformed event: {chunk.get('type')} without a response object", body=chunk, retryable=True)
            return
        if response.__class__ is not dict:
            raise malformed("response", response, chunk, "an object")
        model = response.get("model")
        if model.__class__ is str and model:
            self.model = model
        response_id = response.get("id")
        if response_id.__class__ is str and response_id and not self.id:
            self.id = response_id
        if not final:
            return
        usage = response.get("usage")
        if usage is not None:
            self.usage = _usage(usage, chunk)
            cost = reported_cost(usage.get("cost"))
            if cost is not None:
                self.cost = cost
        status = string_field(response, "status", "response.status")
        self.status = status or chunk["type"][9:]
        if chunk["type"] == "response.failed" or status == "failed":
            error = response.get("error")
            raise StreamError(error_text(error) if error else "the response failed", body=error if isinstance(error, dict) else response)
        details = response.get("incomplete_details")
        if details.__class__ is dict:
            reason = details.get("reason")
            self.incomplete_reason = reason if reason.__class__ is str else None
        output = response.get("output")
        if output is not None:
            if output.__class__ is not list:
                raise malformed("response.output", output, chunk, "a list")
            for index, data in enumerate(output):
                item = self._register(data, chunk, index)
                if item.final is None or (item.type == "reasoning" and data != item.final):
                    self._finish_item(data, item, events)
            self._final_output = output
        for item in self._order:  # a call whose item never finished: its arguments are what arrived
            if item.type == "function_call" and not item.emitted:
                item.emitted = True
                events.append(StreamEvent("tool_call", tool_call=self._call(item, strict=True)))
        self.ended = True

    def finish(self) -> List[StreamEvent]:
        """Nothing is owed once the reply ended; before that (a ``[DONE]`` line too early) it is truncated."""
        if not self.ended:
            raise StreamTruncatedError(self.truncation)
        return []

    # -- what the reply holds ------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Whether the terminal event arrived."""
        return self.ended

    @property
    def truncation(self) -> str:
        """Why an early EOF is a truncation."""
        return "the stream ended before response.completed (or response.incomplete)"

    @property
    def finish_reason(self) -> Optional[str]:
        """``stop``, ``tool_calls``, ``length`` (max_output_tokens), ``content_filter``; ``None`` before the end."""
        if not self.ended:
            return None
        if self.status == "incomplete":
            reason = self.incomplete_reason
            return _INCOMPLETE.get(reason or "", reason or "length")
        return "tool_calls" if any(item.type == "function_call" for item in self._order) else "stop"

    @property
    def refusal(self) -> str:
        """The refusal text so far."""
        return "".join(self._refusal)

    def tool_calls(self, *, complete_only: bool = False) -> Tuple[ToolCall, ...]:
        """Function calls in output order: all so far, or only those already emitted."""
        return tuple(
            self._call(item, strict=False)
            for item in list(self._order)
            if item.type == "function_call" and (item.emitted or not complete_only)
        )

    def choices(self) -> Tuple[Choice, ...]:
        """The one choice (the Responses API has no ``n``)."""
        return (
            Choice(
                index=0,
                content=self.content,
                reasoning=self.reasoning,
                refusal=self.refusal,
                tool_calls=self.tool_calls(),
                finish_reason=self.finish_reason,
            ),
        )

    def output_items(self) -> List[Dict[str, Any]]:
        """The finished reasoning, message and function-call items, in output order, as sent back next round."""
        items = self._final_output or [item.final for item in self._order if item.final is not None]
        return [item for item in items if item.__class__ is dict and item.get("type") in REPLAYED_ITEM_TYPES]

    def assistant_message(self, calls: Sequence[ToolCall]) -> Dict[str, Any]:
        """The canonical assistant message, with ``reasoning_content`` and ``output_items`` when there are any."""
        message = assistant_message(self.content, calls)
        if self._reasoning:
            message["reasoning_content"] = self.reasoning
        items = self.output_items()
        if items:
            message["output_items"] = items
        return message

