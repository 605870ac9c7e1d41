"""Django chat: a one-file Django project that streams promptkit replies to a browser page.

    pip install 'promptkit[django]'
    python examples/django_chat/app.py [--host 127.0.0.1] [--port 8000] [--model NAME]   # Django's threaded dev server
    python examples/django_chat/app.py runserver 8000                      # or any manage.py command
    uvicorn --app-dir examples/django_chat app:asgi_application            # ASGI (pip install uvicorn)

Settings are configured in code (no database: sessions live in signed
cookies). Each browser session has its own conversation, kept in a store:
in memory by default, or ``PROMPTKIT_STORE=sqlite:/path/chats.db`` (or a
``redis://`` URL) to share it between worker processes and restarts, with
``DJANGO_SECRET_KEY`` fixed so that session cookies stay valid.

With OPENAI_API_KEY (or OPENAI_BASE_URL) set it talks to that server, with
the model ``--model``, else ``PROMPTKIT_MODEL``, else gpt-4o-mini. With
neither, it starts promptkit's embedded mock server and says so, on the page
and in the log.

The streaming view returns ``promptkit.web.django_response(stream,
request=request, log=..., key=...)``: a synchronous body under WSGI, and
under ASGI an asynchronous one that pulls frames on a worker thread, so
Django streams instead of buffering the whole reply. Replies are resumable
(``PROMPTKIT_STREAM_LOG``, see ``chat_backend.py``): a reply goes on when the
connection drops, ``GET /chat/streams/<id>`` resumes it after
``Last-Event-ID`` on any worker, and ``POST /stop`` reaches the worker that
generates it. ``POST /api/chat`` and ``GET /api/chat/<id>/stream`` serve the
Vercel AI SDK's ``useChat`` (with ``resume: true``).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import secrets
import socketserver
import sys
import threading
from pathlib import Path
from typing import Any, Optional, Sequence

import django
from django.conf import settings

import promptkit
from promptkit.web import (
    StreamLog,
    StreamNotFoundError,
    django_error_response,
    django_response,
    django_resume_response,
    parse_chat_request,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the backend both chat examples share
from chat_backend import PAGE, ChatState, model_client, store_from_env, stream_log_from_env  # noqa: E402

log = logging.getLogger("django_chat")

if not settings.configured:
    settings.configure(
        DEBUG=os.environ.get("DJANGO_DEBUG") == "1",
        SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY") or secrets.token_hex(32),
        ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(","),
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
        ],
        SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
        SESSION_COOKIE_SAMESITE="Lax",
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402 - needs the settings above
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402


_state: Optional[ChatState] = None
_state_lock = threading.Lock()


def configure(client: promptkit.Client, store: Optional[promptkit.ConversationStore] = None, *,
              mode: str = "custom client", mock: bool = False, heartbeat: float = 15.0,
              stream_log: Optional[StreamLog] = None, resumable: bool = True) -> ChatState:
    """Set the client, store and stream log the views use (tests and :func:`main` call this).

    ``resumable=False``: no stream log; a reply is cancelled when its connection drops.
    """
    global _state
    log = (stream_log if stream_log is not None else stream_log_from_env()) if resumable else None
    with _state_lock:
        _state = ChatState(client, store if store is not None else store_from_env(), mode, mock, heartbeat, log)
        return _state


def state() -> ChatState:
    """The views' state; on first use without :func:`configure`, built from the environment (closed at exit)."""
    with _state_lock:
        current = _state
    if current is not None:
        return current
    stack = contextlib.ExitStack()
    client, mode, mock = stack.enter_context(model_client())
    atexit.register(stack.close)
    return configure(client, mode=mode, mock=mock)


def _conversation_id(request: HttpRequest) -> str:
    cid = request.session.get("conversation_id")
    if not isinstance(cid, str):
        cid = request.session["conversation_id"] = f"web_{secrets.token_hex(8)}"
    return cid


@require_GET
@ensure_csrf_cookie  # the page's script sends the cookie's token back as X-CSRFToken
def index(request: HttpRequest) -> HttpResponse:
    _conversation_id(request)  # the session cookie exists before the first streamed reply
    return HttpResponse(PAGE.read_bytes(), content_type="text/html; charset=utf-8")


@require_GET
def history(request: HttpRequest) -> JsonResponse:
    return JsonResponse(state().history(_conversation_id(request)))


@require_POST
def chat(request: HttpRequest) -> HttpResponse:
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip():
        return django_error_response(promptkit.ConfigurationError('send JSON {"message": "..."} with a non-empty message'))
    chat_state = state()
    cid = _conversation_id(request)
    try:
        stream = chat_state.conversation(cid).send_stream(message)
    except Exception as exc:  # before any stream: a JSON error with a 4xx/5xx status
        return django_error_response(exc)
    if chat_state.log is None:
        with chat_state.lock:
            chat_state.active[cid] = stream
    # request=: under ASGI this picks the async body, so Django streams instead of buffering.
    # log=: published, so the reply goes on if the connection drops, and resumes on any worker.
    return django_response(stream, heartbeat=chat_state.heartbeat, request=request, log=chat_state.log, key=cid)


