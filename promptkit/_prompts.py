"""System-prompt variables: ``{{name}}`` placeholders filled from a mapping.

Pure string substitution: no expressions, attribute access or code execution.
A placeholder is ``{{`` + an identifier + ``}}`` (spaces inside allowed);
anything else, ``{{ 1 + 1 }}`` included, is left as written.
"""

from __future__ import annotations

import re
from typing import Any, List, Mapping

from ._errors import ConfigurationError

__all__ = ["render", "placeholders"]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def placeholders(template: str) -> List[str]:
    """The variable names used in ``template``, in order of first use."""
    seen: List[str] = []
    for name in _PLACEHOLDER.findall(template):
        if name not in seen:
            seen.append(name)
    return seen


def render(template: str, variables: Mapping[str, Any]) -> str:
    """Fill every ``{{name}}`` in ``template`` with ``str(variables[name])``.

    Raises:
        ConfigurationError: a placeholder has no value; the message names
            every missing variable.
    """
    missing = [name for name in placeholders(template) if name not in variables]
    if missing:
        names = ", ".join(missing)
        raise ConfigurationError(
            f"the system prompt uses undefined variable(s) {names}: pass variables={{...}} or call set_var()"
        )
    return _PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), template)
