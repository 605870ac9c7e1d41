"""Django responses: a stream as server-sent events under WSGI or ASGI, and early errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from ._body import AsyncSSEBody, SSEBody
from ._errors import error_reply
from ._follow import FollowBody
from ._replies import Reply, resume_http_reply, stream_reply

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream
    from ._log import StreamLog

__all__ = [
    "django_response",
    "django_async_response",
    "django_resume_response",
    "django_error_response",
    "is_asgi_request",
]


def _http() -> Any:
    try:
        from django import http
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
        raise ImportError("promptkit.web.django_response needs Django: pip install 'promptkit[django]'") from exc
    return http


def is_asgi_request(request: Any) -> bool:
    """Whether ``request`` is being served by Django's ASGI handler."""
    # ASGIRequest carries the ASGI scope; WSGIRequest never has one.
    return isinstance(getattr(request, "scope", None), dict)


def _response(reply: Reply, asgi: bool) -> Any:
    """The Django response for ``reply``: streaming for an SSE body (async under ASGI), plain otherwise."""
    http = _http()
    body = reply.body
    if isinstance(body, (SSEBody, FollowBody)):
        # Under ASGI: an SSEBody is pulled on worker threads; a follower waits on the event loop itself.
        content: Any = body
        if asgi:
            content = AsyncSSEBody(body) if isinstance(body, SSEBody) else body.asynchronous()
        response = http.StreamingHttpResponse(content, content_type=reply.content_type, status=reply.status)
    else:
        response = http.HttpResponse(body, content_type=reply.content_type, status=reply.status)
    for key, value in reply.headers.items():
        response[key] = value
    return response


def django_response(
    stream: "Stream",
    *,
    heartbeat: Optional[float] = 15.0,
    request: Any = None,
    headers: Optional[Mapping[str, str]] = None,
    log: Optional["StreamLog"] = None,
    key: Optional[str] = None,
    protocol: str = "promptkit",
) -> Any:
    """A ``StreamingHttpResponse`` that streams ``stream`` as server-sent events.

    Frames and headers are those of :func:`promptkit.web.flask_response`.

    * **WSGI** (runserver, gunicorn, uWSGI): the body is a synchronous
      iterable. When the client disconnects, the server's next write (a
      heartbeat or an event) fails and it closes the response, which cancels
      the upstream request; the turn is committed as cancelled.
    * **ASGI** (uvicorn, daphne): pass the view's ``request``. Django only
      streams *asynchronous* iterables under ASGI (a synchronous one is read
      to the end first, so nothing would arrive until the model finished),
      so the body then pulls each frame from the synchronous one on a worker
      thread (``asgiref.sync.sync_to_async(thread_sensitive=False)``). Django
      (5.0 or later) cancels the response when the client disconnects, and
      that cancels the upstream request at once; Django 4.2 does not watch
      for disconnects under ASGI, so there the reply runs to its end.
      Without ``request``, use :func:`django_async_response` under ASGI.

    Keep ``GZipMiddleware`` (and any middleware that reads the whole body)
    away from this view: compression buffers the tokens.

    ``log=`` makes the reply resumable, as for
    :func:`promptkit.web.flask_response`; resume it with
    :func:`django_resume_response`. Under ASGI a resumable reply's body
    waits on the event loop (no thread while the model is silent).

    Args:
        stream: the stream to relay (from ``send_stream``); nothing else may consume it.
        heartbeat: seconds of silence before a keep-alive comment; ``None`` for none.
        request: the view's ``HttpRequest``; an ``ASGIRequest`` selects the async body.
        headers: extra response headers.
        log: publish to this :class:`~promptkit.web.StreamLog` and follow it (resumable).
        key: with ``log``: names the stream as the current one of ``key``.
        protocol: ``"promptkit"`` or ``"ai-sdk"`` (the Vercel AI SDK's UI message stream).

    Raises:
        ImportError: Django is not installed.
        ConfigurationError: an unknown ``protocol`` (the stream is closed first).

    With ``log``, a key the log refuses or a log that fails is answered as
    :func:`django_error_response` answers the error, and the stream is closed.
    """
    _http()  # fail before touching the stream when Django is missing
    asgi = request is not None and is_asgi_request(request)
    reply = stream_reply(stream, heartbeat=heartbeat, headers=headers, log=log, key=key, protocol=protocol)
    return _response(reply, asgi)


def django_async_response(
    stream: "Stream",
    *,
    heartbeat: Optional[float] = 15.0,
    headers: Optional[Mapping[str, str]] = None,
    log: Optional["StreamLog"] = None,
    key: Optional[str] = None,
    protocol: str = "promptkit",
) -> Any:
    """Like :func:`django_response`, always with the asynchronous body (for ASGI deployments).

    Works from sync and async views alike. Under WSGI Django would have to
    read an async body to the end before sending it, so use
    :func:`django_response` there.

    Raises:
        ImportError: Django is not installed.
    """
    _http()
    reply = stream_reply(stream, heartbeat=heartbeat, headers=headers, log=log, key=key, protocol=protocol)
    return _response(reply, True)


def django_resume_response(
    request: Any,
    log: "StreamLog",
    stream_id: Optional[str],
    *,
    last_event_id: Optional[str] = None,
    heartbeat: Optional[float] = 15.0,
    protocol: str = "promptkit",
    replay_finished: bool = True,
    headers: Optional[Mapping[str, str]] = None,
) -> Any:
    """Resume a published stream on any worker, as :func:`promptkit.web.flask_resume_response` does.

    ``last_event_id`` defaults to the request's ``Last-Event-ID`` header
    (``EventSource`` sends it when it reconnects). Under ASGI the body is
    asynchronous::

        def resume(request, stream_id):
            return django_resume_response(request, log, stream_id)

    Raises:
        ImportError: Django is not installed.
    """
    _http()
    if last_event_id is None and request is not None:
        last_event_id = request.META.get("HTTP_LAST_EVENT_ID")
    reply = resume_http_reply(
        log,
        stream_id,
        last_event_id=last_event_id,
        heartbeat=heartbeat,
        protocol=protocol,
        replay_finished=replay_finished,
        headers=headers,
    )
    return _response(reply, request is not None and is_asgi_request(request))


def django_error_response(error: BaseException, *, sse: bool = False) -> Any:
    """An ``HttpResponse`` for an error raised before a stream existed (``send_stream`` raised).

    Args:
        error: the exception.
        sse: as for :func:`promptkit.web.flask_error_response`: a JSON error
            with an error status, or (``True``) status 200 with one SSE ``error`` event.

    Raises:
        ImportError: Django is not installed.
    """
    http = _http()
    reply = error_reply(error, sse=sse)
    response = http.HttpResponse(reply.body, status=reply.status, content_type=reply.content_type)
    for key, value in reply.headers.items():
        response[key] = value
    return response
