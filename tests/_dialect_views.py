"""What a recorded request carries, read the same way on every wire dialect (for the shared suites)."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional


def credential(headers: Mapping[str, str]) -> Optional[str]:
    """The API key a request carried (``Authorization: Bearer`` or Anthropic's ``x-api-key``), or ``None``."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    authorization = headers.get("authorization")
    if authorization is None:
        return None
    return authorization[len("Bearer ") :] if authorization.startswith("Bearer ") else authorization


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content or () if isinstance(part, Mapping))


def sent_texts(body: Mapping[str, Any]) -> List[str]:
    """The text of each user and assistant message of a request body, in order (no system prompt)."""
    messages = body.get("messages") if "messages" in body else body.get("input")
    return [_text(m.get("content")) for m in messages or () if m.get("role") in ("user", "assistant")]
