"""The first hour of a new user: choosing a model, server-reported costs, plain messages.

Every example runs as a program (as a user runs it) against a MockServer
started here that stands for "a server of their own" serving a model other
than gpt-4o-mini; the requests the server recorded show which model was sent.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pytest

import promptkit
from promptkit._dialects.chat_decoder import Accumulator
from promptkit.testing import MockReply, MockServer
from tests._processes import example_program

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODEL = "llama3.2"  # what the user's own server serves
CLI_EXAMPLES = ["streaming.py", "tools.py"]


def _env(base_url: Optional[str], **extra: str) -> Dict[str, str]:
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMPTKIT_MODEL", "PROMPTKIT_STORE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONIOENCODING="utf-8", PYTHONPATH=str(ROOT), **extra)
    if base_url is not None:
        env["OPENAI_BASE_URL"] = base_url
    return env


def run_example(name: str, *args: str, env: Dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          encoding="utf-8", timeout=120, env=env, cwd=ROOT)


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(model=MODEL) as srv:
        yield srv


# -- the model ------------------------------------------------------------------------


def test_client_model_comes_from_argument_then_environment_then_default(
    monkeypatch: pytest.MonkeyPatch, server: MockServer
) -> None:
    monkeypatch.delenv("PROMPTKIT_MODEL", raising=False)
    url = "http://127.0.0.1:1/v1"
    with promptkit.Client(base_url=url) as client:
        assert client.model == "gpt-4o-mini"
    monkeypatch.setenv("PROMPTKIT_MODEL", MODEL)
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        assert client.model == MODEL
        server.enqueue(MockReply.text("hi"))
        client.conversation().send("q")  # its conversations send that model
        assert server.requests[-1].body["model"] == MODEL
    with promptkit.Client(base_url=url, model="qwen2.5") as client:
        assert client.model == "qwen2.5"
    monkeypatch.setenv("PROMPTKIT_MODEL", "  ")
    with promptkit.Client(base_url=url) as client:
        assert client.model == "gpt-4o-mini"


@pytest.mark.parametrize("how", ["env", "option"])
@pytest.mark.parametrize("name", CLI_EXAMPLES)
def test_example_sends_the_chosen_model(name: str, how: str, server: MockServer) -> None:
    env = _env(server.url, **({"PROMPTKIT_MODEL": MODEL} if how == "env" else {}))
    proc = run_example(name, *(["--model", MODEL] if how == "option" else []), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "mock server" not in proc.stdout  # it used the given server
    assert server.requests and {r.body["model"] for r in server.requests} == {MODEL}


@pytest.mark.parametrize("name", CLI_EXAMPLES)
def test_example_in_its_own_mock_mode_takes_a_model(name: str) -> None:
    proc = run_example(name, "--model", MODEL, env=_env(None))
    assert proc.returncode == 0, proc.stderr
    assert "No OPENAI_API_KEY or OPENAI_BASE_URL: using promptkit's embedded mock server" in proc.stdout
    assert re.search(r"💰 Cost: (n/a|\$[\d.]+) \| ⏱️  Latency: \d+ms", proc.stdout)


@pytest.mark.parametrize("name", CLI_EXAMPLES)
def test_example_against_a_server_without_the_model_fails_with_one_line(name: str, server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "Invalid model name passed in model=gpt-4o-mini"))
    proc = run_example(name, env=_env(server.url))
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: BadRequestError: ") and "Invalid model name" in lines[0]
    assert "--model or PROMPTKIT_MODEL" in lines[0]
    assert [r.body["model"] for r in server.requests] == ["gpt-4o-mini"]


def test_example_against_nothing_listening_fails_with_one_line() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = run_example("streaming.py", env=_env(f"http://127.0.0.1:{port}/v1"))
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: APIConnectionError: could not connect to 127.0.0.1:{port}: connection refused "
                     f"(http://127.0.0.1:{port}/v1) (after 3 attempts)"]


@contextmanager
def chat_app(name: str, *args: str, env: Dict[str, str]) -> Iterator[str]:
    """Run a chat example as a program on a free port; its URL."""
    with example_program(f"examples/{name}/app.py", "--port", "0", *args, env=env) as (_, url, banner):
        assert MODEL in banner  # the banner names the model it talks to
        yield url


@pytest.mark.parametrize("how", ["env", "option"])
@pytest.mark.parametrize("name", ["flask_chat", "django_chat"])
def test_chat_app_sends_the_chosen_model(name: str, how: str, server: MockServer) -> None:
    pytest.importorskip("flask" if name == "flask_chat" else "django")
    requests = pytest.importorskip("requests")
    env = _env(server.url, **({"PROMPTKIT_MODEL": MODEL} if how == "env" else {}))
    with chat_app(name, *(["--model", MODEL] if how == "option" else []), env=env) as url:
        with requests.Session() as browser:
            browser.get(url + "/", timeout=30).raise_for_status()
            headers = {"X-CSRFToken": browser.cookies.get("csrftoken", ""), "Referer": url + "/"}
            reply = browser.post(url + "/chat", json={"message": "Hi"}, headers=headers, timeout=60)
            assert reply.status_code == 200 and "event: done" in reply.text
    assert [r.body["model"] for r in server.requests] == [MODEL]


# -- server-reported cost -------------------------------------------------------------


def test_a_proxy_alias_uses_the_cost_the_server_reports(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit.pricing")
    server.enqueue(MockReply.text("Hello.", model="my-proxy-alias", usage={"cost": 0.000084}),
                   MockReply.text("Again.", model="my-proxy-alias", usage={"cost": 0.00002}))
    with promptkit.Client(base_url=server.url, model="my-proxy-alias") as client:
        conv = client.conversation()
        first = conv.send("hi")
        second = conv.send("more")
    assert (first.cost, first.cost_known, first.cost_source) == (0.000084, True, "server")
    assert first.summary().startswith("Cost: $0.000084 |")
    assert first.to_dict()["cost_source"] == "server"
    assert second.cost == 0.00002 and conv.total_cost == pytest.approx(0.000104, abs=1e-15)
    assert [r for r in caplog.records if r.name == "promptkit.pricing"] == []  # no "no price" warning


def test_server_cost_adds_up_over_tool_rounds(server: MockServer) -> None:
    server.enqueue(
        MockReply.tool_calls([{"name": "echo", "arguments": {"text": "a"}}], model="alias", usage={"cost": 0.001}),
        MockReply.text("Done.", model="alias", usage={"cost": 0.0025}),
    )
    echo = promptkit.Tool("echo", "Echo text.", parameters={"type": "object", "properties": {"text": {"type": "string"}}},
                          handler=lambda text: text)
    with promptkit.Client(base_url=server.url, model="alias") as client:
        conv = client.conversation(tools=[echo])
        resp = conv.send("go")
    assert resp.rounds == 2
    assert (resp.cost, resp.cost_source) == (pytest.approx(0.0035, abs=1e-15), "server")
    assert conv.total_cost == pytest.approx(0.0035, abs=1e-15)


def test_server_cost_and_table_cost_in_one_turn_is_mixed(server: MockServer) -> None:
    server.enqueue(
        MockReply.tool_calls([{"name": "echo", "arguments": {"text": "a"}}], model="gpt-4o", usage={"cost": 0.5}),
        MockReply.text("Done.", model="gpt-4o", usage={"prompt_tokens": 1000, "completion_tokens": 100}),
    )
    echo = promptkit.Tool("echo", "Echo text.", handler=lambda text="": text)
    with promptkit.Client(base_url=server.url, model="gpt-4o", pricing={"gpt-4o": {"input": 2.0, "output": 8.0}}) as c:
        resp = c.conversation(tools=[echo]).send("go")
    assert resp.cost_source == "mixed" and resp.cost == pytest.approx(0.5 + (1000 * 2.0 + 100 * 8.0) / 1e6)


def test_an_unpriced_alias_without_a_reported_cost_warns_once(server: MockServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="promptkit.pricing")
    server.enqueue(MockReply.text("One.", model="alias-nobody-prices"), MockReply.text("Two.", model="alias-nobody-prices"))
    with promptkit.Client(base_url=server.url, model="alias-nobody-prices") as client:
        conv = client.conversation()
        responses = [conv.send("a"), conv.send("b")]
    assert [(r.cost, r.cost_known, r.cost_source) for r in responses] == [(0.0, False, "unknown")] * 2
    assert responses[0].summary().startswith("Cost: n/a |")
    messages = [r.getMessage() for r in caplog.records if r.name == "promptkit.pricing"]
    assert len(messages) == 1 and "alias-nobody-prices" in messages[0] and "\n" not in messages[0]


@pytest.mark.parametrize(
    "chunk,cost",
    [
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": 0.0012}}, 0.0012),  # OpenRouter
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}, "cost": 0.0007}, 0.0007),  # beside usage
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": 0}}, 0.0),  # free is a cost
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": "0.1"}}, None),
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": True}}, None),
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": -1.0}}, None),
        ({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "cost": float("nan")}}, None),
        ({"choices": [], "cost": 0.5}, None),  # a cost with no usage: not a usage chunk
    ],
)
def test_accumulator_reads_a_reported_cost(chunk: Dict[str, object], cost: Optional[float]) -> None:
    acc = Accumulator()
    acc.feed(chunk)
    assert acc.cost == cost


# -- messages -------------------------------------------------------------------------


def test_connection_errors_name_host_and_port_not_library_classes() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with promptkit.Client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
        with pytest.raises(promptkit.APIConnectionError) as caught:
            client.conversation().send("hi")
    message = str(caught.value)
    assert message.startswith(f"could not connect to 127.0.0.1:{port}: connection refused")
    assert "Pool" not in message and "Error(" not in message and "_Hooked" not in message


def test_a_server_that_hangs_up_is_described_plainly() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        done: List[Tuple[str]] = []
        import threading

        def hang_up() -> None:
            conn, _ = listener.accept()
            with conn:
                # Read the whole request (headers, then the body they announce) before closing: bytes
                # left unread would make the kernel reset the connection instead of closing it.
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                while len(body) < length:
                    body += conn.recv(65536)
            done.append(("closed",))

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with promptkit.Client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0) as client:
            with pytest.raises(promptkit.APIConnectionError) as caught:
                client.conversation().send("hi")
        thread.join(10)
    assert done == [("closed",)]
    assert str(caught.value).startswith(
        f"could not connect to 127.0.0.1:{port}: the server closed the connection without a response")


def test_describe_gives_reasons_not_library_reprs() -> None:
    from http.client import IncompleteRead

    import requests
    from urllib3.exceptions import ProtocolError

    from promptkit._reasons import connect_target, describe

    reset = requests.exceptions.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))
    assert describe(reset) == "connection reset by the server"
    broken = ProtocolError("Connection broken: IncompleteRead(10 bytes read)", IncompleteRead(b"x" * 10, 5))
    assert describe(broken) == "the server closed the connection in the middle of the body"
    assert describe(ValueError("something else")) == "something else"
    assert [connect_target(u) for u in ("http://h/v1", "https://h/v1", "http://[::1]:8080/v1")] == [
        "h:80", "h:443", "[::1]:8080"]
