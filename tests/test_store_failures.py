"""Stores fail loudly and safely, against real backends (issue 12, point 5 and the store half of 6c).

A real redis-server (killed with SIGKILL, frozen with SIGSTOP) and real SQLite
files (locked by another connection, garbage bytes, opened read-only). Every
failure must be a ``promptkit.StoreError`` whose message names the store and
the operation, raised by ``conversation()``, ``send()``, ``send_stream()`` or
delivered as the stream's one terminal error when the commit fails; the
conversation must be usable at once afterwards.

"Mid-turn" means after ``send_stream`` returned and before the commit. The
tests hold the turn there with an event handshake: :class:`HeldServer`, a raw
socket server, sends the headers and the first delta, then waits for the
test's ``threading.Event``; the test breaks the store, sets the event, and
reads on (the commit follows the last delta).

Read-only SQLite: the tests run as root, and root writes through ``chmod``.
They open the file through a ``file:...?mode=ro`` URI instead, where SQLite
itself refuses every write (SQLITE_OPEN_READONLY), whoever the user is.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import promptkit
from promptkit import StoreError
from promptkit.stores import MemoryStore, RedisStore, SQLiteStore, StoreConflictError, StoredTurn, StoreFormatError
from promptkit.stores import _binding as binding_module
from promptkit.testing import MockReply, MockServer
from tests._processes import read_request

try:
    from tests.redis_server import RedisServer, running_redis
except ImportError:  # run from inside tests/
    from redis_server import RedisServer, running_redis  # type: ignore[import-not-found, no-redef]

TIMEOUT = 0.3  # the stores' own bound in these tests, seconds
JOIN = 30.0  # a guard against a hang, never a speed claim
REPLY = "One two three four."  # what a held reply says: see the module docstring
SYSTEM = "You are terse."


# -- fixtures and helpers -----------------------------------------------------------


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10), max_retries=0) as c:
        yield c


@pytest.fixture
def redis_srv(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: the tests kill and freeze it."""
    with running_redis(tmp_path) as srv:
        yield srv


def user(text: str) -> Dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> Dict[str, Any]:
    return {"role": "assistant", "content": text}


def bounded(action: Callable[[], Any]) -> Tuple[Any, Optional[BaseException]]:
    """Run ``action`` on a helper thread and join it: a store that hangs fails the test instead of the run."""
    box: Dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = action()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, name="test-bounded")
    thread.start()
    thread.join(JOIN)
    assert not thread.is_alive(), "a store operation did not end within promptkit's bound"
    return box.get("value"), box.get("error")


def store_error(action: Callable[[], Any]) -> StoreError:
    value, error = bounded(action)
    assert isinstance(error, StoreError), f"expected a StoreError, got {error!r} (returned {value!r})"
    assert not isinstance(error, promptkit.ConversationBusyError) or isinstance(error, StoreConflictError)
    return error


def assert_clean(error: BaseException, *secrets: str) -> None:
    """No driver exception rides along, and no credential is in the message."""
    assert error.__cause__ is None
    assert error.__context__ is None or isinstance(error.__context__, promptkit.PromptKitError)
    for secret in secrets:
        assert secret not in str(error) and secret not in repr(error)


