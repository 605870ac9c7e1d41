"""Flask chat: a browser page that streams promptkit replies token by token, with a Stop button.

    pip install 'promptkit[flask]'
    python examples/flask_chat/app.py [--host 127.0.0.1] [--port 5000] [--model NAME]
    # or: flask --app examples/flask_chat/app.py run

Open the printed URL. Each browser session has its own conversation (its id
is kept in Flask's signed session cookie); the history lives in a store:
in memory by default, or set ``PROMPTKIT_STORE=sqlite:/path/chats.db`` (or
``redis://...``) to keep it across restarts and worker processes, with
``FLASK_SECRET_KEY`` fixed so that session cookies stay valid.

Replies are resumable (``PROMPTKIT_STREAM_LOG``, see ``chat_backend.py``): a
reply goes on when the connection drops, and the page resumes it at
``GET /chat/streams/<id>`` (``EventSource`` reconnects there by itself with
``Last-Event-ID``), on any worker. Under gunicorn with several workers, use
a redis URL for both::

    PROMPTKIT_STORE=redis://localhost:6379/0 FLASK_SECRET_KEY=... \
        gunicorn -w 4 -k gthread --threads 32 'app:create_app()'

The same back end speaks the Vercel AI SDK: ``POST /api/chat`` takes
``useChat``'s request and answers with its UI message stream, and
``GET /api/chat/<chat id>/stream`` resumes it (``useChat({resume: true})``).

With OPENAI_API_KEY (or OPENAI_BASE_URL) set it talks to that server, with
the model ``--model``, else ``PROMPTKIT_MODEL``, else gpt-4o-mini. With
neither, it starts promptkit's embedded mock server and says so, on the page
and in the log.

Routes: ``GET /`` the page, ``GET /history`` the conversation as JSON,
``POST /chat`` ``{"message": ...}`` the reply as server-sent events (its
``X-Stream-Id`` header names it), ``GET /chat/streams/<id>`` resumes it after
``Last-Event-ID`` (or ``?after=``), ``POST /stop`` cancels this session's
reply on whichever worker runs it, ``POST /reset`` starts a new
conversation, ``POST /api/chat``, ``GET /api/chat/<id>/stream`` and
``POST /api/chat/<id>/stop`` for the AI SDK (a chat id is the visitor's: it
names a conversation within their session), and ``/ws`` (with flask-sock installed) the same chat over a
WebSocket: ``{"action": "send_message", "message": ...}`` / ``{"action": "stop"}``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from flask import Flask, Response, jsonify, request, session

import promptkit
from promptkit.web import (
    StreamLog,
    flask_error_response,
    flask_response,
    flask_resume_response,
    parse_chat_request,
    relay_websocket,
)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the backend both chat examples share
from chat_backend import PAGE, ChatState, model_client, store_from_env, stream_log_from_env  # noqa: E402

log = logging.getLogger("flask_chat")


def _conversation_id() -> str:
    cid = session.get("conversation_id")
    if not isinstance(cid, str):
        cid = session["conversation_id"] = f"web_{secrets.token_hex(8)}"
    return cid


def create_app(
    client: Optional[promptkit.Client] = None,
    store: Optional[promptkit.ConversationStore] = None,
    *,
    mode: Optional[str] = None,
    mock: bool = False,
    heartbeat: float = 15.0,
    secret_key: Optional[str] = None,
    stream_log: Optional[StreamLog] = None,
    resumable: bool = True,
) -> Flask:
    """Build the chat app.

    Args:
        client: the promptkit client; default: from the environment (the
            embedded mock server without a key), closed at exit.
        store: the conversation store; default: :func:`store_from_env`.
        mode: the label the page shows for the model server.
        mock: whether to flag the label as the mock server.
        heartbeat: seconds between SSE keep-alive comments while the model is silent.
        secret_key: signs session cookies; default ``FLASK_SECRET_KEY``, else random per process.
        stream_log: where replies are published; default: :func:`stream_log_from_env`.
        resumable: ``False``: no stream log; a reply is cancelled when its connection drops.
    """
    if client is None:
        stack = contextlib.ExitStack()
        client, default_mode, mock = stack.enter_context(model_client())
        atexit.register(stack.close)
        mode = mode or default_mode
    log = (stream_log if stream_log is not None else stream_log_from_env()) if resumable else None
    state = ChatState(client, store if store is not None else store_from_env(), mode or "custom client", mock, heartbeat,
                      log)

    app = Flask(__name__, root_path=str(HERE))
    app.secret_key = secret_key or os.environ.get("FLASK_SECRET_KEY") or secrets.token_hex(32)
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.extensions["promptkit_chat"] = state

    @app.get("/")
    def index() -> Response:
        _conversation_id()  # the session cookie exists before the first streamed reply
        return Response(PAGE.read_bytes(), content_type="text/html; charset=utf-8")

    @app.get("/history")
    def history() -> Response:
        return jsonify(state.history(_conversation_id()))

    @app.post("/chat")
    def chat() -> Response:
        # JSON only: a cross-site <form> cannot send it without a CORS preflight, which stops CSRF.
        body = request.get_json(silent=True) if request.is_json else None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return flask_error_response(promptkit.ConfigurationError('send JSON {"message": "..."} with a non-empty message'))
        cid = _conversation_id()
        try:
            stream = state.conversation(cid).send_stream(message)
        except Exception as exc:  # before any stream: a JSON error with a 4xx/5xx status
            return flask_error_response(exc)
        if state.log is not None:  # published: the reply goes on if the connection drops
            return flask_response(stream, heartbeat=state.heartbeat, log=state.log, key=cid)
        with state.lock:
            state.active[cid] = stream
        return flask_response(stream, heartbeat=state.heartbeat)

    @app.get("/chat/streams/<stream_id>")
    def resume(stream_id: str) -> Response:
        if state.log is None or not state.owns_stream(_conversation_id(), stream_id):
            return flask_error_response(promptkit.web.StreamNotFoundError("no such reply in this session"))
        # EventSource sends Last-Event-ID when it reconnects; the page's first attempt says ?after=.
        last = request.headers.get("Last-Event-ID") or request.args.get("after")
        return flask_resume_response(state.log, stream_id, last_event_id=last, heartbeat=state.heartbeat)

    @app.post("/stop")
    def stop() -> Response:
        if not request.is_json:
            return flask_error_response(promptkit.ConfigurationError("send JSON"))
        return jsonify({"stopped": state.stop(_conversation_id())})

    # The Vercel AI SDK's useChat: its request body in, its UI message stream out. useChat's chat
    # id names the conversation within this visitor's session (ChatState.ai_chat_id).
    @app.post("/api/chat")
    def ai_chat() -> Response:
        if not request.is_json:  # as /chat: a cross-site form cannot send JSON without a preflight
            return flask_error_response(promptkit.ConfigurationError("send the AI SDK's JSON body"))
        try:
            chat = parse_chat_request(request.get_json(silent=True))
            cid = state.ai_chat_id(_conversation_id(), chat.chat_id)
            stream = state.conversation(cid).send_stream(chat.message, images=list(chat.images))
        except Exception as exc:
            return flask_error_response(exc)
        return flask_response(stream, heartbeat=state.heartbeat, log=state.log, key=cid, protocol="ai-sdk")

    @app.get("/api/chat/<chat_id>/stream")
    def ai_resume(chat_id: str) -> Response:
        if state.log is None:
            return Response(status=204)
        # 204 unless a reply is still being generated: useChat shows finished ones from its own history.
        sid = state.log.current(state.ai_chat_id(_conversation_id(), chat_id))
        return flask_resume_response(state.log, sid, protocol="ai-sdk", heartbeat=state.heartbeat,
                                     replay_finished=False)

    # useChat's stop() only aborts its fetch, and a published reply outlives that: call this too.
    @app.post("/api/chat/<chat_id>/stop")
    def ai_stop(chat_id: str) -> Response:
        return jsonify({"stopped": state.stop(state.ai_chat_id(_conversation_id(), chat_id))})

    @app.post("/reset")
    def reset() -> Response:
        if not request.is_json:
            return flask_error_response(promptkit.ConfigurationError("send JSON"))
        session.pop("conversation_id", None)
        return jsonify({"conversation_id": _conversation_id()})

    try:
        from flask_sock import Sock
    except ImportError:  # the WebSocket route is optional
        log.info("flask-sock is not installed: no /ws route")
    else:
        sock = Sock(app)

        @sock.route("/ws")
        def ws(websocket: Any) -> None:
            relay_websocket(websocket, lambda: state.conversation(_conversation_id()))

    return app


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--model", help="the model (default: $PROMPTKIT_MODEL, else gpt-4o-mini)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from werkzeug.serving import make_server

    with model_client(args.model) as (client, mode, mock):
        app = create_app(client, store_from_env(), mode=mode, mock=mock)
        # threaded: every streamed reply holds a thread for as long as it streams.
        server = make_server(args.host, args.port, app, threaded=True)
        print(f"promptkit Flask chat on http://{args.host}:{server.port}/ ({mode})", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
