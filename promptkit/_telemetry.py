"""OpenTelemetry support: the :class:`Telemetry` options and the pure parts of the GenAI mapping.

``promptkit.Client(telemetry=True)`` (or ``telemetry=promptkit.Telemetry(...)``)
adds one :class:`~promptkit.Hooks` that turns a turn's hook events into
OpenTelemetry spans and metrics (:mod:`promptkit._otel_hooks`). This module
imports no OpenTelemetry package: ``import promptkit`` stays as light as
before, and only a truthy ``telemetry=`` loads ``opentelemetry-api``.

What is emitted follows the OpenTelemetry GenAI semantic conventions as last
released with the core conventions, **v1.41.1** (``gen-ai-spans.md``,
``gen-ai-agent-spans.md``, ``gen-ai-metrics.md``, the ``gen_ai`` attribute
registry and the input/output message JSON schemas). They have since moved to
the ``semantic-conventions-genai`` repository, whose drafts rename some names
(``gen_ai.client.inference.*`` metrics, ``cache_write`` for
``cache_creation``); the names here are the released ones, which the tracing
backends read today, and all live in :mod:`promptkit._otel_hooks`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union
from urllib.parse import urlsplit

import attrs

from ._errors import ConfigurationError
from ._types import ToolCall, Usage

if TYPE_CHECKING:  # pragma: no cover
    from ._hooks import Hooks

__all__ = ["Telemetry", "make_hooks", "SCHEMA_URL"]

SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.1"  # the conventions' version the names follow
INSTALL_HINT = "pip install 'promptkit[otel]'"


def _agent_name(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"Telemetry.agent_name must be a non-empty str, got {value!r}")


def _flag(instance: Any, attribute: Any, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"Telemetry.{attribute.name} must be True or False, got {value!r}")


@attrs.frozen
class Telemetry:
    """How ``promptkit.Client(telemetry=...)`` reports turns to OpenTelemetry.

    ``telemetry=True`` is ``telemetry=Telemetry()``. Needs ``opentelemetry-api``
    (``pip install 'promptkit[otel]'``); the application configures the SDK and
    its exporters as usual.

    Attributes:
        tracer_provider: the ``TracerProvider`` spans go to; ``None`` uses the
            global one (``opentelemetry.trace.set_tracer_provider``).
        meter_provider: the ``MeterProvider`` metrics go to; ``None`` uses the
            global one.
        capture_content: record message content (the input messages, the
            output text and reasoning, tool arguments and results) on the spans
            as the conventions' ``gen_ai.input.messages`` /
            ``gen_ai.output.messages`` / ``gen_ai.tool.call.*`` attributes. Off
            by default: content is often personal data.
        agent_name: the ``gen_ai.agent.name`` of each turn's ``invoke_agent``
            span (and its span name, ``invoke_agent {agent_name}``).
    """

    tracer_provider: Any = None
    meter_provider: Any = None
    capture_content: bool = attrs.field(default=False, validator=_flag)
    agent_name: str = attrs.field(default="promptkit", validator=_agent_name)


def make_hooks(telemetry: Union[bool, Telemetry, None]) -> Optional["Hooks"]:
    """The hooks for ``Client(telemetry=...)``: ``None`` when it is falsy (nothing is imported).

    Raises:
        ConfigurationError: ``telemetry`` is not a bool, ``None`` or a
            :class:`Telemetry`, or ``opentelemetry-api`` is not installed.
    """
    if telemetry is None or telemetry is False:
        return None
    if telemetry is True:
        options = Telemetry()
    elif isinstance(telemetry, Telemetry):
        options = telemetry
    else:
        raise ConfigurationError(f"telemetry must be True, False or a promptkit.Telemetry, got {type(telemetry).__name__}")
    missing: Optional[str] = None
    try:
        from ._otel_hooks import OTelHooks
    except ImportError as exc:  # raised below, outside the except block
        missing = exc.name or "opentelemetry"
    if missing is not None:
        raise ConfigurationError(f"telemetry needs the OpenTelemetry API ({missing} is not installed): {INSTALL_HINT}")
    return OTelHooks(options)


# ---------------------------------------------------------------- attributes


def error_type(error: Optional[BaseException]) -> str:
    """``error.type``: the exception's class name, ``_OTHER`` (the conventions' fallback) without one."""
    return type(error).__qualname__ if error is not None else "_OTHER"


def server_attributes(base_url: str) -> Dict[str, Any]:
    """``server.address`` and ``server.port`` of a base URL (the scheme's port when it names none)."""
    try:
        parts = urlsplit(base_url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    if not host:
        return {}
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return {"server.address": host, "server.port": port}


_FLOATS = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "top_k": "gen_ai.request.top_k",  # a double in v1.41.1
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
}
_INTS = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "max_output_tokens": "gen_ai.request.max_tokens",
    "seed": "gen_ai.request.seed",
}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def request_attributes(params: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``gen_ai.request.*`` (and ``gen_ai.output.type``) attributes of a turn's request parameters."""
    out: Dict[str, Any] = {}
    for key, value in params.items():
        if key in _FLOATS and _number(value):
            out[_FLOATS[key]] = float(value)
        elif key in _INTS and _number(value):
            out[_INTS[key]] = int(value)
        elif key in ("stop", "stop_sequences"):
            stops = [value] if isinstance(value, str) else value
            if isinstance(stops, (list, tuple)) and stops and all(isinstance(s, str) for s in stops):
                out["gen_ai.request.stop_sequences"] = list(stops)
        elif key == "n" and _number(value) and value != 1:
            out["gen_ai.request.choice.count"] = int(value)
        elif key == "response_format" and isinstance(value, Mapping):
            kind = value.get("type")
            if kind in ("json_object", "json_schema"):
                out["gen_ai.output.type"] = "json"
            elif kind == "text":
                out["gen_ai.output.type"] = "text"
    return out


def usage_attributes(usage: Usage) -> Dict[str, Any]:
    """``gen_ai.usage.*``: input (cached included) and output (reasoning included) tokens, and the
    cache reads and writes and reasoning tokens when there are any."""
    out: Dict[str, Any] = {
        "gen_ai.usage.input_tokens": usage.prompt_tokens,
        "gen_ai.usage.output_tokens": usage.completion_tokens,
    }
    if usage.cached_tokens:
        out["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
    if usage.cache_write_tokens:
        out["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        out["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if usage.estimated:
        out["promptkit.usage.estimated"] = True
    return out


# ---------------------------------------------------------------- content (capture_content only)

# The output messages schema's finish reasons; other values (promptkit's "cancelled") pass as they are.
_FINISH = {"tool_calls": "tool_call", None: "stop"}


def to_json(value: Any) -> str:
    """Compact JSON for a content attribute (what JSON cannot hold becomes its ``str``)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _arguments(text: Any) -> Any:
    """Tool call arguments as an object when they are JSON, else as sent."""
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _image_part(ref: Any) -> Optional[Dict[str, Any]]:
    url = ref.get("url") if isinstance(ref, Mapping) else ref
    if not isinstance(url, str):
        return None
    if url.startswith("data:") and "," in url:
        header, data = url[5:].split(",", 1)
        mime = header.split(";", 1)[0] or None
        return {"type": "blob", "modality": "image", "mime_type": mime, "content": data}
    return {"type": "uri", "modality": "image", "uri": url}


def _content_parts(content: Any) -> List[Dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}] if content else []
    parts: List[Dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            parts.append({"type": "text", "content": part["text"]})
        elif part.get("type") == "image_url":
            image = _image_part(part.get("image_url"))
            if image is not None:
                parts.append(image)
    return parts


def _call_part(call_id: Any, name: Any, arguments: Any) -> Dict[str, Any]:
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": _arguments(arguments)}


def input_message(message: Mapping[str, Any]) -> Dict[str, Any]:
    """One canonical (OpenAI chat) message as the conventions' ``ChatMessage`` (role and parts)."""
    role = message.get("role")
    if role == "tool":
        response = {"type": "tool_call_response", "id": message.get("tool_call_id"), "response": message.get("content")}
        return {"role": "tool", "parts": [response]}
    parts: List[Dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if isinstance(reasoning, str) and reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    parts.extend(_content_parts(message.get("content")))
    for call in message.get("tool_calls") or ():
        if isinstance(call, Mapping):
            function = call.get("function")
            function = function if isinstance(function, Mapping) else {}
            parts.append(_call_part(call.get("id"), function.get("name"), function.get("arguments")))
    out: Dict[str, Any] = {"role": role, "parts": parts}
    if isinstance(message.get("name"), str):
        out["name"] = message["name"]
    return out


def input_messages(messages: Iterable[Mapping[str, Any]]) -> str:
    """``gen_ai.input.messages``: the messages sent, in order (a system prompt as role ``system``)."""
    return to_json([input_message(m) for m in messages if isinstance(m, Mapping)])


def output_messages(content: str, reasoning: str, calls: Sequence[ToolCall], finish_reason: Optional[str]) -> str:
    """``gen_ai.output.messages``: the one assistant message a round (or turn) produced."""
    parts: List[Dict[str, Any]] = []
    if reasoning:
        parts.append({"type": "reasoning", "content": reasoning})
    if content:
        parts.append({"type": "text", "content": content})
    parts.extend(_call_part(c.id, c.name, c.arguments_json) for c in calls)
    reason = _FINISH.get(finish_reason, finish_reason)
    return to_json([{"role": "assistant", "parts": parts, "finish_reason": reason}])
