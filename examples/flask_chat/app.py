"""Flask chat: a browser page that streams promptkit replies token by token, with a Stop button.

    pip install 'promptkit[flask]'
    python examples/flask_chat/app.py [--host 127.0.0.1] [--port 5000] [--model NAME]
    # or: flask --app examples/flask_chat/app.py run

Open the printed URL. Each browser session has its own conversation (its id
is kept in Flask's signed session cookie); the history lives in a store:
in memory by default, or set ``PROMPTKIT_STORE=sqlite:/path/chats.db`` (or
``redis://...``) to keep it across restarts and worker processes, with
``FLASK_SECRET_KEY`` fixed so that session cookies stay valid.

With OPENAI_API_KEY (or OPENAI_BASE_URL) set it talks to that server, with
the model ``--model``, else ``PROMPTKIT_MODEL``, else gpt-4o-mini. With
neither, it starts promptkit's embedded mock server and says so, on the page
and in the log.

Routes: ``GET /`` the page, ``GET /history`` the conversation as JSON,
``POST /chat`` ``{"message": ...}`` the reply as server-sent events,
``POST /stop`` cancels this session's reply, ``POST /reset`` starts a new
conversation, and ``/ws`` (with flask-sock installed) the same chat over a
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
from promptkit.web import flask_error_response, flask_response, relay_websocket

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the backend both chat examples share
from chat_backend import PAGE, ChatState, model_client, store_from_env  # noqa: E402

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
    """
    if client is None:
        stack = contextlib.ExitStack()
        client, default_mode, mock = stack.enter_context(model_client())
        atexit.register(stack.close)
        mode = mode or default_mode
    state = ChatState(client, store if store is not None else store_from_env(), mode or "custom client", mock, heartbeat)

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
        with state.lock:
            state.active[cid] = stream
        return flask_response(stream, heartbeat=state.heartbeat)

    @app.post("/stop")
    def stop() -> Response:
        if not request.is_json:
            return flask_error_response(promptkit.ConfigurationError("send JSON"))
        with state.lock:
            stream = state.active.get(_conversation_id())
        running = stream is not None and not stream.done
        if running:
            stream.cancel()
        return jsonify({"stopped": running})

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
