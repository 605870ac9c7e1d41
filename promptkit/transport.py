"""HTTP: the one module that imports requests.

It opens a streaming POST to ``{base_url}/chat/completions``, turns statuses
and transport failures into promptkit errors (with retries before any
content), and hands back an :class:`HTTPStream` whose :meth:`~HTTPStream.read1`
returns whatever bytes have arrived, so each token reaches the user at once.

Reading uses ``response.raw.read1``: iterating a ``requests.Response`` or
``iter_lines`` holds bytes back until a buffer fills. Cancelling shuts the
socket down, which wakes a thread blocked in ``recv`` at once; closing a
response from another thread would wait for that read to return.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    StreamError,
)
from .http_stream import HTTPStream, SocketAbort, connect_target, describe, waiting
from .retry import RetryPolicy, parse_retry_after

__all__ = ["Transport", "HTTPStream", "SocketAbort"]

logger = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 65536
# Base URLs whose server rejected ``stream_options``; shared by every client in the process.
_NO_STREAM_OPTIONS: Set[str] = set()
_NO_STREAM_OPTIONS_LOCK = threading.Lock()


def _status_error_class(status: int) -> type:
    if status in (400, 422):
        return BadRequestError
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitError
    if status >= 500:
        return ServerError
    return APIStatusError


class _HookedHTTPConnection(HTTPConnection):
    def getresponse(self) -> Any:  # type: ignore[override]
        hook = getattr(waiting, "hook", None)
        if hook is not None and self.sock is not None:
            hook(self.sock)
        return super().getresponse()


class _HookedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> Any:  # type: ignore[override]
        hook = getattr(waiting, "hook", None)
        if hook is not None and self.sock is not None:
            hook(self.sock)
        return super().getresponse()


class _HookedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _HookedHTTPConnection


class _HookedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HookedHTTPSConnection


class _Adapter(HTTPAdapter):
    """An adapter whose connections tell the waiting request their socket, so a cancel can abort it."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HookedHTTPPool, "https": _HookedHTTPSPool}


