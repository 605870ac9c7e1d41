"""Flask responses: a stream as server-sent events, and errors raised before a stream existed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._body import SSEBody
from ._common import SSE_CONTENT_TYPE, sse_headers
from ._errors import error_reply

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = ["flask_response", "flask_error_response"]


def _flask() -> Any:
    try:
        import flask
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError("promptkit.web.flask_response needs Flask: pip install 'promptkit[flask]'") from exc
    return flask


def flask_response(
    stream: "Stream",
    *,
    heartbeat: Optional[float] = 15.0,
    headers: Optional[Mapping[str, str]] = None,
) -> Any:
    """A ``flask.Response`` that streams ``stream`` as server-sent events.

    One ``event: <type>`` / ``id: n`` / ``data: <json of event.to_dict()>``
    frame per event, as each arrives, and a ``: keep-alive`` comment after
    ``heartbeat`` seconds of model silence. Headers: ``Content-Type:
    text/event-stream; charset=utf-8``, ``Cache-Control: no-cache``,
    ``X-Accel-Buffering: no``.

    When the client disconnects, the WSGI server closes the response (at its
    next failed write: a heartbeat or an event), which cancels the upstream
    request at once; the turn is committed as cancelled before the request
    ends. Return the response straight from the view, without
    ``stream_with_context`` (the body needs no request context)::

        @app.post("/chat")
        def chat():
            try:
                stream = conversation().send_stream(request.json["message"])
            except Exception as exc:
                return flask_error_response(exc)
            return flask_response(stream)

    Args:
        stream: the stream to relay (from ``send_stream``); nothing else may consume it.
        heartbeat: seconds of silence before a keep-alive comment; ``None`` for none.
        headers: extra response headers.

    Raises:
        ImportError: Flask is not installed.
    """
    flask = _flask()
    return flask.Response(
        SSEBody(stream, heartbeat),
        status=200,
        headers=sse_headers(headers),
        content_type=SSE_CONTENT_TYPE,
    )


def flask_error_response(error: BaseException, *, sse: bool = False) -> Any:
    """A ``flask.Response`` for an error raised before a stream existed (``send_stream`` raised).

    Args:
        error: the exception.
        sse: ``False`` (for ``fetch()`` clients): a JSON error event with the
            status of :func:`promptkit.web.error_status` (409 busy, 429 rate
            limited with ``Retry-After``, 502/504 upstream failures, ...).
            ``True`` (for ``EventSource`` clients): status 200 and an SSE body
            holding that one ``error`` event.

    Raises:
        ImportError: Flask is not installed.
    """
    flask = _flask()
    reply = error_reply(error, sse=sse)
    return flask.Response(reply.body, status=reply.status, headers=reply.headers, content_type=reply.content_type)
