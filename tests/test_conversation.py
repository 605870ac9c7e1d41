"""Conversation turns against the embedded mock server (a real HTTP server on 127.0.0.1)."""

from __future__ import annotations

import threading
from typing import Iterator, List

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer


@pytest.fixture(params=["chunked", "close"])
def server(request: pytest.FixtureRequest) -> Iterator[MockServer]:
    with MockServer(framing=request.param) as srv:
        yield srv


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10)) as c:
        yield c


def test_send_returns_response_and_commits(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.text("Hello there, friend."))
    conv = client.conversation(system_prompt="You are terse.", temperature=0.2)
    resp = conv.send("Hi")
    assert resp.content == "Hello there, friend."
    assert resp.finish_reason == "stop"
    assert resp.usage.total_tokens > 0 and not resp.usage.estimated
    assert resp.tokens_used == resp.usage.total_tokens
    assert resp.cost > 0 and resp.cost_known
    assert resp.latency_ms > 0 and resp.ttft_ms is not None and resp.ttft_ms <= resp.latency_ms
    assert conv.messages == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there, friend."},
    ]
    assert conv.usage == resp.usage and conv.total_cost == pytest.approx(resp.cost)
    body = server.requests[0].body
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2
    assert body["messages"][-1] == {"role": "user", "content": "Hi"}
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_messages_is_a_copy(client: promptkit.Client) -> None:
    conv = client.conversation(system_prompt="s")
    conv.messages.append({"role": "user", "content": "x"})
    conv.messages[0]["content"] = "changed"
    assert conv.messages == [{"role": "system", "content": "s"}]


def test_event_arrives_while_server_holds_the_rest(server: MockServer, client: promptkit.Client) -> None:
    # The server sends "Hello" and then nothing: the delta must reach us anyway (no buffering).
    server.enqueue(MockReply.stall(after_text="Hello"))
    conv = client.conversation()
    stream = conv.send_stream("hi")
    events = iter(stream)
    first = next(events)
    assert (first.type, first.content) == ("content", "Hello")
    stream.close(timeout=10)
    resp = stream.result()
    assert resp.finish_reason == "cancelled" and resp.content == "Hello"
    assert conv.messages[-1] == {"role": "assistant", "content": "Hello"}


def test_cancel_from_another_thread_while_server_silent(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall())
    conv = client.conversation()
    stream = conv.send_stream("hi")
    canceller = threading.Thread(target=stream.cancel)
    canceller.start()
    canceller.join(5)
    events = list(stream)
    assert [e.type for e in events] == ["done"]
    assert events[0].final.finish_reason == "cancelled"
    assert server.disconnected.wait(5)  # the upstream request really went away
    assert conv.messages == []  # cancelled before any content: nothing is committed


def test_break_cancels_and_commits_partial(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="One two"))
    conv = client.conversation()
    seen: List[str] = []
    for event in conv.send_stream("count"):
        seen.append(event.content)
        if "".join(seen) == "One two":
            break
    assert server.disconnected.wait(5)
    assert conv.messages[-1] == {"role": "assistant", "content": "One two"}
    assert conv.last_response is not None and conv.last_response.finish_reason == "cancelled"
    # the conversation is free again right after the loop
    server.enqueue(MockReply.text("Three."))
    assert conv.send("go on").content == "Three."


def test_error_commits_nothing_and_carries_partial(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.in_band_error("model overloaded", after_text="Half an ans"))
    conv = client.conversation(system_prompt="s")
    events = list(conv.send_stream("q"))
    assert [e.type for e in events][-1] == "error"
    assert sum(e.is_terminal for e in events) == 1
    error = events[-1].error
    assert isinstance(error, promptkit.StreamError) and "model overloaded" in str(error)
    assert error.partial is not None and error.partial.content == "Half an ans"
    assert conv.messages == [{"role": "system", "content": "s"}]


def test_send_raises_the_same_error(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.truncate(after_text="cut"))
    conv = client.conversation()
    with pytest.raises(promptkit.StreamTruncatedError) as info:
        conv.send("q")
    assert info.value.partial is not None and info.value.partial.content == "cut"
    assert conv.messages == []


