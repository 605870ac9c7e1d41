"""The Vercel AI SDK's UI message stream (promptkit.web._ai_sdk) on real promptkit streams, and the real ``ai`` package.

The encoder is fed the event dicts of real turns against the embedded mock server,
on every dialect. The end-to-end tests serve a Flask app on a real socket and talk
to it with the ``ai`` npm package itself (``tests/node``): its ``DefaultChatTransport``
sends the request and its ``readUIMessageStream`` assembles the message, which must
equal promptkit's Response. They need Node.js and npm: skipped without them, except
under CI, where that is a failure (``.ci/run`` installs them and runs ``npm ci``).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit.web._ai_sdk import (
    AI_SDK_HEADERS,
    AIChatRequest,
    UIMessageEncoder,
    parse_chat_request,
)
from promptkit.web import MemoryStreamLog, StreamLog, flask_response, flask_resume_response
from promptkit.web._common import sse_headers
from tests._image_bytes import png
from tests.redis_server import _in_ci

NODE_DIR = Path(__file__).parent / "node"
CLIENT = NODE_DIR / "ui_chat_client.mjs"
BODIES = Path(__file__).parent / "data" / "ai_sdk"
WAIT = 60.0  # seconds a Node.js run may take before it is taken for hung (a bound, not an assertion)

Event = Dict[str, Any]
Frame = Tuple[Optional[str], Any]  # (the id: line or None, the chunk dict or "[DONE]")


@promptkit.tool
def get_weather(city: str) -> Dict[str, Any]:
    """The current weather in a city.

    Args:
        city: the city name.
    """
    if city != "Paris":
        raise ValueError(f"no weather data for {city}")
    return {"city": city, "temp_c": 18, "sky": "cloudy"}


@promptkit.tool
def get_time(city: str) -> str:
    """The local time in a city.

    Args:
        city: the city name.
    """
    return "09:30"


def weather_replies() -> Tuple[MockReply, MockReply]:
    """A tool round (reasoning, text, two calls; the second fails in its handler), then the answer."""
    return (
        MockReply.tool_calls(
            [{"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
             {"id": "call_b", "name": "get_weather", "arguments": {"city": "Atlantis"}},
             {"id": "call_c", "name": "get_time", "arguments": {"city": "Paris"}}],
            content="Let me check.", reasoning="The user wants weather.",
        ),
        MockReply.text("Paris is cloudy at 18C, 09:30 local time.", reasoning="Now answer."),
    )  # fmt: skip


def run_turn(replies: Sequence[MockReply], *, tools: Sequence[promptkit.Tool] = (), **options: Any) -> Tuple[List[Event], promptkit.Response]:
    """The event dicts of one turn against the mock server, and its Response."""
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(*replies)
        stream = client.conversation(tools=list(tools)).send_stream("Weather in Paris?", **options)
        events = [event.to_dict() for event in stream]
        response = stream.result()
    return events, response


def frames(data: bytes) -> List[Frame]:
    """The frames of a UI message stream body: each one's ``id:`` and its parsed ``data:``."""
    assert data.endswith(b"\n\n")
    out: List[Frame] = []
    for block in data[:-2].split(b"\n\n"):
        lines = block.decode("utf-8").split("\n")
        ids = [line[4:] for line in lines if line.startswith("id: ")]
        datas = [line[6:] for line in lines if line.startswith("data: ")]
        assert len(datas) == 1 and len(ids) <= 1 and len(lines) == len(ids) + 1, block
        out.append((ids[0] if ids else None, "[DONE]" if datas[0] == "[DONE]" else json.loads(datas[0])))
    return out


def chunks_of(events: Sequence[Mapping[str, Any]], **options: Any) -> List[Any]:
    """Every chunk of the encoded events, ``"[DONE]"`` included."""
    data = b"".join(UIMessageEncoder("msg-1", **options).encode_all(events))
    return [payload for _, payload in frames(data)]


def metadata(final: Mapping[str, Any]) -> Dict[str, Any]:
    return {"model": final["model"], "finish_reason": final["finish_reason"], "usage": final["usage"], "cost": final["cost"]}


