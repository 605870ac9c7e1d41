"""promptkit._dialects: the request each dialect builds from the canonical history, and what servers refuse."""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List

import pytest

from promptkit import BadRequestError, ConfigurationError, NotFoundError
from promptkit._dialects import APIS, QUIRKS, dialect_for
from promptkit._dialects.chat import ChatDialect
from promptkit._dialects.responses import ResponsesDialect

BASE = "http://127.0.0.1:1/v1"
TOOL = {"type": "function", "function": {"name": "get", "description": "Get it.", "parameters": {"type": "object", "properties": {}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": '{"q": 1}'}}


@pytest.fixture(autouse=True)
def fresh_quirks() -> Iterator[None]:
    QUIRKS.forget(BASE)
    yield
    QUIRKS.forget(BASE)


def chat(messages: List[Dict[str, Any]], **params: Any) -> Dict[str, Any]:
    return ChatDialect().payload(model="m", messages=messages, params=params, tools=[], include_usage=True, base_url=BASE)


def responses(messages: List[Dict[str, Any]], tools: Any = (), **params: Any) -> Dict[str, Any]:
    return ResponsesDialect().payload(model="m", messages=messages, params=params, tools=list(tools), include_usage=True, base_url=BASE)


def test_the_registry_names_every_dialect_and_refuses_others() -> None:
    assert APIS == ("chat", "responses", "anthropic")
    assert dialect_for("responses").path == "/responses" and dialect_for("chat").path == "/chat/completions"
    with pytest.raises(ConfigurationError, match="api must be one of .chat., .responses., .anthropic., got .anthropic-v0."):
        dialect_for("anthropic-v0")


# --------------------------------------------------------------------------- Chat Completions


def test_chat_body_is_the_history_as_it_is() -> None:
    history = [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}]
    body = chat(history, temperature=0.5)
    assert body == {
        "model": "m", "messages": history, "temperature": 0.5, "stream": True, "stream_options": {"include_usage": True}
    }  # fmt: skip
    assert body["messages"][0] is history[0]  # no copy of a plain message


def test_chat_sends_reasoning_back_only_inside_the_current_tool_loop() -> None:
    earlier = {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "old thought"}
    current = {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "thought", "output_items": [{"type": "reasoning"}]}
    final = {"role": "assistant", "content": "done", "reasoning_content": "answer thought"}
    history = [
        {"role": "user", "content": "a"}, earlier, {"role": "tool", "tool_call_id": "call_1", "content": "1"}, final,
        {"role": "user", "content": "b"}, current, {"role": "tool", "tool_call_id": "call_1", "content": "2"},
    ]  # fmt: skip
    sent = chat(history)["messages"]
    assert "reasoning_content" not in sent[1] and "reasoning_content" not in sent[3]
    assert sent[5] == {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "thought"}
    assert all("output_items" not in m for m in sent)


def test_chat_refusals_are_remembered_per_base_url() -> None:
    dialect = ChatDialect()
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "t"}]
    refusal = BadRequestError("400", status_code=400, body={"error": {"message": "Unrecognized field reasoning_content"}})
    assert dialect.refused(refusal, BASE) is True
    assert dialect.refused(refusal, BASE) is False  # known already: the error is the server's answer
    assert "reasoning_content" not in chat(history)["messages"][1]
    assert dialect.refused(BadRequestError("400", status_code=400, body="stream_options is not supported"), BASE)
    assert "stream_options" not in chat(history)
    assert "stream_options" in dialect.payload(
        model="m", messages=history, params={}, tools=[], include_usage=True, base_url="http://other/v1"
    )
    assert not dialect.refused(BadRequestError("400", status_code=400, body="temperature out of range"), BASE)


# --------------------------------------------------------------------------- the Responses API


def test_responses_input_from_a_plain_chat_history() -> None:
    history = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": "https://x/c.png"}}]},
        {"role": "assistant", "content": "let me look", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "42"},
    ]
    body = responses(history, tools=[TOOL], max_tokens=50, reasoning_effort="low", temperature=0)
    assert body["input"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "what?"}, {"type": "input_image", "image_url": "https://x/c.png", "detail": "auto"}
        ]},
        {"role": "assistant", "content": "let me look"},
        {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": '{"q": 1}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
    ]  # fmt: skip
    assert body["tools"] == [
        {"type": "function", "name": "get", "description": "Get it.", "parameters": {"type": "object", "properties": {}}, "strict": False}
    ]
    assert body["max_output_tokens"] == 50 and body["reasoning"] == {"effort": "low"} and body["temperature"] == 0
    assert body["stream"] is True and "max_tokens" not in body and "stream_options" not in body and "include" not in body
    json.dumps(body)


