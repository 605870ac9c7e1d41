"""promptkit._hooks: what each hook is told, when, on which thread; on every dialect."""

from __future__ import annotations

import contextvars
import logging
import threading
from typing import Any, Iterator, List, Tuple

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer

pytestmark = pytest.mark.usefixtures("every_dialect")

REQUEST_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="unset")


class Recorder(promptkit.Hooks):
    """Keeps (method, event, thread name) for every call."""

    def __init__(self) -> None:
        self.calls: List[Tuple[str, Any, str]] = []
        self.lock = threading.Lock()

    def _keep(self, method: str, event: Any) -> None:
        with self.lock:
            self.calls.append((method, event, threading.current_thread().name))

    def turn_started(self, event: promptkit.TurnStarted) -> None:
        self._keep("turn_started", event)

    def request_sent(self, event: promptkit.RequestSent) -> None:
        self._keep("request_sent", event)

    def first_token(self, event: promptkit.FirstToken) -> None:
        self._keep("first_token", event)

    def round_finished(self, event: promptkit.RoundFinished) -> None:
        self._keep("round_finished", event)

    def retry_scheduled(self, event: promptkit.RetryScheduled) -> None:
        self._keep("retry_scheduled", event)

    def tool_started(self, event: promptkit.ToolStarted) -> None:
        self._keep("tool_started", event)

    def tool_finished(self, event: promptkit.ToolFinished) -> None:
        self._keep("tool_finished", event)

    def turn_finished(self, event: promptkit.TurnFinished) -> None:
        self._keep("turn_finished", event)

    def methods(self) -> List[str]:
        return [method for method, _, _ in self.calls]

    def events(self, method: str) -> List[Any]:
        return [event for m, event, _ in self.calls if m == method]


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(server: MockServer, recorder: Recorder) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="k", hooks=[recorder], max_retries=2) as c:
        yield c


def test_a_text_turn_tells_each_step_once_in_order(client: promptkit.Client, server: MockServer, recorder: Recorder, every_dialect: str) -> None:
    server.enqueue(MockReply.text("Hello there.", reasoning="greet"))
    conv = client.conversation(system_prompt="s", temperature=0.5)
    response = conv.send("hi")
    assert recorder.methods() == ["turn_started", "request_sent", "first_token", "round_finished", "turn_finished"]
    started = recorder.events("turn_started")[0]
    assert started.conversation_id == conv.id and started.api == every_dialect and started.model == client.model
    assert started.params == {"temperature": 0.5} and started.messages[-1] == {"role": "user", "content": "hi"}
    assert recorder.calls[0][2] == threading.current_thread().name  # the caller's thread: its trace context is current
    sent = recorder.events("request_sent")[0]
    assert (sent.turn_id, sent.round, sent.attempt) == (started.turn_id, 1, 1)
    assert recorder.events("first_token")[0].elapsed >= 0
    finished = recorder.events("round_finished")[0]
    assert finished.content == "Hello there." and finished.reasoning == "greet" and finished.finish_reason == "stop"
    assert finished.usage == response.usage and finished.cost == response.cost and finished.chunks >= 2
    assert recorder.events("first_token")[0].elapsed <= finished.last_chunk <= finished.duration
    end = recorder.events("turn_finished")[0]
    assert end.response is response and end.error is None and end.duration > 0


def test_retries_are_told_and_each_attempt_is_a_request(client: promptkit.Client, server: MockServer, recorder: Recorder) -> None:
    server.enqueue(MockReply.error(500, "boom"), MockReply.text("ok"))
    client.conversation().send("q")
    assert recorder.methods()[:4] == ["turn_started", "request_sent", "retry_scheduled", "request_sent"]
    retry = recorder.events("retry_scheduled")[0]
    assert retry.attempt == 1 and isinstance(retry.error, promptkit.ServerError) and retry.delay >= 0
    assert [e.attempt for e in recorder.events("request_sent")] == [1, 2]


def test_a_tool_loop_tells_rounds_and_tools_on_the_tool_threads(client: promptkit.Client, server: MockServer, recorder: Recorder) -> None:
    seen: List[str] = []

    @promptkit.tool
    def lookup(word: str) -> str:
        """Look a word up."""
        seen.append(REQUEST_VAR.get())
        return word.upper()

    server.enqueue(
        MockReply.tool_calls([{"name": "lookup", "arguments": {"word": "a"}}, {"name": "lookup", "arguments": {"word": "b"}}]),
        MockReply.text("A and B"),
    )
    REQUEST_VAR.set("from the caller")
    response = client.conversation(tools=[lookup]).send("look up a and b")
    assert seen == ["from the caller", "from the caller"]  # contextvars reach the handler's thread
    rounds = recorder.events("round_finished")
    assert [(r.round, r.finish_reason) for r in rounds] == [(1, "tool_calls"), (2, "stop")]
    assert [c.name for c in rounds[0].tool_calls] == ["lookup", "lookup"]
    assert rounds[0].usage + rounds[1].usage == response.usage and rounds[0].cost + rounds[1].cost == pytest.approx(response.cost)
    tools = [(m, e, t) for m, e, t in recorder.calls if m.startswith("tool_")]
    assert sorted(m for m, _, _ in tools) == ["tool_finished", "tool_finished", "tool_started", "tool_started"]
    for method, event, thread in tools:
        assert thread.startswith("promptkit-tool-") and event.round == 1
    results = {e.call.id: e for e in recorder.events("tool_finished")}
    assert sorted(e.result.content for e in results.values()) == ["A", "B"] and all(e.duration >= 0 for e in results.values())
    assert [e.round for e in recorder.events("request_sent")] == [1, 2]
    assert recorder.methods()[-1] == "turn_finished"


