"""promptkit._system_prompt.SystemPrompt: a conversation's template, variables and rendering."""

from __future__ import annotations

import pytest

import promptkit
from promptkit._system_prompt import SystemPrompt


def test_lenient_rendering_keeps_unset_placeholders() -> None:
    prompt = SystemPrompt("Help {{ user }} with {{topic}}.", {"user": "Ada"})
    assert prompt.render(strict=False) == "Help Ada with {{topic}}."
    assert prompt.text() == prompt.message() == "Help Ada with {{topic}}."


def test_strict_rendering_names_the_unset_variables() -> None:
    prompt = SystemPrompt("Help {{user}} with {{topic}} in {{lang}}.", {"user": "Ada"})
    with pytest.raises(promptkit.ConfigurationError, match="topic, lang"):
        prompt.render(strict=True)
    with pytest.raises(promptkit.ConfigurationError, match="topic, lang"):
        prompt.check()
    prompt.set("topic", "maths")
    prompt.set("lang", 3)
    assert prompt.render(strict=True) == "Help Ada with maths in 3."
    prompt.check()


def test_check_refuses_a_value_that_cannot_be_sent() -> None:
    prompt = SystemPrompt("Hi {{name}}", {"name": "bad \ud800"})
    with pytest.raises(promptkit.ConfigurationError, match="rendered system prompt"):
        prompt.check()


def test_no_template_and_an_empty_one() -> None:
    none = SystemPrompt(None)
    assert none.template is None and none.text() is None and none.message() is None
    none.check()  # nothing to send, nothing to fail
    with pytest.raises(ValueError):
        none.render(strict=False)
    empty = SystemPrompt("")
    assert empty.text() == "" and empty.message() is None  # an empty prompt adds no system message
    empty.check()


def test_variables_are_copies_and_names_are_identifiers() -> None:
    given = {"a": 1}
    prompt = SystemPrompt("{{a}}{{b}}", given)
    given["a"] = 2
    copy = prompt.variables
    copy["b"] = "x"
    assert prompt.variables == {"a": 1} and prompt.render(strict=False) == "1{{b}}"
    for bad in ("not valid", "1a", "", 5):
        with pytest.raises(promptkit.ConfigurationError, match="identifiers"):
            prompt.set(bad, 1)  # type: ignore[arg-type]
    prompt.set("b", "two")
    assert prompt.variables == {"a": 1, "b": "two"} and prompt.template == "{{a}}{{b}}"
