"""The Anthropic Messages decoder: one parsed event in (``content_block_delta``...), stream events out.

Pure: no I/O, no threads, no clocks. It follows Anthropic's streaming
documentation and the recorded streams in ``tests/data/anthropic/``:

* ``text`` blocks give ``content`` events (``text_delta``; text a block
  starts with is delivered too), concatenated over every text block in order.
* ``thinking`` blocks give ``reasoning`` events (``thinking_delta``); their
  ``signature_delta`` and any ``redacted_thinking`` block are kept, unchanged,
  for the history: the API wants them back in tool loops.
* A ``tool_use`` block becomes one ``tool_call`` event when the block stops,
  with its ``input_json_delta`` pieces parsed (no pieces: the input the block
  started with, ``{}`` when empty). Server tools (``server_tool_use``, web
  search, code execution, MCP) and their results run at Anthropic and make no
  events.
* ``message_delta`` carries the ``stop_reason`` and the final usage, which
  updates what ``message_start`` said; ``message_stop`` ends the reply;
  ``ping`` is nothing. An ``error`` event is a
  :class:`~promptkit.StreamError` whose body is the error object, so an
  ``overloaded_error`` before any output is retried like a 529.

``stop_reason`` becomes ``finish_reason``:

=================================  ==================
``end_turn``, ``stop_sequence``    ``stop``
``max_tokens``                     ``length``
``model_context_window_exceeded``  ``length``
``tool_use``                       ``tool_calls``
``refusal``                        ``content_filter``
``pause_turn``                     ``pause_turn``
anything else                      as sent
=================================  ==================
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .._errors import StreamError, StreamTruncatedError
from .._limits import DEFAULT_LIMITS, Limits, exceeded
from .._shapes import malformed
from .._types import Choice, StreamEvent, ToolCall, Usage
from .assembly import MAX_TOKENS, Assembly, error_text, string_field
from .base import assistant_message
from .chat_decoder import reported_cost, tool_call

__all__ = ["AnthropicDecoder", "FINISH_REASONS"]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause_turn",
}
_USAGE_KEYS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


class _Block:
    """One content block as it arrives."""

    __slots__ = ("type", "start", "parts", "signature", "emitted")

    def __init__(self, kind: str, start: Dict[str, Any]) -> None:
        self.type = kind
        self.start = start  # the content_block as content_block_start gave it
        self.parts: List[str] = []  # text, thinking, or input JSON pieces
        self.signature: List[str] = []
        self.emitted = False


class AnthropicDecoder(Assembly):
    """Assembles one Anthropic Messages stream (see the module docstring).

    Args:
        limits: ``max_reply_chars``, ``max_tool_calls`` and ``max_json_depth``
            (of tool inputs) apply here.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS, output_tool: Optional[str] = None) -> None:
        super().__init__(limits)  # ended: message_stop arrived
        self._output_tool = output_tool  # a forced tool whose input is the structured reply: its JSON is the text
        self.stop_reason: Optional[str] = None
        self._usage: Dict[str, Any] = {}
        self._blocks: Dict[int, _Block] = {}
        self._order: List[_Block] = []

    def _piece(self, block: _Block, text: str, into: Optional[List[str]] = None) -> None:
        self.add_piece(text, into)
        block.parts.append(text)

    def _block(self, chunk: Dict[str, Any]) -> _Block:
        index = chunk.get("index")
        if index.__class__ is not int or index < 0:
            raise malformed("index", index, chunk, "a non-negative integer")
        block = self._blocks.get(index)
        if block is None:  # a delta for a block that never started: taken as what its delta says
            block = self._start(index, {}, chunk)
        return block

    def _start(self, index: int, data: Dict[str, Any], chunk: Any) -> _Block:
        kind = string_field(data, "type", "content_block.type", chunk)
        if kind == "tool_use" and self._output_tool is not None and data.get("name") == self._output_tool:
            kind = "answer"  # the structured reply, not a call: its input streams as the text
        if kind == "tool_use" and sum(b.type == "tool_use" for b in self._order) >= self.limits.max_tool_calls:
            raise exceeded("max_tool_calls", self.limits.max_tool_calls, "calls", "a response has more tool calls")
        block = self._blocks[index] = _Block(kind, data)
        self._order.append(block)
        return block

    # -- the hot path ------------------------------------------------------------
    def feed(self, chunk: Any) -> List[StreamEvent]:
        """Fold one event in and return the events it produces.

        Raises:
            StreamError: an ``error`` event, an impossible shape, or a crossed limit.
        """
        if chunk.__class__ is not dict:
            raise StreamError(
                f"malformed event: expected a JSON object, got {type(chunk).__name__}", body=chunk, retryable=True
            )
        kind = chunk.get("type")
        events: List[StreamEvent] = []
        if kind == "content_block_delta":
            block = self._block(chunk)
            delta = chunk.get("delta")
            if delta.__class__ is not dict:
                raise malformed("delta", delta, chunk, "an object")
            dkind = delta.get("type")
            if dkind == "text_delta":
                text = string_field(delta, "text", "text_delta.text", chunk)
                if text:
                    block.type = block.type or "text"
                    self._piece(block, text, self._content)
                    events.append(StreamEvent("content", content=text))
            elif dkind == "thinking_delta":
                text = string_field(delta, "thinking", "thinking_delta.thinking", chunk)
                if text:
                    block.type = block.type or "thinking"
                    self._piece(block, text, self._reasoning)
                    events.append(StreamEvent("reasoning", reasoning=text))
            elif dkind == "input_json_delta":
                text = string_field(delta, "partial_json", "input_json_delta.partial_json", chunk)
                if text and block.type == "answer":
                    self._piece(block, text, self._content)
                    events.append(StreamEvent("content", content=text))
                elif text:
                    self._piece(block, text)
                    if self.tool_deltas and block.type == "tool_use":
                        start = block.start
                        call_id = start.get("id")
                        partial = ToolCall(call_id if isinstance(call_id, str) and call_id else f"toolu_{self._order.index(block)}", str(start.get("name") or ""))
                        events.append(StreamEvent("tool_call_delta", content=text, tool_call=partial))
            elif dkind == "signature_delta":
                signature = string_field(delta, "signature", "signature_delta.signature", chunk)
                self.spend(len(signature))
                block.signature.append(signature)
            # citations_delta and newer deltas add nothing promptkit shows
        elif kind == "content_block_start":
            index = chunk.get("index")
            if index.__class__ is not int or index < 0:
                raise malformed("index", index, chunk, "a non-negative integer")
            data = chunk.get("content_block")
            if data.__class__ is not dict:
                raise malformed("content_block", data, chunk, "an object")
            block = self._start(index, data, chunk)
            if block.type == "text":
                text = string_field(data, "text", "content_block.text", chunk)
                if text:
                    self._piece(block, text, self._content)
                    events.append(StreamEvent("content", content=text))
            elif block.type == "thinking":
                text = string_field(data, "thinking", "content_block.thinking", chunk)
                if text:
                    self._piece(block, text, self._reasoning)
                    events.append(StreamEvent("reasoning", reasoning=text))
        elif kind == "content_block_stop":
            block = self._block(chunk)
            if block.type == "tool_use" and not block.emitted:
                block.emitted = True
                events.append(StreamEvent("tool_call", tool_call=self._call(block, strict=True)))
                self.saw_output = True
        elif kind == "message_delta":
            delta = chunk.get("delta")
            if delta is not None:
                if delta.__class__ is not dict:
                    raise malformed("delta", delta, chunk, "an object")
                reason = string_field(delta, "stop_reason", "delta.stop_reason", chunk)
                if reason:
                    self.stop_reason = reason
            self._take_usage(chunk.get("usage"), chunk, final=True)
        elif kind == "message_start":
            message = chunk.get("message")
            if message.__class__ is not dict:
                raise malformed("message", message, chunk, "an object")
            model = message.get("model")
            if model.__class__ is str and model:
                self.model = model
            message_id = message.get("id")
            if message_id.__class__ is str and message_id:
                self.id = message_id
            self._take_usage(message.get("usage"), chunk)
        elif kind == "message_stop":
            self.ended = True  # the reader then calls finish(): a tool_use block never stopped is emitted there
        elif kind == "error":
            error = chunk.get("error")
            body = error if isinstance(error, dict) else chunk
            raise StreamError(error_text(body), body=body)
        elif kind is not None and kind.__class__ is not str:
            raise malformed("type", kind, chunk, "a string")
        # ping, and event types newer than this decoder, are not output
        return events

    def _take_usage(self, usage: Any, chunk: Any, final: bool = False) -> None:
        """Fold in counts: ``message_start``'s (input, and a provisional output of 1 or so), then
        ``message_delta``'s (cumulative). :attr:`usage` is set by the final counts only: a reply cut
        before them (cancelled, failed) is estimated, as on the other dialects, rather than billed
        with the provisional output count."""
        if usage is None:
            if final and self._usage:
                self.usage = Usage.from_anthropic(self._usage)
            return
        if usage.__class__ is not dict:
            raise malformed("usage", usage, chunk, "an object")
        for key in _USAGE_KEYS:
            value = usage.get(key)
            if value is None:
                continue
            if value.__class__ is not int or not 0 <= value <= MAX_TOKENS:
                raise malformed(f"usage.{key}", value, chunk, "a non-negative integer")
            self._usage[key] = value  # message_delta's counts are cumulative: the latest wins
        if final:
            self.usage = Usage.from_anthropic(self._usage)
        cost = reported_cost(usage.get("cost"))
        if cost is not None:
            self.cost = cost

    def _call(self, block: _Block, strict: bool) -> ToolCall:
        text = "".join(block.parts)
        if not text:
            start_input = block.start.get("input")
            text = json.dumps(start_input) if start_input else "{}"
        n = self._order.index(block)
        call_id = block.start.get("id")
        name = block.start.get("name")
        return tool_call(
            call_id if isinstance(call_id, str) and call_id else f"toolu_{n}",
            name if isinstance(name, str) else "",
            text,
            self.limits,
            strict,
        )

    def finish(self) -> List[StreamEvent]:
        """The calls of ``tool_use`` blocks that never stopped, when the reply is complete (see :attr:`complete`).

        Raises:
            StreamTruncatedError: it is not (a ``[DONE]`` line, or the body's end, came too early).
        """
        if not self.complete:
            raise StreamTruncatedError(self.truncation)
        events: List[StreamEvent] = []
        for block in self._order:
            if block.type == "tool_use" and not block.emitted:
                block.emitted = True
                events.append(StreamEvent("tool_call", tool_call=self._call(block, strict=True)))
        return events

    # -- what the reply holds ------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Whether ``message_stop`` arrived (or, from a server that leaves it out, a stop reason)."""
        return self.ended or self.stop_reason is not None

    @property
    def truncation(self) -> str:
        """Why an early EOF is a truncation."""
        return "the stream ended before message_stop and without a stop_reason"

    @property
    def finish_reason(self) -> Optional[str]:
        """The ``stop_reason`` in Chat Completions terms (see the module docstring); a reply given
        through the output tool (and no other tool) ended as ``stop``."""
        reason = self.stop_reason
        if reason is None:
            return None
        if reason == "tool_use" and self._output_tool is not None:
            kinds = {block.type for block in self._order}
            if "answer" in kinds and "tool_use" not in kinds:
                return "stop"
        return FINISH_REASONS.get(reason, reason)

    @property
    def refusal(self) -> str:
        """Anthropic streams a refusal as text (``stop_reason`` ``refusal``): nothing apart."""
        return ""

    def tool_calls(self, *, complete_only: bool = False) -> Tuple[ToolCall, ...]:
        """``tool_use`` blocks in order: all so far, or only those already emitted."""
        return tuple(
            self._call(block, strict=False)
            for block in list(self._order)
            if block.type == "tool_use" and (block.emitted or not complete_only)
        )

    def choices(self) -> Tuple[Choice, ...]:
        """The one choice (Anthropic has no ``n``)."""
        return (Choice(0, self.content, self.reasoning, "", self.tool_calls(), self.finish_reason),)

    def thinking_blocks(self) -> List[Dict[str, Any]]:
        """The thinking and redacted-thinking blocks, as the API wants them back (signatures included)."""
        out: List[Dict[str, Any]] = []
        for block in self._order:
            if block.type == "thinking":
                signature = "".join(block.signature) or string_field(block.start, "signature", "signature", block.start)
                out.append({"type": "thinking", "thinking": "".join(block.parts), "signature": signature})
            elif block.type == "redacted_thinking":
                out.append(dict(block.start))
        return out

    def assistant_message(self, calls: Sequence[ToolCall]) -> Dict[str, Any]:
        """The canonical assistant message, with ``reasoning_content`` and ``thinking_blocks`` when there are any."""
        message = assistant_message(self.content, calls)
        if self._reasoning:
            message["reasoning_content"] = self.reasoning
        blocks = self.thinking_blocks()
        if blocks:
            message["thinking_blocks"] = blocks
        return message