def test_responses_replays_output_items_and_strips_ids_when_nothing_is_stored() -> None:
    items = [
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "enc"},
        {"type": "reasoning", "id": "rs_2", "summary": []},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get", "arguments": "{}"},
        {"type": "web_search_call", "id": "ws_1"},
    ]
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [CALL], "output_items": items}]
    assert responses(history)["input"][1:] == items[:3]  # the server keeps its items: sent as they came
    body = responses(history, extra_body={"store": False})
    assert body["input"][1:] == [
        {"type": "reasoning", "summary": [], "encrypted_content": "enc"},
        {"type": "function_call", "call_id": "call_1", "name": "get", "arguments": "{}"},
    ]
    assert body["include"] == ["reasoning.encrypted_content"] and body["store"] is False


def test_responses_learns_that_a_server_keeps_no_items() -> None:
    dialect = ResponsesDialect()
    items = [{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "e"}]
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "output_items": items}]
    error = NotFoundError("404", status_code=404, body={"error": {"message": "Item with id 'rs_1' not found. Items are not persisted when `store` is set to false."}})
    assert dialect.refused(error, BASE) is True
    assert "id" not in responses(history)["input"][1]
    assert not dialect.refused(BadRequestError("400", status_code=400, body="bad temperature"), BASE)


@pytest.mark.parametrize(
    "params,match",
    [({"previous_response_id": "resp_1"}, "previous_response_id"), ({"input": []}, "input"), ({"n": 2}, "no 'n'")],
)
def test_responses_refuses_params_it_cannot_send(params: Dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        ResponsesDialect().check_params(params)


def test_responses_maps_tool_choice_and_the_structured_output() -> None:
    from promptkit._structured import OutputFormat

    output = OutputFormat.create({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True}})
    body = ResponsesDialect().payload(
        model="m", messages=[{"role": "user", "content": "q"}], params={"tool_choice": {"type": "function", "function": {"name": "get"}}},
        tools=[], include_usage=True, base_url=BASE, output=output,
    )
    assert body["tool_choice"] == {"type": "function", "name": "get"}
    assert body["text"] == {"format": output.responses_format()} and body["text"]["format"]["name"] == "x"


def test_encrypted_reasoning_goes_back_when_the_server_keeps_nothing() -> None:
    import promptkit
    from promptkit.testing import MockReply, MockServer

    @promptkit.tool
    def ping() -> str:
        """Ping."""
        return "pong"

    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k", api="responses") as client:
        server.enqueue(MockReply.tool_calls([{"name": "ping", "arguments": {}}], reasoning="call ping"), MockReply.text("done"))
        conv = client.conversation(tools=[ping], extra_body={"store": False})
        assert conv.send("go").content == "done"
        first, second = (r.body for r in server.requests)
    assert first["include"] == ["reasoning.encrypted_content"] and first["store"] is False
    reasoning = [item for item in second["input"] if item.get("type") == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]["encrypted_content"] and "id" not in reasoning[0]
    assert [item.get("type") for item in second["input"][1:]] == ["reasoning", "function_call", "function_call_output"]
    stored = conv.messages[1]["output_items"][0]
    assert stored["encrypted_content"] == reasoning[0]["encrypted_content"] and stored["id"].startswith("rs_")


@pytest.mark.parametrize("api", APIS)
def test_extra_body_is_merged_last_and_must_be_a_dict(api: str) -> None:
    dialect = dialect_for(api)
    body = dialect.payload(
        model="m", messages=[{"role": "user", "content": "q"}], params={"temperature": 1, "extra_body": {"store": False, "temperature": 0}},
        tools=[], include_usage=True, base_url=BASE,
    )
    assert body["store"] is False and body["temperature"] == 0 and "extra_body" not in body
    with pytest.raises(ConfigurationError, match="extra_body must be a dict"):
        dialect.check_params({"extra_body": ["store"]})


# --------------------------------------------------------------------------- Anthropic Messages


def anthropic(messages: List[Dict[str, Any]], tools: Any = (), **params: Any) -> Dict[str, Any]:
    from promptkit._dialects.anthropic import AnthropicDialect

    return AnthropicDialect().payload(model="claude", messages=messages, params=params, tools=list(tools), include_usage=True, base_url=BASE)


