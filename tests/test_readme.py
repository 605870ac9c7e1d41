"""Every Python code block in the README runs, as shown, against the mock server.

The bash block holds the two commands; CI runs the second one (.ci/run) and
tests/test_examples.py runs the example the first one runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

from promptkit.testing import MockServer

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> List[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def server() -> Iterator[MockServer]:
    with MockServer() as srv:
        yield srv


def test_readme_opens_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None and text.index("```bash") < text.index("```python")
    commands = [line for line in first.group(1).splitlines() if line and not line.startswith("#")]
    assert commands[0].endswith("python examples/streaming.py")
    assert commands[1].endswith("pip install -e '.[test]' && python -m pytest")
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci  # .ci/run runs exactly the README's test command


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_block_runs(index: int, server: MockServer) -> None:
    code = python_blocks()[index]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env["OPENAI_BASE_URL"] = server.url
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"README block {index} failed:\n{code}\n--- stderr ---\n{proc.stderr}"
