"""Partial JSON: the value that a streamed JSON text holds so far (pure: no threads, no I/O).

:class:`PartialParser` is fed the reply as it streams and returns, after each
delta, the value parsed so far. Two backends give the same values:

* ``"python"`` (the default) builds the value incrementally: each character
  is read once, and a snapshot copies only the containers still open (the
  completed parts are shared between snapshots). A delta costs its own length
  plus the width of the open containers: about 7 to 15 us per 4-character
  delta for replies of 50 KB to 500 KB of records or long strings.
* ``"jiter"`` (opt-in; the optional ``jiter`` package) parses the whole prefix
  with ``jiter.from_json(..., partial_mode="trailing-strings")`` at each
  delta, after a light scanner of the new text has cut off what must not show
  yet. That is quadratic: 190 us per delta at 50 KB, 4 ms at 500 KB, because
  jiter builds every Python object again each time.

Values are **monotone**: each one refines the one before (strings only grow,
keys and items only append, a completed value never changes). That is why an
incomplete number or literal is left out (``1`` may become ``12``), as is an
object key whose value has not started, and why the end of an incomplete
string drops a half-received escape (``\\u00``) or a high surrogate whose low
half may follow. A Markdown fence that some models wrap around JSON
(````` ```json `````) is skipped, and text after the completed top-level value
is ignored.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any, Dict, List, Optional, Union

__all__ = ["PartialParser", "strip_fence", "jiter_module"]

_MISSING: Any = object()
_WS = " \t\r\n"
_SCALAR_CHARS = re.compile(r"[0-9A-Za-z.+\-]+")  # what a number or literal is made of
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SCALAR_SET = frozenset("0123456789.+-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_LITERALS = {"true": True, "false": False, "null": None}
_IN_STRING = re.compile(r'["\\]')
_OUTSIDE_STRING = re.compile(r'["{}\[\]]')
_FENCE_PREFIX = re.compile(r"`{1,2}|```[A-Za-z0-9_.+-]*[ \t\r]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")

# States of an open container: what it accepts next.
_KEY_OR_END, _KEY, _COLON, _VALUE, _COMMA_OR_END, _VALUE_OR_END = range(6)


def jiter_module() -> Any:
    """The ``jiter`` module, or ``None`` when it is not installed."""
    try:
        return importlib.import_module("jiter")
    except ImportError:
        return None


def strip_fence(text: str) -> str:
    """``text`` without surrounding whitespace and without a Markdown fence around it (```` ```json ````)."""
    stripped = text.strip()
    if not stripped.startswith("```"):
        return stripped
    newline = stripped.find("\n")
    if newline < 0 or not _FENCE_PREFIX.fullmatch(stripped[:newline]):
        return stripped
    inner = stripped[newline + 1 :].rstrip()
    return (inner[:-3] if inner.endswith("```") else inner).strip()


def _json_start(head: str) -> Union[int, None, str]:
    """Where the JSON value starts in ``head``: its index, ``None`` while undecided, or an error message."""
    i = 0
    while i < len(head):
        if head[i] in _WS:
            i += 1
            continue
        if head[i] != "`":
            return i
        newline = head.find("\n", i)
        line = head[i:] if newline < 0 else head[i:newline]
        if not _FENCE_PREFIX.fullmatch(line) or (newline >= 0 and not line.startswith("```")):
            return f"the reply starts with {line[:20]!r}, not JSON or a ```json fence"
        if newline < 0:
            return None
        i = newline + 1
    return None


def _decode(raw: str) -> str:
    """The text of a JSON string's inside (escapes decoded); raises ValueError for invalid text."""
    text: str = json.loads(f'"{raw}"')
    if _SURROGATE.search(text):
        raise ValueError("a lone surrogate escape (invalid Unicode) in a string")
    return text


def _escape_before(raw: str, end: int) -> str:
    """The escape that ends at ``end`` in a string's raw text, complete or not, or ``""`` when none does."""
    slash = raw.rfind("\\", max(0, end - 6), end)
    if slash < 0:
        return ""
    run = slash
    while run > 0 and raw[run - 1] == "\\":
        run -= 1
    # An even count of backslashes ends in an escaped one, which starts nothing.
    return "" if (slash - run) % 2 else raw[slash:end]


def _held_back(raw: str) -> int:
    """How many characters at the end of a string's raw text must wait for more.

    A partial escape (``\\``, ``\\u00``) waits, and so does a high surrogate
    (``\\ud83d``), alone or before a partial escape: its low half may follow.
    """
    tail = _escape_before(raw, len(raw))
    if _HIGH_SURROGATE.fullmatch(tail):
        return 6
    if len(tail) >= (6 if tail[1:2] == "u" else 2):
        return 0  # no escape at the end, or a complete one (and plain text after it)
    before = _escape_before(raw, len(raw) - len(tail))
    return len(tail) + (6 if _HIGH_SURROGATE.fullmatch(before) else 0)


class _String:
    """A string being read: the decoded part, and the raw text not decoded yet."""

    __slots__ = ("is_key", "decoded", "raw", "escaped")

    def __init__(self, is_key: bool) -> None:
        self.is_key = is_key
        self.decoded = ""
        self.raw: List[str] = []
        self.escaped = False  # the last raw character read is a backslash that starts an escape

    def flush(self, *, final: bool = False) -> str:
        """Decode what can be decoded so far (all of it when ``final``); return the text (raises ValueError)."""
        raw = "".join(self.raw)
        hold = 0 if final else _held_back(raw)
        self.decoded += _decode(raw[: len(raw) - hold])
        self.raw = [raw[len(raw) - hold :]] if hold else []
        return self.decoded


class _Frame:
    """An open object or array: its completed members, its pending key, and what it accepts next."""

    __slots__ = ("container", "key", "state")

    def __init__(self, container: Union[Dict[str, Any], List[Any]]) -> None:
        self.container = container
        self.key: Optional[str] = None
        self.state = _KEY_OR_END if isinstance(container, dict) else _VALUE_OR_END


class _PythonBackend:
    """Builds the value as the text arrives; reads each character once."""

    name = "python"

    def __init__(self) -> None:
        self.head: Optional[str] = ""  # the text before the value starts; None once it has
        self.stack: List[_Frame] = []
        self.root: Any = _MISSING
        self.string: Optional[_String] = None
        self.scalar = ""
        self.error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.root is not _MISSING

    def feed(self, delta: str) -> Any:
        if self.head is not None:
            self.head += delta
            start = _json_start(self.head)
            if start is None or isinstance(start, str):
                self.error = start
                return _MISSING
            delta, self.head = self.head[start:], None
        try:
            self._read(delta)
            return self._snapshot()
        except ValueError as exc:
            self.error = str(exc)
            return _MISSING

    def _expects_value(self) -> bool:
        if not self.stack:
            return self.root is _MISSING
        return self.stack[-1].state in (_VALUE, _VALUE_OR_END)

    def _read(self, text: str) -> None:
        i, n = 0, len(text)
        while i < n and self.root is _MISSING:
            if self.string is not None:
                i = self._read_string(text, i)
                continue
            c = text[i]
            if c in _WS:
                if self.scalar:
                    self._end_scalar()
                i += 1
                continue
            run = _SCALAR_CHARS.match(text, i)
            if run is not None:
                if not self.scalar and not self._expects_value():
                    raise ValueError(f"unexpected {run.group()[:20]!r}")
                self.scalar += run.group()
                i = run.end()
                continue
            if self.scalar:
                self._end_scalar()
                if self.root is not _MISSING:
                    break
            self._structural(c)
            i += 1

    def _read_string(self, text: str, i: int) -> int:
        s = self.string
        assert s is not None
        start, n = i, len(text)
        while i < n:
            if s.escaped:
                s.escaped = False
                i += 1
                continue
            found = _IN_STRING.search(text, i)
            if found is None:
                break
            j = found.start()
            if text[j] == "\\":
                s.escaped = True
                i = j + 1
                continue
            s.raw.append(text[start:j])
            self.string = None
            if s.is_key:
                frame = self.stack[-1]
                frame.key, frame.state = s.flush(final=True), _COLON
            else:
                self._deliver(s.flush(final=True))
            return j + 1
        s.raw.append(text[start:n])
        return n

    def _structural(self, c: str) -> None:
        frame = self.stack[-1] if self.stack else None
        if c == '"':
            if frame is not None and frame.state in (_KEY_OR_END, _KEY):
                self.string = _String(is_key=True)
            elif self._expects_value():
                self.string = _String(is_key=False)
            else:
                raise ValueError("unexpected '\"'")
        elif c in "{[":
            if not self._expects_value():
                raise ValueError(f"unexpected {c!r}")
            self.stack.append(_Frame({} if c == "{" else []))
        elif c in "}]" and frame is not None and (c == "}") == isinstance(frame.container, dict):
            if frame.state not in (_KEY_OR_END, _VALUE_OR_END, _COMMA_OR_END):
                raise ValueError(f"unexpected {c!r}")
            self.stack.pop()
            self._deliver(frame.container)
        elif c == "," and frame is not None and frame.state == _COMMA_OR_END:
            frame.state = _KEY if isinstance(frame.container, dict) else _VALUE
        elif c == ":" and frame is not None and frame.state == _COLON:
            frame.state = _VALUE
        else:
            raise ValueError(f"unexpected {c!r}")

    def _end_scalar(self) -> None:
        token, self.scalar = self.scalar, ""
        if token in _LITERALS:
            self._deliver(_LITERALS[token])
        elif _NUMBER.fullmatch(token):
            self._deliver(json.loads(token))
        else:
            raise ValueError(f"invalid literal {token[:20]!r}")

    def _deliver(self, value: Any) -> None:
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        if isinstance(frame.container, dict):
            assert frame.key is not None
            frame.container[frame.key] = value
            frame.key = None
        else:
            frame.container.append(value)
        frame.state = _COMMA_OR_END

    def _snapshot(self) -> Any:
        if self.root is not _MISSING:
            return self.root
        # The innermost value in progress: a string shows as far as it goes; a scalar not at all.
        current: Any = _MISSING
        if self.string is not None and not self.string.is_key:
            current = self.string.flush()
        for frame in reversed(self.stack):
            copy: Union[Dict[str, Any], List[Any]]
            if isinstance(frame.container, dict):
                copy = dict(frame.container)
                if current is not _MISSING and frame.state == _VALUE:
                    assert frame.key is not None
                    copy[frame.key] = current
            else:
                copy = list(frame.container)
                if current is not _MISSING:
                    copy.append(current)
            current = copy
        return current


class _JiterBackend:
    """Parses the whole prefix with jiter; a scanner of the new text says where to cut it."""

    name = "jiter"

    def __init__(self, jiter: Any) -> None:
        self.jiter = jiter
        self.text = ""
        self.start: Optional[int] = None
        self.pos = 0
        self.depth = 0
        self.in_string = False
        self.escaped = False
        self.end: Optional[int] = None
        self.error: Optional[str] = None

    @property
    def complete(self) -> bool:
        return self.end is not None

    def feed(self, delta: str) -> Any:
        if self.end is not None:
            return _MISSING  # the value is complete: the rest of the text is not part of it
        self.text += delta
        if self.start is None:
            start = _json_start(self.text)
            if start is None or isinstance(start, str):
                self.error = start
                return _MISSING
            self.start = self.pos = start
        self._scan()
        cut = self.end if self.end is not None else len(self.text)
        if self.end is None and not self.in_string:
            while cut > self.start and self.text[cut - 1] in _SCALAR_SET:
                cut -= 1  # a number or literal at the very end may go on
        if cut <= self.start:
            return _MISSING
        # In partial mode jiter stops quietly at a stray character; a complete value is parsed strictly.
        mode = "off" if self.end is not None else "trailing-strings"
        try:
            return self.jiter.from_json(self.text[self.start : cut].encode(), partial_mode=mode, allow_inf_nan=False)
        except ValueError as exc:
            self.error = str(exc)
            return _MISSING

    def _scan(self) -> None:
        text, i, n = self.text, self.pos, len(self.text)
        if i == self.start and text[i] not in '{["':  # a top-level number or literal ends at a delimiter
            run = _SCALAR_CHARS.match(text, i)
            if run is not None and run.end() < n:
                self.end = run.end()
            return
        while i < n and self.end is None:
            if self.in_string:
                if self.escaped:
                    self.escaped, i = False, i + 1
                    continue
                found = _IN_STRING.search(text, i)
                if found is None:
                    break
                i = found.end()
                if found.group() == "\\":
                    self.escaped = True
                else:
                    self.in_string = False
                    if self.depth == 0:
                        self.end = i
                continue
            found = _OUTSIDE_STRING.search(text, i)
            if found is None:
                break
            i, c = found.end(), found.group()
            if c == '"':
                self.in_string = True
            elif c in "{[":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth <= 0:
                    self.end = i
        self.pos = n if self.end is None else self.end


class PartialParser:
    """The JSON value so far, from a reply fed to it as it streams.

    >>> parser = PartialParser()
    >>> parser.feed('{"name": "Ad')
    {'name': 'Ad'}
    >>> parser.feed('a", "age": 3')
    {'name': 'Ada'}
    >>> parser.feed("6}")
    {'name': 'Ada', 'age': 36}

    Args:
        backend: ``"python"`` (the default: incremental, linear) or ``"jiter"``
            (needs the jiter package; re-parses the whole prefix at each delta).
            Both give the same values.

    Partial values may share their completed parts with later ones: treat them
    as read-only. Text that is not JSON does not raise: the parser keeps its
    last value and sets :attr:`error` (the reply's final parse reports it).
    """

    def __init__(self, *, backend: Optional[str] = None) -> None:
        if backend not in (None, "jiter", "python"):
            raise ValueError(f"backend must be 'python', 'jiter' or None, got {backend!r}")
        jiter = jiter_module() if backend == "jiter" else None
        if backend == "jiter" and jiter is None:
            raise ImportError("PartialParser(backend='jiter') needs the jiter package: pip install jiter")
        self._backend: Union[_JiterBackend, _PythonBackend] = (
            _JiterBackend(jiter) if jiter is not None else _PythonBackend()
        )
        self._value: Any = None

    @property
    def backend(self) -> str:
        """The backend in use: ``"jiter"`` or ``"python"``."""
        return self._backend.name

    @property
    def value(self) -> Optional[Any]:
        """The latest partial value, or ``None`` while nothing parseable has arrived."""
        return self._value

    @property
    def error(self) -> Optional[str]:
        """Why the text is not JSON, once it has proved not to be; else ``None``."""
        return self._backend.error

    @property
    def complete(self) -> bool:
        """Whether the top-level value has ended (later text is ignored)."""
        return self._backend.complete

    def feed(self, delta: str) -> Optional[Any]:
        """Add the next piece of the reply; return the value so far (``None`` while there is none)."""
        if delta and self._backend.error is None:
            value = self._backend.feed(delta)
            if value is not _MISSING:
                self._value = value
        return self._value
