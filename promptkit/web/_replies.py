"""The HTTP answers of the web helpers, framework-neutral: a live stream, a published one, a resume.

:mod:`promptkit.web._flask` and :mod:`promptkit.web._django` turn a
:class:`Reply` into their framework's response object; everything else
(which body, which status, which headers) is decided here, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Mapping, NamedTuple, Optional, Union

from .._errors import PromptKitError
from ._body import SSEBody
from ._common import SSE_CONTENT_TYPE, sse_headers
from ._errors import error_reply
from ._follow import FollowBody, check_protocol, resume_reply
from ._log import StreamLog
from ._publish import publish

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = ["Reply", "stream_reply", "resume_http_reply", "STREAM_ID_HEADER"]

STREAM_ID_HEADER = "X-Stream-Id"
"""The response header that names a published stream (resume it at your resume route with this id)."""


class Reply(NamedTuple):
    """An HTTP answer: status, headers, body (bytes or an SSE body) and content type."""

    status: int
    headers: Dict[str, str]
    body: Union[bytes, SSEBody, FollowBody]
    content_type: str


def _headers(protocol: str, extra: Optional[Mapping[str, str]], **more: str) -> Dict[str, str]:
    headers = sse_headers()
    if protocol == "ai-sdk":
        from ._ai_sdk import AI_SDK_HEADERS

        headers.update({k: v for k, v in AI_SDK_HEADERS.items() if k.lower() != "content-type"})
    headers.update(more)
    headers.update(extra or {})
    return headers


def _error(error: BaseException) -> Reply:
    reply = error_reply(error)
    return Reply(reply.status, reply.headers, reply.body, reply.content_type)


def stream_reply(
    stream: "Stream",
    *,
    heartbeat: Optional[float],
    headers: Optional[Mapping[str, str]],
    log: Optional[StreamLog] = None,
    key: Optional[str] = None,
    protocol: str = "promptkit",
) -> Reply:
    """The answer that streams ``stream``: live (it is cancelled when the client leaves), or published to ``log``.

    With ``log`` the stream is published (:func:`~promptkit.web.publish`) and
    the body follows the log from its first event: the turn goes on when the
    client leaves, each frame's ``id:`` is its entry id, and the
    ``X-Stream-Id`` header names the stream for a resume.
    """
    try:
        check_protocol(protocol)
    except PromptKitError:
        stream.close()
        raise
    if log is None:
        return Reply(200, _headers(protocol, headers), SSEBody(stream, heartbeat, protocol), SSE_CONTENT_TYPE)
    try:
        sid = publish(stream, log, key=key)  # cancels and closes the stream when it raises
    except PromptKitError as error:
        return _error(error)
    body = FollowBody(log, sid, heartbeat=heartbeat, protocol=protocol)
    return Reply(200, _headers(protocol, headers, **{STREAM_ID_HEADER: sid}), body, SSE_CONTENT_TYPE)


def resume_http_reply(
    log: StreamLog,
    stream_id: Optional[str],
    *,
    last_event_id: Optional[str],
    heartbeat: Optional[float],
    protocol: str,
    replay_finished: bool,
    headers: Optional[Mapping[str, str]],
) -> Reply:
    """The answer to a resume request: 200 and the events after ``last_event_id``, 204, or a JSON error.

    Errors are JSON with their status (:func:`~promptkit.web.error_status`):
    400 for a malformed id, 404 for a stream that is not in the log.
    """
    try:
        status, body = resume_reply(
            log,
            stream_id,
            last_event_id=last_event_id,
            heartbeat=heartbeat,
            protocol=protocol,
            replay_finished=replay_finished,
        )
    except PromptKitError as error:
        return _error(error)
    if body is None:
        return Reply(status, dict(headers or {}), b"", "text/plain")
    extra: Dict[str, Any] = {STREAM_ID_HEADER: body.stream_id}
    return Reply(status, _headers(protocol, headers, **extra), body, SSE_CONTENT_TYPE)
