"""A conversation's system prompt: its ``{{variable}}`` template, the variables, and rendering.

The substitution itself is :mod:`promptkit._prompts`; this module holds the
state a conversation keeps around it and the two ways it is rendered: strict
before a turn is sent (an unset variable is an error), lenient everywhere
else (an unset variable stays as written).
"""

from __future__ import annotations

import threading
from typing import Any, Dict, Mapping, Optional

from ._validate import check_text
from ._errors import ConfigurationError
from ._prompts import placeholders, render

__all__ = ["SystemPrompt"]


class SystemPrompt:
    """A system-prompt template and its variables; safe to use from any thread."""

    def __init__(self, template: Optional[str], variables: Optional[Mapping[str, Any]] = None) -> None:
        self._template = template
        self._lock = threading.Lock()  # guards _variables
        self._variables: Dict[str, Any] = dict(variables or {})

    @property
    def template(self) -> Optional[str]:
        """The template as given, ``{{placeholders}}`` unfilled (``None``: no system prompt)."""
        return self._template

    @property
    def variables(self) -> Dict[str, Any]:
        """A copy of the variables."""
        with self._lock:
            return dict(self._variables)

    def set(self, name: str, value: Any) -> None:
        """Set one variable.

        Raises:
            ConfigurationError: ``name`` is not an identifier.
        """
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"variable names are identifiers, got {name!r}")
        with self._lock:
            self._variables[name] = value

    def render(self, *, strict: bool) -> str:
        """The template with its variables filled in.

        With ``strict``, an unset variable raises :class:`~promptkit.ConfigurationError`;
        without, its placeholder stays as written.
        """
        template = self._template
        if template is None:
            raise ValueError("there is no system prompt to render")
        with self._lock:
            if strict:
                return render(template, self._variables)
            known = {name: self._variables[name] for name in placeholders(template) if name in self._variables}
        missing = {name: "{{" + name + "}}" for name in placeholders(template) if name not in known}
        return render(template, {**known, **missing})

    def text(self) -> Optional[str]:
        """The prompt rendered leniently, or ``None`` without a template."""
        return None if self._template is None else self.render(strict=False)

    def message(self) -> Optional[str]:
        """The content of the history's system message: the lenient rendering, or ``None``
        when the template is missing or empty (the history then has no system message)."""
        return self.render(strict=False) if self._template else None

    def check(self) -> None:
        """Fail before any I/O when the prompt cannot be sent.

        Raises:
            ConfigurationError: a ``{{variable}}`` is unset, or a value renders to
                text that cannot be sent (a lone surrogate).
        """
        if self._template:
            check_text(self.render(strict=True), "the rendered system prompt")
