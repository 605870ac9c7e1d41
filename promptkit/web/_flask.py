"""Flask responses: a stream as server-sent events, and errors raised before a stream existed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._errors import error_reply
from ._replies import Reply, resume_http_reply, stream_reply

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream
    from ._log import StreamLog

__all__ = ["flask_response", "flask_resume_response", "flask_error_response"]


def _flask() -> Any:
    try:
        import flask
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError("promptkit.web.flask_response needs Flask: pip install 'promptkit[flask]'") from exc
    return flask


def _response(flask: Any, reply: Reply) -> Any:
    return flask.Response(reply.body, status=reply.status, headers=reply.headers, content_type=reply.content_type)


def flask_response(
    stream: "Stream",
    *,
    heartbeat: Optional[float] = 15.0,
    headers: Optional[Mapping[str, str]] = None,
    log: Optional["StreamLog"] = None,
    key: Optional[str] = None,
    protocol: str = "promptkit",
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

    **Resumable** (``log=``): the stream is published to the log
    (:func:`promptkit.web.publish`) and the response follows it. The turn
    then goes on when the client leaves, and is committed as usual; each
    frame's ``id:`` is its log entry id (``0-<n>``), and the ``X-Stream-Id``
    header names the stream, which :func:`flask_resume_response` serves on
    any worker and :meth:`StreamLog.stop <promptkit.web.StreamLog.stop>`
    stops from any worker.

    Args:
        stream: the stream to relay (from ``send_stream``); nothing else may consume it.
        heartbeat: seconds of silence before a keep-alive comment; ``None`` for none.
        headers: extra response headers.
        log: publish to this :class:`~promptkit.web.StreamLog` and follow it (resumable).
        key: with ``log``: names the stream as the current one of ``key``
            (usually the conversation id), for ``log.current(key)``.
        protocol: ``"promptkit"`` (the frames above) or ``"ai-sdk"`` (the
            Vercel AI SDK's UI message stream, for ``useChat``).

    Raises:
        ImportError: Flask is not installed.
        ConfigurationError: an unknown ``protocol`` (the stream is closed first).

    With ``log``, a key the log refuses or a log that fails (its engine is
    down) is answered as :func:`flask_error_response` answers the error
    (a JSON error with its status), and the stream is closed: a turn nobody
    can follow or stop does not run on.
    """
    flask = _flask()
    return _response(flask, stream_reply(stream, heartbeat=heartbeat, headers=headers, log=log, key=key, protocol=protocol))


def flask_resume_response(
    log: "StreamLog",
    stream_id: Optional[str],
    *,
    last_event_id: Optional[str] = None,
    heartbeat: Optional[float] = 15.0,
    protocol: str = "promptkit",
    replay_finished: bool = True,
    headers: Optional[Mapping[str, str]] = None,
) -> Any:
    """A ``flask.Response`` that resumes a published stream on any worker: the events after ``last_event_id``, then the live ones.

    ``EventSource`` reconnects by itself with a ``Last-Event-ID`` header;
    without ``last_event_id`` this reads that header from the current
    request. The answer is 200 with the events (ending after the terminal
    one), 204 when there is nothing to resume (``stream_id`` is ``None``,
    the client has the terminal event, or the stream finished and
    ``replay_finished`` is false), 404 for a stream not in the log (never
    published or expired), or 400 for a malformed id::

        @app.get("/chat/streams/<stream_id>")
        def resume(stream_id):
            return flask_resume_response(log, stream_id)

    Args:
        log: the stream log the stream was published to.
        stream_id: the stream (``X-Stream-Id`` of its response, or ``log.current(key)``).
        last_event_id: the id of the last event the client has; default:
            the request's ``Last-Event-ID`` header; none: from the start.
        heartbeat: seconds of silence before a keep-alive comment; ``None`` for none.
        protocol: ``"promptkit"`` or ``"ai-sdk"``.
        replay_finished: whether a finished stream is replayed (``True``) or
            answered with 204 (the AI SDK's ``resume``, whose page already
            shows finished replies from the history, wants ``False``).
        headers: extra response headers.

    Raises:
        ImportError: Flask is not installed.
    """
    flask = _flask()
    if last_event_id is None and flask.has_request_context():
        last_event_id = flask.request.headers.get("Last-Event-ID")
    reply = resume_http_reply(
        log,
        stream_id,
        last_event_id=last_event_id,
        heartbeat=heartbeat,
        protocol=protocol,
        replay_finished=replay_finished,
        headers=headers,
    )
    return _response(flask, reply)


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