# ---------------------------------------------------------------- the encoder on real streams


@pytest.mark.usefixtures("every_dialect")
def test_text_turn() -> None:
    events, response = run_turn([MockReply.text("Hello there, how are you?")])
    content = [e["content"] for e in events if e["type"] == "content"]
    assert len(content) > 1 and "".join(content) == response.content
    final = events[-1]["final"]
    assert chunks_of(events) == [
        {"type": "start", "messageId": "msg-1"},
        {"type": "start-step"},
        {"type": "text-start", "id": "text-1"},
        *({"type": "text-delta", "id": "text-1", "delta": piece} for piece in content),
        {"type": "text-end", "id": "text-1"},
        {"type": "finish-step"},
        {"type": "finish", "finishReason": "stop", "messageMetadata": metadata(final)},
        "[DONE]",
    ]
    assert final["usage"]["total_tokens"] > 0 and final["model"]


@pytest.mark.usefixtures("every_dialect")
def test_reasoning_then_text_are_two_parts() -> None:
    events, response = run_turn([MockReply.text("The answer is 4.", reasoning="Two plus two is four.")])
    assert response.reasoning == "Two plus two is four."
    chunks = chunks_of(events)
    kinds = [c["type"] if isinstance(c, dict) else c for c in chunks]
    first_text = kinds.index("text-start")
    assert kinds[:3] == ["start", "start-step", "reasoning-start"]
    assert kinds[first_text - 1] == "reasoning-end" and "reasoning-delta" not in kinds[first_text:]
    assert "".join(c["delta"] for c in chunks if c != "[DONE]" and c["type"] == "reasoning-delta") == response.reasoning
    assert "".join(c["delta"] for c in chunks if c != "[DONE]" and c["type"] == "text-delta") == response.content
    ids = {c["type"]: c["id"] for c in chunks if c != "[DONE]" and c["type"].endswith("-start") and "id" in c}
    assert ids == {"reasoning-start": "reasoning-1", "text-start": "text-2"}


@pytest.mark.usefixtures("every_dialect")
def test_tool_loop() -> None:
    events, response = run_turn(weather_replies(), tools=[get_weather, get_time])
    assert [r.is_error for r in response.tool_results] == [False, True, False]
    chunks = [c for c in chunks_of(events) if c != "[DONE]"]
    kinds = [c["type"] for c in chunks]
    # Two steps: the tool round (its results included), then the answer.
    assert kinds.count("start-step") == 2 and kinds.count("finish-step") == 2
    boundary = kinds.index("start-step", 2)
    assert kinds[boundary - 1] == "finish-step" and kinds[boundary - 2] == "tool-output-available"
    assert "tool-input-start" not in kinds  # no tool_call_delta events asked for
    inputs = [c for c in chunks if c["type"] == "tool-input-available"]
    assert [(c["toolCallId"], c["toolName"], c["input"]) for c in inputs] == [
        (call.id, call.name, call.arguments) for call in response.tool_calls
    ]
    outputs = [c for c in chunks if c["type"] in ("tool-output-available", "tool-output-error")]
    assert outputs == [
        {"type": "tool-output-available", "toolCallId": "call_a", "output": response.tool_results[0].content},
        {"type": "tool-output-error", "toolCallId": "call_b", "errorText": response.tool_results[1].content},
        {"type": "tool-output-available", "toolCallId": "call_c", "output": "09:30"},
    ]
    assert json.loads(outputs[0]["output"]) == {"city": "Paris", "temp_c": 18, "sky": "cloudy"}
    assert "Atlantis" in outputs[1]["errorText"]
    last_step = chunks[boundary:]
    assert "".join(c["delta"] for c in last_step if c["type"] == "text-delta") == response.content
    assert "".join(c["delta"] for c in chunks if c["type"] == "reasoning-delta") == response.reasoning
    assert all("dynamic" not in c and "providerExecuted" not in c for c in chunks)


