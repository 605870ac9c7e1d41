"""The ``promptkit chat`` command, run as a user runs it: in a pseudo-terminal (pexpect) or piped.

Every child runs with no OPENAI_API_KEY / OPENAI_BASE_URL: either in mock mode
(the CLI starts its own MockServer) or with ``--base-url`` pointing at a
MockServer started here, so that replies can be scripted. Synchronisation is
by ``expect`` with timeouts, never by sleeping.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

from promptkit.testing import MockReply, MockServer

pexpect = pytest.importorskip("pexpect", reason="the interactive tests need pexpect (pip install -e '.[test]')")

TIMEOUT = 30
PROMPT = "User: "
STATS = re.escape("💰 Cost: $") + r"\d+\.\d+" + re.escape(" | ⏱️  Latency: ") + r"\d+ms" + re.escape(" | 🎫 Tokens: ") + r"~?\d+"
MOCK_NOTE = "using promptkit's embedded mock server"


def _env(**extra: str) -> Dict[str, str]:
    unset = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PROMPTKIT_MODEL")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    # TERM=dumb keeps readline's terminal escapes out of the transcript.
    env.update(PYTHONIOENCODING="utf-8", TERM="dumb", **extra)
    return env


def run_piped(*args: str, input: str = "hi\n", env: Dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``promptkit chat ARGS`` with ``input`` piped to it (stdin is not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "promptkit", "chat", *args], input=input, capture_output=True, text=True,
        encoding="utf-8", env=env or _env(), timeout=TIMEOUT * 2,
    )


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


@pytest.fixture
def spawn() -> Iterator[Callable[..., "pexpect.spawn"]]:
    """Start ``promptkit chat ARGS`` in a pseudo-terminal; every child is gone when the test ends."""
    children: List["pexpect.spawn"] = []

    def start(*args: str, env: Dict[str, str] | None = None) -> "pexpect.spawn":
        child = pexpect.spawn(
            sys.executable, ["-m", "promptkit", "chat", *args], env=env or _env(), encoding="utf-8",
            timeout=TIMEOUT, dimensions=(40, 250),  # wide: readline must not wrap long lines
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.isalive():
            child.terminate(force=True)
        child.close(force=True)
        assert not child.isalive()


def ended(child: "pexpect.spawn") -> int:
    """Wait for the child to exit; its exit status (no traceback may have been printed)."""
    child.expect(pexpect.EOF)
    child.close()
    assert "Traceback" not in (child.before or "")
    assert child.signalstatus is None
    return child.exitstatus


# -- help and entry points ------------------------------------------------------------


def test_chat_help_lists_options_commands_and_keys() -> None:
    proc = subprocess.run([sys.executable, "-m", "promptkit", "chat", "--help"], capture_output=True, text=True,
                          env=_env(), timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    for word in ("--model", "--system", "--base-url", "--api-key", "--store", "--conversation-id", "--json",
                 "--temperature", "--max-tokens", "/history", "/cost", "/reset", "/quit", "/help", "Ctrl-C",
                 "sqlite:PATH"):
        assert word in proc.stdout, word


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("promptkit")
    if not script.exists():
        pytest.skip("the promptkit console script is installed by `pip install -e .` (reinstall after setup.cfg changes)")
    proc = subprocess.run([str(script), "chat", "--help"], capture_output=True, text=True, env=_env(), timeout=TIMEOUT)
    assert proc.returncode == 0 and "--conversation-id" in proc.stdout


def test_bad_store_spec_is_a_usage_error() -> None:
    proc = run_piped("--store", "postgres://x")
    assert proc.returncode == 2 and "expected 'memory', 'sqlite:PATH' or a redis:// URL" in proc.stderr


# -- interactive (pseudo-terminal) --------------------------------------------------------


def test_two_turn_session_in_mock_mode(spawn: Callable[..., "pexpect.spawn"]) -> None:
    child = spawn()
    child.expect(MOCK_NOTE)
    child.expect(r"🤖 Streaming conversation started \(ID: conv_\d+\)")
    child.expect(PROMPT)
    child.sendline("Tell me a short story about a robot.")
    child.expect("Assistant: ")
    child.expect(STATS)
    child.expect(PROMPT)
    child.sendline("Now tell me another one, but shorter.")
    child.expect(STATS)
    child.expect(PROMPT)
    child.sendline("/history")
    child.expect(re.escape("📜 Conversation History:"))
    child.expect(re.escape("1. [user] Tell me a short story about a robot."))
    child.expect(re.escape("2. [assistant] "))
    child.expect(re.escape("3. [user] Now tell me another one, but shorter."))
    child.expect(re.escape("4. [assistant] "))
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0


def test_ctrl_c_mid_reply_stops_it_and_keeps_the_session(server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    server.enqueue(MockReply.stall(after_text="The partial answer"), MockReply.text("Second reply."))
    child = spawn("--base-url", server.url)
    child.expect(PROMPT)
    child.sendline("Write a very long essay.")
    child.expect("The partial answer")  # streamed before the reply ended: it is still going
    child.sendintr()
    child.expect(re.escape("[stopped]"))
    child.expect(STATS)
    child.expect(PROMPT)
    assert server.disconnected.wait(TIMEOUT), "the upstream request was not cancelled"
    child.sendline("/history")
    child.expect(re.escape("1. [user] Write a very long essay."))
    child.expect(re.escape("2. [assistant] The partial answer"))
    child.expect(PROMPT)
    child.sendline("Go on.")  # the conversation is not left busy
    child.expect("Second reply.")
    child.expect(STATS)
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0
    last = server.requests[-1].body["messages"]
    assert last[-2:] == [{"role": "assistant", "content": "The partial answer"}, {"role": "user", "content": "Go on."}]


def test_ctrl_c_while_waiting_for_headers_keeps_the_session(server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    server.enqueue(MockReply.stall(before_headers=True), MockReply.text("After the stop."))
    child = spawn("--base-url", server.url, "-v")
    child.expect(PROMPT)
    child.sendline("Hello?")
    assert server.wait_for_requests(1, TIMEOUT)
    child.expect("Assistant: ")
    child.sendintr()
    child.expect(re.escape("[stopped]"))
    child.expect(PROMPT)
    child.sendline("/history")
    child.expect(re.escape("(no messages yet)"))  # nothing was committed
    child.expect(PROMPT)
    child.sendline("Again.")
    child.expect("After the stop.")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0


@pytest.mark.parametrize("key", ["ctrl-d", "ctrl-c"])
def test_ctrl_d_or_ctrl_c_at_the_prompt_exits_0(key: str, spawn: Callable[..., "pexpect.spawn"]) -> None:
    child = spawn()
    child.expect(PROMPT)
    if key == "ctrl-d":
        child.sendeof()
    else:
        child.sendintr()
    assert ended(child) == 0


def test_cost_and_reset(server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    server.enqueue(MockReply.text("One.", usage={"prompt_tokens": 1000, "completion_tokens": 500}))
    child = spawn("--base-url", server.url)
    child.expect(r"\(ID: (conv_\d+)\)")
    first_id = child.match.group(1)
    child.expect(PROMPT)
    child.sendline("Count.")
    child.expect(STATS)
    child.expect(PROMPT)
    child.sendline("/cost")
    child.expect(re.escape("💰 Total cost: $") + r"(\d+\.\d+) " + re.escape("| 🎫 Tokens: 1500 (prompt 1000, completion 500) | 🆔 " + first_id))
    assert float(child.match.group(1)) > 0  # gpt-4o-mini has a price
    child.expect(PROMPT)
    child.sendline("/reset")
    child.expect(r"\(ID: (conv_\d+)\)")
    assert child.match.group(1) != first_id
    child.expect(PROMPT)
    child.sendline("/history")
    child.expect(re.escape("(no messages yet)"))
    child.expect(PROMPT)
    child.sendline("/cost")
    child.expect(re.escape("💰 Total cost: $0.00 | 🎫 Tokens: 0 "))
    child.expect(PROMPT)
    child.sendline("/nonsense")
    child.expect("unknown command /nonsense")
    child.expect(PROMPT)
    child.sendline("/help")
    child.expect("/history")
    child.expect(PROMPT)
    child.sendeof()
    assert ended(child) == 0


def test_store_resumes_across_two_runs(tmp_path: Path, server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    store = ["--store", f"sqlite:{tmp_path / 'chats.db'}", "--conversation-id", "work"]
    server.enqueue(MockReply.text("Noted: banana."), MockReply.text("It was banana."))
    first = run_piped("--base-url", server.url, *store, input="Remember the word banana.\n")
    assert first.returncode == 0, first.stderr
    child = spawn("--base-url", server.url, *store)
    child.expect(re.escape("🤖 Resumed conversation work (2 messages"))
    child.expect(PROMPT)
    child.sendline("/history")
    child.expect(re.escape("1. [user] Remember the word banana."))
    child.expect(re.escape("2. [assistant] Noted: banana."))
    child.expect(PROMPT)
    child.sendline("Which word?")
    child.expect("It was banana.")
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0
    assert [m["content"] for m in server.requests[-1].body["messages"]] == [
        "Remember the word banana.", "Noted: banana.", "Which word?"]


def test_history_shows_images_as_markers(tmp_path: Path, server: MockServer) -> None:
    # A conversation an application stored with images (list content), listed by the CLI.
    import promptkit

    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x00\x00\x00\x00"
    server.enqueue(MockReply.text("A cat."))
    with promptkit.Client(base_url=server.url, api_key="sk-test") as client:
        store = promptkit.SQLiteStore(tmp_path / "chats.db")
        try:
            client.conversation(conversation_id="pics", store=store).send("what?", images=[png, "https://e.com/c.png"])
        finally:
            store.close()
    proc = run_piped("--base-url", server.url, "--store", f"sqlite:{tmp_path / 'chats.db'}",
                     "--conversation-id", "pics", input="/history\n")
    assert proc.returncode == 0, proc.stderr
    assert "1. [user] what? [image] [image]" in proc.stdout
    assert "2. [assistant] A cat." in proc.stdout
    assert "base64" not in proc.stdout


def test_401_prints_one_error_line_and_exits_1_interactive(server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    server.enqueue(MockReply.error(401, "Incorrect API key provided"))
    child = spawn("--base-url", server.url)
    child.expect(PROMPT)
    child.sendline("hi")
    child.expect(r"error: AuthenticationError: 401 [^\r\n]*Incorrect API key provided[^\r\n]*\r\n")
    assert ended(child) == 1


# -- piped -------------------------------------------------------------------------------


def test_piped_mock_mode_prints_the_reply_and_exits_0() -> None:
    proc = run_piped(input="hi\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1 and len(proc.stdout) > 20  # the story, on one line
    assert MOCK_NOTE in proc.stderr and re.search(STATS, proc.stderr)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("how", ["--base-url", "OPENAI_BASE_URL"])
def test_piped_base_url_without_key_is_keyless(how: str, server: MockServer) -> None:
    server.enqueue(MockReply.text("Hello from the mock."), MockReply.text("Second."))
    if how == "--base-url":
        proc = run_piped("--base-url", server.url, input="hi\n\nagain\n")
    else:
        proc = run_piped(input="hi\n\nagain\n", env=_env(OPENAI_BASE_URL=server.url))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello from the mock.\nSecond.\n"  # replies only: the rest is on stderr
    assert MOCK_NOTE not in proc.stderr
    assert len(re.findall(STATS, proc.stderr)) == 2
    assert all("authorization" not in r.headers for r in server.requests)
    assert [m["content"] for m in server.requests[1].body["messages"]] == ["hi", "Hello from the mock.", "again"]


def test_piped_options_reach_the_request(server: MockServer) -> None:
    server.enqueue(MockReply.text("Ok."))
    proc = run_piped("--base-url", server.url, "--model", "gpt-4o", "--system", "Be terse.", "--temperature", "0.25",
                     "--max-tokens", "42", "--api-key", "sk-test", input="//slash first\n")
    assert proc.returncode == 0, proc.stderr
    body = server.requests[0].body
    assert body["model"] == "gpt-4o" and body["temperature"] == 0.25 and body["max_tokens"] == 42
    assert body["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "/slash first"}]
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"


def test_json_prints_parseable_lines_ending_with_done(server: MockServer) -> None:
    server.enqueue(MockReply.text("Streamed as JSON lines."))
    proc = run_piped("--base-url", server.url, "--json")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events[-1]["type"] == "done" and [e["type"] for e in events[:-1]] == ["content"] * (len(events) - 1)
    assert all(set(e) >= {"type", "content", "tool_call", "final", "error"} for e in events)
    assert "".join(e["content"] for e in events) == events[-1]["final"]["content"] == "Streamed as JSON lines."
    assert events[-1]["final"]["finish_reason"] == "stop"


def test_json_commands_print_json(server: MockServer) -> None:
    server.enqueue(MockReply.text("Hi."))
    proc = run_piped("--base-url", server.url, "--json", input="hi\n/history\n/cost\n")
    assert proc.returncode == 0, proc.stderr
    *_, history, cost = [json.loads(line) for line in proc.stdout.splitlines()]
    assert history["type"] == "history" and history["messages"][-1] == {"role": "assistant", "content": "Hi."}
    assert cost["type"] == "cost" and cost["usage"]["total_tokens"] > 0


def test_piped_401_prints_one_error_line_and_exits_1(server: MockServer) -> None:
    server.enqueue(MockReply.error(401, "Incorrect API key provided"))
    proc = run_piped("--base-url", server.url, input="hi\nnever sent\n")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: AuthenticationError: 401"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(server.requests) == 1  # it stopped at the first failure


def test_piped_error_mid_stream_keeps_partial_text_and_exits_1(server: MockServer) -> None:
    server.enqueue(MockReply.in_band_error("the model overloaded", after_text="Half a"))
    proc = run_piped("--base-url", server.url)
    assert proc.returncode == 1
    assert proc.stdout == "Half a\n"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: StreamError: the model overloaded"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_piped_unknown_command_exits_2(server: MockServer) -> None:
    proc = run_piped("--base-url", server.url, input="/bogus\nhi\n")
    assert proc.returncode == 2 and "unknown command /bogus" in proc.stderr
    assert server.requests == []


def test_unreachable_server_is_one_line_not_a_traceback() -> None:
    proc = run_piped("--base-url", "http://127.0.0.1:9/v1")  # port 9 (discard): nothing listens
    assert proc.returncode == 1
    assert proc.stderr.count("error: ") == 1 and "APIConnectionError" in proc.stderr
    assert "Traceback" not in proc.stderr


# -- a newcomer's screen ----------------------------------------------------------------

WARNING_TEXT = ("WARNING", "warning:", "tiktoken", "o200k", "cl100k", "NameResolution", "Traceback", "note:", "error:",
                "unavailable")


def recorded(child: "pexpect.spawn") -> io.StringIO:
    """Keep everything the child writes to the terminal."""
    child.logfile_read = io.StringIO()
    return child.logfile_read


def test_ctrl_c_in_mock_mode_leaves_no_warning_on_the_screen(tmp_path: Path, spawn: Callable[..., "pexpect.spawn"]) -> None:
    # A fresh user: nothing in tiktoken's cache, so the stopped reply's tokens are estimated from scratch.
    child = spawn(env=_env(TIKTOKEN_CACHE_DIR=str(tmp_path)))
    screen = recorded(child)
    child.expect(MOCK_NOTE)
    child.expect(PROMPT)
    child.sendline("Tell me a long story.")
    child.expect("Assistant: ")
    child.expect(r"\w+ \w+ \w+")  # the reply is streaming
    child.sendintr()
    child.expect(re.escape("[stopped]"))
    child.expect(STATS)
    child.expect(PROMPT)
    child.sendline("/cost")
    child.expect(re.escape("💰 Total cost: $"))
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0
    transcript = screen.getvalue()
    assert "[stopped]" in transcript and "~" in transcript  # the stopped reply's tokens were estimated
    assert not [word for word in WARNING_TEXT if word in transcript], transcript


def test_unpriced_model_note_is_shown_once_after_the_cost_line(server: MockServer, spawn: Callable[..., "pexpect.spawn"]) -> None:
    server.enqueue(MockReply.text("First reply here."), MockReply.text("Second reply here."))
    child = spawn("--base-url", server.url, "--model", "my-proxy-alias")
    screen = recorded(child)
    child.expect(PROMPT)
    child.sendline("hi")
    child.expect(re.escape("Assistant: First reply here.") + r"\r?\n")
    child.expect(re.escape("💰 Cost: n/a"))
    child.expect(r"note: no price known for model 'my-proxy-alias'[^\r\n]*\r?\n")
    child.expect(PROMPT)
    child.sendline("again")
    child.expect("Second reply here.")
    child.expect(re.escape("💰 Cost: n/a"))
    child.expect(PROMPT)
    child.sendline("/quit")
    assert ended(child) == 0
    assert screen.getvalue().count("no price known") == 1
    assert [r.body["model"] for r in server.requests] == ["my-proxy-alias"] * 2


def test_promptkit_model_variable_picks_the_cli_model(server: MockServer) -> None:
    proc = run_piped("--base-url", server.url, env=_env(PROMPTKIT_MODEL="llama3.2"))
    assert proc.returncode == 0, proc.stderr
    assert server.requests[0].body["model"] == "llama3.2"


def test_a_model_the_server_does_not_serve_is_one_line_with_a_hint(server: MockServer) -> None:
    server.enqueue(MockReply.error(400, "Invalid model name passed in model=gpt-4o-mini"))
    proc = run_piped("--base-url", server.url)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "BadRequestError" in lines[0] and "--model or PROMPTKIT_MODEL" in lines[0]


def test_api_responses_talks_the_responses_api(server: MockServer) -> None:
    server.enqueue(MockReply.text("From the Responses API.", reasoning="hidden unless asked"), MockReply.text("Again."))
    proc = run_piped("--base-url", server.url, "--api", "responses", "--max-tokens", "42", "--system", "Be terse.",
                     input="hi\n\nagain\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "From the Responses API.\nAgain.\n"  # reasoning is not shown unless asked for
    assert [r.path for r in server.requests] == ["/v1/responses", "/v1/responses"]
    body = server.requests[1].body
    assert body["max_output_tokens"] == 42 and "max_tokens" not in body
    assert body["input"][:2] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]


def test_api_responses_in_mock_mode_and_show_reasoning(server: MockServer) -> None:
    proc = run_piped("--api", "responses", input="hi\n")
    assert proc.returncode == 0, proc.stderr
    assert MOCK_NOTE in proc.stderr and len(proc.stdout) > 20
    server.enqueue(MockReply.text("Four.", reasoning="2 and 2"))
    proc = run_piped("--base-url", server.url, "--show-reasoning", input="2+2?\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "[reasoning] 2 and 2\n[answer] Four.\n"