class HeldServer:
    """A minimal OpenAI-compatible streaming server on raw sockets that can hold a reply until told.

    Each request takes the next queued reply (default ``"Ok."``). A held reply
    sends the headers and its first delta, then waits for its Event.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self.requests: List[Dict[str, Any]] = []
        self._replies: "queue.Queue[Tuple[str, Optional[threading.Event]]]" = queue.Queue()
        self._closing = threading.Event()
        self._threads: List[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, name="test-held-accept")
        self._accepting.start()

    def enqueue(self, text: str) -> None:
        self._replies.put((text, None))

    def hold(self, text: str = REPLY) -> threading.Event:
        """Queue a reply that stops after its first delta until the returned Event is set."""
        release = threading.Event()
        self._replies.put((text, release))
        return release

    def close(self) -> None:
        self._closing.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self._listener.close()
        for thread in [self._accepting, *self._threads]:
            thread.join(JOIN)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            thread = threading.Thread(target=self._serve, args=(conn,), name="test-held-conn")
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = read_request(conn)
            if request is None:
                return
            self.requests.append(json.loads(request[1]))
            try:
                text, release = self._replies.get_nowait()
            except queue.Empty:
                text, release = "Ok.", None
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
            words = re.findall(r"\s*\S+", text)
            conn.sendall(_sse({"content": words[0]}))
            if release is not None:
                while not release.wait(0.05) and not self._closing.is_set():
                    continue  # poll the close flag too: a failed test must not strand this thread
            for word in words[1:]:
                conn.sendall(_sse({"content": word}))
            conn.sendall(_sse({}, finish="stop"))
            usage = {"prompt_tokens": 40, "completion_tokens": 4, "total_tokens": 44}
            conn.sendall(b"data: " + json.dumps({"id": "c", "model": "m", "choices": [], "usage": usage}).encode() + b"\n\n")
            conn.sendall(b"data: [DONE]\n\n")


def _sse(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


@pytest.fixture
def held() -> Iterator[HeldServer]:
    srv = HeldServer()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def held_client(held: HeldServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=held.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10), max_retries=0) as c:
        yield c


class HeldTurn:
    """A turn stopped between ``send_stream`` returning and its commit (see the module docstring)."""

    def __init__(self, conv: promptkit.Conversation, server: HeldServer, message: str) -> None:
        self._release = server.hold()
        self.stream = conv.send_stream(message)
        self._events = iter(self.stream)
        first = next(self._events)
        assert first.type == "content"
        self.events = [first]

    def finish(self) -> List[promptkit.StreamEvent]:
        """Let the reply go on and read every remaining event (bounded); exactly one terminal one."""
        self._release.set()
        _, error = bounded(lambda: self.events.extend(self._events))
        assert error is None, error
        kinds = [e.type for e in self.events]
        assert kinds.count("done") + kinds.count("error") == 1 and kinds[-1] in ("done", "error"), kinds
        return self.events

    def seen(self) -> str:
        return "".join(e.content or "" for e in self.events if e.type == "content")


def commit_failed(held: HeldTurn) -> StoreError:
    """Finish a held turn whose commit fails: the terminal error carries what the user saw."""
    terminal = held.finish()[-1]
    assert terminal.type == "error"
    error = terminal.error
    assert isinstance(error, StoreError) and error.operation == "append"
    assert error.partial is not None and error.partial.content == held.seen() == REPLY
    with pytest.raises(StoreError) as raised:
        held.stream.result()  # result() raises the same error
    assert raised.value is error
    return error


def redis_name(srv: RedisServer) -> str:
    return f"RedisStore(redis://127.0.0.1:{srv.port}/0)"


# -- Redis: killed ---------------------------------------------------------------------


def test_redis_killed_before_a_turn(redis_srv: RedisServer, server: MockServer, client: promptkit.Client) -> None:
    import redis

    admin = redis.Redis(host="127.0.0.1", port=redis_srv.port)
    admin.config_set("requirepass", "s3cret-pw")  # the URL below carries a password: it must never show
    admin.close()
    store = RedisStore(f"redis://:s3cret-pw@127.0.0.1:{redis_srv.port}/0", timeout=TIMEOUT)
    assert "s3cret-pw" not in repr(store) + str(store)
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="killed", store=store)
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    history = conv.messages

    redis_srv.kill()
    name = redis_name(redis_srv)
    error = store_error(lambda: client.conversation(conversation_id="killed", store=store))
    assert str(error) == f"{name}: load failed: connection refused" and error.store == name
    for attempt in range(2):  # the conversation is free again at once: the same error, never "busy"
        error = store_error(lambda: conv.send("while down"))
        assert str(error) == f"{name}: acquire failed: connection refused"
        assert_clean(error, "s3cret-pw")
    error = store_error(lambda: conv.send_stream("while down"))
    assert str(error) == f"{name}: acquire failed: connection refused"
    assert len(server.requests) == 1 and conv.messages == history

    redis_srv.restart()  # empty, and without the password
    redis.Redis(host="127.0.0.1", port=redis_srv.port).config_set("requirepass", "s3cret-pw")
    server.enqueue(MockReply.text("Back."))
    conv.send("again")  # the stored conversation is gone with the server's data: it starts afresh
    stored = store.load("killed")
    assert stored is not None and stored.messages() == conv.messages
    assert conv.messages == [{"role": "system", "content": SYSTEM}, user("again"), assistant("Back.")]
    store.close()


def test_redis_killed_mid_turn(redis_srv: RedisServer, held: HeldServer, held_client: promptkit.Client) -> None:
    store = RedisStore(redis_srv.url, timeout=TIMEOUT)
    conv = held_client.conversation(system_prompt=SYSTEM, conversation_id="mid", store=store)
    held.enqueue("Hi.")
    first = conv.send("hello")
    history = conv.messages

    turn = HeldTurn(conv, held, "tell me more")
    redis_srv.kill()
    error = commit_failed(turn)
    name = redis_name(redis_srv)
    assert re.fullmatch(re.escape(f"{name}: append failed: connection refused") + r" \(after \d+ attempts\)", str(error))
    assert error.attempts > 1  # tried again within the bound
    assert_clean(error)
    assert conv.messages == history  # nothing committed...
    assert conv.usage.total_tokens == first.usage.total_tokens + error.partial.usage.total_tokens == 44 + 44

    error = store_error(lambda: conv.send_stream("next"))  # ...and the conversation is free at once
    assert str(error) == f"{name}: acquire failed: connection refused"
    redis_srv.restart()
    held.enqueue("Fine.")
    conv.send("next")
    stored = store.load("mid")
    assert stored is not None and stored.messages() == conv.messages
    store.close()


# -- Redis: frozen -----------------------------------------------------------------------


def test_redis_frozen_with_a_client_that_has_no_socket_timeout(
    redis_srv: RedisServer, server: MockServer, client: promptkit.Client
) -> None:
    import redis

    theirs = redis.Redis(host="127.0.0.1", port=redis_srv.port, socket_timeout=None, socket_connect_timeout=None)
    store = RedisStore(theirs, timeout=TIMEOUT)
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="frozen", store=store)
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    name = redis_name(redis_srv)

    os.kill(redis_srv.pid, signal.SIGSTOP)
    try:
        error = store_error(lambda: client.conversation(conversation_id="frozen", store=store))
        assert str(error) == f"{name}: load failed: no answer within 0.3s (timed out)"
        for attempt in range(2):
            error = store_error(lambda: conv.send("while frozen"))
            assert str(error) == f"{name}: acquire failed: no answer within 0.3s (timed out)"
            assert_clean(error)
    finally:
        os.kill(redis_srv.pid, signal.SIGCONT)
    assert len(server.requests) == 1

    # The frozen server ran the queued lock request when it woke: it was this conversation's, so it goes on.
    server.enqueue(MockReply.text("Awake."))
    conv.send("after")
    stored = store.load("frozen")
    assert stored is not None and stored.messages() == conv.messages
    assert conv.messages[-2:] == [user("after"), assistant("Awake.")]
    assert theirs.connection_pool.connection_kwargs["socket_timeout"] is None  # their client is untouched
    store.close()
    assert theirs.ping()
    theirs.close()


def test_redis_frozen_mid_turn(redis_srv: RedisServer, held: HeldServer, held_client: promptkit.Client) -> None:
    store = RedisStore(redis_srv.url, timeout=TIMEOUT)
    conv = held_client.conversation(system_prompt=SYSTEM, conversation_id="frozen-mid", store=store)
    held.enqueue("Hi.")
    conv.send("hello")

    turn = HeldTurn(conv, held, "more")
    os.kill(redis_srv.pid, signal.SIGSTOP)
    try:
        error = commit_failed(turn)
    finally:
        os.kill(redis_srv.pid, signal.SIGCONT)
    pattern = re.escape(f"{redis_name(redis_srv)}: append failed: no answer within 0.3s (timed out)")
    assert re.fullmatch(pattern + r"( \(after \d+ attempts\))?", str(error))

    # Requests the frozen server got may have run when it woke: the next turn takes the store's word for it.
    held.enqueue("Still here.")
    conv.send("next")
    stored = store.load("frozen-mid")
    assert stored is not None and stored.messages() == conv.messages
    assert [m for m in conv.messages if m == user("more")] in ([], [user("more")])  # never twice
    assert conv.messages[-2:] == [user("next"), assistant("Still here.")]
    store.close()


# -- SQLite: locked, corrupt, read-only ---------------------------------------------------


def lock_exclusively(path: Path) -> sqlite3.Connection:
    """Another connection holding the database's write lock in an open EXCLUSIVE transaction."""
    locker = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    locker.execute("BEGIN EXCLUSIVE")
    return locker