@pytest.mark.usefixtures("every_dialect")
def test_tool_call_deltas_stream_the_input() -> None:
    events, response = run_turn(weather_replies(), tools=[get_weather, get_time], tool_call_deltas=True)
    assert sum(e["type"] == "tool_call_delta" for e in events) > 3
    chunks = [c for c in chunks_of(events) if c != "[DONE]"]
    for call in response.tool_calls:
        mine = [c for c in chunks if c.get("toolCallId") == call.id]
        kinds = [c["type"] for c in mine]
        assert kinds[0] == "tool-input-start" and kinds.count("tool-input-start") == 1
        assert mine[0]["toolName"] == call.name
        assert set(kinds[1:-2]) == {"tool-input-delta"} and kinds[-2] == "tool-input-available"
        assert "".join(c["inputTextDelta"] for c in mine[1:-2]) == call.arguments_json
    # A tool part ends the text part before it.
    kinds = [c["type"] for c in chunks]
    assert kinds.index("text-end") < kinds.index("tool-input-start")


@pytest.mark.usefixtures("every_dialect")
def test_a_cancelled_turn_ends_with_abort() -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(MockReply.stall(after_text="partial"))
        stream = client.conversation().send_stream("q")
        events: List[Event] = []
        for event in stream:
            events.append(event.to_dict())
            if event.type == "content":
                stream.cancel()
        assert stream.result().finish_reason == "cancelled"
    final = events[-1]["final"]
    assert chunks_of(events)[-5:] == [
        {"type": "text-delta", "id": "text-1", "delta": "partial"},
        {"type": "text-end", "id": "text-1"},
        {"type": "message-metadata", "messageMetadata": metadata(final)},
        {"type": "abort", "reason": "cancelled"},
        "[DONE]",
    ]
    assert final["finish_reason"] == "cancelled" and final["content"] == "partial"


@pytest.mark.usefixtures("every_dialect")
def test_an_error_ends_with_an_error_chunk() -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(MockReply.in_band_error("the model is overloaded", after_text="Hello"))
        stream = client.conversation().send_stream("q")
        events = [event.to_dict() for event in stream]
        with pytest.raises(promptkit.StreamError):
            stream.result()
    error = events[-1]["error"]
    assert "the model is overloaded" in error["message"]
    chunks = chunks_of(events)
    assert chunks[-3:] == [{"type": "text-end", "id": "text-1"}, {"type": "error", "errorText": error["message"]}, "[DONE]"]
    assert not any(c != "[DONE]" and c["type"] in ("finish", "finish-step") for c in chunks)
    masked = chunks_of(events, error_text=lambda e: f"Something went wrong ({e['type']}).")
    assert masked[-2] == {"type": "error", "errorText": f"Something went wrong ({error['type']})."}


@pytest.mark.usefixtures("every_dialect")
def test_pending_tool_calls_end_with_tool_calls() -> None:
    events, response = run_turn([weather_replies()[0]])  # no handler: the calls wait for the app
    assert response.finish_reason == "tool_calls"
    chunks = chunks_of(events)
    assert [c["type"] for c in chunks[-4:-2]] == ["tool-input-available", "finish-step"]
    assert chunks[-2]["finishReason"] == "tool-calls" and chunks[-1] == "[DONE]"


def test_encoding_is_deterministic_and_survives_a_json_round_trip() -> None:
    events, _ = run_turn(weather_replies(), tools=[get_weather, get_time], tool_call_deltas=True)
    stored = json.loads(json.dumps(events))  # what a Redis log gives back
    live, replay = UIMessageEncoder("m"), UIMessageEncoder("m")
    first = b"".join(live.encode(e, event_id=str(i)) for i, e in enumerate(events))
    again = b"".join(replay.encode(e, event_id=str(i)) for i, e in enumerate(stored))
    assert first == again and first.endswith(b"id: %d\ndata: [DONE]\n\n" % (len(events) - 1))
    # Resuming after the event with id k: encode again from the start, keep what follows k.
    encoder = UIMessageEncoder("m")
    pieces = [encoder.encode(e, event_id=str(i)) for i, e in enumerate(stored)]
    k = len(pieces) // 2
    while not pieces[k]:
        k += 1
    assert b"".join(pieces) == first
    cut = first.index(b"\n\n", first.index(f"id: {k}\n".encode())) + 2  # the end of the frame with that id
    assert first[cut:] == b"".join(pieces[k + 1:]) and first[cut:]


