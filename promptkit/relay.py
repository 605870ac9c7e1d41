"""Relaying events to browsers: server-sent-event frames and JSON text frames.

Every frame carries ``event.to_dict()`` as compact JSON. JSON escapes newlines,
so the ``data:`` field is always one line: content holding ``"\\n\\ndata: x"``
or ``"event: done"`` can never forge an event on the client side.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from .types import StreamEvent

__all__ = ["sse_frame", "json_frame", "error_frame", "HEARTBEAT"]

HEARTBEAT = b": keep-alive\n\n"
"""An SSE comment: keeps proxies and browsers from closing a silent stream."""


def _dumps(data: Dict[str, Any]) -> str:
    # ensure_ascii keeps U+2028/U+2029 escaped too, which some JS line readers split on.
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)


def json_frame(event: StreamEvent) -> str:
    """The JSON text of one event: ``{"type", "content", "tool_call", "final", "error"}``."""
    return _dumps(event.to_dict())


def sse_frame(event: StreamEvent, *, event_id: Optional[int] = None) -> bytes:
    """One server-sent event: ``event: <type>``, optional ``id:``, ``data: <json>``, blank line."""
    head = f"event: {event.type}\n" if event_id is None else f"event: {event.type}\nid: {event_id}\n"
    return f"{head}data: {json_frame(event)}\n\n".encode("utf-8")


def error_frame(error: BaseException) -> Dict[str, Any]:
    """The JSON-safe error event for an error raised before a stream existed (e.g. by ``send_stream``)."""
    return StreamEvent("error", error=error).to_dict()
