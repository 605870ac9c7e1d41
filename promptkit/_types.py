"""Value classes: usage, tool calls and results, responses, stream events, timeouts.

All are frozen attrs classes: change one with :func:`attrs.evolve`.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from ._money import format_cost

__all__ = ["Usage", "ToolCall", "ToolResult", "Choice", "Response", "StreamEvent", "Timeout", "EVENT_TYPES", "jsonable"]

EVENT_TYPES = ("content", "reasoning", "tool_call_delta", "tool_call", "tool_result", "error", "done")


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@attrs.frozen
class Usage:
    """Token counts for one turn (or a sum of turns).

    ``prompt_tokens`` *includes* ``cached_tokens`` and ``completion_tokens``
    *includes* ``reasoning_tokens``, as OpenAI reports them. So a reply with
    ``prompt_tokens=1000, cached_tokens=800`` bills 200 tokens at the input
    price and 800 at the cached-input price. ``estimated`` is ``True`` when the
    server sent no usage and promptkit counted the tokens itself.

    ``cache_write_tokens`` are prompt tokens written to the provider's prompt
    cache (Anthropic's ``cache_creation_input_tokens``), also included in
    ``prompt_tokens``; ``cache_write_1h_tokens`` is the part of them written
    to a 1-hour cache, which costs more. Both are 0 on providers without cache
    writes.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    audio_prompt_tokens: int = 0
    audio_completion_tokens: int = 0
    estimated: bool = False
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0

    @classmethod
    def from_openai(cls, data: Mapping[str, Any]) -> "Usage":
        """Parse an OpenAI ``usage`` object (tolerating missing or null details).

        ``prompt_tokens_details.cache_write_tokens``, which OpenRouter reports
        for models with cache writes, becomes ``cache_write_tokens``.
        """
        prompt = _int(data.get("prompt_tokens"))
        completion = _int(data.get("completion_tokens"))
        total = _int(data.get("total_tokens")) or prompt + completion
        pdet = data.get("prompt_tokens_details") or {}
        cdet = data.get("completion_tokens_details") or {}
        if not isinstance(pdet, Mapping):
            pdet = {}
        if not isinstance(cdet, Mapping):
            cdet = {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=total,
            cached_tokens=_int(pdet.get("cached_tokens")),
            reasoning_tokens=_int(cdet.get("reasoning_tokens")),
            audio_prompt_tokens=_int(pdet.get("audio_tokens")),
            audio_completion_tokens=_int(cdet.get("audio_tokens")),
            cache_write_tokens=_int(pdet.get("cache_write_tokens")),
        )

    @classmethod
    def from_responses(cls, data: Mapping[str, Any]) -> "Usage":
        """Parse a Responses API ``usage`` object (``input_tokens``, ``output_tokens`` and their details)."""
        prompt = _int(data.get("input_tokens"))
        completion = _int(data.get("output_tokens"))
        idet = data.get("input_tokens_details")
        odet = data.get("output_tokens_details")
        idet = idet if isinstance(idet, Mapping) else {}
        odet = odet if isinstance(odet, Mapping) else {}
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=_int(data.get("total_tokens")) or prompt + completion,
            cached_tokens=_int(idet.get("cached_tokens")),
            reasoning_tokens=_int(odet.get("reasoning_tokens")),
        )

    @classmethod
    def from_anthropic(cls, data: Mapping[str, Any]) -> "Usage":
        """Parse an Anthropic Messages ``usage`` object.

        Anthropic's ``input_tokens`` counts only the uncached input; the cache
        reads (``cache_read_input_tokens``) and writes
        (``cache_creation_input_tokens``) come beside it. Here they are added
        up, as OpenAI counts: ``prompt_tokens`` is all three, ``cached_tokens``
        the reads and ``cache_write_tokens`` the writes, of which
        ``cache_write_1h_tokens`` is the 1-hour part
        (``cache_creation.ephemeral_1h_input_tokens``). ``output_tokens``
        includes thinking; ``reasoning_tokens`` is
        ``output_tokens_details.thinking_tokens`` where the server reports it
        (newer models do) and 0 otherwise: Anthropic did not report thinking
        apart before. A missing or null count is 0, and Anthropic sends no
        total: ``total_tokens`` is prompt plus completion.

        Pass the turn's latest counts: a stream's ``message_delta`` usage is
        cumulative but may lack the input counts of ``message_start``. Only
        the top-level counts are read. Anthropic leaves the tokens of
        server-side extra iterations (``usage.iterations`` entries of type
        ``compaction`` or ``advisor_message``) out of them, so those are not
        counted here.
        """
        prompt_uncached = _int(data.get("input_tokens"))
        read = _int(data.get("cache_read_input_tokens"))
        written = _int(data.get("cache_creation_input_tokens"))
        completion = _int(data.get("output_tokens"))
        split = data.get("cache_creation")
        details = data.get("output_tokens_details")
        prompt = prompt_uncached + read + written
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            cached_tokens=read,
            reasoning_tokens=_int(details.get("thinking_tokens")) if isinstance(details, Mapping) else 0,
            cache_write_tokens=written,
            cache_write_1h_tokens=_int(split.get("ephemeral_1h_input_tokens")) if isinstance(split, Mapping) else 0,
        )

    def __add__(self, other: "Usage") -> "Usage":
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            audio_prompt_tokens=self.audio_prompt_tokens + other.audio_prompt_tokens,
            audio_completion_tokens=self.audio_completion_tokens + other.audio_completion_tokens,
            estimated=self.estimated or other.estimated,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
        )

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return attrs.asdict(self)


