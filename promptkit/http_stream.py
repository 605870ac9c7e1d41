"""An open streaming response: reads as bytes arrive, aborts from any thread, returns its connection safely.

Used by :mod:`promptkit.transport` (the one module that imports requests);
this module works on the urllib3 and http.client objects underneath.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from typing import Any, Iterator, Mapping, Optional
from urllib.parse import urlsplit

from urllib3.exceptions import ReadTimeoutError

from .chunked import ChunkedError, Dechunker
from .errors import APIConnectionError

__all__ = ["HTTPStream", "SocketAbort", "waiting", "describe", "connect_target"]

logger = logging.getLogger(__name__)

_DRAIN_TIMEOUT = 0.1
_DRAIN_BYTES = 65536  # what may follow [DONE] (a blank line, a usage chunk): more is a flood, not an ending


def _find_socket(raw: Any) -> Optional[socket.socket]:
    """The socket under a urllib3 response (``None`` for mocked responses)."""
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is not None:
        return sock  # type: ignore[no-any-return]
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(fp, "raw", None), "_sock", None)


class HTTPStream:
    """An open ``text/event-stream`` response.

    One thread reads (:meth:`read1`); any thread may :meth:`abort`.

    The return of the connection to the pool is taken out of urllib3's hands:
    it would put the connection back inside ``read1`` at EOF, and an abort
    racing that moment would shut down a socket another request now owns.
    Here the return and the abort exclude each other under one lock.
    """

    __slots__ = (
        "_response", "_raw", "_read1", "_sock", "_pool", "_lock", "_timeout", "_aborted", "_eof", "_released",
        "_reusable", "_body", "_raw_read1", "_dechunker", "status_code", "headers", "request_id",
    )  # fmt: skip

    def __init__(self, response: Any) -> None:
        self._response = response
        raw = self._raw = response.raw
        self._sock = _find_socket(raw)
        self._pool = getattr(raw, "_pool", None)
        if self._pool is not None:
            raw._pool = None  # urllib3 releases nothing now; close() does it
        self._lock = threading.Lock()
        # The per-read hot path. A compressed body needs urllib3's decoder. Otherwise a
        # chunked body is de-chunked here from the socket's buffer (every chunk that has
        # arrived in one read), and any other body read with http.client's read1.
        fp = self._body = getattr(raw, "_fp", None)
        identity = response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity")
        self._dechunker: Optional[Dechunker] = None
        self._reusable = False
        buffered = getattr(fp, "fp", None)
        if identity and getattr(fp, "chunked", False) and hasattr(buffered, "read1"):
            self._dechunker = Dechunker()
            self._raw_read1 = buffered.read1
            self._read1 = self._read_chunked
        elif identity and hasattr(fp, "read1"):
            self._read1 = fp.read1
        else:
            self._read1 = raw.read1
        self._timeout: Optional[float] = -1.0
        self._aborted = False
        self._eof = False
        self._released = False
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.request_id: Optional[str] = response.headers.get("x-request-id")

    def read1(self, timeout: Optional[float], size: int = 65536) -> bytes:
        """Return the bytes that have arrived (blocking until some do); ``b""`` at EOF.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            APIConnectionError: the connection broke.
        """
        sock = self._sock
        if sock is not None and timeout != self._timeout:
            try:
                sock.settimeout(timeout)
            except OSError:
                pass  # already shut down: the read below reports it
            self._timeout = timeout
        try:
            data = self._read1(size)
        except Exception as exc:  # socket, http.client and (compressed bodies) urllib3 errors
            if self._aborted:
                return b""
            if _is_timeout(exc):
                raise TimeoutError("read timed out") from None
            raise APIConnectionError(f"connection broken while streaming: {describe(exc)}") from None
        if not data:
            self._eof = True
            if self._dechunker is None:
                # A length-delimited or chunked body read to its end leaves a reusable connection.
                self._reusable = bool(getattr(self._body, "length", None) == 0 or getattr(self._body, "chunked", False))
        return data

    def _read_chunked(self, size: int) -> bytes:
        dechunker = self._dechunker
        assert dechunker is not None
        while not dechunker.done:
            data = self._raw_read1(size)
            if not data:
                return b""  # the server closed the connection before the last chunk
            try:
                payload = dechunker.feed(data)
            except ChunkedError as exc:
                raise APIConnectionError(f"malformed chunked body: {exc}") from None
            if dechunker.done:
                # http.client must see its response as finished, or the connection can't send again.
                self._body.close()
                self._reusable = True
            if payload:
                return payload
        return b""

    def abort(self) -> None:
        """Wake a blocked reader at once by shutting the socket down. Thread-safe, idempotent.

        Does nothing once the connection went back to the pool.
        """
        with self._lock:
            if self._released or self._aborted:
                return
            self._aborted = True
            _shutdown(self._sock)

    def finish(self) -> None:
        """After ``[DONE]``: read the (normally already buffered) end of the body, then release.

        A server that keeps the body open after ``[DONE]`` costs at most
        :data:`_DRAIN_TIMEOUT`, one that keeps sending at most :data:`_DRAIN_BYTES`;
        its connection is then closed, not reused.
        """
        if not self._aborted and not self._eof:
            drained = 0
            try:
                while drained <= _DRAIN_BYTES:
                    data = self.read1(_DRAIN_TIMEOUT)
                    if not data:
                        break
                    drained += len(data)
            except (TimeoutError, APIConnectionError):
                pass
        self.close()

    def close(self) -> None:
        """Release the connection: back to the pool after a complete body, closed otherwise. Idempotent."""
        with self._lock:
            if self._released:
                return
            self._released = True
            conn = getattr(self._raw, "_connection", None)
            if self._eof and self._reusable and not self._aborted and self._pool is not None and conn is not None:
                self._raw._connection = None
                self._pool._put_conn(conn)
                return
            if not self._aborted:
                _shutdown(self._sock)
        try:
            self._response.close()
        except Exception:  # closing a broken connection may raise; nothing more to release
            logger.debug("error while closing a response", exc_info=True)


def _shutdown(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # not connected any more: nothing is blocked on it


class SocketAbort:
    """Aborts a request still waiting for its response headers (see :class:`Transport`)."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def abort(self) -> None:
        """Shut the socket down, failing the pending request at once."""
        _shutdown(self._sock)


# The hook a request waiting for its headers reports its socket to (set per thread by open()).
waiting = threading.local()


def _is_timeout(exc: BaseException) -> bool:
    # urllib3 turns socket.timeout into ReadTimeoutError inside read1.
    return isinstance(exc, (TimeoutError, ReadTimeoutError))


# Library messages name their own classes ("_HookedHTTPPool(host='h', port=1): Max retries
# exceeded ... NewConnectionError(...)"); a user needs the host, the port and the reason only.
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
    seen: set = set()
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
