"""Split a function's docstring into its summary and per-parameter descriptions.

Understands the three common styles:

* Google: an ``Args:`` (or ``Arguments:``, ``Parameters:``, ...) section of
  ``name (type): text`` or ``name: text`` entries, continued on more-indented lines.
* NumPy: a ``Parameters`` header underlined with dashes, then ``name : type``
  entries whose text is on the following indented lines.
* Sphinx: ``:param name: text`` (or ``:param type name: text``) fields.

The summary is the text before the first section of any kind, so a
``Returns:`` or ``:rtype:`` never leaks into a tool's description.
"""

from __future__ import annotations

import inspect
import re
from typing import Dict, List, Optional, Tuple

__all__ = ["parse_docstring"]

_GOOGLE_PARAM_SECTIONS = frozenset(
    {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments", "other parameters"}
)
# Any of these ends the summary; only the ones above hold parameter descriptions.
_GOOGLE_SECTIONS = _GOOGLE_PARAM_SECTIONS | frozenset(
    {
        "returns", "return", "yields", "yield", "raises", "raise", "examples", "example", "note", "notes",
        "attributes", "see also", "warning", "warnings", "warns", "todo", "references",
    }
)
_NUMPY_PARAM_SECTIONS = frozenset({"parameters", "other parameters"})

_GOOGLE_HEADER = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}([A-Za-z_]\w*)\s*(?:\(.*?\))?\s*:\s*(.*)$")
_NUMPY_RULE = re.compile(r"^\s*-{3,}\s*$")
_NUMPY_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*(?::.*)?$")
_SPHINX_FIELD = re.compile(r"^:[A-Za-z]")
_SPHINX_PARAM = re.compile(r"^:(?:param|parameter|arg|argument|key|keyword)\s+([^:]*?)\s*:\s*(.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_numpy_header(lines: List[str], i: int) -> bool:
    return bool(lines[i].strip()) and i + 1 < len(lines) and bool(_NUMPY_RULE.match(lines[i + 1]))


def _google_header(line: str) -> Optional[str]:
    """The lower-cased section name when ``line`` is a Google section header like ``Args:``."""
    m = _GOOGLE_HEADER.match(line.strip())
    name = m.group(1).strip().lower() if m else None
    return name if name in _GOOGLE_SECTIONS else None


def _next_top_level(lines: List[str], start: int) -> int:
    """Index of the first line at or after ``start`` that is not indented or is a Google header."""
    for j in range(start, len(lines)):
        if lines[j].strip() and (_indent(lines[j]) == 0 or _google_header(lines[j])):
            return j
    return len(lines)


def _parse_entries(body: List[str], entry: "re.Pattern[str]", out: Dict[str, str]) -> None:
    """Read ``entry`` lines at the section's base indent, each continued by deeper-indented lines."""
    base: Optional[int] = None
    names: List[str] = []
    parts: List[str] = []

    def flush() -> None:
        text = " ".join(p for p in parts if p).strip()
        for name in names:
            if text:
                out[name] = text

    for line in body:
        if not line.strip():
            continue
        indent = _indent(line)
        if base is None:
            base = indent
        if indent <= base:
            flush()
            names, parts = [], []
            m = entry.match(line.strip())
            if m:
                names = [n.strip().lstrip("*") for n in m.group(1).split(",")]
                parts = [m.group(2).strip()] if m.lastindex and m.lastindex >= 2 and m.group(2) else []
        elif names:
            parts.append(line.strip())
    flush()


def parse_docstring(doc: Optional[str]) -> Tuple[str, Dict[str, str]]:
    """Parse a docstring.

    Args:
        doc: the raw ``__doc__`` (``None`` is fine).

    Returns:
        ``(summary, params)``: the cleaned text before the first section
        (``""`` when there is none) and a ``{parameter name: description}``
        dict with each description's lines joined by single spaces.
    """
    if not doc or not doc.strip():
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    if _google_header(lines[0]):
        # '"""Args:' on the opening line: cleandoc then dedents the entries to column 0,
        # so indent them again (a later header still ends the section, see _next_top_level).
        lines[1:] = ["    " + ln if ln.strip() else ln for ln in lines[1:]]
    params: Dict[str, str] = {}
    first_section = len(lines)
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _google_header(line)
        if _indent(line) == 0 and _is_numpy_header(lines, i):
            first_section = min(first_section, i)
            # NumPy entries sit at column 0, so the section runs up to the next underlined header.
            end = next((j for j in range(i + 2, len(lines)) if _is_numpy_header(lines, j)), len(lines))
            if line.strip().lower() in _NUMPY_PARAM_SECTIONS:
                _parse_entries(lines[i + 2 : end], _NUMPY_ENTRY, params)
            i = end
        elif header:
            first_section = min(first_section, i)
            end = _next_top_level(lines, i + 1)
            if header in _GOOGLE_PARAM_SECTIONS:
                _parse_entries(lines[i + 1 : end], _GOOGLE_ENTRY, params)
            i = end
        elif _SPHINX_FIELD.match(line):
            first_section = min(first_section, i)
            end = _next_top_level(lines, i + 1)
            m = _SPHINX_PARAM.match(line)
            if m and m.group(1).split():
                # ":param int x: text" names the parameter last.
                name = m.group(1).split()[-1].lstrip("*")
                text = " ".join([m.group(2).strip()] + [ln.strip() for ln in lines[i + 1 : end] if ln.strip()]).strip()
                if text:
                    params[name] = text
            i = end
        else:
            i += 1
    return "\n".join(lines[:first_section]).strip(), params
