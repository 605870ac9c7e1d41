"""The streaming example and the CLI against llm-katan, an OpenAI-compatible test server written by others.

llm-katan (a test dependency) runs with its ``echo`` backend: no model is
loaded, nothing is downloaded, and every reply names the model it serves.
It serves ``llama3.2`` here, so the example works only with the model chosen.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Dict, Iterator

import pytest

from tests._processes import ROOT, free_port, program_path, third_party_server

MODEL = "llama3.2"

if sys.version_info < (3, 10):  # pragma: no cover - llm-katan needs 3.10
    pytest.skip("llm-katan needs Python 3.10+", allow_module_level=True)


@pytest.fixture(scope="module")
def katan(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llm-katan on 127.0.0.1, serving MODEL; its base URL."""
    port = free_port()
    home = tmp_path_factory.mktemp("katan-home")  # it keeps request stats under $HOME
    args = [program_path("llm-katan"), "--model", MODEL, "--backend", "echo", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "info"]
    with third_party_server(args, port, env=dict(os.environ, HOME=str(home))):
        yield f"http://127.0.0.1:{port}/v1"


def _env(base_url: str, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "PROMPTKIT_MODEL")}
    # llm-katan wants an Authorization header, whatever the key.
    env.update(PYTHONIOENCODING="utf-8", PYTHONPATH=str(ROOT), OPENAI_BASE_URL=base_url, OPENAI_API_KEY="katan", **extra)
    return env


def test_streaming_example_against_llm_katan(katan: str) -> None:
    proc = subprocess.run([sys.executable, "examples/streaming.py"], capture_output=True, text=True, encoding="utf-8",
                          timeout=120, cwd=ROOT, env=_env(katan, PROMPTKIT_MODEL=MODEL))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(f"Assistant: [echo] model={MODEL}") == 2  # both turns, the second one streamed
    assert len(re.findall(r"💰 Cost: n/a \| ⏱️  Latency: \d+ms \| 🎫 Tokens: \d+", proc.stdout)) == 2
    assert "Traceback" not in proc.stderr


def test_cli_against_llm_katan_with_the_model_option(katan: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "promptkit", "chat", "--model", MODEL], input="hi\n", capture_output=True,
                          text=True, encoding="utf-8", timeout=120, cwd=ROOT, env=_env(katan))
    assert proc.returncode == 0, proc.stderr
    assert f"[echo] model={MODEL}" in proc.stdout
    assert proc.stderr.count("no price known") == 1 and "Traceback" not in proc.stderr
