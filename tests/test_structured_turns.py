"""Structured output through whole turns, on every dialect: partial values while streaming, the validated result.

The core (schemas, validation, the partial parser) is tested in tests/test_structured.py and
tests/test_partial_json.py. Here: ``response_format=`` against promptkit's MockServer (scripted
replies, including invalid ones) and against llmock, an independent server that answers each
dialect's structured-output request with JSON fitting the schema.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator, List

import pydantic
import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from tests._processes import free_port, program_path, third_party_server
from tests.test_partial_json import check_monotone

pytestmark = pytest.mark.usefixtures("every_dialect")


class Person(pydantic.BaseModel):
    name: str
    age: int
    hobbies: List[str]


@dataclasses.dataclass
class Point:
    x: int
    y: int


DOC = {"name": "Ada Lovelace", "age": 36, "hobbies": ["mathematics", "poetry", "engines"]}


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as mock:
        yield mock


@pytest.fixture
def client(server: MockServer) -> Iterator[promptkit.Client]:
    with promptkit.Client(base_url=server.url, api_key="k", max_retries=0) as c:
        yield c


def test_partial_values_refine_each_other_and_the_result_validates(client: promptkit.Client, server: MockServer) -> None:
    text = json.dumps(DOC)
    server.enqueue(MockReply.text(text, chunk_size=3))
    conv = client.conversation(response_format=Person)
    stream = conv.send_stream("who?")
    values = []
    for event in stream:
        if event.type == "content":
            assert event.parsed is not None or not event.content.strip("{ ")
            if event.parsed is not None:
                values.append(event.parsed)
                assert stream.parsed_so_far == event.parsed
                assert json.loads(json.dumps(event.to_dict()))["parsed"] == event.parsed  # the web frames carry it
    response = stream.result()
    check_monotone(values, DOC)
    assert response.parsed == Person(**DOC) and response.content == text
    assert response.to_dict()["parsed"] == DOC
    assert conv.messages[-1]["role"] == "assistant" and conv.messages[-1]["content"] == text  # the history keeps the JSON


def test_each_dialect_asks_in_its_own_form(client: promptkit.Client, server: MockServer, every_dialect: str) -> None:
    server.enqueue(MockReply.text('{"x": 1, "y": 2}'))
    assert client.conversation().send("where?", response_format=Point).parsed == Point(1, 2)  # per turn
    body = server.requests[0].body
    if every_dialect == "chat":
        assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["name"] == "Point"
    elif every_dialect == "responses":
        assert body["text"]["format"]["type"] == "json_schema" and body["text"]["format"]["schema"]["required"] == ["x", "y"]
    else:  # a forced tool whose input is the answer (thinking off)
        assert body["tool_choice"] == {"type": "tool", "name": "Point"}
        assert body["tools"][-1]["name"] == "Point" and body["tools"][-1]["input_schema"]["required"] == ["x", "y"]


def test_an_invalid_reply_is_the_documented_error_and_commits_nothing(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.text('{"name": "Ada", "age": "thirty-six", "hobbies": []}'))
    conv = client.conversation(response_format=Person)
    with pytest.raises(promptkit.OutputValidationError) as info:
        conv.send("who?")
    error = info.value
    assert isinstance(error, ValueError) and "age" in error.errors and error.raw.startswith('{"name": "Ada"')
    assert error.partial is not None and error.partial.content == error.raw and error.partial.parsed is None
    assert conv.messages == []
    server.enqueue(MockReply.text("Sorry, I cannot answer in JSON."))
    with pytest.raises(promptkit.OutputValidationError):
        conv.send("who?")


def test_a_cut_reply_does_not_validate(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.text('{"name": "Ada", "age": 36, "hob', finish_reason="length"))
    with pytest.raises(promptkit.OutputValidationError):
        client.conversation(response_format=Person).send("who?")


def test_a_cancelled_structured_turn_is_cancelled_not_invalid(client: promptkit.Client, server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text='{"name": "Ada", '))
    stream = client.conversation(response_format=Person).send_stream("who?")
    for event in stream:
        if event.type == "content" and event.parsed:
            break
    response = stream.result()
    assert response.cancelled and response.parsed is None
    assert stream.parsed_so_far == {"name": "Ada"}


def test_tools_then_a_structured_answer(client: promptkit.Client, server: MockServer) -> None:
    @promptkit.tool
    def age_of(name: str) -> int:
        """How old someone is."""
        return 36

    server.enqueue(MockReply.tool_calls([{"name": "age_of", "arguments": {"name": "Ada"}}]), MockReply.text(json.dumps(DOC)))
    response = client.conversation(tools=[age_of], response_format=Person).send("who?")
    assert response.rounds == 2 and response.parsed == Person(**DOC)


def test_a_plain_schema_gives_a_dict(client: promptkit.Client, server: MockServer) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    server.enqueue(MockReply.text('{"ok": true}'))
    assert client.conversation(response_format=schema).send("?").parsed == {"ok": True}


def test_a_bad_response_format_fails_before_any_request(client: promptkit.Client, server: MockServer) -> None:
    with pytest.raises(promptkit.ConfigurationError, match="pydantic model class"):
        client.conversation(response_format=42)
    with pytest.raises(promptkit.ConfigurationError):
        client.conversation().send("q", response_format="json")
    assert server.requests == []


# --------------------------------------------------------------------------- an independent server


@pytest.fixture(scope="module")
def llmock() -> Iterator[str]:
    port = free_port()
    args = [program_path("llmock"), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
            "--stream-chunk-delay-ms", "2"]  # fmt: skip
    with third_party_server(args, port):
        yield f"http://127.0.0.1:{port}"


def test_against_llmock(llmock: str, every_dialect: str) -> None:
    base_url = f"{llmock}/anthropic/v1" if every_dialect == "anthropic" else f"{llmock}/v1"
    with promptkit.Client(base_url=base_url, api_key="k") as client:
        stream = client.conversation(response_format=Person).send_stream("Describe a person.")
        values: List[Any] = [e.parsed for e in stream if e.type == "content" and e.parsed is not None]
        response = stream.result()
    assert isinstance(response.parsed, Person) and response.finish_reason == "stop"
    assert len(values) > 1  # it streamed: the value filled in over several events
    check_monotone(values, response.parsed.model_dump())


def test_tool_call_arguments_can_be_watched_as_they_stream(client: promptkit.Client, server: MockServer) -> None:
    arguments = {"city": "Oslo", "days": [1, 2, 3], "units": "metric"}
    server.enqueue(MockReply.tool_calls([{"id": "call_w", "name": "forecast", "arguments": arguments}], split_arguments=5))
    spec = {"type": "function", "function": {"name": "forecast", "parameters": {"type": "object", "properties": {}}}}
    stream = client.conversation(tools=[spec]).send_stream("weather?", tool_call_deltas=True)
    events = list(stream)
    deltas = [e for e in events if e.type == "tool_call_delta"]
    assert len(deltas) > 3 and all(e.tool_call is not None and e.tool_call.name == "forecast" for e in deltas)
    assert "".join(e.content for e in deltas) == json.dumps(arguments)
    assert {e.tool_call.id for e in deltas} == {"call_w"}  # type: ignore[union-attr]
    check_monotone([e.parsed for e in deltas if e.parsed is not None], arguments)
    call = next(e.tool_call for e in events if e.type == "tool_call")
    assert call is not None and call.arguments == arguments  # the complete call still comes once
    assert json.loads(json.dumps(deltas[-1].to_dict()))["parsed"] == arguments
    server.enqueue(MockReply.tool_calls([{"name": "forecast", "arguments": arguments}], split_arguments=5))
    plain = list(client.conversation(tools=[spec]).send_stream("weather?"))
    assert "tool_call_delta" not in [e.type for e in plain]  # only when asked for


class Ticket(pydantic.BaseModel):
    code: str = pydantic.Field(pattern=r"^[A-Z]{3}-\d{4}$")
    year: int


def test_an_invalid_reply_from_llmock_raises_the_documented_error(llmock: str, every_dialect: str) -> None:
    # llmock fills a schema's strings with placeholders ("mock-code"), which this pattern refuses:
    # a real reply that does not fit, from a server promptkit did not write.
    base_url = f"{llmock}/anthropic/v1" if every_dialect == "anthropic" else f"{llmock}/v1"
    with promptkit.Client(base_url=base_url, api_key="k") as client:
        conv = client.conversation(response_format=Ticket)
        with pytest.raises(promptkit.OutputValidationError) as info:
            conv.send("Open a ticket.")
    assert "$.code" in info.value.errors and json.loads(info.value.raw)["code"] and conv.messages == []
