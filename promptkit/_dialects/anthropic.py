"""The Anthropic Messages dialect (``POST {base_url}/messages``): ``Client(api="anthropic")``.

The canonical history converts to Anthropic's form:

* system messages become the top-level ``system`` (joined by blank lines);
* a tool message becomes a ``tool_result`` block in a user message, and
  consecutive messages of one role are merged into one message (Anthropic
  wants the roles to alternate, and all results of a round in one message);
* an assistant message becomes blocks: its ``thinking_blocks`` first (the
  thinking with its signature, which the API requires back inside a tool loop,
  and redacted thinking), then its text, then a ``tool_use`` block per call
  (the arguments parsed: Anthropic takes an object);
* ``image_url`` parts become ``image`` blocks (a data URL as ``base64``
  source, an http(s) URL as ``url`` source).

``max_tokens`` is required by the API: promptkit sends :data:`DEFAULT_MAX_TOKENS`
unless ``max_tokens`` (or ``max_completion_tokens``) is given. Tools become
``{"name", "description", "input_schema"}``, and a Chat Completions
``tool_choice`` takes Anthropic's shape (``"required"`` is ``any``). ``stop``
becomes ``stop_sequences``. ``cache_control=True`` (or a ``cache_control``
dict, such as ``{"type": "ephemeral", "ttl": "1h"}``) asks for prompt caching:
the breakpoint goes on the last tool, the system prompt, and the last block of
the conversation, so each turn reads what the previous one wrote. Other
parameters (``temperature``, ``top_p``, ``top_k``, ``thinking``,
``metadata``...) go through as given.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from .._errors import ConfigurationError
from .._limits import Limits
from .anthropic_decoder import AnthropicDecoder
from .base import ANTHROPIC, split_extra_body

if TYPE_CHECKING:  # pragma: no cover
    from .._structured import OutputFormat

__all__ = ["AnthropicDialect", "ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # every current Claude model allows at least this many output tokens
_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)", re.S)
_REJECTED_PARAMS = {"n", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias", "seed"}


def _image(part: Mapping[str, Any]) -> Dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    match = _DATA_URL.fullmatch(url) if isinstance(url, str) else None
    if match is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": match["mime"], "data": match["data"]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> List[Dict[str, Any]]:
    """Message content (a string or chat content parts) as Anthropic blocks."""
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out: List[Dict[str, Any]] = []
    for part in content:
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
        elif isinstance(part, Mapping) and part.get("type") == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif isinstance(part, Mapping) and part.get("type") == "image_url":
            out.append(_image(part))
        elif isinstance(part, Mapping):
            out.append(dict(part))  # already an Anthropic block
    return out


def _text(content: Any) -> str:
    return "".join(block["text"] for block in _blocks(content) if block.get("type") == "text")


def _arguments(call: Mapping[str, Any]) -> Any:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = None
        return parsed if isinstance(parsed, dict) else {"arguments": arguments}
    return arguments if isinstance(arguments, dict) else {}


def _tool(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, Mapping):
        return tool  # an Anthropic tool already (a server tool such as web_search)
    out: Dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(value: Any) -> Any:
    if value == "auto":
        return {"type": "auto"}
    if value == "required":
        return {"type": "any"}
    if value == "none":
        return {"type": "none"}
    if isinstance(value, Mapping) and value.get("type") == "function" and isinstance(value.get("function"), Mapping):
        return {"type": "tool", "name": value["function"].get("name")}
    return value


class AnthropicDialect:
    """Anthropic Messages, as Anthropic, llama.cpp, Ollama and LiteLLM serve it."""

    name = "anthropic"
    path = "/messages"
    provider = ANTHROPIC

    def auth_headers(self, api_key: Optional[str]) -> Dict[str, str]:
        """``x-api-key`` and ``anthropic-version``."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse what the Messages API cannot take, before any request.

        Raises:
            ConfigurationError: ``n``, ``logprobs``, penalties, ``logit_bias``,
                ``seed``, or a ``cache_control`` that is neither ``True`` nor a dict.
        """
        for key in _REJECTED_PARAMS & set(params):
            if key == "n" and params[key] == 1:
                continue
            raise ConfigurationError(f"{key!r} is not a parameter of Anthropic's Messages API")
        cache = params.get("cache_control")
        if cache is not None and cache is not True and cache is not False and not isinstance(cache, Mapping):
            raise ConfigurationError(f"cache_control must be True or a dict such as {{'type': 'ephemeral'}}, got {cache!r}")
        split_extra_body(params)

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
        """The request body (see the module docstring); the usage always comes with the stream.

        Structured ``output`` goes as a forced tool whose input is the answer (every Claude
        model and compatible server takes it), or, when ``thinking`` is on (which a forced tool
        choice excludes), as Anthropic's native ``output_config.format``.

        Raises:
            ConfigurationError: a tool of the conversation has the output tool's name.
        """
        params, extra = split_extra_body(params)
        cache = params.get("cache_control")
        marker: Optional[Dict[str, Any]] = None
        if cache is True:
            marker = {"type": "ephemeral"}
        elif isinstance(cache, Mapping):
            marker = dict(cache)
        system, converted = self.messages(messages)
        body: Dict[str, Any] = {"model": model, "max_tokens": DEFAULT_MAX_TOKENS}
        if system:
            body["system"] = [{"type": "text", "text": system, "cache_control": marker}] if marker else system
        body["messages"] = converted
        for key, value in params.items():
            if key in ("max_tokens", "max_completion_tokens"):
                body["max_tokens"] = value
            elif key == "stop":
                body["stop_sequences"] = [value] if isinstance(value, str) else value
            elif key == "tool_choice":
                body["tool_choice"] = _tool_choice(value)
            elif key in ("cache_control", "n"):
                continue
            else:
                body[key] = value
        body["stream"] = True
        if tools:
            body["tools"] = [dict(_tool(tool)) for tool in tools]
        if output is not None:
            if isinstance(params.get("thinking"), Mapping) and params["thinking"].get("type") != "disabled":
                body["output_config"] = {**(body.get("output_config") or {}), **output.anthropic_output_config()}
            else:
                if any(tool.get("name") == output.name for tool in body.get("tools", ())):
                    raise ConfigurationError(f"a tool is named {output.name!r}, the name of the response_format's output tool")
                user_tools = bool(body.get("tools"))
                body["tools"] = [*body.get("tools", ()), output.anthropic_tool()]
                if "tool_choice" not in params:
                    # With the conversation's own tools, any tool may be called (the answer is one of
                    # them); without, the output tool is the only choice.
                    body["tool_choice"] = {"type": "any"} if user_tools else {"type": "tool", "name": output.name}
        if marker and body.get("tools"):
            body["tools"][-1]["cache_control"] = marker
        if marker and converted and converted[-1]["content"]:
            last = converted[-1]["content"][-1]
            converted[-1]["content"][-1] = {**last, "cache_control": marker}
        body.update(extra)
        return body

    def messages(self, messages: Sequence[Mapping[str, Any]]) -> "tuple[str, List[Dict[str, Any]]]":
        """The canonical history as Anthropic's ``system`` and ``messages`` (roles alternating)."""
        system: List[str] = []
        out: List[Dict[str, Any]] = []
        for message in messages:
            role = message.get("role")
            if role in ("system", "developer"):
                text = _text(message.get("content"))
                if text:
                    system.append(text)
                continue
            if role == "tool":
                content = message.get("content")
                result: Dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
                result["content"] = content if isinstance(content, str) else _blocks(content)
                blocks, role = [result], "user"
            elif role == "assistant":
                blocks = [dict(b) for b in message.get("thinking_blocks") or () if isinstance(b, Mapping)]
                blocks += _blocks(message.get("content"))
                for call in message.get("tool_calls") or ():
                    function = call.get("function") or {}
                    blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": _arguments(call)})
            else:
                blocks, role = _blocks(message.get("content")), "user"
            if not blocks:
                continue  # an empty reply is valid history, but Anthropic refuses empty content
            if out and out[-1]["role"] == role:
                out[-1]["content"].extend(blocks)  # consecutive messages of one role become one
            else:
                out.append({"role": role, "content": blocks})
        return "\n\n".join(system), out

    def decoder(self, limits: Limits, output: Optional["OutputFormat"] = None) -> AnthropicDecoder:
        """A fresh :class:`~promptkit._dialects.anthropic_decoder.AnthropicDecoder` (the output tool's input is the reply's text)."""
        return AnthropicDecoder(limits, output_tool=output.name if output is not None else None)

    def refused(self, error: BaseException, base_url: str) -> bool:
        """Nothing optional is sent that a server could refuse."""
        return False
