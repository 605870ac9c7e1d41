"""Request shape, status mapping and retries, with `responses` mocking requests."""

from __future__ import annotations

import json
import socket
import threading
import zlib
from typing import Iterator, List, Optional

import pytest
import responses

import promptkit
from promptkit._retry import RetryPolicy, parse_retry_after
from promptkit._transport import Transport
from tests._processes import read_request

URL = "https://api.openai.com/v1/chat/completions"
SSE = {"Content-Type": "text/event-stream"}


def body(*texts: str, usage: bool = True) -> str:
    chunks = [{"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    chunks += [{"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    chunks.append({"id": "c1", "model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({"id": "c1", "model": "gpt-4o-mini", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}})
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    # Every stream is consumed to its end inside the block, so no late request escapes to the network.
    with responses.RequestsMock() as rsps:
        yield rsps


@pytest.fixture
def client() -> Iterator[promptkit.Client]:
    with promptkit.Client(api_key="sk-secret-123", max_retries=2) as c:
        yield c


def test_request_shape(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, body=body("Hi", " there"), headers=SSE)
    conv = client.conversation(system_prompt="sys", max_tokens=5)
    resp = conv.send("hello")
    assert resp.content == "Hi there" and resp.usage.total_tokens == 12
    request = mocked.calls[0].request
    assert request.headers["Authorization"] == "Bearer sk-secret-123"
    assert request.headers["Accept"] == "text/event-stream"
    sent = json.loads(request.body)
    assert sent == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, promptkit.BadRequestError),
        (422, promptkit.BadRequestError),
        (401, promptkit.AuthenticationError),
        (403, promptkit.AuthenticationError),
        (404, promptkit.NotFoundError),
        (418, promptkit.APIStatusError),
    ],
)
def test_status_mapping_without_retry(mocked: responses.RequestsMock, client: promptkit.Client, status: int, cls: type) -> None:
    mocked.post(URL, json={"error": {"message": f"status {status} says no"}}, status=status, headers={"x-request-id": "req_1"})
    with pytest.raises(cls) as info:
        client.conversation().send_stream("q")
    error = info.value
    assert type(error) is cls
    assert error.status_code == status and error.request_id == "req_1"
    assert f"status {status} says no" in str(error)
    assert error.body == {"error": {"message": f"status {status} says no"}}
    assert len(mocked.calls) == 1


@pytest.mark.parametrize("status,cls", [(429, promptkit.RateLimitError), (500, promptkit.ServerError), (503, promptkit.ServerError), (408, promptkit.APIStatusError), (409, promptkit.APIStatusError)])
def test_retryable_statuses_are_retried(mocked: responses.RequestsMock, status: int, cls: type) -> None:
    mocked.post(URL, json={"error": {"message": "busy"}}, status=status, headers={"Retry-After": "0"})
    with promptkit.Client(api_key="k", max_retries=2) as client:
        with pytest.raises(cls) as info:
            client.conversation().send_stream("q")
    assert len(mocked.calls) == 3 and info.value.attempts == 3


def test_retry_on_429_then_success(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, json={"error": {"message": "rate limited"}}, status=429, headers={"retry-after-ms": "1"})
    mocked.post(URL, body=body("ok"), headers=SSE)
    assert client.conversation().send("q").content == "ok"
    assert len(mocked.calls) == 2


def test_retry_after_too_long_is_not_retried(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, json={"error": {"message": "quota"}}, status=429, headers={"Retry-After": "3600"})
    with pytest.raises(promptkit.RateLimitError) as info:
        client.conversation().send("q")
    assert info.value.retry_after == 3600
    assert "not retried" in str(info.value)
    assert len(mocked.calls) == 1


def test_per_call_max_retries(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, json={"error": {"message": "down"}}, status=500, headers={"Retry-After": "0"})
    with pytest.raises(promptkit.ServerError):
        client.conversation().send("q", max_retries=0)
    assert len(mocked.calls) == 1


def test_stream_options_fallback_is_remembered(mocked: responses.RequestsMock) -> None:
    url = "https://llm.example.test/v1/chat/completions"
    mocked.post(url, json={"error": {"message": "Unrecognized request argument: stream_options"}}, status=400)
    mocked.post(url, body=body("a", usage=False), headers=SSE)
    mocked.post(url, body=body("b", usage=False), headers=SSE)
    with promptkit.Client(base_url="https://llm.example.test/v1") as client:
        conv = client.conversation()
        assert conv.send("one").content == "a"
        assert conv.send("two").content == "b"
    # (tiktoken's attempt to download o200k for the usage estimate is also a call here)
    sent = [json.loads(c.request.body) for c in mocked.calls if c.request.url == url]
    assert len(sent) == 3
    assert "stream_options" in sent[0]
    assert "stream_options" not in sent[1] and "stream_options" not in sent[2]


def test_wrong_content_type_raises_before_returning(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, body="<html>gateway</html>", status=200, content_type="text/html")
    with pytest.raises(promptkit.StreamError, match="text/event-stream"):
        client.conversation().send_stream("q")


def test_connection_error_is_retried_then_raised(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    import requests

    mocked.post(URL, body=requests.exceptions.ConnectionError("refused"))
    with pytest.raises(promptkit.APIConnectionError) as info:
        client.conversation().send_stream("q", max_retries=1)
    assert info.value.attempts == 2 and len(mocked.calls) == 2


def test_key_never_in_error_messages(mocked: responses.RequestsMock, client: promptkit.Client) -> None:
    mocked.post(URL, json={"error": {"message": "Incorrect API key provided: sk-secret-123"}}, status=401)
    with pytest.raises(promptkit.AuthenticationError) as info:
        client.conversation().send_stream("q")
    assert "sk-secret-123" not in str(info.value) and "sk-secret-123" not in json.dumps(info.value.body)
    assert "sk-secret-123" not in repr(client)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == pytest.approx(10.0)
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_with_jitter() -> None:
    policy = RetryPolicy(max_retries=5, base_delay=1.0, max_delay=4.0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        delays = {policy.delay(attempt) for _ in range(20)}
        assert all(cap * 0.75 <= d <= cap for d in delays)
        assert len(delays) > 1  # jittered


def test_backoff_never_repeats_a_wait_before_the_cap() -> None:
    # llmock (and any server) reads two equal waits in a row as "no backoff": the jitter must not undo the doubling.
    policy = RetryPolicy(max_retries=6, base_delay=0.5, max_delay=8.0)
    for _ in range(500):
        waits = [policy.delay(attempt) for attempt in range(1, 6)]
        assert all(later >= 1.5 * earlier for earlier, later in zip(waits, waits[1:])), waits


def test_transport_repr_hides_key() -> None:
    t = Transport(base_url="https://x.test/v1", api_key="sk-hidden")
    try:
        assert "sk-hidden" not in repr(t)
    finally:
        t.close()


def _chunk_line(content: str = "", finish: Optional[str] = None) -> bytes:
    delta = {"content": content} if content else {}
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).encode() + b"\n\n"


@pytest.mark.parametrize("encoding, wbits", [("gzip", 31), ("deflate", 15), ("x-gzip", 31)])
def test_a_compressed_stream_delivers_each_event_before_the_next_is_sent(encoding: str, wbits: int) -> None:
    # The server compresses although promptkit asked for identity (a proxy's doing, typically), flushing
    # per event. It sends the second event only once the client has shown the first: a decoder that
    # buffered until the end would never see it.
    first_seen = threading.Event()
    served: List[str] = []
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            request = read_request(conn)
            assert request is not None
            served.append(request[0])
            compressor = zlib.compressobj(wbits=wbits)
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: {encoding}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n".encode()
            )

            def send(data: bytes, flush: int = zlib.Z_SYNC_FLUSH) -> None:
                piece = compressor.compress(data) + compressor.flush(flush)
                conn.sendall(b"%X\r\n%s\r\n" % (len(piece), piece))

            send(_chunk_line("Hel"))
            if first_seen.wait(30):
                send(_chunk_line("lo") + _chunk_line(finish="stop") + b"data: [DONE]\n\n", zlib.Z_FINISH)
            conn.sendall(b"0\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with promptkit.Client(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0) as client:
            contents = []
            stream = client.conversation().send_stream("q")
            for event in stream:
                if event.type == "content":
                    contents.append(event.content)
                    first_seen.set()
            assert contents == ["Hel", "lo"] and stream.result().content == "Hello"
    finally:
        first_seen.set()
        thread.join(30)
        listener.close()
    assert "accept-encoding: identity" in served[0].lower()  # asked for plain bytes all the same


def test_a_corrupt_compressed_stream_is_one_clear_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            read_request(conn)
            body = b"this is not gzip at all, " * 4
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = listener.getsockname()[1]
        with promptkit.Client(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test", max_retries=0) as client:
            with pytest.raises(promptkit.APIConnectionError, match="connection broken while streaming"):
                client.conversation().send("q")
    finally:
        thread.join(30)
        listener.close()
