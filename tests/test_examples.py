"""Examples are runnable programs: run them as a user would, in mock mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL")}
    env["PYTHONIOENCODING"] = "utf-8"
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=120, env=env, encoding="utf-8"
    )


def test_streaming_example_output_shape() -> None:
    proc = run_example("streaming.py")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mock server" in out
    assert re.search(r"🤖 Streaming conversation started \(ID: conv_\d+\)", out)
    assert "User: Tell me a short story about a robot.\nAssistant: " in out
    assert "User: Now tell me another one, but shorter.\nAssistant: " in out
    stats = re.findall(r"💰 Cost: \$\d+\.\d+ \| ⏱️  Latency: \d+ms \| 🎫 Tokens: \d+", out)
    assert len(stats) == 2
    history = out.split("📜 Conversation History:\n", 1)[1].splitlines()
    assert [re.match(r"  (\d)\. \[(\w+)\] ", line).groups() for line in history] == [
        ("1", "user"),
        ("2", "assistant"),
        ("3", "user"),
        ("4", "assistant"),
    ]
    assert history[0] == "  1. [user] Tell me a short story about a robot."
    for line in (history[1], history[3]):
        text = line.split("] ", 1)[1]
        assert len(text) <= 53 and (len(text) < 50 or text.endswith("..."))
    assert proc.stderr == ""


def test_reasoning_and_images_example_on_each_dialect() -> None:
    for api in ("chat", "responses", "anthropic"):
        proc = run_example("reasoning_and_images.py", "--api", api)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert "mock server" in lines[0] and lines[1].startswith("User: What is in this picture?")
        thinking = lines[2]
        assert thinking.startswith("Thinking: The picture shows an animal")  # the reasoning streams first...
        assert lines[3] == "Assistant: A tabby cat sits looking at the camera."  # ...then the answer, apart
        assert re.fullmatch(r"Reasoning kept: \d+ characters \| Cost: \$\d+\.\d+ \| Latency: \d+ms \| Tokens: \d+", lines[4])
        assert proc.stderr == ""


def test_reasoning_and_images_example_reports_a_bad_image_in_one_line() -> None:
    proc = run_example("reasoning_and_images.py", "--image", "/no/such/picture.png")
    assert proc.returncode == 1
    assert proc.stderr == "error: ConfigurationError: images[0] ('/no/such/picture.png') does not exist\n"


def test_structured_form_example_fills_in_on_each_dialect() -> None:
    for api in ("chat", "responses", "anthropic"):
        proc = run_example("structured_form.py", "--api", api)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        forms = [line for line in lines if line.startswith("name: ")]
        assert forms[0] == "name: ... | city: ... | languages: ... | bio: ..."  # empty at first, then filling in
        assert len(forms) > 4 and forms[-1].startswith('name: "Grace Hopper" | city: "New York"') and "..." not in forms[-1]
        assert lines[-1] == "Done: Grace Hopper (New York), 2 languages."
