"""The hostile-server and careless-input suite (hardening): secrets, redirects, what a turn
commits, a closed client, bad input, honest logs, and retries before output.

Memory limits and hostile JSON shapes: ``test_limits.py``; failing stores:
``test_store_failures.py``; the llmock chaos verdict: ``test_chaos.py``.

Every scenario checks, where it applies: exactly one terminal event, the error
type and message, no promptkit thread left (the autouse fixture) and no socket
left open to the server, the secrets absent from every text a user or a log can
see, and the history as specified.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import traceback
from typing import Any, Iterator, List

import pytest

import promptkit
from promptkit.testing import MockReply, MockServer
from promptkit.web import error_reply
from tests._processes import free_port
from tests.test_faults import assert_one_terminal, client_sockets, content_of, server_port, wait_for

KEY = "sk-hostile-SECRET-0123456789"
HEADER_SECRET = "azure-SECRET-abcdef987654"
URL_PASSWORD = "pw-SECRET-777"
SECRETS = (KEY, HEADER_SECRET, URL_PASSWORD)
WAIT = 5.0


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def texts_of_error(error: BaseException) -> List[str]:
    out = [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    for attr in ("body", "message", "partial"):
        value = getattr(error, attr, None)
        if value is not None:
            out += [str(value), repr(value)]
    out.append(json.dumps(promptkit.StreamEvent("error", error=error).to_dict()))
    reply = error_reply(error)
    out.append(repr(reply))
    if error.__cause__ is not None:
        out += texts_of_error(error.__cause__)
    if error.__context__ is not None and error.__context__ is not error.__cause__:
        out += texts_of_error(error.__context__)
    return out


def texts_of_events(events: List[promptkit.StreamEvent]) -> List[str]:
    out: List[str] = []
    for event in events:
        out += [repr(event), json.dumps(event.to_dict())]
        if event.error is not None:
            out += texts_of_error(event.error)
    return out


def assert_no_secret(texts: List[str], caplog: pytest.LogCaptureFixture) -> None:
    formatter = logging.Formatter()
    for record in caplog.records:
        texts = texts + [formatter.format(record)]
        if record.exc_info:
            texts.append(formatter.formatException(record.exc_info))
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a secret leaked: {text[:300]!r}"
            assert repr(secret)[1:-1] not in text


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("promptkit", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def no_socket_left(server: MockServer) -> bool:
    # An ESTABLISHED connection in the pool is fine; a CLOSE_WAIT one is a leak.
    return wait_for(lambda: all(state == "01" for state in client_sockets(server)))


# -- 1. the key never escapes -----------------------------------------------------------------


def test_a_key_read_from_a_file_is_stripped(server: MockServer) -> None:
    server.enqueue(MockReply.text("ok"))
    with promptkit.Client(base_url=server.url, api_key=f"  {KEY}\r\n") as client:
        assert client.conversation().send("q").content == "ok"
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("bad", [f"{KEY[:8]}\n{KEY[8:]}", f"{KEY}\x00", f"{KEY[:5]}\u00e9{KEY[5:]}", f"{KEY}\x7f", f"a\tb{KEY}"])
def test_a_key_that_cannot_be_a_header_is_refused_before_any_io(server: MockServer, bad: str) -> None:
    with pytest.raises(promptkit.ConfigurationError) as info:
        promptkit.Client(base_url=server.url, api_key=bad)
    for text in texts_of_error(info.value):
        assert KEY[8:] not in text and KEY[:8] not in text
    assert "api_key" in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("headers", [{"X-Custom": "a\r\nb"}, {"Bad Name": "v"}, {"api-key": 5}, {"X": "caf\u00e9"}])
def test_bad_headers_are_refused_before_any_io(server: MockServer, headers: Any) -> None:
    with pytest.raises(promptkit.ConfigurationError):
        promptkit.Client(base_url=server.url, headers=headers)
    assert server.requests == []


def test_a_request_that_fails_header_validation_is_not_retried(server: MockServer, logs: pytest.LogCaptureFixture) -> None:
    import requests

    session = requests.Session()
    session.headers["X-Broken"] = f"{HEADER_SECRET}\nInjected: yes"  # requests refuses it when sending
    with promptkit.Client(base_url=server.url, api_key=KEY, session=session, max_retries=3) as client:
        with pytest.raises(promptkit.ConfigurationError) as info:
            client.conversation().send("q")
    session.close()
    assert server.requests == []
    assert not [r for r in logs.records if "retrying" in r.getMessage()]
    assert_no_secret(texts_of_error(info.value), logs)


def echo_replies() -> List[MockReply]:
    """A server echoing every secret, in every spelling, through every error channel."""
    spellings = [KEY, HEADER_SECRET, URL_PASSWORD, repr(KEY), json.dumps(HEADER_SECRET)]
    text = " | ".join(spellings)
    return [
        MockReply.error(401, f"Incorrect API key provided: {text}"),
        MockReply.in_band_error(f"bad credentials {text}", after_text="partial "),
        MockReply.raw([f"data: <html>{text}</html>\n\n".encode()]),
        MockReply.raw([f"event: error\ndata: {text}\n\n".encode()]),
        MockReply.raw([f"{text}".encode()], headers={"Content-Type": "text/html"}),
    ]


def test_secrets_are_redacted_in_every_spelling(server: MockServer, logs: pytest.LogCaptureFixture) -> None:
    base = server.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    texts: List[str] = []
    with promptkit.Client(base_url=base, api_key=KEY, headers={"api-key": HEADER_SECRET}, max_retries=0) as client:
        texts += [repr(client), str(client.base_url)]
        for reply in echo_replies():
            server.enqueue(reply)
            conv = client.conversation()
            try:
                stream = conv.send_stream("q")
            except promptkit.APIError as error:
                texts += texts_of_error(error)
                continue
            events = list(stream)
            assert_one_terminal(events)
            assert events[-1].type == "error"
            texts += texts_of_events(events)
            assert conv.messages == []  # a failed turn commits nothing
    assert server.requests[0].headers["api-key"] == HEADER_SECRET  # the secrets were really sent
    # URL credentials become HTTP Basic auth (as in requests), in place of the bearer key.
    assert server.requests[0].headers["authorization"].startswith("Basic ")
    assert no_socket_left(server)
    assert_no_secret(texts, logs)


def test_base_url_credentials_never_show(logs: pytest.LogCaptureFixture) -> None:
    base = f"http://admin:{URL_PASSWORD}@127.0.0.1:{free_port()}/v1"
    with promptkit.Client(base_url=base, api_key=KEY, max_retries=1) as client:
        assert URL_PASSWORD not in repr(client) and "admin" not in client.base_url
        with pytest.raises(promptkit.APIConnectionError) as info:
            client.conversation().send("q")
    assert "127.0.0.1" in str(info.value)
    assert_no_secret(texts_of_error(info.value), logs)


def test_base_url_credentials_are_sent_as_basic_auth(server: MockServer) -> None:
    server.enqueue(MockReply.text("ok"))
    base = server.url.replace("http://", f"http://user:{URL_PASSWORD}@")
    with promptkit.Client(base_url=base) as client:
        assert client.conversation().send("q").content == "ok"
    assert server.requests[0].headers["authorization"].startswith("Basic ")


def test_redaction_never_mangles_unrelated_text(server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "HTTPConnectionPool says: Pool P is not Pooled; key P refused"))
    with promptkit.Client(base_url=server.url, api_key="P", max_retries=0) as client:
        with pytest.raises(promptkit.BadRequestError) as info:
            client.conversation().send("q")
    text = str(info.value)
    assert "HTTPConnectionPool says: Pool *** is not Pooled; key *** refused" in text


# -- 2. no redirect carries the conversation away --------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(server: MockServer, status: int, logs: pytest.LogCaptureFixture) -> None:
    with MockServer() as other:
        target = f"http://someone:{URL_PASSWORD}@127.0.0.1:{server_port(other)}/v1/chat/completions"
        server.enqueue(MockReply.error(status, "moved", headers={"Location": target}))
        with promptkit.Client(base_url=server.url, api_key=KEY, headers={"api-key": HEADER_SECRET}, max_retries=3) as client:
            conv = client.conversation()
            with pytest.raises(promptkit.APIStatusError) as info:
                conv.send("a secret conversation")
        assert other.requests == []  # neither the conversation nor a credential went there
        assert len(server.requests) == 1  # not retried
        assert conv.messages == []
    error = info.value
    assert error.status_code == status
    assert f"127.0.0.1:{server_port(other)}/v1/chat/completions" in str(error)
    assert "redirect" in str(error)
    assert_no_secret(texts_of_error(error), logs)


# -- 6. what a turn commits is what the user saw ---------------------------------------------------


def test_a_cancelled_turn_commits_the_text_the_consumer_saw_not_the_read_ahead() -> None:
    # The turn reads ahead of a consumer that takes one event and then presses "stop": the words
    # arrive in one write of a close-delimited body, so the read that gives the consumer its
    # first event has them all (a chunked body is read one HTTP chunk at a time).
    with MockServer(framing="close") as server, promptkit.Client(base_url=server.url, timeout=promptkit.Timeout(idle=30)) as client:
        server.enqueue(MockReply.stall(after_text=" ".join(f"w{i}" for i in range(50)), bulk=True))
        conv = client.conversation()
        stream = conv.send_stream("count")
        events = iter(stream)
        first = next(events)
        assert first.type == "content" and first.content == "w0"
        assert wait_for(lambda: stream.usage_so_far.completion_tokens > 5)  # the turn has read ahead
        stream.cancel()
        rest = list(events)
    assert [e.type for e in rest] == ["done"]  # the read-ahead is not delivered after the cancel
    final = rest[-1].final
    assert final.finish_reason == "cancelled" and final.content == "w0"
    assert conv.messages == [{"role": "user", "content": "count"}, {"role": "assistant", "content": "w0"}]


def test_a_turn_cancelled_before_any_content_commits_nothing(server: MockServer) -> None:
    server.enqueue(MockReply.text("first answer"), MockReply.stall(), MockReply.text("second answer"))
    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation()
        conv.send("one")
        stream = conv.send_stream("two")
        stream.cancel()
        events = list(stream)
        assert_one_terminal(events)
        assert events[-1].final.finish_reason == "cancelled"
        assert conv.last_response is events[-1].final
        assert conv.messages == [{"role": "user", "content": "one"}, {"role": "assistant", "content": "first answer"}]
        assert conv.usage.prompt_tokens > 0  # the cancelled request's tokens still count
        conv.send("three")
    roles = [m["role"] for m in conv.messages]
    assert roles == ["user", "assistant", "user", "assistant"]  # never two user messages in a row
    assert [m["role"] for m in server.requests[2].body["messages"]] == ["user", "assistant", "user"]


def test_on_done_raising_keeps_the_committed_turn_and_carries_it(server: MockServer) -> None:
    server.enqueue(MockReply.text("hello"))

    def on_done(response: promptkit.Response) -> None:
        raise ValueError("display failed")

    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation()
        with pytest.raises(promptkit.CallbackError) as info:
            conv.send("q", on_done=on_done)
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.partial is not None and info.value.partial.content == "hello"
    assert conv.messages[-1] == {"role": "assistant", "content": "hello"}  # as the README says


def test_on_content_raising_commits_nothing(server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="hello there"))  # the reply is still streaming

    def on_content(text: str) -> None:
        raise ValueError("display failed")

    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation()
        with pytest.raises(promptkit.CallbackError) as info:
            conv.send("q", on_content=on_content)
    assert info.value.partial is None
    assert conv.messages == []


# -- 7. a closed client is closed --------------------------------------------------------------


def test_closing_the_client_cancels_its_streams_and_refuses_new_turns(server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial"), MockReply.stall())
    client = promptkit.Client(base_url=server.url, timeout=promptkit.Timeout(idle=60))
    conv = client.conversation()
    reading = conv.send_stream("a")
    events = iter(reading)
    first = next(events)
    assert first.content == "partial"
    silent = client.conversation().send_stream("b")  # never iterated
    closer = threading.Thread(target=client.close)
    closer.start()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert client.closed
    rest = list(events)
    assert [e.type for e in rest] == ["done"] and rest[0].final.finish_reason == "cancelled"
    assert silent.result().finish_reason == "cancelled"
    assert server.disconnected.wait(WAIT)
    assert conv.messages == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "partial"}]
    with pytest.raises(promptkit.ClientClosedError):
        conv.send("again")
    with pytest.raises(promptkit.ClientClosedError):
        client.conversation()
    assert isinstance(promptkit.ClientClosedError("x"), RuntimeError)
    client.close()  # idempotent
    assert len(server.requests) == 2


def test_leaving_the_with_block_closes_the_client(server: MockServer) -> None:
    server.enqueue(MockReply.stall())
    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation()
        stream = conv.send_stream("q")
    assert stream.result().finish_reason == "cancelled"
    with pytest.raises(promptkit.ClientClosedError):
        conv.send_stream("again")


# -- 8. bad input gets a clear error before any I/O -----------------------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda c: c.conversation(model=5), "model"),
        (lambda c: c.conversation(model=""), "model"),
        (lambda c: c.conversation(model="   "), "model"),
        (lambda c: c.conversation(model="gpt\ud800"), "model"),
        (lambda c: c.conversation(system_prompt=42), "system_prompt"),
        (lambda c: c.conversation(system_prompt="be \udc00 nice"), "surrogate"),
        (lambda c: c.conversation().send("hi \ud83d there"), "surrogate"),
        (lambda c: c.conversation().send(b"bytes"), "message"),
        (lambda c: c.conversation(temperature=math.nan), "temperature"),
        (lambda c: c.conversation(top_p=math.inf), "top_p"),
        (lambda c: c.conversation(metadata={"when": object()}), "metadata"),
        (lambda c: c.conversation(max_cost=math.inf), "max_cost"),
        (lambda c: c.conversation(max_cost=math.nan), "max_cost"),
        (lambda c: c.conversation(system_prompt="Hi {{name}}", variables={"name": "\udfff"}).send("q"), "surrogate"),
    ],
)
def test_bad_input_is_refused_before_any_io(server: MockServer, make: Any, words: str) -> None:
    with promptkit.Client(base_url=server.url) as client:
        with pytest.raises(promptkit.ConfigurationError) as info:
            make(client)
    assert words in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("model", [5, "", " ", "m\ud800"])
def test_a_bad_client_model_is_refused(model: Any) -> None:
    with pytest.raises(promptkit.ConfigurationError, match="model"):
        promptkit.Client(base_url="http://127.0.0.1:9/v1", model=model)


def calls_reply(*calls: Any) -> MockReply:
    return MockReply.tool_calls([{"id": cid, "name": name, "arguments": args} for cid, name, args in calls])


def _cycle() -> Any:
    loop: List[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    "result", [{frozenset({1}): "key"}, {"x": math.nan}, b"raw bytes", "lone \ud800", _cycle()],
    ids=["non-str-key", "nan", "bytes", "surrogate", "cycle"],
)
def test_tool_results_that_cannot_be_sent_are_refused(server: MockServer, result: Any) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    server.enqueue(calls_reply(("c1", "lookup", {})))
    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation(tools=tools)
        assert conv.send("q").finish_reason == "tool_calls"
        with pytest.raises(promptkit.ConfigurationError) as info:
            conv.add_tool_result("c1", result)
        assert "c1" in str(info.value)
        assert [c.id for c in conv.pending_tool_calls] == ["c1"]  # still waiting for a good result
    assert len(server.requests) == 1


@pytest.mark.parametrize("returned", [b"\x00\x01binary", math.inf, "lone \udc00"])
def test_a_handler_returning_something_unsendable_becomes_an_error_result(server: MockServer, returned: Any) -> None:
    @promptkit.tool
    def fetch() -> Any:
        """Fetch the thing."""
        return returned

    server.enqueue(calls_reply(("c1", "fetch", {})), MockReply.text("sorry"))
    with promptkit.Client(base_url=server.url) as client:
        conv = client.conversation(tools=[fetch])
        resp = conv.send("q")
    assert resp.content == "sorry"
    (result,) = resp.tool_results
    assert result.is_error and "fetch" in result.content
    sent = server.requests[1].body["messages"][-1]
    assert sent["role"] == "tool" and json.loads(sent["content"])["error"] == json.loads(result.content)["error"]


def test_a_base_url_query_string_stays_after_the_path(server: MockServer) -> None:
    server.enqueue(MockReply.text("ok"))
    with promptkit.Client(base_url=server.url + "/deployments/d1?api-version=2024-02-01") as client:
        assert client.conversation().send("q").content == "ok"
    assert server.requests[0].path == "/v1/deployments/d1/chat/completions?api-version=2024-02-01"


# -- 9. quiet, honest logs -------------------------------------------------------------------------


def test_server_chosen_strings_are_truncated_and_escaped_in_logs(server: MockServer, logs: pytest.LogCaptureFixture) -> None:
    forged = "overloaded\n2026-01-01 CRITICAL root: forged line\r\n" + "x" * 5000
    server.enqueue(MockReply.in_band_error(forged, code="server_error"), MockReply.text("ok"))
    with promptkit.Client(base_url=server.url, max_retries=1) as client:
        assert client.conversation().send("q").content == "ok"
    retries = [r for r in logs.records if r.name.startswith("promptkit") and "retrying" in r.getMessage()]
    assert retries, "the retry was not logged"
    for record in logs.records:
        if record.name.startswith("promptkit"):
            message = record.getMessage()
            assert "\n" not in message and "\r" not in message, message[:200]
            assert len(message) < 1500


def test_many_concurrent_streams_do_not_flood_the_log(logs: pytest.LogCaptureFixture) -> None:
    count = 40
    with MockServer() as server:
        gate = threading.Barrier(count, timeout=WAIT)
        results: List[str] = []
        with promptkit.Client(base_url=server.url, pool_size=2) as client:

            def one() -> None:
                conv = client.conversation()
                gate.wait()
                results.append(conv.send("q").content)

            threads = [threading.Thread(target=one) for _ in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
        assert len(results) == count
    full = [r for r in logs.records if "pool is full" in r.getMessage().lower()]
    assert not [r for r in full if r.levelno >= logging.WARNING]
    assert len([r for r in logs.records if "more concurrent streams" in r.getMessage()]) <= 1


# -- 10. retry whatever nothing has reached the user from -------------------------------------------

BEFORE_OUTPUT = {
    "reset": MockReply.reset(),
    "truncate": MockReply.raw([b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n']),
    "malformed": MockReply.raw([b'data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\ndata: {oops\n\n']),
    "stall": MockReply.stall(),
    "in_band_server_error": MockReply.in_band_error("the server had an error", code="server_error"),
    "in_band_overloaded": MockReply.raw([b'data: {"error":{"type":"overloaded_error","message":"Overloaded"}}\n\n']),
}


@pytest.mark.parametrize("fault", sorted(BEFORE_OUTPUT))
def test_a_failure_before_any_output_is_retried(server: MockServer, fault: str, logs: pytest.LogCaptureFixture) -> None:
    server.enqueue(BEFORE_OUTPUT[fault], MockReply.text("recovered"))
    with promptkit.Client(base_url=server.url, timeout=promptkit.Timeout(idle=0.5), max_retries=2) as client:
        conv = client.conversation()
        events = list(conv.send_stream("q"))
    assert_one_terminal(events)
    assert events[-1].type == "done", events[-1].error
    assert content_of(events) == "recovered"
    assert len(server.requests) == 2
    assert conv.messages[-1] == {"role": "assistant", "content": "recovered"}
    assert any("retrying" in r.getMessage() for r in logs.records if r.name.startswith("promptkit"))


AFTER_OUTPUT = {
    "reset": (MockReply.reset(after_text="Hello"), promptkit.APIConnectionError),
    "truncate": (MockReply.truncate(after_text="Hello"), promptkit.StreamTruncatedError),
    "malformed": (
        MockReply.raw([b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n', b"data: {oops\n\n"]),
        promptkit.StreamError,
    ),
    "in_band_server_error": (MockReply.in_band_error("boom", after_text="Hello", code="server_error"), promptkit.StreamError),
}


@pytest.mark.parametrize("fault", sorted(AFTER_OUTPUT))
def test_a_failure_after_output_is_never_retried(server: MockServer, fault: str) -> None:
    reply, error_type = AFTER_OUTPUT[fault]
    server.enqueue(reply, MockReply.text("must not be requested"))
    with promptkit.Client(base_url=server.url, max_retries=3) as client:
        conv = client.conversation()
        events = list(conv.send_stream("q"))
    assert_one_terminal(events)
    error = events[-1].error
    assert isinstance(error, error_type)
    assert error.partial is not None and error.partial.content.startswith("Hello")
    assert len(server.requests) == 1
    assert conv.messages == []


def test_an_in_band_request_error_is_not_retried(server: MockServer) -> None:
    server.enqueue(MockReply.raw([b'data: {"error":{"type":"invalid_request_error","message":"bad tool schema"}}\n\n']))
    with promptkit.Client(base_url=server.url, max_retries=3) as client:
        events = list(client.conversation().send_stream("q"))
    assert isinstance(events[-1].error, promptkit.StreamError)
    assert "bad tool schema" in str(events[-1].error)
    assert len(server.requests) == 1


def test_a_server_chosen_model_name_is_escaped_and_truncated_in_the_price_warning(
    server: MockServer, logs: pytest.LogCaptureFixture
) -> None:
    forged = "evil-model\nCRITICAL forged line " + "m" * 3000
    server.enqueue(MockReply.text("ok", model=forged))
    with promptkit.Client(base_url=server.url) as client:
        resp = client.conversation().send("q")
    assert resp.model == forged and not resp.cost_known
    warnings = [r.getMessage() for r in logs.records if "no price known" in r.getMessage()]
    assert len(warnings) == 1
    assert "\n" not in warnings[0] and "evil-model\\nCRITICAL" in warnings[0]
    assert len(warnings[0]) < 600
