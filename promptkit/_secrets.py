"""Secrets: checking the key and headers before any I/O, and keeping them out of every text.

A :class:`Redactor` knows a client's secrets (the API key, every header value
the caller passed, the credentials of ``base_url``) and removes them from text
that came from a third party: server error bodies, exception messages of
requests and urllib3, in-band stream errors. It looks for each secret as
written and in its ``repr``-escaped form (a key with a backslash or a quote
shows up that way in a ``repr`` of a header dict).

A short secret is only removed where it stands as a whole token, so a
one-character key does not turn ``HTTPConnectionPool`` into ``HTTP***``; a
secret of :data:`WHOLE_WORD_BELOW` characters or more is removed wherever it
appears (text that long cannot match by accident).

:func:`log_text` is for server-chosen strings in log records: truncated, with
line breaks and other control characters escaped, so a server cannot forge
log lines or flood a log.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, List, Mapping, Optional, Tuple
from urllib.parse import SplitResult, urlsplit

from ._errors import ConfigurationError

__all__ = ["Redactor", "check_api_key", "check_headers", "safe_url", "url_credentials", "log_text", "MASK"]

MASK = "***"
WHOLE_WORD_BELOW = 8
_TOKEN_CHARS = "A-Za-z0-9_\\-.~+/="
# RFC 9110 field-name: a token.
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# What a header value may hold here: visible ASCII, space and tab inside. (http.client
# sends latin-1; anything else, and any control character, is a mistake, usually a
# key pasted with a stray character.)
_HEADER_VALUE = re.compile(r"^[\x21-\x7e]([\x20-\x7e\t]*[\x21-\x7e])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_api_key(api_key: Optional[str]) -> Optional[str]:
    """The key with surrounding whitespace stripped (a key read from a file ends in a newline).

    Raises:
        ConfigurationError: not a str, or a character that cannot go in an HTTP
            header remains. The message never contains the key.
    """
    if api_key is None:
        return None
    if not isinstance(api_key, str):
        raise ConfigurationError(f"api_key must be a str, got {type(api_key).__name__}")
    key = api_key.strip()
    bad = next((i for i, ch in enumerate(key) if not ("\x20" <= ch <= "\x7e")), None)
    if bad is not None:
        where = bad
        raise ConfigurationError(
            f"api_key holds a character that cannot be sent in an HTTP header "
            f"(a control or non-ASCII character at position {where} of {len(key)}); "
            "check how the key was read"
        )
    return key or None


def check_headers(headers: Optional[Mapping[str, str]]) -> List[Tuple[str, str]]:
    """Validate the caller's extra headers before any I/O.

    Raises:
        ConfigurationError: a name that is not an HTTP token, or a value that is
            not a str or holds a control or non-ASCII character. Values never
            appear in the message (they are often credentials).
    """
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers must be a mapping of str to str, got {type(headers).__name__}")
    checked: List[Tuple[str, str]] = []
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise ConfigurationError(f"header name {name!r} is not a valid HTTP header name")
        if not isinstance(value, str):
            raise ConfigurationError(f"the value of header {name!r} must be a str, got {type(value).__name__}")
        value = value.strip()
        if value and not _HEADER_VALUE.match(value):
            raise ConfigurationError(
                f"the value of header {name!r} holds a control or non-ASCII character and cannot be sent"
            )
        checked.append((name, value))
    return checked


def safe_url(url: str) -> str:
    """``url`` without the ``user:password@`` part (for reprs, messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return SplitResult(parts.scheme, host, parts.path, parts.query, parts.fragment).geturl()


def url_credentials(url: str) -> List[str]:
    """The user name, password and whole ``user:password`` of ``url`` (empty parts left out)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rsplit("@", 1)[0]
    found = [userinfo]
    found.extend(piece for piece in userinfo.split(":", 1) if piece)
    return [s for s in found if s]


class Redactor:
    """Removes a fixed set of secrets from text (see the module docstring). Immutable, thread-safe."""

    __slots__ = ("_long", "_short")

    def __init__(self, secrets: Iterable[Optional[str]]) -> None:
        forms = set()
        for secret in secrets:
            if not secret:
                continue
            forms.add(secret)
            forms.add(repr(secret)[1:-1])  # as a repr() of the header dict shows it
            forms.add(secret.encode("unicode_escape").decode("ascii"))
            forms.add(json.dumps(secret)[1:-1])  # as a JSON body echoes it
        long = sorted((s for s in forms if len(s) >= WHOLE_WORD_BELOW), key=len, reverse=True)
        short = sorted((s for s in forms if len(s) < WHOLE_WORD_BELOW), key=len, reverse=True)
        self._long: Optional["re.Pattern[str]"] = re.compile("|".join(map(re.escape, long))) if long else None
        self._short: Optional["re.Pattern[str]"] = (
            re.compile(f"(?<![{_TOKEN_CHARS}])(?:{'|'.join(map(re.escape, short))})(?![{_TOKEN_CHARS}])")
            if short
            else None
        )

    def __repr__(self) -> str:
        return "Redactor(...)"

    def __bool__(self) -> bool:
        return self._long is not None or self._short is not None

    def __call__(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        if self._long is not None:
            text = self._long.sub(MASK, text)
        if self._short is not None:
            text = self._short.sub(MASK, text)
        return text

    def value(self, obj: Any, _depth: int = 0) -> Any:
        """A copy of a parsed JSON value (an error body) with every string, keys included, redacted."""
        if isinstance(obj, str):
            return self(obj)
        if _depth > 100:  # deeper than any error body: drop it rather than recurse without end
            return MASK
        if isinstance(obj, dict):
            return {self(k) if isinstance(k, str) else k: self.value(v, _depth + 1) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v, _depth + 1) for v in obj]
        return obj


def log_text(value: object, limit: int = 200) -> str:
    """A server-chosen string made safe for one log line: control characters escaped, truncated."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + f"...[{len(text) - limit} more characters]"
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
