"""What every web helper shares: the SSE response headers (the frames themselves: ``promptkit._sse_out``)."""

from __future__ import annotations

from typing import Dict, Mapping, Optional

__all__ = ["SSE_CONTENT_TYPE", "SSE_HEADERS", "sse_headers"]

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
