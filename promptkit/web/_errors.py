"""Errors raised before a stream exists, as HTTP statuses and JSON-safe error events."""

from __future__ import annotations

import logging
from typing import Any, Dict, NamedTuple

from .._errors import (
    APIError,
    APITimeoutError,
    BudgetExceededError,
    ConfigurationError,
    ConversationBusyError,
    PromptKitError,
    RateLimitError,
    ToolError,
)
from .._types import StreamEvent, error_to_dict
from .._sse_out import dumps, sse_event
from ._common import SSE_CONTENT_TYPE, sse_headers
from ._log import StreamNotFoundError

__all__ = ["error_status", "error_event", "error_sse", "ErrorReply", "error_reply"]

logger = logging.getLogger(__name__)


def error_status(error: BaseException) -> int:
    """The HTTP status to answer a browser with for an error raised before a stream existed.

    ``send_stream()`` raises before it returns a Stream: an HTTP status from
    the model server, a connect or header timeout, a busy conversation, ...
    The browser talks to *your* server, not to the model's, so upstream
    failures become gateway errors instead of being passed through: an
    upstream 401 means your API key is wrong, not the visitor's credentials.

    Args:
        error: the exception ``send_stream()`` (or your view) raised.

    Returns:
        409 for a busy conversation or unanswered tool calls, 402 for a spent
        budget, 400 for invalid input or configuration, 404 for a published
        stream that is not in its log, 429 for an upstream
        rate limit, 504 for an upstream timeout, 502 for any other upstream
        failure, and 500 for anything else.
    """
    if isinstance(error, (ConversationBusyError, ToolError)):
        return 409
    if isinstance(error, BudgetExceededError):
        return 402
    if isinstance(error, ConfigurationError):
        return 400
    if isinstance(error, StreamNotFoundError):
        return 404
    if isinstance(error, RateLimitError):
        return 429
    if isinstance(error, APITimeoutError):
        return 504
    if isinstance(error, APIError):
        return 502
    return 500


def error_event(error: BaseException) -> Dict[str, Any]:
    """The ``error`` event dict (keys ``type``, ``content``, ``tool_call``, ``final``, ``error``) for ``error``.

    promptkit's own errors are described as ``StreamEvent.to_dict()`` does
    (they never contain the API key). Any other exception is a bug in the
    application whose message may reveal internals, so the browser gets a
    generic ``InternalServerError`` and the details go to the log.
    """
    payload = StreamEvent("error").to_dict()
    if isinstance(error, PromptKitError):
        payload["error"] = error_to_dict(error)
    else:
        logger.error("unexpected error before the stream started", exc_info=error)
        payload["error"] = {"type": "InternalServerError", "message": "internal server error"}
    return payload


def error_sse(error: BaseException) -> bytes:
    """One ``event: error`` server-sent event holding :func:`error_event` of ``error``."""
    return sse_event("error", error_event(error), event_id=1)


class ErrorReply(NamedTuple):
    """A framework-neutral HTTP answer: status, extra headers, body and content type."""

    status: int
    headers: Dict[str, str]
    body: bytes
    content_type: str


def error_reply(error: BaseException, *, sse: bool = False) -> ErrorReply:
    """The HTTP answer for an error raised before a stream existed.

    Args:
        error: the exception.
        sse: ``False``: a JSON body ``error_event(error)`` with :func:`error_status`
            (and ``Retry-After`` for an upstream rate limit), for ``fetch()``
            clients. ``True``: status 200 and an SSE body holding one ``error``
            event, for ``EventSource`` clients, which drop the body of any
            non-200 answer and would then retry forever.
    """
    if sse:
        return ErrorReply(200, sse_headers(), error_sse(error), SSE_CONTENT_TYPE)
    headers: Dict[str, str] = {}
    retry_after = getattr(error, "retry_after", None) if isinstance(error, RateLimitError) else None
    if isinstance(retry_after, (int, float)) and retry_after >= 0:
        headers["Retry-After"] = str(int(-(-retry_after // 1)))  # whole seconds, rounded up
    body = dumps(error_event(error)).encode("utf-8")
    return ErrorReply(error_status(error), headers, body, "application/json")