def test_sqlite_locked_by_another_connection(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    path = tmp_path / "chats.db"
    store = SQLiteStore(path, timeout=TIMEOUT)
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="locked", store=store)
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    history = conv.messages

    locker = lock_exclusively(path)
    try:
        assert client.conversation(conversation_id="locked", store=store).messages == history  # WAL: reads go on
        for attempt in range(2):
            error = store_error(lambda: conv.send("while locked"))
            assert str(error) == f"SQLiteStore({path}): acquire failed: database is locked (waited 0.3s)"
            assert_clean(error)
    finally:
        locker.rollback()
        locker.close()
    server.enqueue(MockReply.text("Unlocked."))
    conv.send("now")
    assert conv.messages == history + [user("now"), assistant("Unlocked.")]
    assert len(server.requests) == 2
    store.close()


def test_sqlite_locked_mid_turn_keeps_failing(tmp_path: Path, held: HeldServer, held_client: promptkit.Client) -> None:
    path = tmp_path / "chats.db"
    store = SQLiteStore(path, timeout=TIMEOUT)
    conv = held_client.conversation(system_prompt=SYSTEM, conversation_id="held", store=store)
    held.enqueue("Hi.")
    conv.send("hello")
    history, paid = conv.messages, conv.usage.total_tokens

    turn = HeldTurn(conv, held, "more")
    locker = lock_exclusively(path)
    try:
        error = commit_failed(turn)
    finally:
        locker.rollback()
        locker.close()
    assert re.fullmatch(
        re.escape(f"SQLiteStore({path}): append failed: database is locked (waited 0.3s)") + r" \(after \d+ attempts\)",
        str(error),
    )
    assert conv.messages == history and conv.usage.total_tokens == paid + 44
    # The lock could not be released either (the file was locked): the conversation takes it again at once.
    held.enqueue("Done.")
    conv.send("again")
    stored = store.load("held")
    assert stored is not None and stored.messages() == conv.messages == history + [user("again"), assistant("Done.")]
    store.close()