class Transport:
    """Sends chat-completions requests for one base URL and API key.

    Thread-safe: one connection pool serves every thread. A session passed in
    is used as is (its TLS settings, proxies and adapters are the caller's);
    one created here is owned and closed by :meth:`close`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Optional[str],
        session: Optional[requests.Session] = None,
        pool_size: int = 10,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self._api_key = api_key
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _Adapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._headers: Dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Compressed event streams are buffered by the decoder and some proxies.
            "Accept-Encoding": "identity",
            "User-Agent": f"promptkit/{__version__}",
        }
        if headers:
            self._headers.update(headers)
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the session if this transport created it."""
        if self._owns_session:
            self.session.close()

    @property
    def sends_stream_options(self) -> bool:
        """Whether requests to this base URL include ``stream_options`` (a server may have refused it)."""
        return self.base_url not in _NO_STREAM_OPTIONS

    def redact(self, text: str) -> str:
        """Remove the API key from text that came back from the server."""
        key = self._api_key
        return text.replace(key, "***") if key and key in text else text

    @staticmethod
    def abort_handle(sock: socket.socket) -> SocketAbort:
        """Something whose ``abort()`` fails a request still waiting for headers on ``sock``."""
        return SocketAbort(sock)

    def redact_error(self, error: APIError) -> None:
        """Remove the API key from an error's message and body (a server may echo it in-band)."""
        key = self._api_key
        if not key:
            return
        error.message = self.redact(error.message)
        error.args = tuple(self.redact(arg) if isinstance(arg, str) else arg for arg in error.args)
        body = getattr(error, "body", None)
        if body is not None and key in (text := json.dumps(body) if not isinstance(body, str) else body):
            redacted = self.redact(text)
            error.body = redacted if isinstance(body, str) else json.loads(redacted)  # type: ignore[attr-defined]

    def open(
        self,
        payload: Mapping[str, Any],
        *,
        connect_timeout: Optional[float],
        read_timeout: Optional[float],
        on_socket: Optional[Callable[[socket.socket], None]] = None,
    ) -> HTTPStream:
        """One attempt: POST and return the stream once 2xx ``text/event-stream`` headers are in.

        Raises:
            APIStatusError: a non-2xx status (subclass by status).
            APITimeoutError: connect or header timeout.
            APIConnectionError: refused, reset, DNS, TLS.
            StreamError: 2xx with another content type (a JSON or HTML body).
        """
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        waiting.hook = on_socket  # while waiting for headers, a cancel may shut this socket down
        failure: Optional[APIError] = None
        try:
            response = self.session.post(
                self.url, data=body, headers=self._headers, stream=True, timeout=(connect_timeout, read_timeout)
            )
        except requests.exceptions.ConnectTimeout:
            failure = APITimeoutError(
                f"timed out connecting to {connect_target(self.base_url)} ({self.base_url})", kind="connect"
            )
        except requests.exceptions.ReadTimeout:
            failure = APITimeoutError(f"timed out waiting for response headers from {self.base_url}", kind="idle")
        except requests.exceptions.RequestException as exc:
            failure = APIConnectionError(
                f"could not connect to {connect_target(self.base_url)}: {self.redact(describe(exc))} ({self.base_url})"
            )
        finally:
            waiting.hook = None
        if failure is not None:
            # Raised outside the except block: the requests exception (whose request
            # carries the Authorization header) must not ride along as __context__.
            raise failure
        if response.status_code >= 300:
            raise self._status_error(response)
        content_type = response.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
            snippet = self._read_body(response)
            raise StreamError(
                f"expected a text/event-stream response, got {content_type or 'no content type'} "
                f"(status {response.status_code}): {snippet[:200]!r}",
                body=snippet,
            )
        return HTTPStream(response)

    def _read_body(self, response: requests.Response) -> str:
        try:
            data = response.raw.read(_ERROR_BODY_LIMIT, decode_content=True) or b""
        except Exception:  # the body is only for the error message
            data = b""
        finally:
            response.close()
        return self.redact(data.decode("utf-8", errors="replace"))

    def _status_error(self, response: requests.Response) -> APIStatusError:
        text = self._read_body(response)
        body: Any = text
        message = ""
        try:
            body = json.loads(text)
        except ValueError:
            pass
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict):
                message = str(error.get("message") or "")
            elif isinstance(error, str):
                message = error
        if not message:
            message = text.strip()[:300] or (response.reason or "")
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        suffix = f" (request id {request_id})" if request_id else ""
        cls = _status_error_class(status)
        return cls(  # type: ignore[no-any-return]
            f"{status} {response.reason or ''}: {message}{suffix}".replace("  ", " "),
            status_code=status,
            body=body,
            request_id=request_id,
            retry_after=parse_retry_after(response.headers),
        )

    def open_with_retries(
        self,
        payload: Dict[str, Any],
        *,
        policy: RetryPolicy,
        connect_timeout: Callable[[], Optional[float]],
        read_timeout: Callable[[], Optional[float]],
        wait: Callable[[float], bool],
        attempt: int = 1,
        on_socket: Optional[Callable[[socket.socket], None]] = None,
    ) -> Tuple[HTTPStream, int]:
        """Open the stream, retrying retryable failures under ``policy``.

        ``connect_timeout()`` and ``read_timeout()`` give each attempt's connect
        and header timeouts (they shrink as a total deadline nears). ``wait(seconds)`` sleeps between attempts and
        returns ``False`` to stop retrying (cancelled, or past the deadline).
        A 400/422 naming ``stream_options`` is retried once without it, and the
        base URL is remembered so later requests leave it out.

        Returns:
            The open stream and the number of the attempt that succeeded.
        """
        if "stream_options" in payload and not self.sends_stream_options:
            payload = {k: v for k, v in payload.items() if k != "stream_options"}
        while True:
            try:
                stream = self.open(
                    payload, connect_timeout=connect_timeout(), read_timeout=read_timeout(), on_socket=on_socket
                )
                return stream, attempt
            except APIError as error:
                error.attempts = attempt
                if isinstance(error, BadRequestError) and "stream_options" in payload and "stream_options" in str(error.body):
                    logger.info("%s rejected stream_options; retrying without it", self.base_url)
                    with _NO_STREAM_OPTIONS_LOCK:
                        _NO_STREAM_OPTIONS.add(self.base_url)
                    payload = {k: v for k, v in payload.items() if k != "stream_options"}
                    continue
                delay = policy.next_delay(error, attempt)
                if delay is None:
                    raise
                logger.info("attempt %d failed (%s); retrying in %.2fs", attempt, error, delay)
                if not wait(delay):
                    raise
                attempt += 1
