"""Conversation.cancel(): a turn is cancelled from another thread in every phase.

Each phase is reached through a handshake (the server saw the request, the
kernel shows the connection being opened, a handler has started) and cancelled
with a wait far longer than the test's guard, so a phase that a cancel cannot
reach fails the test instead of only slowing it. Every phase runs with
promptkit's own session, a caller's ``requests.Session`` and through a real
HTTP proxy (proxy.py). Latency is measured by the benchmarks, not here.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

import promptkit
from promptkit._retry import RetryPolicy
from promptkit.testing import MockReply, MockServer


pytestmark = pytest.mark.usefixtures("every_dialect")

GUARD = 30.0  # seconds; every wait below is far longer than a cancel needs, and shorter than what it cancels
LONG = promptkit.Timeout(connect=120, idle=120, total=600)


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


@pytest.fixture(params=["owned", "user_session", "proxy"])
def client_options(request: pytest.FixtureRequest) -> Iterator[Dict[str, Any]]:
    """How the client reaches the server: its own session, a caller's session, or a caller's session via a proxy."""
    if request.param == "owned":
        yield {}
        return
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment
    if request.param == "proxy":
        session.proxies = {"http": request.getfixturevalue("http_proxy")}
    try:
        yield {"session": session}
    finally:
        session.close()


class Turn:
    """``send_stream`` on a thread of its own, since before the headers it blocks."""

    def __init__(self, conv: promptkit.Conversation, message: str = "q") -> None:
        self.conv = conv
        self.stream: Optional[promptkit.Stream] = None
        self.error: Optional[BaseException] = None
        self.returned = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(message,))
        self.thread.start()

    def _run(self, message: str) -> None:
        try:
            self.stream = self.conv.send_stream(message)
        except BaseException as exc:  # reported by result()
            self.error = exc
        finally:
            self.returned.set()

    def result(self) -> promptkit.Response:
        assert self.returned.wait(GUARD), "send_stream() did not return after the cancel"
        self.thread.join(GUARD)
        if self.error is not None:
            raise self.error
        assert self.stream is not None
        return self.stream.result()


def _cancelled_before_any_output(conv: promptkit.Conversation, turn: Turn) -> promptkit.Response:
    assert not turn.returned.is_set()  # still opening: no Stream exists yet
    conv.cancel()
    response = turn.result()
    assert response.finish_reason == "cancelled" and response.content == ""
    assert conv.messages == []  # nothing reached the user: nothing committed
    return response


def test_cancel_while_waiting_for_headers(server: MockServer, client_options: Dict[str, Any]) -> None:
    server.enqueue(MockReply.stall(before_headers=True))
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG, **client_options) as client:
        conv = client.conversation()
        turn = Turn(conv)
        assert server.wait_for_requests(1, timeout=GUARD)
        _cancelled_before_any_output(conv, turn)
        # The socket was shut down, not left waiting: the server (behind the proxy too) saw the client leave.
        assert server.disconnected.wait(GUARD)
        assert conv.send("again").content  # the conversation is free for the next turn


def test_cancel_while_sleeping_for_retry_after(server: MockServer, client_options: Dict[str, Any]) -> None:
    server.enqueue(MockReply.error(429, "slow down", headers={"Retry-After": "50"}), MockReply.text("late"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG, max_retries=1, **client_options) as client:
        conv = client.conversation()
        turn = Turn(conv)
        assert server.wait_for_requests(1, timeout=GUARD)
        _cancelled_before_any_output(conv, turn)
        assert len(server.requests) == 1  # the retry never went out


def test_cancel_while_backing_off(server: MockServer, client_options: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RetryPolicy, "delay", lambda self, attempt, retry_after=None: 50.0)
    server.enqueue(MockReply.error(503, "busy"), MockReply.text("late"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG, max_retries=1, **client_options) as client:
        conv = client.conversation()
        turn = Turn(conv)
        assert server.wait_for_requests(1, timeout=GUARD)
        _cancelled_before_any_output(conv, turn)
        assert len(server.requests) == 1


def _opening(port: int) -> int:
    """How many connections to 127.0.0.1:port the kernel shows being opened (TCP state SYN_SENT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(f":{port:04X}") and fields[3] == "02":
            count += 1
    return count


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp to see the connect phase")
def test_cancel_while_connecting() -> None:
    # A listener that never accepts, its backlog full: a new connection stays in SYN_SENT.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: List[socket.socket] = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        baseline = _opening(port)
        with promptkit.Client(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", timeout=LONG) as client:
            conv = client.conversation()
            turn = Turn(conv)
            tick = threading.Event()  # never set: a pause between two looks at the kernel's table
            for _ in range(int(GUARD / 0.01)):
                if _opening(port) > baseline:
                    break
                assert not turn.returned.is_set(), turn.error
                tick.wait(0.01)  # the table has no notification to wait on
            else:
                pytest.fail("the client's connection never showed up as being opened")
            _cancelled_before_any_output(conv, turn)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def first_content(events: Iterator[promptkit.StreamEvent]) -> promptkit.StreamEvent:
    """The first content event (a dialect may open with others)."""
    return next(event for event in events if event.type == "content")


def test_cancel_while_streaming(server: MockServer, client_options: Dict[str, Any]) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG, **client_options) as client:
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = iter(stream)
        first_content(events)
        conv.cancel()  # from the conversation, not the stream: the same turn
        rest = list(events)
        assert [e.type for e in rest] == ["done"]  # what was read ahead is not shown
        response = rest[0].final
        assert response is not None and stream.result() is response
        assert response.finish_reason == "cancelled" and response.content == "partial"
        assert conv.messages[-1] == {"role": "assistant", "content": "partial"}
        assert server.disconnected.wait(GUARD)


def test_cancel_while_a_tool_handler_runs(server: MockServer, client_options: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # The pool's safety-net poll made far longer than the guard: only the cancel's own wake-up can end the wait.
    monkeypatch.setattr("promptkit._pool._POLL", 3600.0)
    entered, release = threading.Event(), threading.Event()

    def slow(city: str) -> str:
        entered.set()
        release.wait(GUARD)
        return "sunny"

    tool = promptkit.Tool("weather", "The weather in a city", handler=slow)
    server.enqueue(MockReply.tool_calls([{"id": "call_1", "name": "weather", "arguments": {"city": "Oslo"}}]))
    try:
        with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG, **client_options) as client:
            conv = client.conversation(tools=[tool])
            stream = conv.send_stream("weather?")
            done = threading.Event()
            outcome: List[promptkit.Response] = []
            consumer = threading.Thread(target=lambda: (outcome.append(stream.result()), done.set()))
            consumer.start()
            assert entered.wait(GUARD)
            conv.cancel()
            assert done.wait(GUARD), "the turn did not end while its handler was still running"
            assert not release.is_set() and outcome[0].finish_reason == "cancelled"
            consumer.join(GUARD)
    finally:
        release.set()


def test_cancel_with_no_turn_in_flight_does_nothing(server: MockServer) -> None:
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        conv = client.conversation()
        conv.cancel()  # before any turn
        assert conv.send("q").finish_reason == "stop"
        conv.cancel()  # after the turn ended: the next one is not affected
        assert conv.send("q").finish_reason == "stop"


def test_closing_the_client_cancels_a_turn_still_waiting_for_headers(server: MockServer) -> None:
    server.enqueue(MockReply.stall(before_headers=True))
    client = promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG)
    conv = client.conversation()
    turn = Turn(conv)
    assert server.wait_for_requests(1, timeout=GUARD)
    assert not turn.returned.is_set()
    client.close()  # from another thread, as a shutting-down web worker does
    response = turn.result()
    assert response.finish_reason == "cancelled" and conv.messages == []
    assert server.disconnected.wait(GUARD)
    with pytest.raises(promptkit.ClientClosedError):
        conv.send("again")


def test_the_next_turn_ends_a_cancelled_one_that_nobody_consumes(server: MockServer) -> None:
    # A stream runs as it is consumed: after a "stop" from another request handler, the next
    # message must not wait for a consumer that may never come back. send_stream() runs the
    # cancelled turn's last steps itself (it commits what its user saw), then starts its own.
    server.enqueue(MockReply.stall(after_text="partial"), MockReply.text("next answer"))
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=LONG) as client:
        conv = client.conversation()
        stream = conv.send_stream("q")
        events = iter(stream)
        assert first_content(events).content == "partial"
        conv.cancel()  # the consumer is not running the turn: nothing reads its socket now
        assert conv.send("again").content == "next answer"  # not ConversationBusyError
        assert [m["content"] for m in conv.messages] == ["q", "partial", "again", "next answer"]
        rest = list(events)  # the first consumer still gets its terminal event
        assert [e.type for e in rest] == ["done"] and rest[0].final.finish_reason == "cancelled"
        assert server.disconnected.wait(GUARD)
