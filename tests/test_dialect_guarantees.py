"""What promptkit promises holds on every wire dialect: each test runs once per dialect.

Against promptkit's own MockServer, which renders the same scripted reply in
each protocol (the wire format of each is checked against the official SDK in
tests/test_testing*.py, and the dialects against independent servers in
tests/test_llmock.py). The dialect-specific decoding is tested in
tests/test_chat_decoder.py and tests/test_responses_decoder.py.
"""

from __future__ import annotations

import threading
from typing import Iterator, List

import pytest

import promptkit
from promptkit._dialects import APIS
from promptkit.testing import MockReply, MockServer

GUARD = 30.0
KEY = "sk-dialect-SECRET-0123456789"


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


@pytest.fixture
def client(server: MockServer, api: str) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key=KEY, api=api, max_retries=2, timeout=promptkit.Timeout(idle=5, total=60)) as c:
        yield c


ENDPOINTS = {"chat": "/v1/chat/completions", "responses": "/v1/responses", "anthropic": "/v1/messages"}


def test_the_request_goes_to_the_dialects_endpoint_with_its_credentials(client: promptkit.Client, server: MockServer, api: str) -> None:
    server.enqueue(MockReply.text("hi"))
    assert client.conversation().send("q").content == "hi"
    request = server.requests[0]
    assert request.path == ENDPOINTS[api]
    if api == "anthropic":
        assert request.headers["x-api-key"] == KEY and request.headers["anthropic-version"] and "authorization" not in request.headers
    else:
        assert request.headers["Authorization"] == f"Bearer {KEY}" and "x-api-key" not in request.headers


def test_events_arrive_as_deltas_and_end_in_one_terminal_event(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.text("one two three", chunk_size=4, reasoning="think"))
    conv = client.conversation(system_prompt="s")
    seen: List[str] = []
    events = list(conv.send_stream("q", on_reasoning=seen.append))
    kinds = [e.type for e in events]
    assert kinds[0] == "reasoning" and kinds.count("content") == 4 and kinds[-1] == "done"
    assert sum(e.is_terminal for e in events) == 1
    final = events[-1].final
    assert final is not None and final.content == "one two three" and final.reasoning == "think" == "".join(seen)
    assert final.finish_reason == "stop" and final.usage.total_tokens > 0 and not final.usage.estimated
    assert conv.messages[-1]["content"] == "one two three" and conv.messages[-1]["reasoning_content"] == "think"