def test_event_id_goes_on_the_last_frame_of_each_event() -> None:
    events, _ = run_turn(weather_replies(), tools=[get_weather, get_time])
    encoder = UIMessageEncoder("m")
    multi = 0
    for number, event in enumerate(events):
        data = encoder.encode(event, event_id=f"1700-{number}")
        parsed = frames(data)
        assert [i for i, _ in parsed] == [None] * (len(parsed) - 1) + [f"1700-{number}"]
        multi += len(parsed) > 1
    assert multi >= 3  # the first event (start, start-step, ...), step boundaries, the terminal event
    # An event that gives no chunk gives no bytes, and so no id.
    encoder = UIMessageEncoder()
    assert encoder.encode({"type": "content", "content": "", "tool_call": None, "final": None, "error": None}, event_id="9") == b""
    assert encoder.encode({"type": "some_future_type"}, event_id="10") == b""
    data = encoder.encode({"type": "content", "content": "Hi", "tool_call": None, "final": None, "error": None}, event_id="11")
    assert frames(data) == [(None, {"type": "start"}), (None, {"type": "start-step"}),
                            (None, {"type": "text-start", "id": "text-1"}),
                            ("11", {"type": "text-delta", "id": "text-1", "delta": "Hi"})]  # fmt: skip


def test_nothing_after_the_terminal_event_and_bad_input_is_refused() -> None:
    encoder = UIMessageEncoder()
    assert frames(encoder.encode({"type": "error", "error": {"type": "StreamError", "message": "x"}})) == [
        (None, {"type": "start"}), (None, {"type": "start-step"}), (None, {"type": "error", "errorText": "x"}), (None, "[DONE]"),
    ]  # fmt: skip
    assert encoder.ended
    assert encoder.encode({"type": "content", "content": "late"}) == b""
    with pytest.raises(promptkit.ConfigurationError, match="event_id"):
        UIMessageEncoder().encode({"type": "content", "content": "x"}, event_id="1\ndata: forged")
    with pytest.raises(promptkit.ConfigurationError, match="type"):
        UIMessageEncoder().encode({"content": "x"})
    with pytest.raises(promptkit.ConfigurationError, match="message_id"):
        UIMessageEncoder(message_id=42)  # type: ignore[arg-type]


def test_invalid_arguments_are_a_tool_input_error() -> None:
    events, response = run_turn(
        [MockReply.tool_calls([{"id": "b1", "name": "get_weather", "arguments": '{"city": "Par'}]), MockReply.text("Sorry.")],
        tools=[get_weather],
    )
    chunks = [c for c in chunks_of(events) if c != "[DONE]"]
    mine = [c for c in chunks if c.get("toolCallId") == "b1"]
    assert mine[0]["type"] == "tool-input-error" and mine[0]["input"] == '{"city": "Par'
    assert "invalid JSON" in mine[0]["errorText"]
    assert mine[1] == {"type": "tool-output-error", "toolCallId": "b1", "errorText": response.tool_results[0].content}


def test_dynamic_tools_and_no_metadata() -> None:
    events, _ = run_turn(weather_replies(), tools=[get_weather, get_time], tool_call_deltas=True)
    chunks = [c for c in chunks_of(events, dynamic_tools=True, metadata=False) if c != "[DONE]"]
    tool_chunks = [c for c in chunks if c["type"].startswith("tool-") and c["type"] != "tool-input-delta"]
    assert tool_chunks and all(c["dynamic"] is True for c in tool_chunks)
    assert chunks[-1] == {"type": "finish", "finishReason": "stop"}


def test_headers() -> None:
    headers = sse_headers(AI_SDK_HEADERS)
    assert headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert {k.lower(): v for k, v in headers.items()} == {
        "cache-control": "no-cache", "x-accel-buffering": "no", "x-vercel-ai-ui-message-stream": "v1",
    }  # fmt: skip  (Connection is hop-by-hop: a WSGI app may not set it)


# ---------------------------------------------------------------- the request body