def test_a_cancelled_turn_ends_its_round_as_cancelled(client: promptkit.Client, server: MockServer, recorder: Recorder) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    stream = client.conversation().send_stream("q")
    for event in stream:
        if event.type == "content":
            break
    response = stream.result()
    assert response.cancelled
    assert recorder.events("round_finished")[0].finish_reason == "cancelled"
    end = recorder.events("turn_finished")
    assert len(end) == 1 and end[0].response is response


def test_failures_are_told_once_with_the_error(client: promptkit.Client, server: MockServer, recorder: Recorder) -> None:
    server.enqueue(MockReply.error(400, "bad request"))
    with pytest.raises(promptkit.BadRequestError) as raised:
        client.conversation().send("q")  # raised by send_stream, before any stream existed
    ends = recorder.events("turn_finished")
    assert len(ends) == 1 and ends[0].error is raised.value and ends[0].response is None
    server.enqueue(MockReply.in_band_error("overloaded", after_text="half", code="invalid_request_error"))
    with pytest.raises(promptkit.StreamError) as in_band:
        client.conversation().send("q")
    ends = recorder.events("turn_finished")
    assert len(ends) == 2 and ends[1].error is in_band.value and in_band.value.partial.content == "half"  # type: ignore[union-attr]
    assert recorder.methods().count("turn_started") == 2


def test_a_hook_that_raises_is_logged_once_and_never_breaks_a_turn(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(promptkit.Hooks):
        def first_token(self, event: promptkit.FirstToken) -> None:
            raise RuntimeError("hook bug")

    recorder = Recorder()
    server.enqueue(MockReply.text("one"), MockReply.text("two"))
    with caplog.at_level(logging.WARNING, logger="promptkit._hooks"):
        with promptkit.Client(base_url=server.url, api_key="k", hooks=[Broken(), recorder]) as client:
            conv = client.conversation()
            assert conv.send("a").content == "one" and conv.send("b").content == "two"
    warnings = [r for r in caplog.records if r.name == "promptkit._hooks"]
    assert len(warnings) == 1 and "Broken.first_token raised RuntimeError" in warnings[0].getMessage()
    assert recorder.methods().count("first_token") == 2  # the next hook still heard every event


def test_logging_hooks_write_structured_records(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    server.enqueue(MockReply.text("hi"))
    with caplog.at_level(logging.INFO, logger="promptkit.hooks"):
        with promptkit.Client(base_url=server.url, api_key="sk-secret-key-123456", hooks=[promptkit.LoggingHooks()]) as client:
            client.conversation().send("a secret question")
    records = [r for r in caplog.records if r.name == "promptkit.hooks"]
    kinds = [r.promptkit["event"] for r in records]  # type: ignore[attr-defined]
    assert kinds == ["turn_started", "request_sent", "first_token", "round_finished", "turn_finished"]
    finished = records[-1].promptkit  # type: ignore[attr-defined]
    assert finished["finish_reason"] == "stop" and finished["tokens"] > 0 and "cost" in finished
    text = " ".join(r.getMessage() for r in records)
    assert "secret question" not in text and "sk-secret" not in text  # no message text, never the key


def test_hooks_must_be_hooks_and_none_means_none(server: MockServer) -> None:
    with pytest.raises(promptkit.ConfigurationError, match="promptkit.Hooks"):
        promptkit.Client(base_url=server.url, api_key="k", hooks=[object()])  # type: ignore[list-item]
    with promptkit.Client(base_url=server.url, api_key="k") as client:
        assert client.hooks is None  # nothing is called, nothing is paid, per event or per turn


def test_a_failing_tool_handler_is_told_with_its_exception(client: promptkit.Client, server: MockServer, recorder: Recorder) -> None:
    @promptkit.tool
    def explode() -> str:
        """Fail."""
        raise ValueError("no such thing")

    server.enqueue(MockReply.tool_calls([{"name": "explode", "arguments": {}}]), MockReply.text("sorry"))
    client.conversation(tools=[explode]).send("go")
    finished = recorder.events("tool_finished")[0]
    assert finished.result.is_error and "ValueError: no such thing" in finished.result.content
    assert isinstance(finished.error, ValueError) and str(finished.error) == "no such thing"