@attrs.frozen
class ToolCall:
    """One tool call the model made.

    ``arguments`` is the parsed JSON object (``{}`` when the text was not a
    JSON object; ``arguments_error`` then says why), ``arguments_json`` the raw
    text as the model sent it.
    """

    id: str
    name: str
    arguments_json: str = ""
    arguments: Dict[str, Any] = attrs.field(factory=dict)
    arguments_error: Optional[str] = None

    @classmethod
    def create(cls, id: str, name: str, arguments_json: str) -> "ToolCall":
        """Build a call from its raw argument text, parsing it."""
        text = arguments_json or ""
        if not text.strip():
            return cls(id=id, name=name, arguments_json=text, arguments={})
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            return cls(id=id, name=name, arguments_json=text, arguments_error=f"invalid JSON arguments: {exc}")
        if not isinstance(parsed, dict):
            return cls(id=id, name=name, arguments_json=text, arguments_error="arguments are not a JSON object")
        return cls(id=id, name=name, arguments_json=text, arguments=parsed)

    def to_message(self) -> Dict[str, Any]:
        """The OpenAI ``tool_calls`` entry for an assistant message.

        Arguments that were empty or not a JSON object are replayed as ``"{}"``:
        several servers decode the history's arguments and would reject the
        whole conversation (the tool result tells the model what was wrong).
        """
        arguments = "{}" if self.arguments_error or not self.arguments_json.strip() else self.arguments_json
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": arguments}}

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict: ``id``, ``name``, ``arguments`` and ``arguments_json``."""
        return {"id": self.id, "name": self.name, "arguments": self.arguments, "arguments_json": self.arguments_json}


@attrs.frozen
class ToolResult:
    """The result of one tool call; ``content`` is the exact string sent to the model."""

    call_id: str
    name: str
    content: str
    is_error: bool = False

    def to_message(self) -> Dict[str, Any]:
        """The OpenAI ``tool`` message."""
        return {"role": "tool", "tool_call_id": self.call_id, "content": self.content}

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict of the fields."""
        return attrs.asdict(self)


@attrs.frozen
class Choice:
    """One choice of a reply (``n > 1`` gives several; events follow choice 0)."""

    index: int
    content: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_calls: Tuple[ToolCall, ...] = ()
    finish_reason: Optional[str] = None


@attrs.frozen
class Response:
    """The result of one turn.

    ``content`` is ``""`` when the model sent no text (never ``None``).
    ``reasoning`` holds the reasoning the server showed (Chat Completions
    ``reasoning_content`` / ``reasoning`` deltas, Responses API reasoning
    summaries or reasoning text), of every tool round, kept apart from
    ``content``: the concatenation of the turn's ``reasoning`` events. ``usage`` and ``cost`` sum every tool round of the turn.
    ``cost_known`` is ``False`` when the model has no price (``cost`` is then
    0.0). ``cost_source`` says where ``cost`` came from: ``"server"`` (the
    server reported it, as LiteLLM and OpenRouter do), ``"table"`` (computed
    from the price table), ``"mixed"`` (tool rounds of both kinds) or
    ``"unknown"`` (no price and no reported cost). ``finish_reason`` is
    ``"cancelled"`` for a turn the user stopped.
    ``latency_ms`` is the time from the request to the end of the turn and
    ``ttft_ms`` the time to the first content or tool call delta.
    """

    content: str = ""
    tool_calls: Tuple[ToolCall, ...] = ()
    finish_reason: Optional[str] = None
    usage: Usage = Usage()
    cost: float = 0.0
    cost_known: bool = True
    cost_source: str = "table"
    latency_ms: float = 0.0
    ttft_ms: Optional[float] = None
    model: str = ""
    id: str = ""
    reasoning: str = ""
    refusal: str = ""
    tool_results: Tuple[ToolResult, ...] = ()
    rounds: int = 1
    choices: Tuple[Choice, ...] = ()
    parsed: Any = None  # with response_format: the validated value (a model instance, or a dict)

    @property
    def tokens_used(self) -> int:
        """``usage.total_tokens``."""
        return self.usage.total_tokens

    @property
    def cancelled(self) -> bool:
        """Whether the user stopped this turn."""
        return self.finish_reason == "cancelled"

    def summary(self) -> str:
        """The example's one-line report: ``Cost: $0.0032 | Latency: 1234ms | Tokens: 156``.

        Costs have two significant digits below $1 and cents above (see
        :func:`promptkit.pricing.format_cost`). An unknown price shows as
        ``Cost: n/a``; estimated usage is marked with ``~``.
        """
        cost = format_cost(self.cost, self.cost_known)
        mark = "~" if self.usage.estimated else ""
        return f"Cost: {cost} | Latency: {math.floor(self.latency_ms + 0.5)}ms | Tokens: {mark}{self.tokens_used}"

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict of the response, as sent in a ``done`` event's ``final``."""
        return {
            "content": self.content,
            "tool_calls": [tc.to_dict() for tc in self.tool_calls],
            "finish_reason": self.finish_reason,
            "usage": self.usage.to_dict(),
            "cost": self.cost,
            "cost_known": self.cost_known,
            "cost_source": self.cost_source,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "model": self.model,
            "id": self.id,
            "tokens_used": self.tokens_used,
            "reasoning": self.reasoning,
            "refusal": self.refusal,
            "tool_results": [tr.to_dict() for tr in self.tool_results],
            "rounds": self.rounds,
            "parsed": jsonable(self.parsed),
        }


