"""System-prompt variables."""

from __future__ import annotations

import pytest

import promptkit
from promptkit._prompts import placeholders, render
from promptkit.testing import MockServer


def test_render_and_placeholders() -> None:
    template = "You help {{user_name}} with {{ topic }}; {{user_name}} again."
    assert placeholders(template) == ["user_name", "topic"]
    assert render(template, {"user_name": "Ada", "topic": "maths"}) == "You help Ada with maths; Ada again."


def test_missing_variables_are_named() -> None:
    with pytest.raises(promptkit.ConfigurationError, match="topic"):
        render("Hi {{name}} about {{topic}}", {"name": "x"})


def test_no_code_execution() -> None:
    template = "{{ __import__('os').system('echo hi') }} {{ 1 + 1 }} {{x.y}}"
    assert placeholders(template) == []
    assert render(template, {}) == template


def test_conversation_variables_and_set_var() -> None:
    with MockServer() as server, promptkit.Client(base_url=server.url) as client:
        conv = client.conversation(system_prompt="You help {{user_name}} with {{topic}}.", variables={"user_name": "Ada"})
        with pytest.raises(promptkit.ConfigurationError, match="topic"):
            conv.send("hi")
        assert server.requests == []  # raised before any I/O
        conv.set_var("topic", "astronomy")
        conv.send("hi")
        assert server.requests[0].body["messages"][0] == {"role": "system", "content": "You help Ada with astronomy."}
        conv.set_var("topic", "maths")
        conv.send("again")
        assert server.requests[1].body["messages"][0]["content"] == "You help Ada with maths."
        assert conv.messages[0]["content"] == "You help Ada with maths."
        assert conv.system_prompt == "You help Ada with maths." and conv.variables == {"user_name": "Ada", "topic": "maths"}
        with pytest.raises(promptkit.ConfigurationError):
            conv.set_var("not valid", 1)
