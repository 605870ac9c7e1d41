"""Each dialect against ``llmock`` (PyPI), a server written by others that speaks Chat Completions, the Responses API
and Anthropic Messages (under ``/anthropic/v1``).

llmock echoes the conversation (``--response-style echo``, images read as
``[image input]``), calls offered tools and answers once their results come
back (``--tool-mode auto``), streams with a pause between chunks, and keeps a
journal of every request it received. Its fault injection is exercised in
tests/test_chaos.py.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any, Dict, Iterator, List

import pytest

import promptkit
from promptkit._dialects import APIS
from tests._image_bytes import png
from tests._processes import free_port, program_path, third_party_server


@pytest.fixture(scope="module")
def llmock() -> Iterator[str]:
    port = free_port()
    args = [
        program_path("llmock"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--response-style", "echo", "--tool-mode", "auto", "--stream-chunk-delay-ms", "10",
    ]  # fmt: skip
    with third_party_server(args, port):
        yield f"http://127.0.0.1:{port}"


def base_url(llmock: str, api: str) -> str:
    return f"{llmock}/anthropic/v1" if api == "anthropic" else f"{llmock}/v1"


@pytest.fixture(params=APIS)
def client(request: pytest.FixtureRequest, llmock: str) -> Iterator[promptkit.Client]:
    api = request.param
    with promptkit.Client(base_url=base_url(llmock, api), api_key="sk-llmock", api=api, timeout=promptkit.Timeout(idle=10, total=60)) as c:
        yield c


def journal(llmock: str) -> List[Dict[str, Any]]:
    records: List[Dict[str, Any]] = json.loads(urllib.request.urlopen(f"{llmock}/_llmock/requests", timeout=10).read())["requests"]
    return records


def test_text_streams_as_deltas_with_usage(client: promptkit.Client) -> None:
    conv = client.conversation(system_prompt="Be brief.")
    events = list(conv.send_stream("hello there"))
    assert [e.type for e in events].count("content") > 2 and sum(e.is_terminal for e in events) == 1
    final = events[-1].final
    assert final is not None and final.finish_reason == "stop"
    assert "hello there" in final.content == "".join(e.content for e in events)
    assert final.usage.total_tokens > 0 and not final.usage.estimated
    assert [m["role"] for m in conv.messages] == ["system", "user", "assistant"]


def test_the_tool_loop_with_a_handler(client: promptkit.Client) -> None:
    calls: List[str] = []

    @promptkit.tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    conv = client.conversation(tools=[get_weather])
    response = conv.send("What is the weather like?")
    assert response.rounds == 2 and len(calls) == 1 and f"sunny in {calls[0]}" in response.content
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "tool", "assistant"]
    assert conv.send("And tomorrow?").finish_reason == "stop"  # the history, tool items included, is accepted


def test_images_reach_the_server_in_the_dialects_form(client: promptkit.Client, llmock: str) -> None:
    response = client.conversation().send("describe these", images=[png(4, 3), "https://example.com/cat.png"])
    # llmock's echo names each image it read on the OpenAI endpoints; its Anthropic echo repeats only the text.
    assert response.content.count("[image input]") == (0 if client.api == "anthropic" else 2)
    assert "describe these" in response.content
    body = journal(llmock)[-1]["body"]
    if client.api == "chat":
        parts = body["messages"][-1]["content"]
        assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    elif client.api == "responses":
        parts = body["input"][-1]["content"]
        assert [p["type"] for p in parts] == ["input_text", "input_image", "input_image"]
        assert parts[2]["image_url"] == "https://example.com/cat.png"
    else:
        parts = body["messages"][-1]["content"]
        assert [p["type"] for p in parts] == ["text", "image", "image"]
        assert parts[1]["source"]["type"] == "base64" and parts[1]["source"]["media_type"] == "image/png"
        assert parts[2]["source"] == {"type": "url", "url": "https://example.com/cat.png"}


def test_leaving_the_loop_cancels_and_commits_what_was_shown(client: promptkit.Client) -> None:
    conv = client.conversation()
    stream = conv.send_stream("please write a long answer " * 5)
    shown = ""
    for event in stream:
        if event.type == "content":
            shown += event.content
            if len(shown) > 5:
                break
    response = stream.result()
    assert response.finish_reason == "cancelled" and response.content == shown
    assert conv.messages[-1] == {"role": "assistant", "content": shown}
