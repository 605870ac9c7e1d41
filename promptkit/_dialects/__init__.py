"""Wire dialects: one module per protocol, behind one small interface (:mod:`.base`).

* ``chat``: OpenAI Chat Completions (:mod:`.chat`, decoder :mod:`.chat_decoder`).
* ``responses``: the OpenAI Responses API (:mod:`.responses`, decoder
  :mod:`.responses_decoder`).
* ``anthropic``: Anthropic Messages (:mod:`.anthropic`, decoder
  :mod:`.anthropic_decoder`).

**The canonical history** is OpenAI Chat Completions message dicts, which
stores, web helpers and applications see, extended where a dialect needs more:

* a user message's ``content`` may be a list of content parts (``text`` and
  ``image_url`` parts, as OpenAI defines them);
* an assistant message may carry ``reasoning_content`` (the reasoning text the
  model showed) and ``output_items`` (the Responses API output items of that
  reply: reasoning items, encrypted when the server keeps no state, and the
  message and function-call items with their ids), which the Responses
  dialect sends back verbatim and other dialects leave out), and
  ``thinking_blocks`` (Anthropic's thinking blocks with their signatures, and
  redacted thinking, which the Anthropic dialect sends back and others leave
  out).

So a conversation stored under one dialect continues under another: each
dialect reads the keys it knows and rebuilds the rest from the plain fields.
"""

from __future__ import annotations

from typing import Dict

from .._errors import ConfigurationError
from .base import ANTHROPIC, OPENAI, QUIRKS, Decoder, Dialect, Provider, ServerQuirks
from .anthropic import AnthropicDialect
from .chat import ChatDialect
from .responses import ResponsesDialect

__all__ = ["APIS", "ANTHROPIC", "OPENAI", "Decoder", "Dialect", "Provider", "ServerQuirks", "QUIRKS", "dialect_for"]

_DIALECTS: Dict[str, Dialect] = {"chat": ChatDialect(), "responses": ResponsesDialect(), "anthropic": AnthropicDialect()}
APIS = tuple(_DIALECTS)


def dialect_for(api: object) -> Dialect:
    """The dialect named ``api`` (``"chat"``, ``"responses"`` or ``"anthropic"``).

    Raises:
        ConfigurationError: an unknown name.
    """
    dialect = _DIALECTS.get(api) if isinstance(api, str) else None
    if dialect is None:
        raise ConfigurationError(f"api must be one of {', '.join(map(repr, APIS))}, got {api!r}")
    return dialect
