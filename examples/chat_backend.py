"""What the two chat examples share: the model client, the store, the stream log, and the chat state.

Framework-neutral, so ``flask_chat/app.py`` and ``django_chat/app.py`` differ
only in their views. Both serve the page next to this file, ``chat_page.html``.

Replies are resumable: each is published to a stream log
(``PROMPTKIT_STREAM_LOG``: ``memory``, the default, for one process, or a
redis URL for many workers and machines; with a redis ``PROMPTKIT_STORE``
and no ``PROMPTKIT_STREAM_LOG`` the same Redis serves both). A reply goes on
when the browser's connection drops, the page picks it up again on any
worker, and Stop reaches the worker that generates it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import promptkit
from promptkit.stores import open_store
from promptkit.testing import MockServer
from promptkit.web import MemoryStreamLog, RedisStreamLog, StreamLog, StreamNotFoundError

PAGE = Path(__file__).resolve().parent / "chat_page.html"
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."
MOCK_MODE = "mock server (no OPENAI_API_KEY or OPENAI_BASE_URL): replies are scripted stories"

log = logging.getLogger("chat_backend")


def store_from_env(spec: Optional[str] = None) -> promptkit.ConversationStore:
    """The conversation store named by ``PROMPTKIT_STORE``: ``memory`` (default), ``sqlite:PATH`` or a redis URL."""
    spec = os.environ.get("PROMPTKIT_STORE", "") if spec is None else spec
    try:
        return open_store(spec or "memory")
    except promptkit.ConfigurationError as error:
        raise SystemExit(f"PROMPTKIT_STORE: {error}") from None


def stream_log_from_env(spec: Optional[str] = None) -> StreamLog:
    """The stream log named by ``PROMPTKIT_STREAM_LOG`` (``memory`` or a redis URL), else the store's Redis, else memory."""
    if spec is None:
        spec = os.environ.get("PROMPTKIT_STREAM_LOG", "")
        store = os.environ.get("PROMPTKIT_STORE", "")
        if not spec and store.startswith(("redis://", "rediss://", "unix://")):
            spec = store
    if not spec or spec == "memory":
        return MemoryStreamLog()
    try:
        return RedisStreamLog(spec)
    except promptkit.ConfigurationError as error:
        raise SystemExit(f"PROMPTKIT_STREAM_LOG: {error}") from None


@contextlib.contextmanager
def model_client(model: Optional[str] = None) -> Iterator[Tuple[promptkit.Client, str, bool]]:
    """``(client, mode label, is_mock)``: the configured server, else the embedded mock server.

    The model is ``model``, else ``PROMPTKIT_MODEL``, else gpt-4o-mini (promptkit.Client's default).
    """
    if os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL"):
        with promptkit.Client(model=model) as client:
            yield client, f"model server: {client.base_url}, model {client.model}", False
        return
    log.warning("No OPENAI_API_KEY or OPENAI_BASE_URL: using promptkit's embedded mock server "
                "(promptkit.testing.MockServer).")
    # default_delay: the mock's stories stream word by word, slowly enough to watch (and to stop).
    with MockServer(default_delay=0.05) as server, \
            promptkit.Client(base_url=server.url, api_key="mock", model=model) as client:
        yield client, MOCK_MODE, True


class ChatState:
    """What the views share: the client, the store, the stream log, and (without a log) the replies in flight.

    ``log`` is ``None`` when replies are not resumable: then a reply lives and
    dies with its connection, and /stop reaches only replies of this process.
    """

    def __init__(self, client: promptkit.Client, store: promptkit.ConversationStore, mode: str, mock: bool,
                 heartbeat: float, log: Optional[StreamLog] = None) -> None:
        self.client, self.store, self.mode, self.mock, self.heartbeat = client, store, mode, mock, heartbeat
        self.log = log
        # Weak: an entry goes away with its response.
        self.active: "weakref.WeakValueDictionary[str, promptkit.Stream]" = weakref.WeakValueDictionary()
        self.lock = threading.Lock()

    def running_stream(self, conversation_id: str) -> Optional[str]:
        """The id of this conversation's reply while it is still being generated (on any worker), else ``None``."""
        if self.log is None:
            return None
        sid = self.log.current(conversation_id)
        try:
            return sid if sid is not None and not self.log.info(sid).finished else None
        except StreamNotFoundError:
            return None

    def owns_stream(self, conversation_id: str, stream_id: str) -> bool:
        """Whether ``stream_id`` is a reply of this conversation (a visitor may only resume their own)."""
        try:
            return self.log is not None and self.log.info(stream_id).key == conversation_id
        except (StreamNotFoundError, promptkit.ConfigurationError):
            return False

    @staticmethod
    def ai_chat_id(session_id: str, chat_id: str) -> str:
        """The conversation of an AI SDK chat: the visitor's session and useChat's chat id.

        The chat id comes from the browser, so it is tied to the session that
        started it: another visitor who learns it reaches nothing.
        """
        return f"{session_id}:ai:{chat_id}"

    def stop(self, conversation_id: str) -> bool:
        """Stop this conversation's reply, wherever it runs; whether one was running."""
        if self.log is not None:
            sid = self.log.current(conversation_id)
            return sid is not None and self.log.stop(sid)
        with self.lock:
            stream = self.active.get(conversation_id)
        running = stream is not None and not stream.done
        if running:
            stream.cancel()
        return running

    def conversation(self, conversation_id: str) -> promptkit.Conversation:
        """This session's conversation, resumed from the store (any worker process may have written it)."""
        return self.client.conversation(system_prompt=SYSTEM_PROMPT, conversation_id=conversation_id, store=self.store)

    def history(self, conversation_id: str) -> Dict[str, Any]:
        """The page's view of a conversation: its turns with their messages and cost lines, and totals."""
        # First: a reply that is over by then is committed (the terminal event is logged after the
        # commit), so it is in the history read next; one that ends in between may be in both, and
        # the page draws itself again from the history when the resumed reply ends.
        running = self.running_stream(conversation_id)
        stored = self.store.load(conversation_id)
        turns: List[Dict[str, Any]] = []
        for turn in stored.turns if stored is not None else ():
            usage = turn.usage_value()
            line = promptkit.Response(usage=usage, cost=turn.cost, latency_ms=turn.latency_ms).summary()
            turns.append({"messages": turn.messages, "finish_reason": turn.finish_reason, "summary": line})
        return {
            "conversation_id": conversation_id,
            "mode": self.mode,
            "mock": self.mock,
            "turns": turns,
            "total_cost": stored.total_cost() if stored is not None else 0.0,
            "total_tokens": stored.usage_totals().total_tokens if stored is not None else 0,
            # A reply still being generated (the page was reloaded mid-reply): the page resumes it.
            "running_stream": running,
        }