@require_GET
def resume(request: HttpRequest, stream_id: str) -> HttpResponse:
    chat_state = state()
    if chat_state.log is None or not chat_state.owns_stream(_conversation_id(request), stream_id):
        return django_error_response(StreamNotFoundError("no such reply in this session"))
    # EventSource sends Last-Event-ID when it reconnects; the page's first attempt says ?after=.
    last = request.headers.get("Last-Event-ID") or request.GET.get("after")
    return django_resume_response(request, chat_state.log, stream_id, last_event_id=last, heartbeat=chat_state.heartbeat)


@require_POST
def stop(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"stopped": state().stop(_conversation_id(request))})


# The Vercel AI SDK's useChat: its request body in, its UI message stream out. useChat sends no
# CSRF token; a JSON body cannot come from a cross-site form without a CORS preflight. Its chat id
# names the conversation within this visitor's session (ChatState.ai_chat_id).
@csrf_exempt
@require_POST
def ai_chat(request: HttpRequest) -> HttpResponse:
    chat_state = state()
    if request.content_type != "application/json":
        return django_error_response(promptkit.ConfigurationError("send the AI SDK's JSON body"))
    try:
        chat = parse_chat_request(json.loads(request.body or b"null"))
        cid = chat_state.ai_chat_id(_conversation_id(request), chat.chat_id)
        stream = chat_state.conversation(cid).send_stream(chat.message, images=list(chat.images))
    except ValueError as exc:  # not JSON at all
        return django_error_response(promptkit.ConfigurationError(f"send the AI SDK's JSON body: {exc}"))
    except Exception as exc:
        return django_error_response(exc)
    return django_response(stream, heartbeat=chat_state.heartbeat, request=request, log=chat_state.log, key=cid,
                           protocol="ai-sdk")


@require_GET
def ai_resume(request: HttpRequest, chat_id: str) -> HttpResponse:
    chat_state = state()
    if chat_state.log is None:
        return HttpResponse(status=204)
    # 204 unless a reply is still being generated: useChat shows finished ones from its own history.
    sid = chat_state.log.current(chat_state.ai_chat_id(_conversation_id(request), chat_id))
    return django_resume_response(request, chat_state.log, sid, protocol="ai-sdk", heartbeat=chat_state.heartbeat,
                                  replay_finished=False)


# useChat's stop() only aborts its fetch, and a published reply outlives that: call this too.
@csrf_exempt
@require_POST
def ai_stop(request: HttpRequest, chat_id: str) -> JsonResponse:
    chat_state = state()
    return JsonResponse({"stopped": chat_state.stop(chat_state.ai_chat_id(_conversation_id(request), chat_id))})


@require_POST
def reset(request: HttpRequest) -> JsonResponse:
    request.session.pop("conversation_id", None)
    return JsonResponse({"conversation_id": _conversation_id(request)})


urlpatterns = [
    path("", index),
    path("history", history),
    path("chat", chat),
    path("chat/streams/<str:stream_id>", resume),
    path("stop", stop),
    path("api/chat", ai_chat),
    path("api/chat/<str:chat_id>/stream", ai_resume),
    path("api/chat/<str:chat_id>/stop", ai_stop),
    path("reset", reset),
]

application = get_wsgi_application()
asgi_application = get_asgi_application()


def create_app(client: Optional[promptkit.Client] = None, store: Optional[promptkit.ConversationStore] = None, *,
               mode: str = "custom client", mock: bool = False, heartbeat: float = 15.0, asgi: bool = False,
               stream_log: Optional[StreamLog] = None, resumable: bool = True) -> Any:
    """The WSGI (or, with ``asgi=True``, ASGI) application, using ``client``, ``store`` and ``stream_log`` when given."""
    if client is not None:
        configure(client, store, mode=mode, mock=mock, heartbeat=heartbeat, stream_log=stream_log, resumable=resumable)
    return asgi_application if asgi else application


def main(argv: Optional[Sequence[str]] = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and not args_list[0].startswith("-"):  # a management command, as with manage.py
        from django.core.management import execute_from_command_line

        execute_from_command_line([sys.argv[0], *args_list])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--model", help="the model (default: $PROMPTKIT_MODEL, else gpt-4o-mini)")
    args = parser.parse_args(args_list)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from django.core.servers.basehttp import WSGIRequestHandler, WSGIServer

    # What runserver does, minus the autoreloader: a threaded server, since every
    # streamed reply holds a thread for as long as it streams.
    server_class = type("ThreadedWSGIServer", (socketserver.ThreadingMixIn, WSGIServer), {"daemon_threads": True})
    with model_client(args.model) as (client, mode, mock):
        configure(client, mode=mode, mock=mock)
        httpd = server_class((args.host, args.port), WSGIRequestHandler, ipv6=False)
        httpd.set_app(application)
        print(f"promptkit Django chat on http://{args.host}:{httpd.server_address[1]}/ ({mode})", flush=True)
        try:
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