def test_parse_a_real_first_turn() -> None:
    body = json.loads((BODIES / "submit_message.json").read_text())
    request = parse_chat_request(body)
    assert request == AIChatRequest(
        chat_id="chat-42",
        message="What is in this picture?",
        message_id=None,
        trigger="submit-message",
        images=(body["messages"][0]["parts"][1]["url"], "https://example.com/cat.jpg"),
        user_message_id="user-1",
        extra={"model": "gpt-4o-mini", "temperature": 0.2},
    )
    assert request.extra == {"model": "gpt-4o-mini", "temperature": 0.2}


def test_parse_a_real_second_turn_reads_only_the_last_message() -> None:
    request = parse_chat_request(json.loads((BODIES / "second_turn.json").read_text()))
    assert (request.chat_id, request.message, request.images, request.user_message_id) == ("chat-1", "And in Rome?", (), "user-3")


def test_parsed_images_are_accepted_by_send_stream() -> None:
    body = json.loads((BODIES / "submit_message.json").read_text())
    request = parse_chat_request(body)
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(MockReply.text("A black square."))
        client.conversation().send(request.message, images=list(request.images))
        content = server.requests[0].body["messages"][-1]["content"]
    assert [p["image_url"]["url"] for p in content if p["type"] == "image_url"] == list(request.images)


def _body(*parts: Any, **changes: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"id": "c", "messages": [{"id": "u", "role": "user", "parts": list(parts)}], "trigger": "submit-message"}
    body.update(changes)
    return body


TEXT = {"type": "text", "text": "hi"}


