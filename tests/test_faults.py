"""Fault injection against a real local HTTP server: one test per fault.

Every test checks the same invariants:

* the stream ends with exactly one terminal event (``done`` or ``error``), last;
* the error type (raised by ``send_stream`` before the headers, an ``error`` event after);
* the turn has ended (after ``stream.close(timeout)`` no ``promptkit-stream-*`` thread is
  left, and ``stream.done``);
* the socket was closed (the server saw the disconnect) or returned to the pool (reused);
* the history is unchanged after an error, and holds the partial turn after a cancel.

Synchronisation uses Events, joins and the MockServer's waits, never sleeps, and no
test asserts how long something took (latency is measured by the benchmarks). A
behaviour that ends a wait (a timeout, a cancel) is tested against a server that would
otherwise keep the client waiting far longer than :data:`GUARD`: without the behaviour
the guarded wait fails. Which deadline ended a turn is told by the error's ``kind``.
"""

from __future__ import annotations

import gc
import os
import random
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, TypeVar

import pytest

import promptkit
from promptkit.pricing import PriceTable
from promptkit.testing import MockReply, MockServer
from promptkit import StreamEvent

T = TypeVar("T")

# How long a test waits for something that happens at once when the behaviour under test
# works. Only a missing behaviour (a timeout not applied, a cancel that does not wake the
# worker) comes near it: a server a test means to outwait stalls for much longer.
GUARD = 30.0


# -- helpers -----------------------------------------------------------------


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def server_port(server: MockServer) -> int:
    return int(server.url.rsplit(":", 1)[1].split("/", 1)[0])


def _socket_inodes() -> Set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def client_sockets(server: MockServer) -> List[str]:
    """TCP states (hex, e.g. "01" = ESTABLISHED) of this process's open sockets connected *to* the server.

    A connection kept in the pool is one ESTABLISHED socket; a leaked one that the
    server closed would linger as CLOSE_WAIT ("08").
    """
    port = server_port(server)
    mine = _socket_inodes()
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if remote_port == port and cols[9] in mine:
                states.append(cols[3])
    return states


def collect(stream: promptkit.Stream) -> List[StreamEvent]:
    """Iterate to the end and check the terminal guarantee."""
    events = list(stream)
    assert_one_terminal(events)
    return events


def assert_one_terminal(events: Sequence[StreamEvent]) -> None:
    terminals = [e for e in events if e.is_terminal]
    assert len(terminals) == 1, [e.type for e in events]
    assert events[-1].is_terminal


def assert_finished(stream: promptkit.Stream, *, besides: Sequence[str] = ()) -> None:
    """The worker has exited and the terminal event was collected.

    ``besides`` names the workers of other streams the test still has running.
    """
    stream.close(timeout=GUARD)  # returns as soon as the worker has exited
    assert stream.done
    assert [name for name in stream_threads() if name not in besides] == [], "the stream's worker is still running"


def within_guard(call: Callable[[], T]) -> T:
    """Return ``call()``, made in a helper thread, or fail if it has not returned within :data:`GUARD`.

    For a call that only a timeout or a cancel ends: without it the test fails instead of hanging.
    """
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # re-raised in the test's thread
            outcome.append((False, exc))

    helper = threading.Thread(target=run, name="test-guarded-call", daemon=True)
    helper.start()
    helper.join(GUARD)
    if not outcome:
        pytest.fail(f"still waiting after {GUARD:.0f} s: nothing ended the wait")
    returned, value = outcome[0]
    if not returned:
        raise value
    return value  # type: ignore[no-any-return]