def jsonable(value: Any) -> Any:
    """A structured-output value as JSON data: a pydantic model dumped, a dataclass or attrs instance as a dict."""
    if value is None or isinstance(value, (dict, list, str, int, float, bool)):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if attrs.has(type(value)):
        return attrs.asdict(value)
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def error_to_dict(error: BaseException) -> Dict[str, Any]:
    """The JSON-safe description of an error: its type name, message and status."""
    out: Dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    status = getattr(error, "status_code", None)
    if status is not None:
        out["status_code"] = status
    return out


@attrs.frozen
class StreamEvent:
    """One event of a stream.

    ``type`` is ``"content"`` (``content`` holds the text delta), ``"reasoning"``
    (``reasoning`` holds a delta of the model's visible reasoning: never mixed
    into ``content``), ``"tool_call_delta"`` (only when asked for with
    ``send_stream(tool_call_deltas=True)``: ``content`` is the arguments' piece,
    ``tool_call`` names the call (its id and name), ``parsed`` is the arguments
    parsed so far), ``"tool_call"`` (``tool_call``), ``"tool_result"`` (``tool_result``, when promptkit ran a
    tool handler), ``"error"`` (``error``; terminal) or ``"done"`` (``final``,
    the Response; terminal). Every stream ends with exactly one ``error`` or
    ``done``.
    """

    type: str
    content: str = ""
    tool_call: Optional[ToolCall] = None
    tool_result: Optional[ToolResult] = None
    error: Optional[BaseException] = None
    final: Optional[Response] = None
    reasoning: str = ""
    parsed: Any = None  # with response_format: the reply's value so far, on each content event

    @property
    def is_terminal(self) -> bool:
        """Whether this is the stream's last event (``done`` or ``error``)."""
        return self.type == "done" or self.type == "error"

    def to_dict(self) -> Dict[str, Any]:
        """The JSON-safe shape a WebSocket or SSE relay sends as-is.

        Always has the keys ``type``, ``content``, ``tool_call``, ``final`` and
        ``error``; a ``tool_result`` event adds ``tool_result``, a ``reasoning``
        event ``reasoning``. ``error`` is a
        dict ``{"type", "message"[, "status_code"]}`` or ``None``.
        """
        out: Dict[str, Any] = {
            "type": self.type,
            "content": self.content,
            "tool_call": self.tool_call.to_dict() if self.tool_call is not None else None,
            "final": self.final.to_dict() if self.final is not None else None,
            "error": error_to_dict(self.error) if self.error is not None else None,
        }
        if self.tool_result is not None:
            out["tool_result"] = self.tool_result.to_dict()
        if self.type == "reasoning":
            out["reasoning"] = self.reasoning
        elif self.parsed is not None:
            out["parsed"] = self.parsed  # JSON values only: a partial parse is dicts, lists and scalars
        return out


def _positive_or_none(name: str) -> Any:
    def check(instance: Any, attribute: Any, value: Optional[float]) -> None:
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0):
            from ._errors import ConfigurationError

            raise ConfigurationError(f"Timeout.{name} must be a positive number of seconds or None, got {value!r}")

    return check


@attrs.frozen
class Timeout:
    """Deadlines for a turn, in seconds.

    * ``connect``: to open the TCP/TLS connection (default 10).
    * ``idle``: the longest wait for the response headers and then between two
      *parsed* events; SSE comments and keep-alives do not reset it (default 60).
    * ``total``: the whole turn, all retries and tool rounds included
      (default 600; ``None`` for no limit).

    A bare number given where a Timeout is expected sets ``idle``.
    """

    connect: Optional[float] = attrs.field(default=10.0, validator=_positive_or_none("connect"))
    idle: Optional[float] = attrs.field(default=60.0, validator=_positive_or_none("idle"))
    total: Optional[float] = attrs.field(default=600.0, validator=_positive_or_none("total"))

    @classmethod
    def coerce(cls, value: "Timeout | float | int | None") -> "Timeout":
        """Turn ``None`` (defaults), a number (idle) or a Timeout into a Timeout."""
        if value is None:
            return cls()
        if isinstance(value, Timeout):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(idle=float(value))
        from ._errors import ConfigurationError

        raise ConfigurationError(f"timeout must be a promptkit.Timeout or a number of seconds, got {value!r}")
