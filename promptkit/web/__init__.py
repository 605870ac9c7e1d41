"""Serving streams to browsers: Flask and Django SSE responses, and a WebSocket relay.

Importable without Flask or Django installed: each helper imports its
framework when called. Install the extras with ``pip install 'promptkit[flask]'``
or ``'promptkit[django]'``.

* :func:`flask_response`, :func:`django_response` (WSGI, or ASGI with
  ``request=``) and :func:`django_async_response` stream a
  :class:`~promptkit.Stream` as server-sent events; a client disconnect
  cancels the upstream request and commits the turn as cancelled.
* :func:`flask_error_response`, :func:`django_error_response`,
  :func:`error_status` and :func:`error_event` answer an error raised before
  a stream existed (``send_stream`` raised).
* :func:`relay_websocket` relays a conversation over a WebSocket
  (``{"action": "send_message" | "stop"}`` in, ``event.to_dict()`` JSON out).
* :class:`SSEBody` and :class:`AsyncSSEBody` are the framework-neutral bodies
  (a WSGI iterable and an ASGI async iterable) the responses are built on.

Resumable streams, across workers and machines:

* :class:`RedisStreamLog` (or :class:`MemoryStreamLog` for one process) keeps
  every event of a published turn; ``flask_response(stream, log=log)`` (and
  the Django ones) publish the stream and follow the log, so the turn goes
  on when the browser leaves, and each frame's ``id:`` is its entry id.
* :func:`flask_resume_response` and :func:`django_resume_response` replay a
  stream after the client's ``Last-Event-ID`` and follow it live, on any
  worker; :meth:`StreamLog.stop` stops it from any worker.
* ``protocol="ai-sdk"`` frames the Vercel AI SDK's UI message stream
  (``useChat``); :func:`parse_chat_request` reads its request body.
"""

from ._ai_sdk import AIChatRequest, parse_chat_request
from ._body import AsyncSSEBody, SSEBody
from ._common import SSE_CONTENT_TYPE, SSE_HEADERS
from ._django import (
    django_async_response,
    django_error_response,
    django_response,
    django_resume_response,
    is_asgi_request,
)
from ._errors import ErrorReply, error_event, error_reply, error_sse, error_status
from ._flask import flask_error_response, flask_resume_response, flask_response
from ._follow import FollowBody, ProducerLostError
from ._log import LogEntry, MemoryStreamLog, StreamInfo, StreamLog, StreamNotFoundError
from ._publish import publish
from ._redis_log import RedisStreamLog
from ._replies import STREAM_ID_HEADER
from ._websocket import WebSocketRequestError, relay_websocket

__all__ = [
    "flask_response",
    "flask_resume_response",
    "flask_error_response",
    "django_response",
    "django_async_response",
    "django_resume_response",
    "django_error_response",
    "publish",
    "StreamLog",
    "MemoryStreamLog",
    "RedisStreamLog",
    "StreamInfo",
    "LogEntry",
    "StreamNotFoundError",
    "ProducerLostError",
    "FollowBody",
    "STREAM_ID_HEADER",
    "parse_chat_request",
    "AIChatRequest",
    "is_asgi_request",
    "relay_websocket",
    "WebSocketRequestError",
    "error_status",
    "error_event",
    "error_sse",
    "error_reply",
    "ErrorReply",
    "SSEBody",
    "AsyncSSEBody",
    "SSE_CONTENT_TYPE",
    "SSE_HEADERS",
]