def test_anthropic_history_conversion() -> None:
    thinking = [{"type": "thinking", "thinking": "t", "signature": "S"}, {"type": "redacted_thinking", "data": "R"}]
    history = [
        {"role": "system", "content": "Be terse."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [
            {"type": "text", "text": "what?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://x/c.png"}},
        ]},
        {"role": "assistant", "content": None, "tool_calls": [CALL, {**CALL, "id": "call_2"}], "thinking_blocks": thinking,
         "reasoning_content": "t", "output_items": [{"type": "reasoning"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
        {"role": "tool", "tool_call_id": "call_2", "content": "2"},
        {"role": "user", "content": "and?"},
    ]  # fmt: skip
    body = anthropic(history, tools=[TOOL], max_tokens=100, stop="END", tool_choice="required", temperature=0)
    assert body["system"] == "Be terse.\n\nAnswer in French."
    assert body["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "what?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://x/c.png"}},
        ]},
        {"role": "assistant", "content": [
            *thinking,
            {"type": "tool_use", "id": "call_1", "name": "get", "input": {"q": 1}},
            {"type": "tool_use", "id": "call_2", "name": "get", "input": {"q": 1}},
        ]},
        {"role": "user", "content": [  # the round's results and the next question: one user message
            {"type": "tool_result", "tool_use_id": "call_1", "content": "1"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "2"},
            {"type": "text", "text": "and?"},
        ]},
    ]  # fmt: skip
    assert body["tools"] == [{"name": "get", "description": "Get it.", "input_schema": {"type": "object", "properties": {}}}]
    assert body["max_tokens"] == 100 and body["stop_sequences"] == ["END"] and body["tool_choice"] == {"type": "any"}
    assert body["temperature"] == 0 and body["stream"] is True and "stop" not in body
    json.dumps(body)


def test_anthropic_sends_a_default_max_tokens_and_its_headers() -> None:
    from promptkit._dialects.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS, AnthropicDialect

    assert anthropic([{"role": "user", "content": "q"}])["max_tokens"] == DEFAULT_MAX_TOKENS
    assert AnthropicDialect().auth_headers("sk-ant") == {"x-api-key": "sk-ant", "anthropic-version": ANTHROPIC_VERSION}
    assert AnthropicDialect().auth_headers(None) == {"anthropic-version": ANTHROPIC_VERSION}


def test_anthropic_prompt_caching_marks_tools_system_and_the_conversation() -> None:
    mark = {"type": "ephemeral"}
    body = anthropic([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], tools=[TOOL], cache_control=True)
    assert body["system"] == [{"type": "text", "text": "s", "cache_control": mark}]
    assert body["tools"][-1]["cache_control"] == mark
    assert body["messages"][-1]["content"][-1] == {"type": "text", "text": "q", "cache_control": mark}
    assert "cache_control" not in body
    hour = anthropic([{"role": "user", "content": "q"}], cache_control={"type": "ephemeral", "ttl": "1h"})
    assert hour["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


@pytest.mark.parametrize("params,match", [({"n": 2}, "'n'"), ({"seed": 1}, "seed"), ({"cache_control": "yes"}, "cache_control")])
def test_anthropic_refuses_params_it_cannot_send(params: Dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        dialect_for("anthropic").check_params(params)


def test_the_shared_suites_run_on_every_dialect(every_dialect: str) -> None:
    import promptkit

    with promptkit.Client(base_url=BASE, api_key="k") as client:
        assert client.api == every_dialect


def test_anthropic_structured_output_with_thinking_uses_the_native_format() -> None:
    from promptkit._dialects.anthropic import AnthropicDialect
    from promptkit._structured import OutputFormat

    output = OutputFormat.create({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]})
    params = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    body = AnthropicDialect().payload(
        model="claude", messages=[{"role": "user", "content": "q"}], params=params, tools=[], include_usage=True,
        base_url=BASE, output=output,
    )
    assert body["output_config"] == output.anthropic_output_config() and "tool_choice" not in body  # forced tools exclude thinking
    with pytest.raises(ConfigurationError, match="output tool"):
        AnthropicDialect().payload(
            model="claude", messages=[{"role": "user", "content": "q"}], params={},
            tools=[{"type": "function", "function": {"name": output.name, "parameters": {}}}], include_usage=True, base_url=BASE,
            output=output,
        )


def test_deepseek_asking_for_reasoning_content_is_no_refusal() -> None:
    missing = BadRequestError("400", status_code=400, body={"error": {"message": "Missing `reasoning_content` field in the assistant message at message index 1"}})
    assert ChatDialect().refused(missing, BASE) is False
    history = [{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [CALL], "reasoning_content": "t"}]
    assert chat(history)["messages"][1]["reasoning_content"] == "t"  # still sent


def test_anthropic_leaves_out_empty_messages_and_keeps_user_tools_callable() -> None:
    from promptkit._structured import OutputFormat

    body = anthropic([{"role": "user", "content": "a"}, {"role": "assistant", "content": ""}, {"role": "user", "content": "b"}])
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    output = OutputFormat.create({"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]})
    from promptkit._dialects.anthropic import AnthropicDialect

    with_tools = AnthropicDialect().payload(
        model="claude", messages=[{"role": "user", "content": "q"}], params={}, tools=[TOOL], include_usage=True,
        base_url=BASE, output=output,
    )
    assert with_tools["tool_choice"] == {"type": "any"} and [t["name"] for t in with_tools["tools"]] == ["get", output.name]