def wait_for(condition: Any, timeout: float = GUARD) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes, for state that no Event signals.

    (The kernel's state of a socket, a running usage estimate; test_hostile uses it.)
    """
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.01)
    return True


def stream_workers() -> List[threading.Thread]:
    """The live stream worker threads (each Stream's worker is named ``promptkit-stream-<n>``)."""
    return [t for t in threading.enumerate() if t.name.startswith("promptkit-stream")]


def stream_threads() -> List[str]:
    return [t.name for t in stream_workers()]


def content_of(events: Sequence[StreamEvent]) -> str:
    return "".join(e.content for e in events if e.type == "content")


@contextmanager
def make_client(server: MockServer, **kwargs: Any) -> Iterator[promptkit.Client]:
    kwargs.setdefault("api_key", "sk-test")
    kwargs.setdefault("timeout", promptkit.Timeout(idle=5))
    with promptkit.Client(base_url=server.url, **kwargs) as client:
        yield client


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with make_client(server) as c:
        yield c


def assert_reusable(server: MockServer, client: promptkit.Client) -> None:
    """The connection went back to the pool: the next turn opens no new connection."""
    opened = server.connections_opened
    server.enqueue(MockReply.text("again"))
    assert client.conversation().send("next").content == "again"
    assert server.connections_opened == opened
    assert client_sockets(server) == ["01"]


# -- connection failures ---------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_reset_after_content_is_an_error_with_partial_and_no_retry(framing: str) -> None:
    with MockServer(framing=framing) as server, make_client(server) as client:
        server.enqueue(MockReply.reset(after_text="Half of it"), MockReply.text("must not be requested"))
        conv = client.conversation(system_prompt="s")
        stream = conv.send_stream("q")
        events = collect(stream)
        assert content_of(events) == "Half of it"
        error = events[-1].error
        assert type(error) is promptkit.APIConnectionError
        assert error.partial is not None and error.partial.content == "Half of it"
        assert error.partial.finish_reason is None
        assert_finished(stream)
        assert len(server.requests) == 1  # no retry after content
        assert client_sockets(server) == []  # the broken socket was closed, not pooled
        assert conv.messages == [{"role": "system", "content": "s"}]
        with pytest.raises(promptkit.APIConnectionError):
            stream.result()  # the same error again


def test_reset_before_content_is_retried_then_succeeds(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.reset(), MockReply.text("Recovered fine."))
    conv = client.conversation()
    stream = conv.send_stream("q")  # the headers (and the role chunk) came before the reset
    events = collect(stream)
    assert events[-1].type == "done"
    assert content_of(events) == "Recovered fine." == events[-1].final.content
    assert_finished(stream)
    assert len(server.requests) == 2
    assert conv.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Recovered fine."}]
    assert client_sockets(server) == ["01"]  # the good connection is pooled


# -- timeouts --------------------------------------------------------------------


def test_silent_after_first_token_is_an_idle_timeout(server: MockServer) -> None:
    with make_client(server, timeout=promptkit.Timeout(idle=0.3)) as client:
        server.enqueue(MockReply.stall(after_text="Hello"))  # then silent until the client leaves
        conv = client.conversation()
        started = time.monotonic()
        stream = conv.send_stream("q")
        events = within_guard(lambda: collect(stream))  # only the idle timeout ends this turn
        elapsed = time.monotonic() - started
        assert content_of(events) == "Hello"
        error = events[-1].error
        assert isinstance(error, promptkit.APITimeoutError) and error.kind == "idle"
        assert error.partial is not None and error.partial.content == "Hello"
        assert elapsed >= 0.25  # a lower bound only a timer that did not wait its 0.3 s could break
        assert_finished(stream)
        assert server.disconnected.wait(GUARD)  # the stalled upstream request was dropped
        assert len(server.requests) == 1
        assert conv.messages == []


@pytest.mark.parametrize("max_retries", [0, 1])
def test_silent_before_headers_raises_from_send_stream(server: MockServer, max_retries: int) -> None:
    with make_client(server, timeout=promptkit.Timeout(idle=0.3), max_retries=max_retries) as client:
        server.enqueue(*[MockReply.stall(before_headers=True)] * (max_retries + 1))  # never any headers
        conv = client.conversation()
        with pytest.raises(promptkit.APITimeoutError) as info:
            within_guard(lambda: conv.send_stream("q"))  # only the idle timeout ends the wait
        assert info.value.kind == "idle"  # Timeout.idle also bounds the wait for the headers
        assert info.value.attempts == max_retries + 1
        assert info.value.partial is None
        assert len(server.requests) == max_retries + 1
        assert stream_threads() == []  # no stream was started
        # every timed-out connection was closed: the server saw each hang up
        assert server.wait_for_disconnects(max_retries + 1, timeout=GUARD)
        assert server.disconnects == max_retries + 1
        assert client_sockets(server) == []
        assert conv.messages == []
        # and the conversation is free for the next turn
        server.enqueue(MockReply.text("ok"))
        assert conv.send("again").content == "ok"
        assert len(server.requests) == max_retries + 2


def test_keepalive_comments_do_not_reset_idle(server: MockServer) -> None:
    with make_client(server, timeout=promptkit.Timeout(idle=0.3), max_retries=0) as client:
        # comments every 50 ms for 4 GUARDs: if they reset the idle timer, nothing ends the turn in time
        server.enqueue(MockReply.keepalive_only(4 * GUARD, interval=0.05))
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = within_guard(lambda: collect(stream))
        assert [e.type for e in events] == ["error"]
        error = events[-1].error
        assert isinstance(error, promptkit.APITimeoutError) and error.kind == "idle", f"the comments reset idle: {error!r}"
        assert_finished(stream)
        assert server.disconnected.wait(GUARD)
        assert len(server.requests) == 1
        assert conv.messages == []


def test_total_deadline(server: MockServer) -> None:
    # a word every 0.1 s (never idle) for 4 GUARDs: only the total deadline ends the turn in time
    words = " ".join(f"w{i}" for i in range(int(40 * GUARD)))
    with make_client(server, timeout=promptkit.Timeout(total=0.5, idle=5)) as client:
        server.enqueue(MockReply.text(words, delay=0.1))
        conv = client.conversation()
        started = time.monotonic()
        stream = conv.send_stream("q")
        events = within_guard(lambda: collect(stream))
        elapsed = time.monotonic() - started
        error = events[-1].error
        assert isinstance(error, promptkit.APITimeoutError) and error.kind == "total"
        assert error.partial is not None and error.partial.content == content_of(events) != ""
        assert elapsed >= 0.4  # a lower bound only a deadline that did not wait its 0.5 s could break
        assert_finished(stream)
        assert server.disconnected.wait(GUARD)
        assert len(server.requests) == 1  # after content: never retried
        assert conv.messages == []


def test_total_deadline_while_waiting_for_headers_says_total(server: MockServer) -> None:
    # Regression: the error said kind="idle" ("timed out waiting for response headers").
    # idle is longer than the guard: only the total deadline can end the wait for the headers in time
    with make_client(server, timeout=promptkit.Timeout(total=0.5, idle=2 * GUARD), max_retries=2) as client:
        server.enqueue(*[MockReply.stall(before_headers=True)] * 3)
        conv = client.conversation()
        with pytest.raises(promptkit.APITimeoutError) as info:
            within_guard(lambda: conv.send_stream("q"))
        assert stream_threads() == []
        assert conv.messages == []
        assert info.value.kind == "total", str(info.value)


def test_bytes_trickling_without_a_whole_event_do_not_reset_idle(server: MockServer) -> None:
    # A slow-loris body: one byte every 20 ms never completes an event, so the idle timer runs out.
    # The event is padded (JSON allows trailing blanks) to take 4 GUARDs to send: if the bytes reset
    # the idle timer, nothing ends the turn in time.
    event = _event({"content": "never completes"})
    event = event[:-2] + b" " * int(4 * GUARD / 0.02) + event[-2:]
    with make_client(server, timeout=promptkit.Timeout(idle=0.3), max_retries=0) as client:
        server.enqueue(MockReply.raw([event[i:i + 1] for i in range(len(event))], delay=0.02))
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = within_guard(lambda: collect(stream))
        assert [e.type for e in events] == ["error"]
        error = events[-1].error
        assert isinstance(error, promptkit.APITimeoutError) and error.kind == "idle", f"partial lines reset idle: {error!r}"
        assert_finished(stream)
        assert server.disconnected.wait(GUARD)
        assert conv.messages == []


# -- status errors and retries -------------------------------------------------------


def test_429_with_retry_after_then_success(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(429, "slow down", headers={"Retry-After": "0"}), MockReply.text("ok now"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    assert events[-1].type == "done" and events[-1].final.content == "ok now"
    assert_finished(stream)
    assert len(server.requests) == 2
    assert server.connections_opened == 1  # the 429's connection was reused for the retry
    assert conv.messages[-1] == {"role": "assistant", "content": "ok now"}


def test_500_twice_then_success(server: MockServer) -> None:
    with make_client(server, max_retries=2) as client:
        # no Retry-After: the exponential backoff (0.25-0.5 s, then 0.5-1 s) is used
        server.enqueue(MockReply.error(500, "boom"), MockReply.error(502, "bad gateway"), MockReply.text("third time"))
        conv = client.conversation()
        stream = conv.send_stream("q")
        assert stream.result().content == "third time"
        assert_finished(stream)
        assert len(server.requests) == 3
        assert server.connections_opened == 1
        assert len(conv.messages) == 2


def test_500_forever_exhausts_retries(server: MockServer) -> None:
    with make_client(server, max_retries=2) as client:
        server.enqueue(*[MockReply.error(500, "boom", headers={"Retry-After": "0"})] * 5)
        conv = client.conversation(system_prompt="s")
        with pytest.raises(promptkit.ServerError) as info:
            conv.send_stream("q")
        error = info.value
        assert error.status_code == 500 and error.attempts == 3
        assert "after 3 attempts" in str(error) and "boom" in str(error)
        assert error.partial is None
        assert len(server.requests) == 3
        assert stream_threads() == []
        assert server.connections_opened == 1 and client_sockets(server) == ["01"]  # pooled, not leaked
        assert conv.messages == [{"role": "system", "content": "s"}]


def test_401_is_not_retried(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(401, "Incorrect API key provided"))
    conv = client.conversation()
    with pytest.raises(promptkit.AuthenticationError) as info:
        conv.send_stream("q")
    assert info.value.status_code == 401 and info.value.attempts == 1
    assert "Incorrect API key" in str(info.value)
    assert len(server.requests) == 1
    assert stream_threads() == []
    assert conv.messages == []
    assert_reusable(server, client)


# -- bad streams --------------------------------------------------------------------


def _chunk(delta: Dict[str, Any], finish: Optional[str] = None) -> bytes:
    import json

    body = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return json.dumps(body, ensure_ascii=False).encode()


def _event(delta: Dict[str, Any], finish: Optional[str] = None, nl: bytes = b"\n") -> bytes:
    return b"data: " + _chunk(delta, finish) + nl + nl


def test_bad_json_chunk_is_a_stream_error(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.raw([_event({"content": "ok "}), b"data: {not json\n\n", b"data: [DONE]\n\n"]))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    error = events[-1].error
    assert type(error) is promptkit.StreamError and "not JSON" in str(error)
    assert error.partial is not None and error.partial.content == "ok "
    assert_finished(stream)
    assert len(server.requests) == 1
    assert conv.messages == []


def test_in_band_error_payload(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.in_band_error("The model is overloaded", after_text="Some text", code="overloaded"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    assert content_of(events) == "Some text"
    error = events[-1].error
    assert type(error) is promptkit.StreamError
    assert "The model is overloaded" in str(error)
    assert isinstance(error.body, dict) and error.body["message"] == "The model is overloaded"
    assert error.partial is not None and error.partial.content == "Some text"
    assert_finished(stream)
    assert len(server.requests) == 1
    assert conv.messages == []


def test_in_band_error_with_event_error_groq_style(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.in_band_error("Rate limit reached for model", after_text="abc", event="error"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    error = events[-1].error
    assert type(error) is promptkit.StreamError and "Rate limit reached for model" in str(error)
    assert error.partial is not None and error.partial.content == "abc"
    assert_finished(stream)
    assert conv.messages == []


def test_event_error_with_plain_text_data(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.raw([_event({"content": "x"}), b"event: error\ndata: upstream exploded\n\n"]))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    error = events[-1].error
    assert type(error) is promptkit.StreamError and "upstream exploded" in str(error)
    assert error.partial is not None and error.partial.content == "x"
    assert_finished(stream)
    assert conv.messages == []


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_eof_without_done_or_finish_reason_is_truncated(framing: str) -> None:
    with MockServer(framing=framing) as server, make_client(server) as client:
        server.enqueue(MockReply.truncate(after_text="cut short"))
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = collect(stream)
        error = events[-1].error
        assert type(error) is promptkit.StreamTruncatedError
        assert error.partial is not None and error.partial.content == "cut short"
        assert_finished(stream)
        assert len(server.requests) == 1  # after content: not retried
        assert conv.messages == []


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_eof_after_finish_reason_without_done_is_success(framing: str) -> None:
    with MockServer(framing=framing) as server, make_client(server) as client:
        server.enqueue(MockReply.text("All of it.", include_done=False))
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = collect(stream)
        assert events[-1].type == "done"
        final = events[-1].final
        assert final.content == "All of it." and final.finish_reason == "stop"
        assert not final.usage.estimated  # the usage chunk after the finish chunk was kept
        assert_finished(stream)
        assert conv.messages[-1] == {"role": "assistant", "content": "All of it."}
        if framing == "chunked":
            assert_reusable(server, client)


# -- callbacks and consumers ------------------------------------------------------------


def test_callback_raising_cancels_upstream(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="first"))
    conv = client.conversation(system_prompt="s")
    seen: List[str] = []

    def on_content(text: str) -> None:
        seen.append(text)
        raise RuntimeError("the UI is gone")

    stream = conv.send_stream("q", on_content=on_content)
    with pytest.raises(promptkit.CallbackError) as info:
        for _ in stream:
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    assert seen == ["first"]
    assert_finished(stream)
    with pytest.raises(promptkit.CallbackError):
        stream.result()  # one outcome, again
    assert server.disconnected.wait(GUARD)
    assert client_sockets(server) == []
    assert conv.messages == [{"role": "system", "content": "s"}]


def test_abandoned_stream_is_collected_and_cancelled(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="Partial"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = iter(stream)  # kept, so that reading one event does not end the stream
    first = next(events)
    assert first.type == "content"
    assert stream_workers() == []  # the consumer ran the turn's steps itself
    del stream, events, first
    gc.collect()
    assert server.disconnected.wait(GUARD)
    for worker in stream_workers():  # a thread ends a cancelled turn that nobody runs
        worker.join(GUARD)
    assert stream_workers() == []
    assert client_sockets(server) == []
    assert conv.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Partial"}]
    assert conv.last_response is not None and conv.last_response.finish_reason == "cancelled"
    server.enqueue(MockReply.text("Still works."))
    assert conv.send("again").content == "Still works."


def test_abandoned_unread_stream_frees_the_conversation_at_once(server: MockServer) -> None:
    # Regression: Stream.__del__ only cancels, so the dropped turn held the conversation until its
    # worker committed, and a send() right after raised ConversationBusyError. The cancelled
    # turn's last step (pricing its usage) is made slow, through a PriceTable of the public
    # pricing= option, so that the race always goes one way.
    class SlowOncePrices(PriceTable):
        slowed = False

        def cost(self, usage: promptkit.Usage, model: str, *, warn: bool = True) -> Any:
            if warn and not self.slowed:  # the turn's own pricing, not a running estimate
                self.slowed = True
                threading.Event().wait(0.3)  # a slow price lookup, not a synchronisation
            return super().cost(usage, model, warn=warn)

    prices = SlowOncePrices()
    with make_client(server, pricing=prices) as client:
        server.enqueue(MockReply.stall(after_text="never read"), MockReply.text("next"))
        conv = client.conversation()
        stream = conv.send_stream("q")
        assert stream_workers() == []  # nothing runs the turn until someone asks for its events
        del stream  # never iterated: nothing but the stream itself refers to it
        gc.collect()  # cancels it, and a thread of its own ends the cancelled turn
        try:
            assert conv.send("again").content == "next"
        finally:
            for worker in stream_workers():
                worker.join(GUARD)
    assert prices.slowed  # the cancelled turn did go through the slow step


def test_cancel_from_another_thread_during_a_silent_read(server: MockServer) -> None:
    # The server stays silent after "waiting" and the idle timeout is longer than the guard: only a
    # cancel that wakes the worker's blocked read ends the turn in time.
    with make_client(server, timeout=promptkit.Timeout(idle=2 * GUARD)) as client:
        server.enqueue(MockReply.stall(after_text="waiting"))
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = iter(stream)
        assert next(events).content == "waiting"
        rest: List[StreamEvent] = []
        # The consuming thread runs the turn: it is the one blocked reading the silent socket.
        consumer = threading.Thread(target=lambda: rest.extend(events), name="test-consumer")
        consumer.start()
        wait_until_blocked_in_recv(consumer)
        stream.cancel()  # from this thread; returns at once
        consumer.join(GUARD)  # ends when the read, woken by the cancel, ends the turn
        assert not consumer.is_alive(), "the cancel did not wake the blocked read"
        assert_one_terminal(rest)
        assert [e.type for e in rest] == ["done"]
        final = rest[-1].final
        assert final.finish_reason == "cancelled" and final.content == "waiting"
        assert_finished(stream)
        assert server.disconnected.wait(GUARD)
        assert client_sockets(server) == []
        assert conv.messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "waiting"}]


def wait_until_blocked_in_recv(thread: threading.Thread) -> None:
    """Wait until ``thread`` is blocked reading its socket, so that a cancel must wake a blocked read.

    The worker reads the body through urllib3's ``HTTPResponse.read1`` -> http.client ->
    the socket's buffered reader, whose blocking call is ``SocketIO.readinto`` (socket.py):
    while the server is silent that is the thread's top Python frame (``sys._current_frames``,
    a documented CPython function, is the only way to see another thread's stack). The state
    has no event, so it is polled, within :data:`GUARD`.
    """
    deadline = time.monotonic() + GUARD
    tick = threading.Event()
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(thread.ident)  # type: ignore[arg-type]
        if frame is not None and frame.f_code.co_name == "readinto" and frame.f_code.co_filename.endswith("socket.py"):
            return
        tick.wait(0.001)
    pytest.fail("the worker never blocked in a socket read")


@pytest.mark.parametrize("case", ["retry", "tool_round_same_connection", "tool_round_new_connection"])
def test_cancel_while_the_worker_waits_for_headers_is_prompt(server: MockServer, case: str) -> None:
    # The worker opens a second request on its own; that server never answers. Cancel must still be prompt.
    # Regression: such a request was not attached to the StreamControl until its headers arrived, so
    # close() waited for the header timeout. (The tool round on the same pooled connection only
    # worked by accident, through the stale attachment the next test is about.)
    @promptkit.tool
    def lookup(city: str) -> str:
        """Look a city up."""
        return "sunny"

    # The header wait is longer than the guard: only a cancel that reaches it ends the turn in time.
    with make_client(server, timeout=promptkit.Timeout(idle=2 * GUARD), max_retries=1) as client:
        if case == "retry":  # the first response breaks after its headers, before any content
            server.enqueue(MockReply.reset(), MockReply.stall(before_headers=True))
            conv = client.conversation()
        else:  # a tool round, then the next round's request hangs
            framing = "close" if case == "tool_round_new_connection" else "chunked"
            server.enqueue(MockReply.tool_calls([{"name": "lookup", "arguments": {"city": "Oslo"}}], framing=framing),
                           MockReply.stall(before_headers=True))
            conv = client.conversation(tools=[lookup])
        stream = conv.send_stream("q")
        seen: List[StreamEvent] = []
        consumer = threading.Thread(target=lambda: seen.extend(stream), name="test-consumer")
        consumer.start()  # the consuming thread runs the turn, and so opens the second request
        assert server.wait_for_requests(2, timeout=GUARD)  # it is now waiting for the second headers
        stream.cancel()
        consumer.join(GUARD)
        assert not consumer.is_alive(), "the turn is still waiting for the second request's headers"
        stream.close(timeout=GUARD)
        assert stream_threads() == []
        assert seen[-1].type == "done" and stream.result().finish_reason == "cancelled"


def test_cancel_does_not_kill_another_stream_that_reused_the_connection(server: MockServer) -> None:
    # Regression: after a tool round's body was done its connection went back to the pool, but the
    # finished HTTPStream stayed attached to the StreamControl; cancelling that stream while its tool
    # ran shut the pooled socket down, under another conversation of the same Client that reused it.
    tool_started = threading.Event()
    release_tool = threading.Event()

    @promptkit.tool
    def slow_lookup(city: str) -> str:
        """Look a city up, slowly."""
        tool_started.set()
        release_tool.wait(GUARD)
        return "sunny"

    with make_client(server) as client:
        server.enqueue(MockReply.tool_calls([{"name": "slow_lookup", "arguments": {"city": "Oslo"}}]),
                       MockReply.text("B one two three", delay=0.3))
        conv_a = client.conversation(tools=[slow_lookup])
        stream_a = conv_a.send_stream("a")
        workers_a = stream_threads()
        seen_a: List[StreamEvent] = []
        consumer_a = threading.Thread(target=lambda: seen_a.extend(stream_a), name="test-consumer-a")
        consumer_a.start()  # A's consumer runs A's turn: its tool round too
        try:
            assert tool_started.wait(GUARD)  # A's first round is over; its connection is back in the pool
            conv_b = client.conversation()
            stream_b = conv_b.send_stream("b")  # B takes the pooled connection
            workers_b = [name for name in stream_threads() if name not in workers_a]
            assert server.connections_opened == 1
            events_b = iter(stream_b)
            assert next(events_b).content == "B"
            stream_a.cancel()  # the user stops A while its tool runs
        finally:
            release_tool.set()
            consumer_a.join(GUARD)
        assert seen_a[-1].type == "done" and stream_a.result().finish_reason == "cancelled"
        assert_finished(stream_a, besides=workers_b)
        rest = list(events_b)
        assert_one_terminal(rest)
        assert_finished(stream_b)
        assert rest[-1].type == "done", f"B was killed by A's cancel: {rest[-1].error!r}"
        assert rest[-1].final.content == "B one two three"


def test_many_streams_cancelled_at_random_points() -> None:
    rng = random.Random(20240607)
    baseline_threads = threading.active_count()
    with MockServer(default_delay=0.002) as server, make_client(server) as client:
        client.conversation().send("warm up")  # pools a connection, loads the token counter
        gc.collect()
        fds_before = fd_count()
        modes = {"cancel_first": 0, "cancel_after_k": 0, "break": 0, "close": 0}
        for i in range(200):
            mode = rng.choice(list(modes))
            modes[mode] += 1
            k = rng.randint(0, 8)
            conv = client.conversation()
            stream = conv.send_stream(f"story {i}")
            seen: List[StreamEvent] = []
            if mode == "cancel_first":
                stream.cancel()
                seen = list(stream)
            elif mode == "cancel_after_k":
                it = iter(stream)
                for _ in range(k):
                    seen.append(next(it))
                stream.cancel()
                seen.extend(it)
            elif mode == "break":
                for event in stream:
                    if len(seen) == k:
                        break
                    seen.append(event)
            else:
                it = iter(stream)
                for _ in range(k):
                    seen.append(next(it))
                stream.close()
            final = stream.result()  # the cancelled Response; never raises
            if mode in ("cancel_first", "cancel_after_k"):
                assert_one_terminal(seen)
                assert seen[-1].final is final
            else:
                assert not any(e.is_terminal for e in seen)
            assert final.finish_reason == "cancelled", (i, mode, k)
            text = content_of(seen)
            assert final.content.startswith(text)
            assert_finished(stream)
            # What was committed is exactly what the consumer was given; nothing when it got no text.
            assert final.content == text or mode == "break"  # break: the event it broke on was given too
            expected = []
            if final.content:
                expected = [{"role": "user", "content": f"story {i}"}, {"role": "assistant", "content": final.content}]
            assert conv.messages == expected
        assert all(modes.values()), modes
        assert stream_threads() == []
        gc.collect()
        fds_after = fd_count()
        assert fds_after <= fds_before + 5, (fds_before, fds_after)
        # the client still works after all that
        server.enqueue(MockReply.text("fine"))
        assert client.conversation().send("q").content == "fine"
    assert threading.active_count() <= baseline_threads


# -- framing and encoding quirks ---------------------------------------------------------


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_done_without_trailing_blank_line(server: MockServer, client: promptkit.Client, framing: str) -> None:
    server.enqueue(MockReply.raw([_event({"content": "Hi"}), _event({}, "stop"), b"data: [DONE]"], framing=framing))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = collect(stream)
    assert events[-1].type == "done" and events[-1].final.content == "Hi"
    assert_finished(stream)
    assert conv.messages[-1] == {"role": "assistant", "content": "Hi"}


def test_done_without_trailing_blank_line_and_no_finish_reason(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.raw([_event({"content": "Hi"}), b"data: [DONE]\n"]))
    stream = client.conversation().send_stream("q")
    events = collect(stream)
    assert events[-1].type == "done" and events[-1].final.content == "Hi"
    assert_finished(stream)
    assert_reusable(server, client)


def test_data_lines_without_space(server: MockServer, client: promptkit.Client) -> None:
    body = [b"data:" + _chunk({"content": "no"}) + b"\n\n", b"data:" + _chunk({"content": " space"}, "stop") + b"\n\n",
            b"data:[DONE]\n\n"]
    server.enqueue(MockReply.raw(body))
    stream = client.conversation().send_stream("q")
    events = collect(stream)
    assert events[-1].type == "done" and events[-1].final.content == "no space"
    assert_finished(stream)
    assert_reusable(server, client)


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"], ids=["crlf", "cr"])
def test_crlf_and_cr_line_endings(server: MockServer, client: promptkit.Client, newline: bytes) -> None:
    body = _event({"content": "line"}, nl=newline) + _event({"content": " ends"}, nl=newline)
    body += _event({}, "stop", nl=newline) + b"data: [DONE]" + newline + newline
    # split every which way, including between the CR and the LF of one line ending
    pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
    server.enqueue(MockReply.raw(pieces))
    stream = client.conversation().send_stream("q")
    events = collect(stream)
    assert events[-1].type == "done" and events[-1].final.content == "line ends"
    assert_finished(stream)


def test_multibyte_character_split_across_writes(server: MockServer, client: promptkit.Client) -> None:
    event = _event({"content": "naïve 猫 🐈"})
    cut = event.index("🐈".encode()) + 2  # inside the 4-byte emoji
    cut2 = event.index("猫".encode()) + 1
    server.enqueue(MockReply.raw([event[:cut2], event[cut2:cut], event[cut:], _event({}, "stop"), b"data: [DONE]\n\n"]))
    stream = client.conversation().send_stream("q")
    events = collect(stream)
    assert content_of(events) == "naïve 猫 🐈" == events[-1].final.content
    assert "\ufffd" not in events[-1].final.content
    assert_finished(stream)


def test_event_stream_without_charset(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.raw([_event({"content": "café"}, "stop"), b"data: [DONE]\n\n"],
                                 headers={"Content-Type": "text/event-stream"}))
    stream = client.conversation().send_stream("q")
    events = collect(stream)
    assert events[-1].final.content == "café"
    assert_finished(stream)


def test_html_body_with_status_200_raises_from_send_stream(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(200, "", body="<html><body>Gateway login</body></html>"))
    conv = client.conversation()
    with pytest.raises(promptkit.StreamError) as info:
        conv.send_stream("q")
    assert "text/html" in str(info.value) and "Gateway login" in str(info.value)
    assert len(server.requests) == 1
    assert stream_threads() == []
    assert conv.messages == []
    assert_reusable(server, client)


def test_json_body_with_status_200_raises_from_send_stream(server: MockServer, client: promptkit.Client) -> None:
    completion = {"id": "chatcmpl-1", "object": "chat.completion",
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"}, "finish_reason": "stop"}]}
    server.enqueue(MockReply.json(completion))
    conv = client.conversation()
    with pytest.raises(promptkit.StreamError) as info:
        conv.send_stream("q")
    assert "application/json" in str(info.value)
    assert type(info.value) is promptkit.StreamError
    assert len(server.requests) == 1
    assert stream_threads() == []
    assert conv.messages == []
    assert_reusable(server, client)


def test_done_is_not_delayed_by_a_server_lingering_after_done(server: MockServer, client: promptkit.Client) -> None:
    # Regression: after [DONE] the worker drained the body for up to 2 s before it queued done.
    # The server keeps the body open after [DONE] for longer than the guard: done must come
    # without waiting for the body's end, and the connection that never ended is closed.
    body = _event({"content": "quick"}, "stop") + b"data: [DONE]\n\n"
    server.enqueue(MockReply.raw([body, b": bye\n\n"], delay=2 * GUARD))
    conv = client.conversation()
    stream = conv.send_stream("q")
    events = iter(stream)
    assert next(events).content == "quick"
    rest = within_guard(lambda: list(events))
    assert [e.type for e in rest] == ["done"] and rest[-1].final.content == "quick"
    assert_finished(stream)
    assert server.wait_for_disconnects(1, timeout=GUARD)  # not pooled: the lingering body was cut off
    assert client_sockets(server) == []
    assert conv.messages[-1] == {"role": "assistant", "content": "quick"}
