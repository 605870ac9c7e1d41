"""What every web helper shares: the SSE response headers and the JSON encoding of frames."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional

__all__ = ["SSE_CONTENT_TYPE", "SSE_HEADERS", "sse_headers", "dumps"]

SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
"""The ``Content-Type`` of every SSE response promptkit.web builds."""

SSE_HEADERS: Mapping[str, str] = {
    "Content-Type": SSE_CONTENT_TYPE,
    # A proxy or the browser must never serve one visitor's reply again.
    "Cache-Control": "no-cache",
    # nginx (and proxies that honour it) would otherwise hold tokens back until its buffer fills.
    "X-Accel-Buffering": "no",
}
"""The headers of an SSE response (``Content-Type`` included)."""


def sse_headers(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """:data:`SSE_HEADERS` without ``Content-Type`` (frameworks set it apart), plus ``extra``."""
    headers = {k: v for k, v in SSE_HEADERS.items() if k != "Content-Type"}
    headers.update(extra or {})
    return headers


def dumps(data: Mapping[str, Any]) -> str:
    """Compact JSON, as :func:`promptkit.relay.json_frame` writes it.

    ``ensure_ascii`` also escapes U+2028/U+2029, which some JavaScript line
    readers split on, and JSON escapes newlines: a ``data:`` line stays one line.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)
