"""Chat Completions reasoning from a server written by others: FakeAI (PyPI ``fakeai``, a test dependency).

FakeAI simulates reasoning models (``gpt-oss-*``, ``deepseek-ai/DeepSeek-R1*`` and any model
whose name holds "reasoning"): it streams ``delta.reasoning_content`` before the answer, from
templates, with no model loaded and nothing downloaded.

What FakeAI 0.3.2 does that a real server would not, and how these tests live with it:

* Asked for usage (``stream_options.include_usage``) on a reasoning model, its stream breaks off
  after the content: its usage code raises, so no finish chunk and no ``[DONE]`` follow. The
  ``client`` fixture records ``stream_options`` as refused for its base URL, which is what
  promptkit does on its own when a server says so with a 400; one test shows what promptkit
  makes of the broken stream instead.
* Given tools, its streaming path always calls one (it tests a tuple for truth), and it ends a
  tool-call reply with ``finish_reason: "stop"``. The application answers the calls here
  (``add_tool_result``), so no test depends on what the model chooses next.

What promptkit sent is read from the requests themselves, through a ``requests.Session``
response hook (a session passed to the Client keeps its hooks).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest
import requests

import promptkit
from promptkit._dialects import QUIRKS
from tests._processes import free_port, program_path, third_party_server

if sys.version_info < (3, 10):  # pragma: no cover - fakeai needs 3.10
    pytest.skip("fakeai needs Python 3.10+", allow_module_level=True)

MODEL = "gpt-oss-20b"  # a model FakeAI reasons for
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}

Recorded = Tuple[promptkit.Client, List[Dict[str, Any]]]


@pytest.fixture(scope="module")
def fakeai() -> Iterator[str]:
    """FakeAI on 127.0.0.1, answering at once; its base URL."""
    port = free_port()
    args = [program_path("fakeai"), "server", "--host", "127.0.0.1", "--port", str(port), "--ttft", "0", "--itl", "0"]
    with third_party_server(args, port):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def client(fakeai: str) -> Iterator[Recorded]:
    """A Client for FakeAI that sends no ``stream_options`` (see the module docstring), and the bodies it sent."""
    QUIRKS.forget(fakeai)
    QUIRKS.record(fakeai, "stream_options")
    sent: List[Dict[str, Any]] = []
    session = requests.Session()
    session.hooks["response"].append(lambda response, *args, **kwargs: sent.append(json.loads(response.request.body)))
    try:
        with promptkit.Client(base_url=fakeai, api_key="sk-fake", model=MODEL, session=session) as c:
            yield c, sent
    finally:
        session.close()
        QUIRKS.forget(fakeai)


def texts(events: List[promptkit.StreamEvent], kind: str) -> List[str]:
    return [e.reasoning if kind == "reasoning" else e.content for e in events if e.type == kind]


def test_reasoning_streams_first_reaches_on_reasoning_and_stays_out_of_the_content(client: Recorded) -> None:
    c, sent = client
    conv = c.conversation()
    heard: List[str] = []
    events = list(conv.send_stream("What is 2+2?", on_reasoning=heard.append))
    kinds = [e.type for e in events]
    assert kinds[-1] == "done" and sum(e.is_terminal for e in events) == 1
    first_content = kinds.index("content")
    assert first_content > 3 and set(kinds[:first_content]) == {"reasoning"}  # all the reasoning, then the answer
    assert set(kinds[first_content:-1]) == {"content"}
    reasoning, content = texts(events, "reasoning"), texts(events, "content")
    assert heard == reasoning  # every delta, in order
    resp = events[-1].final
    assert resp is not None and resp.finish_reason == "stop" and resp.model == MODEL
    assert resp.reasoning == "".join(reasoning) and resp.content == "".join(content)
    assert resp.content.strip() and resp.reasoning.strip()
    assert resp.reasoning not in resp.content and resp.content not in resp.reasoning
    assert all(e.reasoning == "" for e in events if e.type == "content")
    assert conv.messages[-1] == {"role": "assistant", "content": resp.content, "reasoning_content": resp.reasoning}
    assert len(sent) == 1 and "stream_options" not in sent[0]


def test_tool_calls_send_their_reasoning_back_within_the_loop_only(client: Recorded) -> None:
    c, sent = client
    conv = c.conversation(tools=[WEATHER])  # no handler: the application answers
    first = conv.send("What is the weather in Paris?")
    assert first.finish_reason == "tool_calls" and first.tool_calls and first.content == ""
    assert first.reasoning.strip()
    assistant = conv.messages[-1]
    assert assistant["reasoning_content"] == first.reasoning and assistant["tool_calls"]
    assert all("reasoning_content" not in m for m in sent[0]["messages"])

    for pending in conv.pending_tool_calls:
        conv.add_tool_result(pending.id, {"temperature_c": 21})
    second = conv.send()  # the same loop: DeepSeek's thinking mode needs the reasoning back
    loop = sent[1]["messages"]
    assert [m["role"] for m in loop] == ["user", "assistant"] + ["tool"] * len(first.tool_calls)
    assert loop[1]["reasoning_content"] == first.reasoning
    assert loop[1]["tool_calls"] == assistant["tool_calls"]
    assert second.reasoning.strip() and conv.messages[-1]["reasoning_content"] == second.reasoning

    for pending in conv.pending_tool_calls:  # FakeAI calls the tool again: answer, then ask something new
        conv.add_tool_result(pending.id, {"temperature_c": 21})
    conv.send("Thanks. And in Rome?")
    later = sent[2]["messages"]
    assert later[-1] == {"role": "user", "content": "Thanks. And in Rome?"}
    assert all("reasoning_content" not in m for m in later)  # the loop is over: no reasoning goes back
    assert len(sent) == 3


def test_with_usage_requested_a_broken_off_stream_keeps_its_reasoning(fakeai: str) -> None:
    QUIRKS.forget(fakeai)  # stream_options goes out, as to any server
    with promptkit.Client(base_url=fakeai, api_key="sk-fake", model=MODEL) as c:
        conv = c.conversation()
        events = list(conv.send_stream("What is 2+2?"))
    reasoning, content = "".join(texts(events, "reasoning")), "".join(texts(events, "content"))
    assert events[0].type == "reasoning" and reasoning.strip() and content.strip()
    terminal = events[-1]
    assert sum(e.is_terminal for e in events) == 1
    if terminal.type == "done":  # a FakeAI that sends its usage chunk
        final = terminal.final
        assert final is not None and final.reasoning == reasoning and final.content == content
        assert not final.usage.estimated and final.usage.reasoning_tokens > 0
    else:  # FakeAI 0.3.2: the body ends after the content, with no finish_reason and no [DONE]
        error = terminal.error
        assert type(error) is promptkit.StreamTruncatedError, error
        assert error.partial is not None
        assert error.partial.reasoning == reasoning and error.partial.content == content
        assert conv.messages == []  # nothing committed, nothing retried after output
