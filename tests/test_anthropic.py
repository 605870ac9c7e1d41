"""The Anthropic dialect end to end against promptkit's MockServer (which speaks ``/v1/messages``).

What every dialect shares runs in tests/test_dialect_guarantees.py and the
suites marked ``every_dialect``; the decoder is tested on real recordings in
tests/test_anthropic_decoder.py, and the dialect against llmock in
tests/test_llmock.py and tests/test_chaos.py. Here: what only this dialect has.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import promptkit
from promptkit.pricing import PriceTable
from promptkit.testing import MockReply, MockServer
from tests._image_bytes import png

KEY = "sk-ant-test-0123456789"


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


def client(server: MockServer, **options: Any) -> promptkit.Client:
    return promptkit.Client(base_url=server.url, api_key=KEY, api="anthropic", **options)


def test_keys_servers_and_models_come_from_the_anthropic_variables(monkeypatch: pytest.MonkeyPatch, server: MockServer) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-should-not-be-used")
    monkeypatch.delenv("PROMPTKIT_MODEL", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(promptkit.ConfigurationError, match="ANTHROPIC_API_KEY"):
        promptkit.Client(api="anthropic")  # api.anthropic.com never works without a key: said before any I/O
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    server.enqueue(MockReply.text("hi"))
    with promptkit.Client(api="anthropic") as c:
        assert c.model == "claude-haiku-4-5" and c.base_url == server.url
        assert c.conversation().send("q").content == "hi"
    headers = server.requests[0].headers
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"
    assert server.requests[0].body["max_tokens"] == 4096 and server.requests[0].body["model"] == "claude-haiku-4-5"


def test_thinking_tools_and_images_round_trip_through_a_store(server: MockServer, tmp_path: Path) -> None:
    @promptkit.tool
    def zoom(factor: int) -> str:
        """Zoom in."""
        return f"zoomed x{factor}"

    store = promptkit.SQLiteStore(str(tmp_path / "conversations.db"))
    server.enqueue(
        MockReply.tool_calls([{"name": "zoom", "arguments": {"factor": 2}}], reasoning="I should zoom."),
        MockReply.text("A red square.", reasoning="It is red."),
    )
    with client(server, store=store) as c:
        conv = c.conversation(conversation_id="pic", system_prompt="You see.", tools=[zoom], thinking={"type": "enabled", "budget_tokens": 1024})
        response = conv.send("What is this?", images=[png(2, 2)])
        assert response.content == "A red square." and response.reasoning == "I should zoom.It is red."
        loop = server.requests[1].body["messages"]
        # Inside the tool loop the thinking goes back with its signature, before the tool_use block.
        assert [b["type"] for b in loop[1]["content"]] == ["thinking", "tool_use"]
        assert loop[1]["content"][0]["thinking"] == "I should zoom." and loop[1]["content"][0]["signature"]
        signature = loop[1]["content"][0]["signature"]
    server.enqueue(MockReply.text("Still red."))
    with client(server, store=store) as c:  # another process, as far as the history knows
        resumed = c.conversations().get("pic", tools=[zoom])
        assert resumed.send("Sure?").content == "Still red."
    body = server.requests[2].body
    assert body["system"] == "You see."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user", "assistant", "user"]
    first, call, results, answer, question = body["messages"]
    assert [b["type"] for b in first["content"]] == ["text", "image"]
    assert first["content"][1]["source"]["media_type"] == "image/png"
    assert call["content"][0] == {"type": "thinking", "thinking": "I should zoom.", "signature": signature}
    assert call["content"][1]["input"] == {"factor": 2}
    assert results["content"] == [{"type": "tool_result", "tool_use_id": call["content"][1]["id"], "content": "zoomed x2"}]
    assert [b["type"] for b in answer["content"]] == ["thinking", "text"]
    assert question["content"] == [{"type": "text", "text": "Sure?"}]


def test_prompt_caching_is_asked_for_and_shows_in_usage_and_cost(server: MockServer) -> None:
    prices = PriceTable.from_spec({"claude-test": {"input": 3.0, "cached_input": 0.3, "cache_write": 3.75, "output": 15.0}})
    server.enqueue(
        MockReply.text("first", usage={"input_tokens": 10, "cache_creation_input_tokens": 2000, "cache_read_input_tokens": 0, "output_tokens": 5}),
        MockReply.text("second", usage={"input_tokens": 12, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2000, "output_tokens": 5}),
    )
    with client(server, pricing=prices, model="claude-test") as c:
        conv = c.conversation(system_prompt="A long, stable system prompt.", cache_control=True)
        written = conv.send("one")
        read = conv.send("two")
    body = server.requests[1].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert (written.usage.prompt_tokens, written.usage.cache_write_tokens, written.usage.cached_tokens) == (2010, 2000, 0)
    assert (read.usage.prompt_tokens, read.usage.cache_write_tokens, read.usage.cached_tokens) == (2012, 0, 2000)
    # Per 1M tokens: 10 x 3.00 + 2000 x 3.75 + 5 x 15.00, then 12 x 3.00 + 2000 x 0.30 + 5 x 15.00.
    assert written.cost == pytest.approx((10 * 3.0 + 2000 * 3.75 + 5 * 15.0) / 1e6)
    assert read.cost == pytest.approx((12 * 3.0 + 2000 * 0.3 + 5 * 15.0) / 1e6)


def test_overloaded_before_content_is_retried_and_after_content_is_the_error(server: MockServer) -> None:
    server.enqueue(
        MockReply.error(529, "Overloaded", type="overloaded_error"),
        MockReply.in_band_error("Overloaded", code="overloaded_error"),
        MockReply.text("finally"),
    )
    with client(server, max_retries=3) as c:
        assert c.conversation().send("q").content == "finally"
        assert len(server.requests) == 3
        server.enqueue(MockReply.in_band_error("Overloaded", after_text="half", code="overloaded_error"))
        events = list(c.conversation().send_stream("q"))
    assert [e.type for e in events] == ["content", "error"]
    error = events[-1].error
    assert isinstance(error, promptkit.StreamError) and "Overloaded" in str(error) and error.partial.content == "half"  # type: ignore[union-attr]


@pytest.mark.parametrize("reason,finish", [("length", "length"), ("content_filter", "content_filter")])
def test_stop_reasons_reach_the_response(server: MockServer, reason: str, finish: str) -> None:
    server.enqueue(MockReply.text("cut", finish_reason=reason))
    with client(server) as c:
        assert c.conversation().send("q").finish_reason == finish


def test_the_cli_talks_anthropic(server: MockServer) -> None:
    import subprocess
    import sys

    from tests.test_cli import _env

    server.enqueue(MockReply.text("Bonjour."))
    proc = subprocess.run(
        [sys.executable, "-m", "promptkit", "chat", "--api", "anthropic"], input="hi\n", capture_output=True, text=True,
        encoding="utf-8", timeout=60, env=_env(ANTHROPIC_BASE_URL=server.url, ANTHROPIC_API_KEY=KEY),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Bonjour.\n" and server.requests[0].path == "/v1/messages"
    assert server.requests[0].headers["x-api-key"] == KEY
    mock = subprocess.run(
        [sys.executable, "-m", "promptkit", "chat", "--api", "anthropic"], input="hi\n", capture_output=True, text=True,
        encoding="utf-8", timeout=60, env=_env(),
    )  # fmt: skip
    assert mock.returncode == 0, mock.stderr
    assert "No ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL: using promptkit's embedded mock server" in mock.stderr


def test_messages_may_carry_anthropic_blocks_the_history_keeps(server: MockServer) -> None:
    server.enqueue(MockReply.text("ok"))
    with client(server) as c:
        conv = c.conversation()
        conv.send([{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])
    blocks: List[Dict[str, Any]] = server.requests[0].body["messages"][0]["content"]
    assert blocks == [{"type": "text", "text": "look"}, {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}]
