"""The OpenAI Responses API dialect (``POST {base_url}/responses``): ``Client(api="responses")``.

promptkit keeps the history itself (no ``previous_response_id``): each request
sends the whole conversation as ``input`` items, built from the canonical
history:

* system and user messages become input messages (``text`` parts become
  ``input_text``, ``image_url`` parts ``input_image``);
* an assistant message that came from this API carries its ``output_items``,
  sent back as they are: the reasoning items that reasoning models need across
  turns and tool rounds, the message and function-call items with their ids.
  An assistant message from elsewhere (another dialect, a cancelled reply, the
  application) becomes an assistant message and ``function_call`` items;
* a tool message becomes a ``function_call_output`` item.

With ``store: false`` (``extra_body={"store": False}``, since ``store=`` is
the conversation's own store; the server then keeps nothing), the request asks for
``reasoning.encrypted_content`` and the replayed items go without their ids
(which would name items the server never stored); a reasoning item without
encrypted content is then left out. A server that answers an item id with
"not found" gets the same treatment from then on.

Parameters map onto this API where Chat Completions names differ:
``max_tokens`` / ``max_completion_tokens`` become ``max_output_tokens``,
``reasoning_effort`` becomes ``reasoning.effort``, a chat ``tool_choice`` takes
this API's shape, and a ``response_format`` becomes ``text.format``. Others go through as given. Tools
are sent with ``strict: false`` unless they say otherwise, as Chat Completions
defaults (this API defaults to ``true``, which rejects most hand-written schemas).
Reasoning summaries are the model's and the caller's choice:
``reasoning={"summary": "auto"}``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from .._errors import BadRequestError, ConfigurationError, NotFoundError
from .._limits import Limits
from .base import OPENAI, QUIRKS, bearer_auth, split_extra_body
from .responses_decoder import REPLAYED_ITEM_TYPES, ResponsesDecoder

if TYPE_CHECKING:  # pragma: no cover
    from .._structured import OutputFormat

__all__ = ["ResponsesDialect"]

logger = logging.getLogger(__name__)

_ENCRYPTED = "reasoning.encrypted_content"
_REJECTED_PARAMS = {
    "input": "the input is built from the conversation's history",
    "previous_response_id": "promptkit sends the whole history itself",
    "conversation": "promptkit sends the whole history itself",
}


def _part(part: Any) -> Any:
    """A chat content part as a Responses input part (unknown parts go through unchanged)."""
    if not isinstance(part, Mapping):
        return part
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text", "")}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        out: Dict[str, Any] = {"type": "input_image", "image_url": url}
        detail = image.get("detail") if isinstance(image, Mapping) else None
        out["detail"] = detail or "auto"
        return out
    return part


def _content(content: Any) -> Any:
    if isinstance(content, list):
        return [_part(part) for part in content]
    return "" if content is None else content


def _tool(tool: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Chat Completions tool definition as a Responses one (a flat ``function`` tool)."""
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, Mapping):
        return tool  # already in this API's shape, or a hosted tool
    out: Dict[str, Any] = {"type": "function", "name": function.get("name")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = bool(function.get("strict", False))
    return out


class ResponsesDialect:
    """The OpenAI Responses API, as OpenAI, Azure, vLLM, Ollama, OpenRouter and LiteLLM serve it."""

    name = "responses"
    path = "/responses"
    provider = OPENAI

    auth_headers = staticmethod(bearer_auth)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Refuse what this API cannot take, before any request.

        Raises:
            ConfigurationError: ``input``, ``previous_response_id`` or
                ``conversation`` (promptkit sends the history), or ``n`` other than 1.
        """
        for key, why in _REJECTED_PARAMS.items():
            if key in params:
                raise ConfigurationError(f"{key!r} cannot be passed with api='responses': {why}")
        if params.get("n", 1) != 1:
            raise ConfigurationError("the Responses API has no 'n': it gives one reply per request")
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
        """The request body (see the module docstring; ``output`` as ``text.format``); usage is always reported."""
        params, extra = split_extra_body(params)
        stateless = extra.get("store", params.get("store")) is False
        body: Dict[str, Any] = {"model": model, "input": self.input(messages, base_url, stateless=stateless)}
        for key, value in params.items():
            if key == "n":
                continue
            if key in ("max_tokens", "max_completion_tokens"):
                body["max_output_tokens"] = value
            elif key == "reasoning_effort":
                reasoning = dict(body.get("reasoning") or {})
                reasoning.setdefault("effort", value)
                body["reasoning"] = reasoning
            elif key == "reasoning" and isinstance(value, Mapping):
                body["reasoning"] = {**(body.get("reasoning") or {}), **value}
            elif key == "tool_choice":
                body["tool_choice"] = self._tool_choice(value)
            else:
                body[key] = value
        body["stream"] = True
        if stateless:
            include = list(body.get("include") or [])
            if _ENCRYPTED not in include:
                include.append(_ENCRYPTED)
            body["include"] = include
        if tools:
            body["tools"] = [_tool(tool) for tool in tools]
        if output is not None:
            body["text"] = {**(body.get("text") or {}), "format": output.responses_format()}
        body.update(extra)
        return body

    @staticmethod
    def _tool_choice(value: Any) -> Any:
        if isinstance(value, Mapping) and value.get("type") == "function" and isinstance(value.get("function"), Mapping):
            return {"type": "function", "name": value["function"].get("name")}
        return value

    def input(self, messages: Sequence[Mapping[str, Any]], base_url: str, *, stateless: bool) -> List[Any]:
        """The canonical history as Responses input items."""
        without_ids = stateless or QUIRKS.refuses(base_url, "item_ids")
        items: List[Any] = []
        for message in messages:
            role = message.get("role")
            if role == "tool":
                items.append(
                    {"type": "function_call_output", "call_id": message.get("tool_call_id"), "output": message.get("content") or ""}
                )
            elif role == "assistant":
                items.extend(self._assistant(message, without_ids))
            else:
                items.append({"role": role, "content": _content(message.get("content"))})
        return items

    @staticmethod
    def _assistant(message: Mapping[str, Any], without_ids: bool) -> List[Any]:
        replay = message.get("output_items")
        if isinstance(replay, list) and replay:
            out = []
            for item in replay:
                if not isinstance(item, Mapping) or item.get("type") not in REPLAYED_ITEM_TYPES:
                    continue
                if without_ids:
                    if item.get("type") == "reasoning" and not item.get("encrypted_content"):
                        continue  # only its id would name it, and the server keeps no items
                    item = {k: v for k, v in item.items() if k != "id"}
                out.append(item)
            return out
        items: List[Any] = []
        content = message.get("content")
        if content:
            items.append({"role": "assistant", "content": _content(content)})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            items.append(
                {
                    "type": "function_call",
                    "call_id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments") or "{}",
                }
            )
        return items

    def decoder(self, limits: Limits, output: Optional["OutputFormat"] = None) -> ResponsesDecoder:
        """A fresh :class:`~promptkit._dialects.responses_decoder.ResponsesDecoder`."""
        return ResponsesDecoder(limits)

    def refused(self, error: BaseException, base_url: str) -> bool:
        """An item id the server does not know ("Items are not persisted..."): send items without ids from now on."""
        if not isinstance(error, (BadRequestError, NotFoundError)):
            return False
        body = str(error.body)
        if ("not persisted" in body or ("Item with id" in body and "not found" in body)) and QUIRKS.record(base_url, "item_ids"):
            logger.info("%s does not keep response items; sending them without ids", base_url)
            return True
        return False
