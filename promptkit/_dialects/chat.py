"""The Chat Completions dialect (``POST {base_url}/chat/completions``), the default.

The canonical history is already this protocol's ``messages``. What a request
adds to it:

* ``stream_options: {"include_usage": true}``, unless the server refused it
  once (a 400/422 naming ``stream_options``).
* ``reasoning_content`` on the assistant messages of the current tool loop
  (those after the last user message that carry tool calls), because DeepSeek's
  thinking mode rejects a tool-loop request without it. Other assistant
  messages go without it (DeepSeek asks for that too), and a server that
  refuses the field gets none from then on.
* Keys other dialects keep in the history (``output_items``,
  ``thinking_blocks``) are left out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence

from .._errors import BadRequestError
from .._limits import Limits
from .base import OPENAI, QUIRKS, bearer_auth, split_extra_body
from .chat_decoder import Accumulator

if TYPE_CHECKING:  # pragma: no cover
    from .._structured import OutputFormat

__all__ = ["ChatDialect", "CHAT_MESSAGE_KEYS"]

logger = logging.getLogger(__name__)

# The keys of a canonical message that Chat Completions servers know.
CHAT_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "refusal"})


def _last_user(messages: Sequence[Mapping[str, Any]]) -> int:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return -1


class ChatDialect:
    """OpenAI Chat Completions, as OpenAI, Azure, vLLM, Ollama, DeepSeek, LiteLLM and most servers speak it."""

    name = "chat"
    path = "/chat/completions"
    provider = OPENAI

    auth_headers = staticmethod(bearer_auth)

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Every parameter goes through as given (the server judges it); ``extra_body`` must be a dict."""
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
        """The request body (see the module docstring); ``output`` as ``response_format``."""
        params, extra = split_extra_body(params)
        body: Dict[str, Any] = {"model": model, "messages": self.messages(messages, base_url)}
        body.update(params)
        body["stream"] = True
        if include_usage and not QUIRKS.refuses(base_url, "stream_options"):
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = tools
        if output is not None:
            body["response_format"] = output.chat_format()
        body.update(extra)
        return body

    def messages(self, messages: Sequence[Mapping[str, Any]], base_url: str) -> List[Mapping[str, Any]]:
        """The canonical history as Chat Completions messages."""
        loop_start = _last_user(messages) + 1
        send_reasoning = not QUIRKS.refuses(base_url, "reasoning_content")
        out: List[Mapping[str, Any]] = []
        for i, message in enumerate(messages):
            if message.keys() <= CHAT_MESSAGE_KEYS:
                out.append(message)  # the common case: as it is, no copy
                continue
            clean = {k: v for k, v in message.items() if k in CHAT_MESSAGE_KEYS}
            reasoning = message.get("reasoning_content")
            if send_reasoning and reasoning and i >= loop_start and message.get("tool_calls"):
                clean["reasoning_content"] = reasoning
            out.append(clean)
        return out

    def decoder(self, limits: Limits, output: Optional["OutputFormat"] = None) -> Accumulator:
        """A fresh :class:`~promptkit._dialects.chat_decoder.Accumulator`."""
        return Accumulator(limits)

    def refused(self, error: BaseException, base_url: str) -> bool:
        """A 400/422 naming ``stream_options`` or ``reasoning_content``: leave it out from now on."""
        if not isinstance(error, BadRequestError):
            return False
        body = str(error.body)
        asked_for = any(word in body.lower() for word in ("missing", "required", "must include", "must be provided"))
        for feature in ("stream_options", "reasoning_content"):
            if feature == "reasoning_content" and asked_for:
                continue  # DeepSeek asking for it (a history without it), not refusing it
            if feature in body and QUIRKS.record(base_url, feature):
                logger.info("%s rejected %s; retrying without it", base_url, feature)
                return True
        return False

