"""Short, library-free reasons for connection failures, and the ``host:port`` a URL connects to.

Library messages name their own classes ("HTTPConnectionPool(host='h', port=1):
Max retries exceeded ... NewConnectionError(...)"); a user needs the host, the
port and the reason only. Pure functions: the HTTP boundary
(:mod:`promptkit._transport`) builds its errors' messages with them.
"""

from __future__ import annotations

import re
import socket
import ssl
from typing import Iterator, Set
from urllib.parse import urlsplit

__all__ = ["describe", "connect_target"]

_REASONS = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset by the server"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "connection closed by the server"),
    (socket.gaierror, "host name not found"),
    (TimeoutError, "timed out"),
)
_CLASS_REPR = re.compile(r"\b_?[A-Z]\w*\((?:host|pool)=[^)]*\)(?::\s*)?")
_WRAPPER = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\(['\"]?")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: causes, contexts, urllib3's ``reason`` and requests' first argument."""
    seen: Set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "reason", None), current.__cause__, current.__context__,
                      *(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))):
            if isinstance(inner, BaseException):
                todo.append(inner)


def describe(exc: BaseException) -> str:
    """A short reason for a connection failure, e.g. ``"connection refused"``, without library class names."""
    chain = list(_chain(exc))
    for error in chain:
        name = type(error).__name__
        if name == "NameResolutionError":
            return "host name not found"
        if name == "RemoteDisconnected":  # a ConnectionResetError, but nothing was reset
            return "the server closed the connection without a response"
        if name == "IncompleteRead":
            return "the server closed the connection in the middle of the body"
        if "SSL" in name or isinstance(error, ssl.SSLError):
            detail = getattr(error, "reason", None) or getattr(error, "strerror", None)
            return f"TLS error{f': {detail}' if isinstance(detail, str) and detail else ''}"
    for error in chain:
        for kind, reason in _REASONS:
            if isinstance(error, kind):
                return reason
    text = " ".join(str(chain[-1] if len(chain) > 1 else exc).split()) or type(exc).__name__
    text = _WRAPPER.sub("", _CLASS_REPR.sub("", text)).strip(" '\")")
    return text if len(text) < 200 else text[:200] + "..."


def connect_target(url: str) -> str:
    """``host:port`` of a URL, the port made explicit (80 or 443 by default)."""
    parsed = urlsplit(url)
    host = parsed.hostname or url
    host = f"[{host}]" if ":" in host else host
    try:
        port = parsed.port
    except ValueError:
        port = None
    return f"{host}:{port or (443 if parsed.scheme == 'https' else 80)}"
