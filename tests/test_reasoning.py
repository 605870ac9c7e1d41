"""Reasoning end to end against the embedded mock server: the tool loop, refusing servers,
callbacks, relays and the retry rule.

The mock streams ``MockReply(..., reasoning=...)`` as DeepSeek does: ``reasoning_content``
deltas before the content and the tool calls. Every test forgets what its server's base URL
refused (``QUIRKS``), so no test sees another's refusals.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import promptkit
from promptkit import StreamEvent
from promptkit._dialects import QUIRKS
from promptkit._sse import SSEParser
from promptkit.testing import MockReply, MockServer
from promptkit.web import relay_websocket


@promptkit.tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def call(call_id: str, a: int = 2, b: int = 2) -> Dict[str, Any]:
    return {"name": "add", "arguments": {"a": a, "b": b}, "id": call_id}


def sent_call(call_id: str, a: int = 2, b: int = 2) -> Dict[str, Any]:
    """The assistant tool call as promptkit sends it back."""
    return {"id": call_id, "type": "function", "function": {"name": "add", "arguments": json.dumps({"a": a, "b": b})}}


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        QUIRKS.forget(srv.url)
        try:
            yield srv
        finally:
            QUIRKS.forget(srv.url)


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10)) as c:
        yield c


def sent_messages(server: MockServer, i: int) -> List[Dict[str, Any]]:
    messages: List[Dict[str, Any]] = server.requests[i].body["messages"]
    return messages


def with_reasoning(messages: List[Dict[str, Any]]) -> List[int]:
    """The indexes of the messages that carry ``reasoning_content``."""
    return [i for i, m in enumerate(messages) if "reasoning_content" in m]


# -- the DeepSeek tool loop ------------------------------------------------------------------


def test_the_tool_loop_sends_reasoning_back_until_the_next_user_message(server: MockServer,
                                                                        client: promptkit.Client) -> None:
    server.enqueue(
        MockReply.tool_calls([call("call_1")], reasoning="I should add."),
        MockReply.tool_calls([call("call_2", 4, 4)], reasoning="Now double it."),
        MockReply.text("It is 8.", reasoning="The tools said 8."),
        MockReply.text("You are welcome.", reasoning="Be polite."),
    )
    conv = client.conversation(tools=[add])
    resp = conv.send("What is (2+2)*2?")
    assert resp.content == "It is 8." and resp.rounds == 3
    assert resp.reasoning == "I should add.Now double it.The tools said 8."  # every round of the turn
    first, second, third = (sent_messages(server, i) for i in range(3))
    assert with_reasoning(first) == []
    assert second[1:] == [
        {"role": "assistant", "content": None, "tool_calls": [sent_call("call_1")], "reasoning_content": "I should add."},
        {"role": "tool", "tool_call_id": "call_1", "content": "4"},
    ]
    # Both assistant messages of the loop go back with their reasoning, as DeepSeek's thinking mode needs.
    assert with_reasoning(third) == [1, 3]
    assert third[3] == {"role": "assistant", "content": None, "tool_calls": [sent_call("call_2", 4, 4)],
                        "reasoning_content": "Now double it."}
    # The history keeps every reasoning text, the final answer's too.
    history = conv.messages
    assert [m.get("reasoning_content") for m in history] == [
        None, "I should add.", None, "Now double it.", None, "The tools said 8."]
    assert history[-1] == {"role": "assistant", "content": "It is 8.", "reasoning_content": "The tools said 8."}

    assert conv.send("Thanks!").content == "You are welcome."
    fourth = sent_messages(server, 3)
    assert [m["role"] for m in fourth] == ["user", "assistant", "tool", "assistant", "tool", "assistant", "user"]
    assert with_reasoning(fourth) == []  # a new user message closes the loop: its reasoning stays home
    assert conv.messages[-1] == {"role": "assistant", "content": "You are welcome.", "reasoning_content": "Be polite."}


def test_reasoning_goes_back_when_the_application_answers_the_calls(server: MockServer,
                                                                     client: promptkit.Client) -> None:
    schema = {"type": "function", "function": {"name": "add", "description": "Add.",
                                               "parameters": {"type": "object", "properties": {}}}}
    server.enqueue(MockReply.tool_calls([call("call_1")], reasoning="Ask the app."), MockReply.text("4"))
    conv = client.conversation(tools=[schema])  # no handler: the turn ends with the call pending
    resp = conv.send("2+2?")
    assert resp.finish_reason == "tool_calls" and resp.reasoning == "Ask the app."
    conv.add_tool_result("call_1", 4)
    assert conv.send().content == "4"
    assert sent_messages(server, 1)[1]["reasoning_content"] == "Ask the app."


# -- a server that refuses the field ---------------------------------------------------------


@pytest.mark.parametrize("status", [400, 422])
def test_a_server_that_refuses_reasoning_content_gets_it_once_and_never_again(
        server: MockServer, client: promptkit.Client, status: int) -> None:
    refusal = MockReply.error(status, "Unrecognized request argument supplied: messages[1].reasoning_content")
    server.enqueue(
        MockReply.tool_calls([call("call_1")], reasoning="I should add."), refusal, MockReply.text("It is 4."),
        MockReply.tool_calls([call("call_2")], reasoning="Again."), MockReply.text("Still 4."),
    )
    conv = client.conversation(tools=[add])
    resp = conv.send("What is 2+2?")
    assert resp.content == "It is 4." and resp.reasoning == "I should add."
    assert len(server.requests) == 3  # the refused request was sent again once, at once
    refused, retried = sent_messages(server, 1), sent_messages(server, 2)
    assert refused[1]["reasoning_content"] == "I should add."
    assert with_reasoning(retried) == []
    assert retried[1] == {"role": "assistant", "content": None, "tool_calls": [sent_call("call_1")]}
    assert retried == [{k: v for k, v in m.items() if k != "reasoning_content"} for m in refused]
    assert conv.messages[1]["reasoning_content"] == "I should add."  # the history still has it (another server may want it)

    # Remembered for the base URL: another client's tool loop there sends none and is never refused.
    with promptkit.Client(base_url=server.url, api_key="sk-test") as other:
        assert other.conversation(tools=[add]).send("And now?").content == "Still 4."
    assert len(server.requests) == 5
    assert with_reasoning(sent_messages(server, 4)) == []


def test_a_second_refusal_is_not_retried_again(server: MockServer, client: promptkit.Client) -> None:
    refusal = MockReply.error(400, "reasoning_content is not allowed")
    server.enqueue(MockReply.tool_calls([call("call_1")], reasoning="I should add."), refusal, refusal,
                   MockReply.text("must not be requested"))
    conv = client.conversation(tools=[add])
    with pytest.raises(promptkit.BadRequestError) as info:
        conv.send("What is 2+2?")
    assert len(server.requests) == 3
    assert info.value.partial is not None and info.value.partial.reasoning == "I should add."
    assert conv.messages == []  # a failed turn commits nothing


# -- callbacks ---------------------------------------------------------------------------------


def payload(event: StreamEvent) -> Any:
    return {"reasoning": event.reasoning, "content": event.content, "tool_call": event.tool_call,
            "tool_result": event.tool_result, "done": event.final}[event.type]


@pytest.mark.parametrize("consume", ["iterate", "result"])
def test_on_reasoning_runs_in_the_consumer_thread_in_event_order(server: MockServer, client: promptkit.Client,
                                                                 consume: str) -> None:
    server.enqueue(MockReply.tool_calls([call("call_1")], reasoning="Let me add."),
                   MockReply.text("It is 4.", reasoning="The tool said 4."))
    seen: List[Tuple[str, Any, threading.Thread]] = []

    def record(kind: str) -> Any:
        return lambda value: seen.append((kind, value, threading.current_thread()))

    stream = client.conversation(tools=[add]).send_stream(
        "2+2?", on_reasoning=record("reasoning"), on_content=record("content"), on_tool_call=record("tool_call"),
        on_tool_result=record("tool_result"), on_done=record("done"))
    if consume == "iterate":
        events = list(stream)
        assert [(kind, value) for kind, value, _ in seen] == [(e.type, payload(e)) for e in events]
        final = events[-1].final
        assert final is not None
        resp = final
    else:
        resp = stream.result()
    kinds = [kind for kind, _, _ in seen]
    assert kinds == ["reasoning"] * 3 + ["tool_call", "tool_result"] + ["reasoning"] * 4 + ["content"] * 3 + ["done"]
    assert "".join(value for kind, value, _ in seen if kind == "reasoning") == resp.reasoning
    assert resp.reasoning == "Let me add.The tool said 4." and resp.content == "It is 4."
    assert {thread for _, _, thread in seen} == {threading.current_thread()}


@pytest.mark.parametrize("consume", ["iterate", "result"])
def test_a_raising_on_reasoning_ends_the_stream_with_callback_error(server: MockServer, client: promptkit.Client,
                                                                    consume: str) -> None:
    server.enqueue(MockReply.stall(reasoning="Thinking hard"))  # then silent until the client leaves

    def refuse(text: str) -> None:
        raise ValueError(f"no thanks: {text}")

    conv = client.conversation()
    stream = conv.send_stream("q", on_reasoning=refuse)
    with pytest.raises(promptkit.CallbackError) as info:
        if consume == "iterate":
            for _ in stream:
                pass
        else:
            stream.result()
    assert isinstance(info.value.__cause__, ValueError) and "on_reasoning" in str(info.value)
    assert server.disconnected.wait(5)  # the upstream request was cancelled
    assert stream.done
    with pytest.raises(promptkit.CallbackError):
        stream.result()  # the same outcome again
    assert conv.messages == []


# -- what relays send --------------------------------------------------------------------------


def test_to_dict_of_a_reasoning_event() -> None:
    assert StreamEvent("reasoning", reasoning="2+2 is 4").to_dict() == {
        "type": "reasoning", "content": "", "tool_call": None, "final": None, "error": None, "reasoning": "2+2 is 4"}
    for other in (StreamEvent("content", content="4"), StreamEvent("done", final=promptkit.Response(reasoning="r"))):
        assert "reasoning" not in other.to_dict()
    final = StreamEvent("done", final=promptkit.Response(content="4", reasoning="2+2 is 4")).to_dict()["final"]
    assert final["reasoning"] == "2+2 is 4" and final["content"] == "4"


def test_iter_sse_frames_reasoning_events(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.text("It is 4.", reasoning="Two plus two is four."))
    conv = client.conversation()
    frames = b"".join(conv.send_stream("2+2?").iter_sse(heartbeat=None))
    parsed = SSEParser().feed(frames)
    data = [json.loads(p.data) for p in parsed]
    assert [p.event for p in parsed] == [d["type"] for d in data]
    assert [d["type"] for d in data] == ["reasoning"] * 5 + ["content"] * 3 + ["done"]
    assert [p.id for p in parsed] == [str(n) for n in range(1, 10)]
    assert "".join(d["reasoning"] for d in data[:5]) == "Two plus two is four."
    assert all(d["content"] == "" for d in data[:5]) and all("reasoning" not in d for d in data[5:])
    assert data[-1]["final"]["reasoning"] == "Two plus two is four." and data[-1]["final"]["content"] == "It is 4."


class FakeSocket:
    """The duck type relay_websocket takes: ``send(str)`` and a ``receive()`` that returns ``None`` once closed."""

    def __init__(self, *frames: Dict[str, Any]) -> None:
        self.incoming: "queue.Queue[Optional[str]]" = queue.Queue()
        for frame in frames:
            self.incoming.put(json.dumps(frame))
        self.sent: List[Dict[str, Any]] = []

    def receive(self) -> Optional[str]:
        return self.incoming.get(timeout=10)

    def send(self, text: str) -> None:
        frame = json.loads(text)
        self.sent.append(frame)
        if frame["type"] in ("done", "error"):
            self.incoming.put(None)  # the client hangs up once its turn has ended


def test_the_websocket_relay_sends_reasoning_frames(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.text("It is 4.", reasoning="Two plus two is four."))
    ws = FakeSocket({"action": "send_message", "message": "2+2?"})
    assert relay_websocket(ws, client.conversation()) == 1
    assert [f["type"] for f in ws.sent] == ["reasoning"] * 5 + ["content"] * 3 + ["done"]
    assert "".join(f["reasoning"] for f in ws.sent[:5]) == "Two plus two is four."
    assert ws.sent[-1]["final"]["reasoning"] == "Two plus two is four."


# -- the retry rule ----------------------------------------------------------------------------


def test_reasoning_counts_as_output_a_reset_after_it_is_not_retried(server: MockServer,
                                                                    client: promptkit.Client) -> None:
    server.enqueue(MockReply.reset(reasoning="Let me think"), MockReply.text("must not be requested"))
    conv = client.conversation()
    events = list(conv.send_stream("q"))
    assert [e.type for e in events] == ["reasoning"] * 3 + ["error"]
    error = events[-1].error
    assert type(error) is promptkit.APIConnectionError
    assert error.partial is not None and error.partial.reasoning == "Let me think" and error.partial.content == ""
    assert len(server.requests) == 1  # no retry once reasoning reached the consumer
    assert conv.messages == []


def test_a_reset_before_any_reasoning_is_retried(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(MockReply.reset(), MockReply.text("It is 4.", reasoning="Easy."))  # the role chunk, then a RST
    conv = client.conversation()
    events = list(conv.send_stream("q"))
    assert [e.type for e in events] == ["reasoning", "content", "content", "content", "done"]
    assert len(server.requests) == 2
    assert conv.messages[-1] == {"role": "assistant", "content": "It is 4.", "reasoning_content": "Easy."}
