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
import weakref
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._secrets import Redactor, check_headers, log_text, safe_url, url_credentials
from ._version import __version__
from .errors import (
    ClientClosedError,
    ConfigurationError,
    PromptKitError,
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
# Headers requests sets on every session: not secrets.
_PLAIN_HEADERS = frozenset({"user-agent", "accept-encoding", "accept", "connection"})
_MESSAGE_LIMIT = 1000  # of a server's error message, in an exception's text
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


class _PoolFullFilter(logging.Filter):
    """Turns urllib3's "Connection pool is full" warnings for promptkit's hosts into one INFO line each.

    Hundreds of concurrent streams on a pool of ``pool_size`` connections are
    normal: the extra connections are simply closed after use, and one warning
    per stream would flood the log.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hosts: Dict[str, int] = {}
        self.told: Set[str] = set()
        self.lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Connection pool is full"):
            return True
        host = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        with self.lock:
            if host not in self.hosts:
                return True  # not a promptkit connection: leave urllib3's warning alone
            first = host not in self.told
            self.told.add(host)
            size = self.hosts[host]
        if first:
            logger.info(
                "more concurrent streams to %s than its connection pool holds (pool_size=%d): "
                "the extra connections are closed after use; raise Client(pool_size=...) to keep more open",
                log_text(host), size,
            )
        return False


_POOL_FULL = _PoolFullFilter()
logging.getLogger("urllib3.connectionpool").addFilter(_POOL_FULL)


def _quiet_pool_full(host: str, pool_size: int) -> None:
    with _POOL_FULL.lock:
        _POOL_FULL.hosts[host] = max(pool_size, _POOL_FULL.hosts.get(host, 0))


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
        parts = urlsplit(base_url)
        # A query string (legacy Azure's ?api-version=) stays after the endpoint's path.
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.base_url = safe_url(root)  # what messages, logs and reprs show: never credentials
        self.url = root + "/chat/completions" + (f"?{parts.query}" if parts.query else "")
        extra = check_headers(headers)
        # The caller's header values, a supplied session's own headers included, are treated as secrets.
        session_values = [str(v) for k, v in session.headers.items() if k.lower() not in _PLAIN_HEADERS] if session else []
        self._redactor = Redactor(
            [api_key, *(value for _, value in extra), *session_values, *url_credentials(base_url)]
        )
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _Adapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _quiet_pool_full(parts.hostname or "", pool_size)  # a supplied session's pool is the caller's
        self.session = session
        self._headers: Dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Compressed event streams are buffered by the decoder and some proxies.
            "Accept-Encoding": "identity",
            "User-Agent": f"promptkit/{__version__}",
        }
        self._headers.update(extra)
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._closed = False
        self._active: "weakref.WeakSet[Any]" = weakref.WeakSet()
        self._active_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    # -- lifecycle ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def check_open(self) -> None:
        """Raise :class:`~promptkit.ClientClosedError` once the client is closed."""
        if self._closed:
            raise ClientClosedError(f"this client (for {self.base_url}) is closed; create a new Client")

    def track(self, stream: Any) -> None:
        """Remember an active stream, so that :meth:`close` cancels it."""
        with self._active_lock:
            closed = self._closed
            if not closed:
                self._active.add(stream)
        if closed:
            stream.close()

    def close(self, timeout: float = 5.0) -> None:
        """Cancel every active stream (waiting up to ``timeout`` s for each worker), then close
        the session if this transport created it. Idempotent."""
        with self._active_lock:
            self._closed = True
            active = list(self._active)
            self._active.clear()
        for stream in active:
            stream.cancel()
        for stream in active:
            stream.close(timeout)
        if self._owns_session:
            self.session.close()

    @property
    def sends_stream_options(self) -> bool:
        """Whether requests to this base URL include ``stream_options`` (a server may have refused it)."""
        return self.base_url not in _NO_STREAM_OPTIONS

    def redact(self, text: str) -> str:
        """Remove every secret of this client (key, caller's header values, URL credentials) from text."""
        return self._redactor(text)

    @staticmethod
    def abort_handle(sock: socket.socket) -> SocketAbort:
        """Something whose ``abort()`` fails a request still waiting for headers on ``sock``."""
        return SocketAbort(sock)

    def redact_error(self, error: PromptKitError) -> None:
        """Remove the secrets from an error's message and body (a server may echo them in-band)."""
        if not self._redactor:
            return
        redact = self._redactor
        message = getattr(error, "message", None)
        if isinstance(message, str):
            error.message = redact(message)  # type: ignore[attr-defined]
        error.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in error.args)
        body = getattr(error, "body", None)
        if body is not None:
            error.body = redact.value(body)  # type: ignore[attr-defined]

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
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:  # inputs are checked up front: a last guard
            raise ConfigurationError(f"the request to {self.base_url} cannot be sent as JSON: {exc}") from None
        waiting.hook = on_socket  # while waiting for headers, a cancel may shut this socket down
        failure: Optional[PromptKitError] = None
        try:
            # Never follow a redirect: it would carry the conversation (and, to the same
            # host, the credentials) wherever a server or a proxy points it.
            response = self.session.post(
                self.url,
                data=body,
                headers=self._headers,
                stream=True,
                timeout=(connect_timeout, read_timeout),
                allow_redirects=False,
            )
        except (
            requests.exceptions.InvalidHeader,
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            # The request itself is malformed: no server saw it, and trying again cannot help.
            failure = ConfigurationError(f"the request to {self.base_url} could not be sent: {self.redact(describe(exc))}")
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
        # Raised outside the except block: the requests exception (whose request
        # carries the Authorization header) must not ride along as __context__.
        if failure is not None:
            raise failure
        if 300 <= response.status_code < 400:
            raise self._redirect_error(response)
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

    def _redirect_error(self, response: requests.Response) -> APIStatusError:
        location = response.headers.get("location", "")
        self._read_body(response)  # releases the connection
        target = safe_url(urljoin(self.url, location)) if location else "no Location given"
        status = response.status_code
        return APIStatusError(
            self.redact(
                f"{status} {response.reason or 'Redirect'}: the server redirected the request to {log_text(target, 300)}; "
                "promptkit does not follow redirects (they would carry the conversation elsewhere): "
                "set base_url to the final address"
            ),
            status_code=status,
            body=None,
            request_id=response.headers.get("x-request-id"),
        )

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
        except (ValueError, RecursionError):  # not JSON, or nested deeper than Python parses
            pass
        if isinstance(body, dict):
            error = body.get("error", body)
            if isinstance(error, dict):
                message = str(error.get("message") or "")
            elif isinstance(error, str):
                message = error
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "..."
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
                logger.info("attempt %d failed (%s); retrying in %.2fs", attempt, log_text(error), delay)
                if not wait(delay):
                    raise
                attempt += 1