def test_status_errors_raise_from_send_stream(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(401, "Incorrect API key provided"))
    conv = client.conversation()
    with pytest.raises(promptkit.AuthenticationError) as info:
        conv.send_stream("q")
    assert info.value.status_code == 401 and "Incorrect API key" in str(info.value)
    server.enqueue(MockReply.error(404, "The model does not exist"))
    with pytest.raises(promptkit.NotFoundError):
        conv.send_stream("q")
    server.enqueue(MockReply.error(400, "bad temperature"))
    with pytest.raises(promptkit.BadRequestError, match="bad temperature"):
        conv.send("q")
    assert len(server.requests) == 3  # none of these is retried
    assert conv.messages == []


def test_retry_on_429_then_success(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(429, "slow down", headers={"Retry-After": "0"}), MockReply.text("ok"))
    conv = client.conversation()
    assert conv.send("q").content == "ok"
    assert len(server.requests) == 2


def test_5xx_exhausts_retries(server: MockServer) -> None:
    with promptkit.Client(base_url=server.url, max_retries=1) as client:
        server.enqueue(MockReply.error(500, "boom", headers={"Retry-After": "0"}), MockReply.error(503, "still", headers={"Retry-After": "0"}))
        with pytest.raises(promptkit.ServerError) as info:
            client.conversation().send("q")
    assert info.value.status_code == 503 and info.value.attempts == 2
    assert "after 2 attempts" in str(info.value)


def test_200_with_json_body_is_rejected(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.error(200, "not a stream", content_type="application/json"))
    with pytest.raises(promptkit.StreamError, match="text/event-stream"):
        client.conversation().send_stream("q")


def test_second_turn_while_busy_raises(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="wait"))
    conv = client.conversation()
    with conv.send_stream("first") as stream:
        events = iter(stream)  # kept: dropping the iterator would cancel, like a break
        next(events)
        with pytest.raises(promptkit.ConversationBusyError):
            conv.send("second")
    server.enqueue(MockReply.text("fine"))
    assert conv.send("third").content == "fine"


def test_callbacks_and_result(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.text("a b c"))
    got: List[str] = []
    done: List[promptkit.Response] = []
    resp = client.conversation().send_stream("q", on_content=got.append, on_done=done.append).result()
    assert "".join(got) == "a b c" == resp.content
    assert done == [resp]


def test_callback_raising_cancels_upstream_and_commits_nothing(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.stall(after_text="x"))
    conv = client.conversation()

    def boom(text: str) -> None:
        raise RuntimeError("ui went away")

    stream = conv.send_stream("q", on_content=boom)
    with pytest.raises(promptkit.CallbackError) as info:
        for _ in stream:
            pass
    assert isinstance(info.value.__cause__, RuntimeError)
    assert server.disconnected.wait(5)
    assert conv.messages == []


def test_on_error_callback(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.reset(after_text="so far"))
    errors: List[BaseException] = []
    stream = client.conversation().send_stream("q", on_error=errors.append)
    with pytest.raises(promptkit.APIConnectionError):
        stream.result()
    assert len(errors) == 1 and isinstance(errors[0], promptkit.APIConnectionError)


def test_history_is_sent_on_the_next_turn(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.text("first answer"), MockReply.text("second answer"))
    conv = client.conversation(system_prompt="sys")
    conv.send("one")
    conv.send("two")
    assert server.requests[1].body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "two"},
    ]


def test_conversation_id(client: promptkit.Client) -> None:
    assert client.conversation().id.startswith("conv_")
    assert client.conversation(conversation_id="abc").id == "abc"


def test_reserved_params_rejected(client: promptkit.Client) -> None:
    with pytest.raises(promptkit.ConfigurationError, match="stream"):
        client.conversation(stream=False)


def test_a_plain_consumer_needs_no_thread_and_a_heartbeat_one_that_cannot_start_frees_the_turn(
    server: MockServer, client: promptkit.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import promptkit._stream

    def no_threads(*args: object, **kwargs: object) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(promptkit._stream, "start_thread", no_threads)
    server.enqueue(MockReply.text("on this thread"))
    conv = client.conversation()
    assert conv.send("q").content == "on this thread"  # the consumer runs the turn itself

    # A heartbeat needs a worker thread: when none can start, iter_sse raises, and closing
    # its frames (as every web server does) closes the response and frees the conversation.
    server.enqueue(MockReply.stall(after_text="never read"))
    frames = conv.send_stream("q2").iter_sse(heartbeat=1.0)
    with pytest.raises(RuntimeError):
        next(iter(frames))
    frames.close()
    assert server.disconnected.wait(5)  # the response was closed, not leaked
    monkeypatch.undo()
    server.enqueue(MockReply.text("works"))
    assert conv.send("again").content == "works"  # and the conversation is free