@pytest.mark.parametrize(
    "body, match",
    [
        ([], "must be a JSON object"),
        (_body(TEXT, id=""), "chat 'id'"),
        (_body(TEXT, messages=[]), "no 'messages'"),
        (_body(TEXT, messages=[{"role": "user", "parts": "hi"}]), "not a UI message"),
        (_body(TEXT, messages=[{"id": "a", "role": "assistant", "parts": [TEXT]}]), "not a user message: tool outputs"),
        (_body(TEXT, trigger="regenerate-message", messageId="a"), "regenerate.*history is kept on the server"),
        (_body(TEXT, trigger="resume-stream"), "unknown trigger"),
        (_body(TEXT, messageId=3), "non-string 'messageId'"),
        (_body({"text": "no type"}), "with a str 'type'"),
        (_body({"type": "text", "text": None}), "without a str 'text'"),
        (_body({"type": "text", "text": "   "}), "no text and no images"),
        (_body(TEXT, {"type": "file", "mediaType": "application/pdf", "url": "data:application/pdf;base64,AAAA"}), "only images"),
        (_body(TEXT, {"type": "file", "mediaType": "image/png", "url": "data:image/png;base64,not base64!"}), "malformed data URL"),
        (_body(TEXT, {"type": "file", "mediaType": "image/png", "url": "ftp://host/a.png"}), "neither a data: URL nor"),
        (_body(TEXT, {"type": "file", "mediaType": "image/png"}), "without a str mediaType and url"),
        (_body({"type": "text", "text": "\ud800"}), "lone surrogate"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_malformed_bodies_are_refused(body: Any, match: str) -> None:
    with pytest.raises(promptkit.ConfigurationError, match=match):
        parse_chat_request(body)


def test_an_image_url_is_never_a_server_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "secret.png"
    image.write_bytes(png(1, 1))  # a real image that send_stream would read if it got the path
    opened: List[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    for url in (str(image), "file://" + str(image)):
        with pytest.raises(promptkit.ConfigurationError, match="neither a data: URL nor an http"):
            parse_chat_request(_body(TEXT, {"type": "file", "mediaType": "image/png", "url": url}))
    assert opened == []


def test_non_text_parts_other_than_files_are_left_out() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png(1, 1)).decode()
    request = parse_chat_request(_body({"type": "data-note", "data": {"x": 1}}, TEXT, {"type": "text", "text": "there"},
                                       {"type": "file", "mediaType": "IMAGE/PNG", "url": data_url}))  # fmt: skip
    assert (request.message, request.images) == ("hi\n\nthere", (data_url,))


# ---------------------------------------------------------------- the real ai package (Node.js)


@pytest.fixture(scope="session")
def ui_chat_client() -> List[str]:
    """The command that runs tests/node/ui_chat_client.mjs; installs its node_modules with ``npm ci`` when missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        reason = "Node.js and npm are needed to run the ai package"
        if _in_ci():
            pytest.fail(f"{reason}; CI must provide them (.ci/run installs nodejs and npm)")
        pytest.skip(reason)
    pinned = json.loads((NODE_DIR / "package.json").read_text())["dependencies"]["ai"]
    installed = NODE_DIR / "node_modules" / "ai" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != pinned:
        result = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"npm ci failed in {NODE_DIR}:\n{result.stderr[-3000:]}"
    return [node, str(CLIENT)]


def node_chat(command: List[str], url: str, *args: str) -> Dict[str, Any]:
    """Run the Node.js client; its JSON: ``{"message", "chunks", "errors"}``."""
    result = subprocess.run([*command, url, *args], capture_output=True, text=True, timeout=WAIT)
    assert result.returncode == 0, f"ui_chat_client failed:\n{result.stderr[-3000:]}"
    out: Dict[str, Any] = json.loads(result.stdout)
    return out


class ChatApp:
    """A Flask useChat back end on werkzeug, built on the public helpers.

    POST /api/chat runs a turn and answers ``flask_response(stream, protocol="ai-sdk")``:
    live, or published to ``log`` (then GET /api/chat/<id>/stream replays it with
    ``flask_resume_response``). ``responses`` collects each turn's Response (``on_done``).
    """

    def __init__(self, client: promptkit.Client, *, tools: Sequence[promptkit.Tool] = (), stop_after_content: bool = False,
                 log: Optional[StreamLog] = None, **options: Any) -> None:  # fmt: skip
        import flask

        self.requests: List[AIChatRequest] = []
        self.responses: List[promptkit.Response] = []
        self.finished = threading.Event()
        self.log = log
        app = self.app = flask.Flask("ai_sdk_test")

        @app.post("/api/chat")
        def chat() -> Any:
            request = parse_chat_request(flask.request.get_json())
            self.requests.append(request)
            turn: Dict[str, promptkit.Stream] = {}

            def on_content(_text: str) -> None:
                if stop_after_content:
                    turn["stream"].cancel()  # a stop request, as another worker would relay it

            def on_done(response: promptkit.Response) -> None:
                self.responses.append(response)
                self.finished.set()

            stream = turn["stream"] = client.conversation(conversation_id=request.chat_id, tools=list(tools)).send_stream(
                request.message, images=list(request.images), on_content=on_content, on_done=on_done,
                on_error=lambda _error: self.finished.set(), **options)  # fmt: skip
            return flask_response(stream, log=self.log, key=request.chat_id, protocol="ai-sdk")

        @app.get("/api/chat/<chat_id>/stream")
        def resume(chat_id: str) -> Any:
            if self.log is None:
                return flask.Response(status=204)
            return flask_resume_response(self.log, self.log.current(chat_id), protocol="ai-sdk")


def serve(app: ChatApp) -> Any:
    from tests.test_web import serve_werkzeug

    return serve_werkzeug(app.app)


def parts_of(message: Mapping[str, Any], kind: str) -> List[Dict[str, Any]]:
    return [p for p in message["parts"] if p["type"] == kind]


@pytest.fixture(params=["live", "published"])
def log(request: pytest.FixtureRequest) -> Optional[StreamLog]:
    """How the back end answers: live (the reply dies with the connection) or published to a stream log."""
    return MemoryStreamLog() if request.param == "published" else None


@pytest.mark.usefixtures("every_dialect")
def test_use_chat_assembles_the_response(ui_chat_client: List[str], log: Optional[StreamLog]) -> None:
    image = "data:image/png;base64," + base64.b64encode(png(2, 2)).decode()
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(*weather_replies())
        chat = ChatApp(client, tools=[get_weather, get_time], tool_call_deltas=True, log=log)
        with serve(chat) as url:
            out = node_chat(ui_chat_client, url + "/api/chat", "Weather in Paris?", "--chat-id", "chat-7",
                            "--image", image, "--body", '{"locale": "fr"}')  # fmt: skip
        assert chat.finished.wait(WAIT)
        sent = server.requests[0].body
    assert out["errors"] == []
    (request,), (response,) = chat.requests, chat.responses
    assert request == AIChatRequest("chat-7", "Weather in Paris?", None, "submit-message", (image,), "user-1", {"locale": "fr"})
    assert image.split(",", 1)[1] in json.dumps(sent)  # the image reached the model
    message = out["message"]
    assert message["role"] == "assistant"
    if log is not None:  # published: the message id is the stream's, the same on every resume
        assert message["id"] == log.current("chat-7")
    # Text: the last step's text parts are the final content; reasoning: all of it.
    last_step = message["parts"][max(i for i, p in enumerate(message["parts"]) if p["type"] == "step-start"):]
    assert "".join(p["text"] for p in parts_of({"parts": last_step}, "text")) == response.content
    assert "".join(p["text"] for p in parts_of(message, "text")) == "Let me check." + response.content
    assert "".join(p["text"] for p in parts_of(message, "reasoning")) == response.reasoning
    assert all(p["state"] == "done" for p in parts_of(message, "text") + parts_of(message, "reasoning"))
    # Tools: one tool-<name> part per call, with its input and the exact result.
    tools = [p for p in message["parts"] if p["type"].startswith("tool-")]
    expected = []
    for call, result in zip(response.tool_calls, response.tool_results):
        state = "output-error" if result.is_error else "output-available"
        expected.append((f"tool-{call.name}", call.id, state, call.arguments, result.content))
    assert [(p["type"], p["toolCallId"], p["state"], p["input"], p.get("output", p.get("errorText"))) for p in tools] == expected
    assert len(parts_of(message, "step-start")) == 2
    assert message["metadata"] == {"model": response.model, "finish_reason": "stop", "usage": response.usage.to_dict(),
                                   "cost": response.cost}  # fmt: skip


@pytest.mark.usefixtures("every_dialect")
def test_use_chat_sees_an_error_and_an_abort(ui_chat_client: List[str], log: Optional[StreamLog]) -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(MockReply.in_band_error("the model is overloaded", after_text="Hello"))
        failing = ChatApp(client, log=log)
        with serve(failing) as url:
            out = node_chat(ui_chat_client, url + "/api/chat", "Hi")
        assert failing.finished.wait(WAIT)
        assert len(out["errors"]) == 1 and "the model is overloaded" in out["errors"][0]
        assert parts_of(out["message"], "text") == [{"type": "text", "text": "Hello", "state": "done"}]

        server.enqueue(MockReply.stall(after_text="partial"))
        stopped = ChatApp(client, stop_after_content=True, log=log)
        with serve(stopped) as url:
            out = node_chat(ui_chat_client, url + "/api/chat", "Hi")
        assert stopped.finished.wait(WAIT)
    assert stopped.responses[0].finish_reason == "cancelled"
    assert out["errors"] == [] and out["chunks"][-1] == {"type": "abort", "reason": "cancelled"}
    assert parts_of(out["message"], "text") == [{"type": "text", "text": "partial", "state": "done"}]
    assert out["message"]["metadata"]["finish_reason"] == "cancelled"


def test_reconnect_replays_the_stream(ui_chat_client: List[str]) -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k") as client:
        server.enqueue(*weather_replies())
        chat = ChatApp(client, tools=[get_weather, get_time], log=MemoryStreamLog())
        with serve(chat) as url:
            live = node_chat(ui_chat_client, url + "/api/chat", "Weather in Paris?", "--chat-id", "chat-9")
            assert chat.finished.wait(WAIT)
            replayed = node_chat(ui_chat_client, url + "/api/chat", "--reconnect", "chat-9")
            nothing = node_chat(ui_chat_client, url + "/api/chat", "--reconnect", "no-such-chat")
    assert live["errors"] == [] and live["message"]["parts"]
    assert replayed == live
    assert nothing == {"message": None, "chunks": [], "errors": []}
