"""The tool loop end to end: conversations with tools against the embedded mock server.

Synchronisation is by Events and joins with timeouts. A handler that must
"take a while" waits on an Event nobody sets (a bounded wait), and every
handler thread left running by a timeout or a cancel is released and joined
before the test ends.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Tuple

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit._types import Usage

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
WAIT = 5.0  # the longest any Event wait may take before the test fails

# A tool defined elsewhere, as an OpenAI dict: answered with on_tool or add_tool_result.
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look a word up.",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
    },
}


# ---------------------------------------------------------------- helpers


def assert_valid_history(messages: Sequence[Mapping[str, Any]], *, allow_pending: bool = False,
                         json_arguments: bool = True) -> List[str]:
    """Fail unless ``messages`` is a message list an OpenAI-compatible server accepts.

    Every assistant ``tool_calls`` entry must be answered by exactly one ``tool``
    message among those right after it, and every ``tool`` message must answer
    a call of that assistant message. With ``allow_pending``, the calls of the
    last message may be unanswered (a turn that ended with pending tools); their
    ids are returned. ``json_arguments`` also requires each call's arguments to
    be a JSON object string (vLLM and several providers parse them).
    """
    json.dumps(list(messages))  # JSON-safe as a whole
    open_calls: Dict[str, str] = {}
    for i, message in enumerate(messages):
        role = message.get("role")
        where = f"message {i} ({role})"
        assert role in ("system", "user", "assistant", "tool"), f"{where}: unknown role"
        if role != "tool":
            assert not open_calls, f"{where}: tool calls {sorted(open_calls)} have no tool message"
        if role in ("system", "user"):
            assert isinstance(message.get("content"), str), f"{where}: content must be a str"
        elif role == "assistant":
            calls = message.get("tool_calls")
            content = message.get("content")
            if calls is None:
                assert isinstance(content, str), f"{where}: content must be a str without tool_calls"
                continue
            assert isinstance(calls, list) and calls, f"{where}: tool_calls must be a non-empty list"
            assert content is None or isinstance(content, str), f"{where}: content must be a str or None"
            for call in calls:
                assert call.get("type") == "function", f"{where}: {call!r} is not a function call"
                call_id, function = call.get("id"), call.get("function") or {}
                assert isinstance(call_id, str) and call_id, f"{where}: a tool call without an id"
                assert call_id not in open_calls, f"{where}: duplicate tool call id {call_id!r}"
                assert isinstance(function.get("name"), str) and function["name"], f"{where}: call without name"
                arguments = function.get("arguments")
                assert isinstance(arguments, str), f"{where}: arguments of {call_id!r} must be a str"
                if json_arguments:
                    try:
                        parsed = json.loads(arguments)
                    except ValueError:
                        parsed = None
                    assert isinstance(parsed, dict), f"{where}: arguments of {call_id!r} are not a JSON object: {arguments!r}"
                open_calls[call_id] = function["name"]
        else:
            call_id = message.get("tool_call_id")
            assert call_id in open_calls, f"{where}: tool_call_id {call_id!r} answers no open call {sorted(open_calls)}"
            assert isinstance(message.get("content"), str), f"{where}: content must be a str"
            del open_calls[call_id]
    assert allow_pending or not open_calls, f"tool calls {sorted(open_calls)} have no tool message"
    return list(open_calls)


def join_tool_threads() -> None:
    """Wait for tool handler threads (ones left running by a timeout or a cancel) to end."""
    for thread in threading.enumerate():
        if thread.name.startswith("promptkit-tool"):
            thread.join(WAIT)
            assert not thread.is_alive(), f"tool thread {thread.name} still running"


def calls_reply(*calls: Tuple[str, str, Any], **options: Any) -> MockReply:
    """A MockReply calling tools: each call is ``(id, name, arguments dict or JSON text)``."""
    return MockReply.tool_calls([{"id": i, "name": n, "arguments": a} for i, n, a in calls], **options)


def usage_dict(prompt: int, completion: int, cached: int = 0) -> Dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def error_text(content: str) -> str:
    body = json.loads(content)
    assert list(body) == ["error"], content
    return body["error"]


# ---------------------------------------------------------------- tools

WEATHER = {"Paris": {"temp_c": 18, "sky": "cloudy"}, "Rome": {"temp_c": 24, "sky": "sunny"}}


@promptkit.tool
def get_weather(city: str) -> Dict[str, Any]:
    """The current weather in a city.

    Args:
        city: the city name, e.g. "Paris".
    """
    if city not in WEATHER:
        raise ValueError(f"no weather data for {city}")
    return {"city": city, **WEATHER[city]}


@promptkit.tool
def get_time(city: str) -> str:
    """The local time in a city.

    Args:
        city: the city name.
    """
    return {"Paris": "09:30", "Rome": "09:30", "Tokyo": "16:30"}.get(city, "unknown")


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def make_client(server: MockServer, **options: Any) -> promptkit.Client:
    return promptkit.Client(base_url=server.url, api_key="sk-test", timeout=promptkit.Timeout(idle=10), **options)


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with make_client(server) as c:
        yield c


# ---------------------------------------------------------------- the loop


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_two_round_loop_on_one_stream(framing: str) -> None:
    with MockServer(framing=framing) as server, make_client(server) as client:
        server.enqueue(
            calls_reply(("call_a", "get_weather", {"city": "Paris"}), ("call_b", "get_time", {"city": "Tokyo"}),
                        usage=usage_dict(40, 12, cached=8)),
            MockReply.text("Paris is cloudy at 18C; in Tokyo it is 16:30.", usage=usage_dict(90, 15)),
        )
        conv = client.conversation(system_prompt="You help travellers.", tools=[get_weather, get_time])
        events = list(conv.send_stream("Weather in Paris, time in Tokyo?"))

    types = [e.type for e in events]
    assert types[:4] == ["tool_call", "tool_call", "tool_result", "tool_result"]
    assert set(types[4:-1]) == {"content"} and types[-1] == "done"
    assert "".join(e.content for e in events) == "Paris is cloudy at 18C; in Tokyo it is 16:30."

    first, second = events[0].tool_call, events[1].tool_call
    assert (first.id, first.name, first.arguments) == ("call_a", "get_weather", {"city": "Paris"})
    assert (second.id, second.name, second.arguments) == ("call_b", "get_time", {"city": "Tokyo"})
    weather_json = json.dumps({"city": "Paris", "temp_c": 18, "sky": "cloudy"})
    results = [e.tool_result for e in events[2:4]]
    assert [(r.call_id, r.name, r.content, r.is_error) for r in results] == [
        ("call_a", "get_weather", weather_json, False),
        ("call_b", "get_time", "16:30", False),
    ]
    for event in events:
        json.dumps(event.to_dict())
    assert events[2].to_dict()["tool_result"] == results[0].to_dict()

    # The second request carries the assistant's calls and one tool message per call.
    assert len(server.requests) == 2
    sent = server.requests[1].body["messages"]
    assert sent[:2] == [{"role": "system", "content": "You help travellers."},
                        {"role": "user", "content": "Weather in Paris, time in Tokyo?"}]
    assistant = sent[2]
    assert assistant["role"] == "assistant" and not assistant.get("content")
    assert [(c["id"], c["type"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in assistant["tool_calls"]] == [
        ("call_a", "function", "get_weather", {"city": "Paris"}),
        ("call_b", "function", "get_time", {"city": "Tokyo"}),
    ]
    assert sent[3:] == [{"role": "tool", "tool_call_id": "call_a", "content": weather_json},
                        {"role": "tool", "tool_call_id": "call_b", "content": "16:30"}]
    assert_valid_history(sent)
    for request in server.requests:
        assert [t["function"]["name"] for t in request.body["tools"]] == ["get_weather", "get_time"]
        assert request.body["stream"] is True

    resp = events[-1].final
    assert resp.content == "Paris is cloudy at 18C; in Tokyo it is 16:30."
    assert resp.finish_reason == "stop" and resp.rounds == 2
    assert [c.id for c in resp.tool_calls] == ["call_a", "call_b"]
    assert tuple(resp.tool_results) == tuple(results)
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (130, 27, 157)
    assert resp.usage.cached_tokens == 8 and not resp.usage.estimated
    expected_cost = sum(client.prices.cost(Usage.from_openai(u), "gpt-4o-mini")[0]
                        for u in (usage_dict(40, 12, cached=8), usage_dict(90, 15)))
    assert resp.cost == pytest.approx(expected_cost) and resp.cost > 0
    assert conv.usage == resp.usage and conv.total_cost == pytest.approx(resp.cost)
    assert conv.last_response == resp

    history = conv.messages
    assert [m["role"] for m in history] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert history[2:5] == sent[2:5]
    assert history[-1] == {"role": "assistant", "content": resp.content}
    assert_valid_history(history)
    assert conv.pending_tool_calls == []


def test_history_after_the_loop_is_sent_on_the_next_turn(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(calls_reply(("c1", "get_weather", {"city": "Rome"})), MockReply.text("Sunny."), MockReply.text("Bye."))
    conv = client.conversation(tools=[get_weather])
    conv.send("Rome?")
    assert conv.send("Thanks").content == "Bye."
    sent = server.requests[2].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert_valid_history(sent)


def test_three_rounds_sum_usage_and_keep_every_call(server: MockServer, client: promptkit.Client) -> None:
    usages = [usage_dict(30, 9), usage_dict(55, 11, cached=20), usage_dict(80, 6)]
    server.enqueue(
        calls_reply(("r1", "get_weather", {"city": "Paris"}), usage=usages[0]),
        calls_reply(("r2a", "get_time", {"city": "Paris"}), ("r2b", "get_time", {"city": "Rome"}), usage=usages[1]),
        MockReply.text("Done.", usage=usages[2]),
    )
    conv = client.conversation(tools=[get_weather, get_time])
    resp = conv.send("plan my day")
    assert resp.rounds == 3 and resp.content == "Done."
    assert [c.id for c in resp.tool_calls] == ["r1", "r2a", "r2b"]
    assert [r.call_id for r in resp.tool_results] == ["r1", "r2a", "r2b"]
    parsed = [Usage.from_openai(u) for u in usages]
    assert resp.usage == parsed[0] + parsed[1] + parsed[2]
    assert resp.usage.total_tokens == 191
    assert resp.cost == pytest.approx(sum(client.prices.cost(u, "gpt-4o-mini")[0] for u in parsed))
    assert len(server.requests) == 3
    for request in server.requests:
        assert_valid_history(request.body["messages"])
    assert_valid_history(conv.messages)


def test_usage_sums_what_the_mock_computed_per_round(server: MockServer, client: promptkit.Client) -> None:
    # The mock's own usage: prompt_tokens = len(json.dumps(messages)) // 4 for each request.
    server.enqueue(calls_reply(("u1", "get_weather", {"city": "Paris"})), MockReply.text("Cloudy."))
    resp = client.conversation(tools=[get_weather]).send("Paris?")
    prompts = [max(1, len(json.dumps(r.body["messages"])) // 4) for r in server.requests]
    assert len(prompts) == 2
    assert resp.usage.prompt_tokens == sum(prompts)
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.usage.completion_tokens > 0 and not resp.usage.estimated


def test_callbacks_fire_in_event_order(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(calls_reply(("k1", "get_time", {"city": "Rome"}), ("k2", "get_time", {"city": "Paris"})),
                   MockReply.text("Both 09:30."))
    log: List[Tuple[str, Any]] = []
    stream = client.conversation(tools=[get_time]).send_stream(
        "times?",
        on_tool_call=lambda call: log.append(("tool_call", call.id)),
        on_tool_result=lambda result: log.append(("tool_result", result.call_id)),
        on_content=lambda text: log.append(("content", text)),
        on_done=lambda resp: log.append(("done", resp)),
    )
    resp = stream.result()
    assert log[:4] == [("tool_call", "k1"), ("tool_call", "k2"), ("tool_result", "k1"), ("tool_result", "k2")]
    assert all(kind == "content" for kind, _ in log[4:-1])
    assert "".join(text for _, text in log[4:-1]) == "Both 09:30."
    assert log[-1] == ("done", resp)


# ---------------------------------------------------------------- parallel and sequential


def test_parallel_calls_keep_call_order_when_the_second_finishes_first(server: MockServer,
                                                                       client: promptkit.Client) -> None:
    second_done = threading.Event()
    finished: List[str] = []

    @promptkit.tool
    def first() -> str:
        # Returns only after the second call has finished: needs two handlers running at once.
        ok = second_done.wait(WAIT)
        finished.append("first")
        return "first result" if ok else "second never finished"

    @promptkit.tool
    def second() -> str:
        finished.append("second")
        second_done.set()
        return "second result"

    server.enqueue(calls_reply(("p1", "first", {}), ("p2", "second", {})), MockReply.text("ok"))
    conv = client.conversation(tools=[first, second])
    events = list(conv.send_stream("go"))
    assert finished == ["second", "first"]
    results = [e.tool_result for e in events if e.type == "tool_result"]
    assert [(r.call_id, r.content) for r in results] == [("p1", "first result"), ("p2", "second result")]
    tool_messages = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert tool_messages == [{"role": "tool", "tool_call_id": "p1", "content": "first result"},
                             {"role": "tool", "tool_call_id": "p2", "content": "second result"}]
    assert_valid_history(conv.messages)


def _counting_tools(overlap_probe: float) -> Tuple[List[promptkit.Tool], Dict[str, Any]]:
    """Three tools that record the order they ran in and the most of them running at once.

    Each waits up to ``overlap_probe`` seconds for another handler to start while
    it runs, so a loop that runs them concurrently is caught every time.
    """
    state: Dict[str, Any] = {"active": 0, "most": 0, "order": []}
    lock = threading.Lock()
    overlap = threading.Event()

    def make(name: str) -> promptkit.Tool:
        def handler() -> str:
            with lock:
                state["active"] += 1
                state["most"] = max(state["most"], state["active"])
                state["order"].append(name)
                if state["active"] > 1:
                    overlap.set()
            overlap.wait(overlap_probe)
            with lock:
                state["active"] -= 1
            return name

        return promptkit.Tool(name, f"tool {name}", handler=handler)

    return [make("one"), make("two"), make("three")], state


def test_tool_workers_1_runs_calls_one_by_one_in_call_order(server: MockServer) -> None:
    tools, state = _counting_tools(overlap_probe=0.2)
    with make_client(server, tool_workers=1) as client:
        server.enqueue(calls_reply(("s1", "one", {}), ("s2", "two", {}), ("s3", "three", {})), MockReply.text("ok"))
        resp = client.conversation(tools=tools).send("go")
    assert state["most"] == 1
    assert state["order"] == ["one", "two", "three"]
    assert [(r.call_id, r.content) for r in resp.tool_results] == [("s1", "one"), ("s2", "two"), ("s3", "three")]


def test_default_workers_run_calls_concurrently(server: MockServer, client: promptkit.Client) -> None:
    tools, state = _counting_tools(overlap_probe=WAIT)
    server.enqueue(calls_reply(("s1", "one", {}), ("s2", "two", {}), ("s3", "three", {})), MockReply.text("ok"))
    resp = client.conversation(tools=tools).send("go")
    assert state["most"] >= 2
    assert [r.call_id for r in resp.tool_results] == ["s1", "s2", "s3"]


# ---------------------------------------------------------------- failures become results


def test_handler_exception_is_sent_as_an_error_result_and_logged(server: MockServer, client: promptkit.Client,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    server.enqueue(calls_reply(("e1", "get_weather", {"city": "Atlantis"}), ("e2", "get_weather", {"city": "Rome"})),
                   MockReply.text("Atlantis has no data; Rome is sunny."))
    conv = client.conversation(tools=[get_weather])
    with caplog.at_level(logging.WARNING, logger="promptkit"):
        events = list(conv.send_stream("Atlantis and Rome?"))
    assert events[-1].type == "done"
    bad, good = [e.tool_result for e in events if e.type == "tool_result"]
    assert bad.is_error and bad.content == json.dumps({"error": "ValueError: no weather data for Atlantis"})
    assert not good.is_error and json.loads(good.content)["sky"] == "sunny"
    tool_messages = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert tool_messages[0] == {"role": "tool", "tool_call_id": "e1", "content": bad.content}
    records = [r for r in caplog.records if r.name == "promptkit._tools" and "e1" in r.getMessage()]
    assert records and records[0].levelno == logging.WARNING and records[0].exc_info is not None
    assert events[-1].final.content == "Atlantis has no data; Rome is sunny."
    assert_valid_history(conv.messages)


@pytest.mark.parametrize(
    "raw, why",
    [
        ('{"city": "Par', "invalid JSON"),
        ('["Paris"]', "not a JSON object"),
        ('{"town": "Paris"}', "missing a required argument: 'city'"),
    ],
    ids=["truncated-json", "not-an-object", "wrong-argument-name"],
)
def test_bad_arguments_become_an_error_result_without_calling_the_handler(
    server: MockServer, client: promptkit.Client, raw: str, why: str
) -> None:
    called: List[Dict[str, Any]] = []

    @promptkit.tool
    def weather(city: str) -> str:
        called.append({"city": city})
        return "sunny"

    server.enqueue(calls_reply(("b1", "weather", raw)), MockReply.text("Sorry, let me retry."))
    conv = client.conversation(tools=[weather])
    events = list(conv.send_stream("weather?"))
    assert [e.type for e in events][:2] == ["tool_call", "tool_result"] and events[-1].type == "done"
    call, result = events[0].tool_call, events[1].tool_result
    assert call.arguments_json == raw
    if why.startswith("invalid JSON") or why.startswith("not a JSON"):
        assert call.arguments == {} and call.arguments_error is not None
    assert called == []
    assert result.is_error and result.call_id == "b1"
    message = error_text(result.content)
    assert "invalid arguments for tool 'weather'" in message and why in message
    assert server.requests[1].body["messages"][-1] == {"role": "tool", "tool_call_id": "b1", "content": result.content}
    assert events[-1].final.content == "Sorry, let me retry."
    assert_valid_history(conv.messages, json_arguments=False)


def test_bad_arguments_do_not_poison_the_history(server: MockServer, client: promptkit.Client) -> None:
    # vLLM and several providers json-decode the history's arguments and reject the whole request
    # otherwise: the call is replayed as "{}" and the tool result quotes what the model sent.
    server.enqueue(calls_reply(("b1", "get_weather", '{"city": "Par')), MockReply.text("Sorry."))
    conv = client.conversation(tools=[get_weather])
    resp = conv.send("weather?")
    sent = server.requests[1].body["messages"]
    assert_valid_history(sent)
    assert_valid_history(conv.messages)
    assert resp.tool_calls[0].arguments_json == '{"city": "Par'  # the Response keeps the raw text
    assert error_text(sent[-1]["content"]).endswith('; you sent: {"city": "Par')


def test_tool_timeout_becomes_an_error_result(server: MockServer, client: promptkit.Client,
                                              caplog: pytest.LogCaptureFixture) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    @promptkit.tool(timeout=0.2)
    def slow_lookup(word: str) -> str:
        entered.set()
        release.wait(WAIT)
        finished.set()
        return "too late"

    server.enqueue(calls_reply(("t1", "slow_lookup", {"word": "x"}), ("t2", "get_time", {"city": "Rome"})),
                   MockReply.text("The lookup timed out."))
    conv = client.conversation(tools=[slow_lookup, get_time])
    try:
        with caplog.at_level(logging.WARNING, logger="promptkit"):
            resp = conv.send("look it up")
        assert entered.is_set() and not finished.is_set()  # the turn went on without waiting for the handler
    finally:
        release.set()
        join_tool_threads()
    assert finished.is_set()
    timed_out, ok = resp.tool_results
    assert timed_out.is_error and error_text(timed_out.content) == "tool 'slow_lookup' timed out after 0.2s"
    assert (ok.content, ok.is_error) == ("09:30", False)
    assert resp.content == "The lookup timed out." and resp.rounds == 2
    assert server.requests[1].body["messages"][-2]["content"] == timed_out.content
    assert any("timed out" in r.getMessage() for r in caplog.records)
    assert_valid_history(conv.messages)


def test_tool_timeout_counts_from_the_calls_own_start(server: MockServer) -> None:
    # With one worker, a call queued behind a slow one must not time out before it even starts.
    ran: List[str] = []

    @promptkit.tool
    def slow() -> str:
        threading.Event().wait(0.6)  # a slow tool: 0.6 s of work
        ran.append("slow")
        return "slow done"

    @promptkit.tool(timeout=0.3)
    def fast() -> str:
        ran.append("fast")
        return "fast done"

    with make_client(server, tool_workers=1) as client:
        server.enqueue(calls_reply(("a", "slow", {}), ("b", "fast", {})), MockReply.text("ok"))
        resp = client.conversation(tools=[slow, fast]).send("go")
    join_tool_threads()
    assert [(r.call_id, r.content) for r in resp.tool_results] == [("a", "slow done"), ("b", "fast done")]


def test_timed_out_handler_does_not_hold_up_the_next_call(server: MockServer) -> None:
    hung_finished = threading.Event()
    release = threading.Event()  # set only after the turn: the handler hangs until then, past its timeout
    seen: List[bool] = []

    @promptkit.tool(timeout=0.2)
    def hang() -> str:
        release.wait(60)
        hung_finished.set()
        return "late"

    @promptkit.tool
    def quick() -> str:
        seen.append(hung_finished.is_set())
        return "quick"

    with make_client(server, tool_workers=1) as client:
        server.enqueue(calls_reply(("a", "hang", {}), ("b", "quick", {})), MockReply.text("ok"))
        try:
            resp = client.conversation(tools=[hang, quick]).send("go")
        finally:
            release.set()
    join_tool_threads()
    assert [(r.call_id, r.is_error) for r in resp.tool_results] == [("a", True), ("b", False)]
    assert seen == [False]  # the quick call ran while the hung one was still running


def test_total_deadline_during_tools_ends_the_turn(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    release = threading.Event()

    @promptkit.tool
    def block() -> str:
        release.wait(WAIT)
        return "late"

    timeout = promptkit.Timeout(idle=10, total=1.0)
    with promptkit.Client(base_url=server.url, api_key="sk-test", timeout=timeout) as client:
        server.enqueue(calls_reply(("d1", "block", {})))
        conv = client.conversation(tools=[block])
        try:
            with caplog.at_level(logging.WARNING, logger="promptkit"):
                events = list(conv.send_stream("go"))
        finally:
            release.set()
            join_tool_threads()
    error = events[-1].error
    assert isinstance(error, promptkit.APITimeoutError) and error.kind == "total"
    assert not server.wait_for_requests(2, timeout=0.2)  # no request after the deadline
    assert conv.messages == []
    messages = [r.getMessage() for r in caplog.records if "block" in r.getMessage()]
    assert messages and all("None" not in m for m in messages)
    assert any("deadline" in m for m in messages)


# ---------------------------------------------------------------- max_rounds


def test_max_rounds_ends_the_turn_with_a_tool_error(server: MockServer, client: promptkit.Client) -> None:
    conv = client.conversation(system_prompt="s", tools=[get_time], max_rounds=3)
    server.enqueue(MockReply.text("first turn"))
    conv.send("hello")
    before = conv.messages
    usage_before = conv.usage
    for i in range(3):  # the model never stops calling tools (a 4th request would get a plain story)
        server.enqueue(calls_reply((f"m{i}", "get_time", {"city": "Rome"}), usage=usage_dict(10, 5)))
    events = list(conv.send_stream("loop forever"))
    assert [e.type for e in events] == ["tool_call", "tool_result"] * 2 + ["tool_call", "error"]
    error = events[-1].error
    assert isinstance(error, promptkit.ToolError) and "max_rounds=3" in str(error)
    assert len(server.requests) == 1 + 3
    assert conv.messages == before  # a failed turn commits nothing
    assert conv.usage.total_tokens == usage_before.total_tokens + 3 * 15  # but its tokens count
    assert conv.pending_tool_calls == []
    server.enqueue(MockReply.text("back to normal"))
    assert conv.send("stop").content == "back to normal"
    assert_valid_history(server.requests[-1].body["messages"])


def test_max_rounds_default_comes_from_the_client(server: MockServer) -> None:
    with make_client(server, max_rounds=2) as client:
        server.enqueue(*[calls_reply((f"x{i}", "get_time", {"city": "Rome"})) for i in range(2)])
        with pytest.raises(promptkit.ToolError, match="max_rounds=2"):
            client.conversation(tools=[get_time]).send("go")
    assert len(server.requests) == 2


def test_max_rounds_error_carries_the_partial_response(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(*[calls_reply((f"x{i}", "get_time", {"city": "Rome"})) for i in range(2)])
    with pytest.raises(promptkit.ToolError) as info:
        client.conversation(tools=[get_time], max_rounds=2).send("go")
    partial = info.value.partial
    assert partial is not None and partial.rounds == 2
    assert [c.id for c in partial.tool_calls] == ["x0", "x1"]
    assert [r.call_id for r in partial.tool_results] == ["x0"]


# ---------------------------------------------------------------- tools without handlers


def _pending_turn(server: MockServer, client: promptkit.Client) -> Tuple[promptkit.Conversation, promptkit.Response]:
    server.enqueue(calls_reply(("q1", "lookup", {"word": "ebb"}), ("q2", "lookup", {"word": "flow"}),
                               content="Let me look those up."))
    conv = client.conversation(system_prompt="s", tools=[LOOKUP])
    events = list(conv.send_stream("define ebb and flow"))
    assert [e.type for e in events if e.type != "content"] == ["tool_call", "tool_call", "done"]
    return conv, events[-1].final


def test_pending_tool_calls_end_the_turn(server: MockServer, client: promptkit.Client) -> None:
    conv, resp = _pending_turn(server, client)
    assert resp.finish_reason == "tool_calls"
    assert resp.content == "Let me look those up."
    assert [(c.id, c.arguments) for c in resp.tool_calls] == [("q1", {"word": "ebb"}), ("q2", {"word": "flow"})]
    assert resp.tool_results == () and resp.rounds == 1
    assert [c.id for c in conv.pending_tool_calls] == ["q1", "q2"]
    assert assert_valid_history(conv.messages, allow_pending=True) == ["q1", "q2"]
    assert conv.messages[-1]["content"] == "Let me look those up."
    assert len(server.requests) == 1


@pytest.mark.parametrize("how", ["send", "send_stream"])
def test_add_tool_result_then_continue_without_a_message(server: MockServer, client: promptkit.Client,
                                                         how: str) -> None:
    conv, _ = _pending_turn(server, client)
    conv.add_tool_result("q2", {"definition": "to move in"})  # answered out of order on purpose
    assert [c.id for c in conv.pending_tool_calls] == ["q1"]
    conv.add_tool_result("q1", "the tide going out")
    assert conv.pending_tool_calls == []
    server.enqueue(MockReply.text("Ebb: going out. Flow: coming in."))
    resp = conv.send() if how == "send" else conv.send_stream().result()
    assert resp.content == "Ebb: going out. Flow: coming in." and resp.finish_reason == "stop"

    sent = server.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]  # no new user message
    assert sent[1] == {"role": "user", "content": "define ebb and flow"}
    assert sent[3:] == [
        {"role": "tool", "tool_call_id": "q1", "content": "the tide going out"},
        {"role": "tool", "tool_call_id": "q2", "content": json.dumps({"definition": "to move in"})},
    ]
    assert_valid_history(sent)
    assert conv.messages == sent + [{"role": "assistant", "content": "Ebb: going out. Flow: coming in."}]
    assert conv.pending_tool_calls == []
    server.enqueue(MockReply.text("Anytime."))
    conv.send("thanks")
    assert_valid_history(server.requests[2].body["messages"])


def test_continue_with_a_new_message_after_answering(server: MockServer, client: promptkit.Client) -> None:
    conv, _ = _pending_turn(server, client)
    conv.add_tool_result("q1", "out")
    conv.add_tool_result("q2", "in", is_error=True)
    server.enqueue(MockReply.text("Short answer."))
    conv.send("keep it short")
    sent = server.requests[1].body["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool", "user"]
    assert sent[-1] == {"role": "user", "content": "keep it short"}
    assert_valid_history(sent)


def test_missing_results_raise_naming_the_call_ids(server: MockServer, client: promptkit.Client) -> None:
    conv, _ = _pending_turn(server, client)
    with pytest.raises(promptkit.ToolError, match="q1, q2"):
        conv.send()
    conv.add_tool_result("q2", "flow")
    for attempt in (lambda: conv.send(), lambda: conv.send_stream(), lambda: conv.send("new question")):
        with pytest.raises(promptkit.ToolError) as info:
            attempt()
        assert "q1" in str(info.value) and "q2" not in str(info.value)
        assert "add_tool_result" in str(info.value)
    assert len(server.requests) == 1  # nothing was sent
    conv.add_tool_result("q1", "ebb")  # the conversation was not left busy
    server.enqueue(MockReply.text("ok"))
    assert conv.send().content == "ok"


def test_add_tool_result_for_an_unknown_call_id(server: MockServer, client: promptkit.Client) -> None:
    conv, _ = _pending_turn(server, client)
    with pytest.raises(promptkit.ToolError, match=r"'nope'.*q1, q2"):
        conv.add_tool_result("nope", "x")
    assert [c.id for c in conv.pending_tool_calls] == ["q1", "q2"]
    fresh = client.conversation(tools=[LOOKUP])
    with pytest.raises(promptkit.ToolError, match="pending: none"):
        fresh.add_tool_result("call_1", "x")


def test_send_without_a_message_and_nothing_pending(client: promptkit.Client) -> None:
    with pytest.raises(promptkit.ConfigurationError):
        client.conversation().send()


def test_round_with_a_handlerless_call_leaves_it_pending(server: MockServer, client: promptkit.Client) -> None:
    server.enqueue(calls_reply(("h1", "get_time", {"city": "Rome"}), ("h2", "lookup", {"word": "tide"})))
    conv = client.conversation(tools=[get_time, LOOKUP])
    resp = conv.send("time and tide")
    assert resp.finish_reason == "tool_calls"
    pending = [c.id for c in conv.pending_tool_calls]
    assert "h2" in pending
    for call in conv.pending_tool_calls:
        conv.add_tool_result(call.id, "answered by the app")
    server.enqueue(MockReply.text("ok"))
    conv.send()
    assert_valid_history(server.requests[-1].body["messages"])


def test_pending_calls_with_finish_reason_stop(server: MockServer, client: promptkit.Client) -> None:
    # Ollama and some vLLM tool parsers end a tool-calling reply with finish_reason "stop".
    server.enqueue(calls_reply(("o1", "lookup", {"word": "ebb"}), finish_reason="stop"))
    conv = client.conversation(tools=[LOOKUP])
    resp = conv.send("define ebb")
    assert resp.finish_reason == "tool_calls"
    assert [c.id for c in conv.pending_tool_calls] == ["o1"]
    conv.add_tool_result("o1", "the tide going out")
    server.enqueue(MockReply.text("Ebb: going out."))
    conv.send()
    assert_valid_history(server.requests[1].body["messages"])


def test_call_to_an_unknown_tool_gets_an_error_result(server: MockServer, client: promptkit.Client) -> None:
    # A hallucinated name must not stall an app that only registers handler tools.
    server.enqueue(calls_reply(("u1", "get_wether", {"city": "Rome"})), MockReply.text("Let me try again."))
    conv = client.conversation(tools=[get_weather])
    resp = conv.send("weather in Rome?")
    assert resp.content == "Let me try again."
    assert error_text(resp.tool_results[0].content) == "unknown tool 'get_wether'"
    assert conv.pending_tool_calls == []


# ---------------------------------------------------------------- cancel during a tool round


def test_cancel_from_another_thread_while_a_handler_blocks(server: MockServer, client: promptkit.Client) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    @promptkit.tool
    def slow_search(query: str) -> str:
        entered.set()
        release.wait(WAIT)
        finished.set()
        return "results"

    server.enqueue(calls_reply(("c1", "slow_search", {"query": "tides"}), content="Searching."))
    conv = client.conversation(tools=[slow_search])
    stream = conv.send_stream("search tides")
    events: List[promptkit.StreamEvent] = []
    consumer = threading.Thread(target=lambda: events.extend(stream), name="test-consumer")
    consumer.start()  # the consuming thread runs the turn: it starts the handler and waits for it
    try:
        assert entered.wait(WAIT)
        stream.cancel()  # from another thread than the one waiting for the handler
        consumer.join(WAIT)
        assert not consumer.is_alive()
        resp = stream.result()
        assert not finished.is_set()  # the turn ended without waiting for the handler
    finally:
        release.set()
        join_tool_threads()
    assert finished.is_set()  # the running handler finished on its own
    # The consumer saw the first round; the call's result never came, so nothing of it is kept.
    assert [e.type for e in events if e.type != "content"] == ["tool_call", "done"]
    assert "".join(e.content for e in events) == "Searching."
    assert resp is events[-1].final and resp.finish_reason == "cancelled" and resp.cancelled
    assert resp.content == "Searching." and resp.tool_results == ()
    assert not server.wait_for_requests(2, timeout=0.2)  # nothing more went upstream
    # What the user saw is kept, as after any stop; the unanswered call is not.
    assert conv.messages == [{"role": "user", "content": "search tides"}, {"role": "assistant", "content": "Searching."}]
    assert_valid_history(conv.messages)
    assert conv.pending_tool_calls == [] and conv.last_response == resp
    server.enqueue(MockReply.text("Starting over."))
    assert conv.send("never mind").content == "Starting over."
    assert_valid_history(server.requests[1].body["messages"])


def test_cancel_from_inside_a_handler(server: MockServer, client: promptkit.Client) -> None:
    ready = threading.Event()
    streams: List[promptkit.Stream] = []

    @promptkit.tool
    def stop_now() -> str:
        assert ready.wait(WAIT)
        streams[0].cancel()
        return "stopped"

    server.enqueue(calls_reply(("s1", "stop_now", {})))
    conv = client.conversation(tools=[stop_now])
    streams.append(conv.send_stream("stop"))
    ready.set()
    events = list(streams[0])
    join_tool_threads()
    # No tool_result reaches the consumer after the cancel; the tool_call did if the consumer took
    # it before the handler cancelled (events read ahead are not delivered after a cancel).
    assert [e.type for e in events] in (["tool_call", "done"], ["done"])
    assert events[-1].final.finish_reason == "cancelled"
    assert not server.wait_for_requests(2, timeout=0.2)
    # No text reached the user and the call was never answered: nothing is committed
    # (an unanswered call, or a lone user message, would make the next request invalid).
    assert conv.messages == []
    server.enqueue(MockReply.text("ok"))
    conv.send("again")
    assert_valid_history(server.requests[1].body["messages"])


def test_break_on_a_tool_call_cancels_the_turn(server: MockServer, client: promptkit.Client) -> None:
    broke = threading.Event()

    @promptkit.tool
    def slow_action() -> str:
        broke.wait(WAIT)  # still running when the consumer leaves (if it started at all)
        return "done"

    server.enqueue(calls_reply(("x1", "slow_action", {})))
    conv = client.conversation(tools=[slow_action])
    stream = conv.send_stream("do it", buffer_size=1)
    for event in stream:
        if event.type == "tool_call":
            break
    broke.set()
    stream.close(timeout=WAIT)
    join_tool_threads()
    assert stream.result().finish_reason == "cancelled"
    assert not server.wait_for_requests(2, timeout=0.2)
    assert_valid_history(conv.messages)


# ---------------------------------------------------------------- registration


def test_on_tool_answers_a_dict_defined_tool(server: MockServer, client: promptkit.Client) -> None:
    seen: List[Dict[str, Any]] = []
    conv = client.conversation(tools=[LOOKUP])
    conv.on_tool("lookup", lambda word: seen.append({"word": word}) or f"{word}: a short definition")
    server.enqueue(calls_reply(("d1", "lookup", {"word": "ebb"})), MockReply.text("Ebb means going out."))
    resp = conv.send("define ebb")
    assert seen == [{"word": "ebb"}]
    assert resp.content == "Ebb means going out." and resp.finish_reason == "stop"
    assert resp.tool_results[0].content == "ebb: a short definition"
    sent_tool = server.requests[0].body["tools"][0]
    assert sent_tool["function"]["name"] == "lookup"
    assert sent_tool["function"]["parameters"] == LOOKUP["function"]["parameters"]
    assert_valid_history(conv.messages)


def test_on_tool_for_an_unknown_name_raises(client: promptkit.Client) -> None:
    conv = client.conversation(tools=[LOOKUP, get_time])
    with pytest.raises(promptkit.ToolError, match=r"unknown tool 'search'.*'lookup', 'get_time'"):
        conv.on_tool("search", lambda query: "x")
    with pytest.raises(promptkit.ToolError, match="callable"):
        conv.on_tool("lookup", "not a function")  # type: ignore[arg-type]


def _untyped(city):  # type: ignore[no-untyped-def]
    return city


def _star(*cities: str) -> str:
    return ""


@pytest.mark.parametrize(
    "tools, match",
    [
        ([_untyped], "no type annotation"),
        ([_star], r"\*args"),
        ([get_time, get_time], "duplicate tool name 'get_time'"),
        ([{"type": "function", "function": {"name": "bad name"}}], "invalid tool name"),
        ([{"type": "retrieval"}], "unsupported tool type"),
        ([{"type": "function", "function": {"name": "x", "parameters": {"type": "array"}}}], "type.*object"),
        ([42], "cannot add 42"),
    ],
    ids=["unannotated", "varargs", "duplicate", "bad-name", "not-a-function-tool", "bad-parameters", "not-a-tool"],
)
def test_bad_definitions_raise_at_registration(client: promptkit.Client, tools: List[Any], match: str) -> None:
    with pytest.raises(promptkit.ToolError, match=match):
        client.conversation(tools=tools)


def test_bad_tool_options_raise_at_decoration() -> None:
    with pytest.raises(promptkit.ToolError, match="timeout"):
        promptkit.tool(timeout=0)(get_time.handler)
    with pytest.raises(promptkit.ToolError, match="timeout"):
        promptkit.Tool("t", handler=lambda: 1, timeout=-1)
    with pytest.raises(promptkit.ToolError, match="handler must be callable"):
        promptkit.Tool("t", handler="nope")  # type: ignore[arg-type]


# ---------------------------------------------------------------- the example


def test_tools_example_runs_on_the_mock() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.run([sys.executable, str(EXAMPLES / "tools.py")], capture_output=True, text=True,
                          encoding="utf-8", timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mock server" in out
    assert re.search(r"Conversation started \(ID: conv_\d+\)", out)
    assert re.search(r"^User: .*weather.*time", out, re.M)
    calls = re.findall(r"^\[Tool: (get_weather|get_time)\((\{.*\})\)\]$", out, re.M)
    assert sorted(name for name, _ in calls) == ["get_time", "get_weather"]
    for _, args in calls:
        assert isinstance(json.loads(args), dict)
    results = re.findall(r"^  -> (get_weather|get_time): (.+)$", out, re.M)
    assert [name for name, _ in results] == [name for name, _ in calls]
    answer = out.split("Assistant: ", 1)[1]
    assert out.index("[Tool: ") < out.index("Assistant: ")
    weather = json.loads(dict(results)["get_weather"])
    assert str(weather["temp_c"]) in answer and dict(results)["get_time"].strip('"') in answer
    assert re.search(r"💰 Cost: \$\d+\.\d+ \| ⏱️  Latency: \d+ms \| 🎫 Tokens: \d+ \| 🔁 Rounds: 2", out)
    history = out.split("📜 Conversation History:\n", 1)[1].splitlines()
    assert [re.match(r"  \d\. \[(\w+)\] ", line).group(1) for line in history] == [
        "user", "assistant", "tool", "tool", "assistant"]
    assert history[1].endswith("calls get_weather, get_time")
    assert proc.stderr == ""
