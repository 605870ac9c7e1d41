"""promptkit and its test server behind a real forwarding HTTP proxy (proxy.py, the ``http_proxy`` fixture).

Each test checks the proxy's ``Via`` header on the request the server received, so a request
that went straight to the server cannot pass. The streaming checks use a reply that stalls
for ever after its first text: whatever arrives was passed through before the reply ended.
"""

from __future__ import annotations

from typing import Iterator

import pytest
import requests

import promptkit
from promptkit.testing import MockReply, MockServer


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def proxied(url: str) -> requests.Session:
    session = requests.Session()
    session.proxies = {"http": url}
    return session


def came_through_the_proxy(server: MockServer) -> bool:
    return server.requests[-1].headers.get("via", "").startswith("1.1 proxy.py")


def test_a_session_fetches_through_the_proxy(http_proxy: str, server: MockServer) -> None:
    server.enqueue(MockReply.text("through the proxy"))
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": False}
    with requests.Session() as session:
        response = session.post(f"{server.url}/chat/completions", json=body, proxies={"http": http_proxy}, timeout=10)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "through the proxy"
    assert came_through_the_proxy(server)


def test_the_proxy_passes_each_streamed_chunk_on_at_once(http_proxy: str, server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="partial"))
    body = {"model": "m", "messages": [{"role": "user", "content": "q"}], "stream": True}
    with proxied(http_proxy) as session:
        response = session.post(f"{server.url}/chat/completions", json=body, stream=True, timeout=10)
        try:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["transfer-encoding"] == "chunked"  # the framing reaches the client unchanged
            received = b""
            while b'"partial"' not in received:  # the server sends nothing more until the client hangs up
                piece = response.raw.read1(65536)
                assert piece, f"the body ended before the streamed text: {received!r}"
                received += piece
            assert not server.disconnected.is_set()
        finally:
            response.close()
    assert server.disconnected.wait(10), "the proxy did not pass the client's hang-up on to the server"
    assert came_through_the_proxy(server)


def test_a_promptkit_turn_streams_through_the_proxy(http_proxy: str, server: MockServer) -> None:
    server.enqueue(MockReply.stall(after_text="Hello from behind a proxy"))
    with proxied(http_proxy) as session, promptkit.Client(base_url=server.url, api_key="sk-test", session=session,
                                                          timeout=promptkit.Timeout(idle=30)) as client:
        conv = client.conversation()
        with conv.send_stream("hi") as stream:
            text = ""
            for event in stream:
                assert event.type == "content", event
                text += event.content
                if text == "Hello from behind a proxy":
                    break  # the reply is stalled: this text came through before its end
        assert stream.result().finish_reason == "cancelled"
    assert server.disconnected.wait(10), "the cancel did not reach the server through the proxy"
    assert came_through_the_proxy(server)
    assert conv.messages[-1] == {"role": "assistant", "content": "Hello from behind a proxy"}


def test_an_owned_session_takes_the_proxy_from_the_environment(
    http_proxy: str, server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # promptkit reads HTTP_PROXY and NO_PROXY once, when the Client is made (requests would on every request).
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)  # lower case wins over upper case: none may be left over
    monkeypatch.setenv("HTTP_PROXY", http_proxy)
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        monkeypatch.delenv("HTTP_PROXY")  # read already: a later change does not affect this client
        assert client.conversation().send("hi").content
    assert came_through_the_proxy(server)
    monkeypatch.setenv("HTTP_PROXY", http_proxy)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        assert client.conversation().send("hi").content
    assert not came_through_the_proxy(server)  # NO_PROXY names the server: straight there
