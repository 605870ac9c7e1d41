"""examples/README.md indexes every example, and every command it gives names a file that exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
INDEX = EXAMPLES / "README.md"
# Written by another change at the same time as the index: listed already, checked once they exist.
IN_PROGRESS = {"examples/flask_chat/app.py", "examples/django_chat/app.py"}


def _index() -> str:
    return INDEX.read_text(encoding="utf-8")


def _examples() -> List[str]:
    """The examples on disk: every file and directory in examples/ but the index itself."""
    ignored = {"README.md", "__pycache__"}
    return sorted(p.name + ("/" if p.is_dir() else "") for p in EXAMPLES.iterdir()
                  if p.name not in ignored and not p.name.startswith("."))


def _commands() -> List[str]:
    """The file each ``python examples/...`` command of the index runs (repository-relative)."""
    return sorted(set(re.findall(r"python3? (examples/[\w./-]+\.py)", _index())))


def test_index_exists_and_has_commands() -> None:
    assert INDEX.is_file()
    assert {"examples/streaming.py", "examples/tools.py"} | IN_PROGRESS <= set(_commands())


@pytest.mark.parametrize("name", _examples())
def test_every_example_is_listed(name: str) -> None:
    text = _index()
    assert f"examples/{name}" in text or f"({name})" in text, f"examples/README.md does not list {name}"
    if name.endswith(".py") and '__name__ == "__main__"' in (EXAMPLES / name).read_text(encoding="utf-8"):
        assert f"python examples/{name}" in text, f"examples/README.md gives no command for {name}"


@pytest.mark.parametrize("command", _commands())
def test_every_listed_command_names_an_existing_file(command: str) -> None:
    if not (ROOT / command).is_file() and command in IN_PROGRESS:
        pytest.skip(f"{command} is being written in a parallel change; checked once it exists")
    assert (ROOT / command).is_file(), f"examples/README.md runs {command}, which does not exist"


def test_every_directory_example_has_its_command() -> None:
    for name in _examples():
        if name.endswith("/"):
            assert any(c.startswith(f"examples/{name}") for c in _commands()), f"no command runs examples/{name}"


def test_the_cli_is_listed_and_exists() -> None:
    text = _index()
    assert "python -m promptkit chat" in text
    assert (ROOT / "promptkit" / "_cli.py").is_file() and (ROOT / "promptkit" / "__main__.py").is_file()
    for link in re.findall(r"\]\((\.\./[^)]+)\)", text):  # relative links out of examples/ resolve
        assert (EXAMPLES / link).resolve().exists(), link