def test_a_cancelled_turn_commits_what_the_consumer_saw(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    conv = client.conversation()
    stream = conv.send_stream("q")
    for event in stream:
        if event.type == "content":
            break  # leaving the loop cancels
    response = stream.result()
    assert response.finish_reason == "cancelled" and response.content == "partial"
    assert conv.messages[-1] == {"role": "assistant", "content": "partial"}
    assert server.disconnected.wait(GUARD)


def test_a_reset_before_any_output_is_retried_and_never_after(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.reset(), MockReply.text("ok"))
    assert client.conversation().send("q").content == "ok"
    assert len(server.requests) == 2
    server.enqueue(MockReply.reset(after_text="half"))
    conv = client.conversation()
    with pytest.raises(promptkit.APIConnectionError) as info:
        conv.send("q")
    assert info.value.partial is not None and info.value.partial.content == "half"
    assert len(server.requests) == 3 and conv.messages == []


def test_a_truncated_stream_is_an_error_never_a_quiet_success(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(*[MockReply.truncate(after_text="cut")] * 3)
    with pytest.raises(promptkit.StreamTruncatedError) as info:
        client.conversation().send("q")
    assert info.value.partial is not None and info.value.partial.content == "cut"


def test_an_in_band_error_keeps_the_partial_reply_and_never_the_key(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error(f"quota exceeded for key {KEY}", after_text="some", code="insufficient_quota"))
    stream = client.conversation().send_stream("q")
    events = list(stream)
    assert [e.type for e in events] == ["content", "error"]
    error = events[-1].error
    assert isinstance(error, promptkit.StreamError) and "quota exceeded" in str(error) and KEY not in str(error)
    assert KEY not in repr(error.body) and error.partial is not None and error.partial.content == "some"


def test_a_silent_server_is_an_idle_timeout(server: MockServer, api: str) -> None:
    server.enqueue(*[MockReply.stall(after_text="x")] * 2)
    with promptkit.Client(base_url=server.url, api_key=KEY, api=api, max_retries=0, timeout=promptkit.Timeout(idle=0.3)) as client:
        with pytest.raises(promptkit.APITimeoutError) as info:
            client.conversation().send("q")
    assert info.value.kind == "idle" and info.value.partial is not None and info.value.partial.content == "x"


def test_limits_hold(server: MockServer, api: str) -> None:
    server.enqueue(MockReply.text("x" * 5000))
    with promptkit.Client(base_url=server.url, api_key=KEY, api=api, limits=promptkit.Limits(max_reply_chars=1000)) as client:
        with pytest.raises(promptkit.StreamError, match="max_reply_chars"):
            client.conversation().send("q")


def test_the_tool_loop_runs_handlers_and_sends_results_back(client: promptkit.Client, server: MockServer, api: str) -> None:
    @promptkit.tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    server.enqueue(
        MockReply.tool_calls([{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "add", "arguments": {"a": 3, "b": 4}}]),
        MockReply.text("3 and 7"),
    )
    conv = client.conversation(tools=[add])
    events = list(conv.send_stream("sums?"))
    assert [e.type for e in events if e.type != "content"] == ["tool_call", "tool_call", "tool_result", "tool_result", "done"]
    response = events[-1].final
    assert response is not None and response.content == "3 and 7" and response.rounds == 2
    assert [r.content for r in response.tool_results] == ["3", "7"]
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "tool", "tool", "assistant"]
    body = server.requests[1].body
    if api == "chat":
        assert body["tools"][0]["function"]["name"] == "add" and body["messages"][-1]["role"] == "tool"
    elif api == "responses":
        assert body["tools"][0]["name"] == "add"
        assert [i.get("type") for i in body["input"][-2:]] == ["function_call_output", "function_call_output"]
    else:
        assert body["tools"][0]["name"] == "add" and body["tools"][0]["input_schema"]["type"] == "object"
        assert [b["type"] for b in body["messages"][-1]["content"]] == ["tool_result", "tool_result"]


def test_pending_tool_calls_are_answered_by_the_application(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.tool_calls([{"name": "lookup", "arguments": {"q": "x"}}]), MockReply.text("found"))
    spec = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}
    conv = client.conversation(tools=[spec])
    first = conv.send("find x")
    assert first.finish_reason == "tool_calls" and [c.name for c in first.tool_calls] == ["lookup"]
    conv.add_tool_result(first.tool_calls[0].id, "the answer")
    assert conv.send().content == "found"
    assert conv.messages[-2] == {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "the answer"}


def test_cost_and_usage_add_up_over_rounds(client: promptkit.Client, server: MockServer) -> None:
    @promptkit.tool
    def ping() -> str:
        """Ping."""
        return "pong"

    server.enqueue(MockReply.tool_calls([{"name": "ping", "arguments": {}}]), MockReply.text("done"))
    conv = client.conversation(tools=[ping])
    response = conv.send("go")
    assert response.rounds == 2 and response.cost > 0 and response.cost_known
    assert conv.usage == response.usage and response.usage.prompt_tokens > 0


def test_a_conversation_continues_on_the_other_dialect(server: MockServer, api: str) -> None:
    other = next(name for name in APIS if name != api)
    store = promptkit.MemoryStore()
    server.enqueue(MockReply.text("first", reasoning="r1"), MockReply.text("second"))
    with promptkit.Client(base_url=server.url, api_key=KEY, api=api, store=store) as one:
        one.conversation(conversation_id="c1", system_prompt="s").send("hello")
    with promptkit.Client(base_url=server.url, api_key=KEY, api=other, store=store) as two:
        conv = two.conversations().get("c1")
        assert conv.send("again").content == "second"
    assert [m["role"] for m in conv.messages] == ["system", "user", "assistant", "user", "assistant"]


def test_cancel_from_another_thread_while_waiting_for_headers(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.stall(before_headers=True))
    conv = client.conversation()
    returned: List[promptkit.Response] = []
    thread = threading.Thread(target=lambda: returned.append(conv.send("q")))
    thread.start()
    assert server.wait_for_requests(1, GUARD)
    conv.cancel()
    thread.join(GUARD)
    assert returned and returned[0].finish_reason == "cancelled" and conv.messages == []