def test_a_commit_that_fails_once_is_tried_again(
    tmp_path: Path, held: HeldServer, held_client: promptkit.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A generous budget: the unlocking thread below need not race the default 1.5 s.
    monkeypatch.setattr(binding_module, "COMMIT_RETRY_BUDGET", JOIN)
    path = tmp_path / "chats.db"
    store = SQLiteStore(path, timeout=TIMEOUT)
    conv = held_client.conversation(system_prompt=SYSTEM, conversation_id="retry", store=store)
    turn = HeldTurn(conv, held, "hello")
    locker = lock_exclusively(path)

    failed_once = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "trying again" in record.getMessage():
                failed_once.set()

    def unlock() -> None:
        failed_once.wait(JOIN)
        locker.rollback()

    watch = Watch()
    logging.getLogger("promptkit.stores._binding").addHandler(watch)
    helper = threading.Thread(target=unlock, name="test-unlock")
    helper.start()
    try:
        terminal = turn.finish()[-1]
    finally:
        logging.getLogger("promptkit.stores._binding").removeHandler(watch)
        failed_once.set()
        helper.join(JOIN)
        locker.close()
    assert terminal.type == "done" and terminal.final.content == REPLY
    stored = store.load("retry")
    assert stored is not None and len(stored.turns) == 1
    assert stored.messages() == conv.messages == [{"role": "system", "content": SYSTEM}, user("hello"), assistant(REPLY)]
    store.close()


def test_a_conflicting_commit_is_not_retried(held: HeldServer, held_client: promptkit.Client, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chats.db", timeout=TIMEOUT)
    conv = held_client.conversation(conversation_id="race", store=store)
    turn = HeldTurn(conv, held, "mine")
    other = StoredTurn(messages=[user("theirs"), assistant("Theirs.")])
    store.append_turn("race", other, index=0, meta=promptkit.stores.ConversationMeta())  # another worker won
    error = commit_failed(turn)
    assert isinstance(error, StoreConflictError) and error.attempts == 1
    assert conv.messages == [] and conv.usage.total_tokens == 44
    held.enqueue("Ok.")
    conv.send("next")  # free at once, and caught up with the other worker's turn
    assert conv.messages == [user("theirs"), assistant("Theirs."), user("next"), assistant("Ok.")]
    store.close()


def test_sqlite_garbage_file_and_corrupt_rows(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    _, error = bounded(lambda: SQLiteStore(garbage, timeout=TIMEOUT))
    assert isinstance(error, StoreError) and str(error) == f"SQLiteStore({garbage}): open failed: file is not a database"
    assert_clean(error)

    _, error = bounded(lambda: SQLiteStore(tmp_path, timeout=TIMEOUT))  # a directory, not a file
    assert isinstance(error, StoreError)
    assert str(error) == f"SQLiteStore({tmp_path}): open failed: unable to open database file"

    path = tmp_path / "chats.db"
    store = SQLiteStore(path, timeout=TIMEOUT)
    conv = client.conversation(conversation_id="rotten", store=store)
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    raw = sqlite3.connect(str(path))
    raw.execute("UPDATE promptkit_turns SET data = 'not json' WHERE conversation_id = 'rotten'")
    raw.commit()
    raw.close()
    error = store_error(lambda: client.conversation(conversation_id="rotten", store=store))
    assert isinstance(error, StoreFormatError)
    assert str(error).startswith(f"SQLiteStore({path}): load failed: stored turn is not valid JSON")
    for attempt in range(2):  # the turn's catch-up read fails; the conversation stays free
        error = store_error(lambda: conv.send("more"))
        assert isinstance(error, StoreFormatError) and error.operation == "load"
    assert len(server.requests) == 1
    store.close()


def test_sqlite_read_only(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    path = tmp_path / "chats.db"
    writer = SQLiteStore(path)
    conv = client.conversation(system_prompt=SYSTEM, conversation_id="ro", store=writer)
    server.enqueue(MockReply.text("Hi."))
    conv.send("hello")
    writer.close()

    uri = f"file:{path}?mode=ro"
    reader = SQLiteStore(uri, timeout=TIMEOUT)
    resumed = client.conversation(conversation_id="ro", store=reader)
    assert resumed.messages == conv.messages  # reading works
    for attempt in range(2):
        error = store_error(lambda: resumed.send("write it"))
        assert str(error) == f"SQLiteStore({uri}): acquire failed: attempt to write a readonly database"
        assert_clean(error)
    assert len(server.requests) == 1
    reader.close()


# -- 6c: failed turns' tokens and the stored model survive a resume --------------------------


def test_failed_tokens_and_the_model_survive_a_resume(tmp_path: Path, server: MockServer, client: promptkit.Client) -> None:
    path = tmp_path / "chats.db"
    conv = client.conversation(conversation_id="paid", model="stored-model", store=SQLiteStore(path))
    server.enqueue(MockReply.text("Hi.", usage={"prompt_tokens": 10, "completion_tokens": 2}))
    conv.send("hello")
    server.enqueue(MockReply.in_band_error("overloaded", after_text="Half an ans"))
    with pytest.raises(promptkit.StreamError) as info:
        conv.send("this fails")
    assert info.value.partial is not None and info.value.partial.usage.total_tokens > 0
    assert conv.usage.total_tokens == 12 + info.value.partial.usage.total_tokens

    resumed = client.conversation(conversation_id="paid", store=SQLiteStore(path))
    assert resumed.usage == conv.usage and resumed.total_cost == pytest.approx(conv.total_cost)
    assert resumed.messages == conv.messages == [user("hello"), assistant("Hi.")]
    server.enqueue(MockReply.text("Again."))
    resumed.send("again")
    assert server.requests[-1].body["model"] == "stored-model"  # model=None: the stored one
    named = client.conversation(conversation_id="paid", store=SQLiteStore(path), model="other-model")
    server.enqueue(MockReply.text("Other."))
    named.send("other")
    assert server.requests[-1].body["model"] == "other-model"


# -- any store: a foreign exception becomes a StoreError ----------------------------------


class BrokenStore(MemoryStore):
    """A custom store whose acquire raises something that is not promptkit's."""

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        raise RuntimeError("backend exploded")


def test_a_custom_stores_exception_becomes_a_store_error(server: MockServer, client: promptkit.Client) -> None:
    conv = client.conversation(conversation_id="custom", store=BrokenStore())
    for attempt in range(2):
        with pytest.raises(StoreError) as info:
            conv.send("hello")
        assert str(info.value) == "BrokenStore: acquire failed: RuntimeError: backend exploded"
        assert info.value.operation == "acquire" and isinstance(info.value.__cause__, RuntimeError)
    assert len(server.requests) == 0
