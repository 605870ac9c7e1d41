"""HTTP: the boundary between promptkit and requests/urllib3 (the one module that imports requests).

It opens a streaming POST to the wire dialect's endpoint under ``base_url``
(``/chat/completions``, ``/responses``) and hands back an
:class:`HTTPStream` whose :meth:`~HTTPStream.read1` returns whatever bytes
have arrived, so each token reaches the user at once. Every third-party
exception is turned into a promptkit error here, once, complete when it is
raised: its kind (connect, idle or total timeout) comes from the turn's
:class:`~promptkit._timeouts.TimeoutPlan`.

Only public APIs of requests and urllib3 are used: ``Response.raw``, urllib3's
``HTTPResponse.read1`` (which also decodes gzip and deflate incrementally),
``HTTPResponse.shutdown`` (urllib3 2.3) to wake a blocked reader from another
thread, ``HTTPResponse.connection.sock`` to set each read's timeout, and
``Response.close`` to release the connection (urllib3 puts a connection whose
body was read to its end back into the pool by itself). A request that has no
response yet is aborted through :mod:`promptkit._socket_watch`.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Any, Dict, Mapping, Optional, Set
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from urllib3.exceptions import ReadTimeoutError

from ._reasons import connect_target, describe
from ._secrets import Redactor, check_headers, log_text, safe_url, url_credentials
from ._socket_watch import watching
from ._timeouts import TimeoutPlan
from ._version import __version__
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    NotFoundError,
    PromptKitError,
    RateLimitError,
    ServerError,
    StreamError,
)
from ._retry import parse_retry_after

__all__ = ["Transport", "HTTPStream"]

logger = logging.getLogger(__name__)

_ERROR_BODY_LIMIT = 65536
# Headers requests sets on every session: not secrets.
_PLAIN_HEADERS = frozenset({"user-agent", "accept-encoding", "accept", "connection"})
_MESSAGE_LIMIT = 1000  # of a server's error message, in an exception's text
_DRAIN_TIMEOUT = 0.1
_DRAIN_BYTES = 65536  # what may follow [DONE] (a blank line, a usage chunk): more is a flood, not an ending


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


class HTTPStream:
    """An open ``text/event-stream`` response.

    One thread reads (:meth:`read1`); any thread may :meth:`abort`. The abort
    and the release of the connection exclude each other under one lock.
    """

    __slots__ = ("_response", "_read", "_sock", "_lock", "_timeout", "_aborted", "_closed", "status_code", "headers", "request_id")

    def __init__(self, response: requests.Response) -> None:
        self._response = response
        raw = response.raw
        raw.decode_content = True  # gzip and deflate are decoded as they arrive (requests asks urllib3 not to)
        self._read = raw.read1
        # The socket, to give each read its own timeout (None for a mocked response).
        self._sock: Any = getattr(raw.connection, "sock", None)
        self._lock = threading.Lock()
        # The header wait's timeout is still set: the first read changes it only if it must.
        self._timeout: Optional[float] = self._sock.gettimeout() if self._sock is not None else -1.0
        self._aborted = False
        self._closed = False
        self.status_code = response.status_code
        self.headers: Mapping[str, str] = response.headers
        self.request_id: Optional[str] = response.headers.get("x-request-id")

    def read1(self, timeout: Optional[float], size: int = 65536) -> bytes:
        """Return the (decoded) bytes that have arrived, blocking until some do; ``b""`` at EOF or after an abort.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            APIConnectionError: the connection broke, or a compressed body is corrupt.
        """
        sock = self._sock
        if sock is not None and timeout != self._timeout:
            try:
                sock.settimeout(timeout)
            except OSError:
                pass  # already shut down: the read below reports it
            self._timeout = timeout
        try:
            return self._read(size)  # type: ignore[no-any-return]
        except Exception as exc:  # socket, http.client and urllib3 errors (decoding included)
            if self._aborted:
                return b""
            if isinstance(exc, (TimeoutError, ReadTimeoutError)):
                raise TimeoutError("read timed out") from None
            raise APIConnectionError(f"connection broken while streaming: {describe(exc)}") from None

    def abort(self) -> None:
        """Wake a blocked reader at once (urllib3's ``shutdown()``). Thread-safe, idempotent.

        Does nothing once the response was closed or its connection went back to the pool.
        """
        with self._lock:
            if self._closed or self._aborted:
                return
            self._aborted = True
            try:
                self._response.raw.shutdown()
            except (ValueError, RuntimeError, OSError):
                pass  # no socket (a mocked response), or released already: nobody is blocked on it

    def finish(self) -> None:
        """After ``[DONE]``: read the (normally already buffered) end of the body, then release.

        Reading to the end lets urllib3 put the connection back into the pool. A
        server that keeps the body open after ``[DONE]`` costs at most
        :data:`_DRAIN_TIMEOUT`, one that keeps sending at most :data:`_DRAIN_BYTES`;
        its connection is then closed, not reused.
        """
        drained = 0
        try:
            while not self._aborted and drained <= _DRAIN_BYTES:
                data = self.read1(_DRAIN_TIMEOUT)
                if not data:
                    break
                drained += len(data)
        except (TimeoutError, APIConnectionError):
            pass
        self.close()

    def close(self) -> None:
        """Release the connection: urllib3 pooled it if the body was read to its end; it is closed otherwise. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._response.close()
        except Exception:  # closing a broken connection may raise; nothing more to release
            logger.debug("error while closing a response", exc_info=True)


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
    """Sends one wire dialect's requests (its ``path`` and ``auth_headers``) for one base URL and API key.

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
        path: str = "/chat/completions",
        auth_headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        parts = urlsplit(base_url)
        # A query string (legacy Azure's ?api-version=) stays after the endpoint's path.
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.base_url = safe_url(root)  # what messages, logs and reprs show: never credentials
        self.url = root + path + (f"?{parts.query}" if parts.query else "")
        self._target = f"{connect_target(self.base_url)} ({self.base_url})"
        extra = check_headers(headers)
        # The caller's header values, a supplied session's own headers included, are treated as secrets.
        session_values = [str(v) for k, v in session.headers.items() if k.lower() not in _PLAIN_HEADERS] if session else []
        self._redactor = Redactor(
            [api_key, *(value for _, value in extra), *session_values, *url_credentials(base_url)]
        )
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            # requests reads the proxy and CA-bundle variables (and ~/.netrc) again for every
            # request when trust_env is set: about 0.6 ms of CPU a turn. They are read once, here,
            # for this URL (NO_PROXY included); ~/.netrc is not used: promptkit sends its own credentials.
            env = session.merge_environment_settings(self.url, {}, None, None, None)
            session.trust_env = False
            session.proxies.update(env["proxies"])
            if env["verify"] not in (None, True):
                session.verify = env["verify"]  # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
            adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _quiet_pool_full(parts.hostname or "", pool_size)  # a supplied session's pool is the caller's
        self.session = session
        self._headers: Dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            # Asked for plain bytes: some servers and proxies buffer a compressed event stream.
            # One that compresses anyway is decoded as it arrives (HTTPStream.read1).
            "Accept-Encoding": "identity",
            "User-Agent": f"promptkit/{__version__}",
        }
        self._headers.update(auth_headers or {})
        self._headers.update(extra)  # the caller's headers win (an anthropic-version to pin, say)
        # An owned session's request differs from turn to turn by its body only: prepared once,
        # copied per turn (requests' full preparation costs about 75 us a turn). A caller's
        # session is prepared in full each time: its auth, hooks and cookies apply.
        self._template: Optional[requests.PreparedRequest] = (
            session.prepare_request(requests.Request("POST", self.url, headers=self._headers)) if self._owns_session else None
        )
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

    # -- secrets -----------------------------------------------------------
    def redact(self, text: str) -> str:
        """Remove every secret of this client (key, caller's header values, URL credentials) from text."""
        return self._redactor(text)

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

    # -- one attempt -------------------------------------------------------
    def open(self, payload: Mapping[str, Any], plan: TimeoutPlan, control: Optional[Any] = None) -> HTTPStream:
        """One attempt: POST and return the stream once 2xx ``text/event-stream`` headers are in.

        With ``control`` (a :class:`~promptkit._stream.StreamControl`), a cancel
        shuts the request's socket down while it connects or waits for headers;
        the caller then sees an :class:`~promptkit.APIConnectionError` and
        ``control.cancelled``.

        Raises:
            APIStatusError: a non-2xx status (subclass by status), or a redirect.
            APITimeoutError: connect or header timeout, of the kind ``plan`` says.
            APIConnectionError: refused, reset, DNS, TLS.
            ConfigurationError: the request cannot be sent (a bad header or URL).
            StreamError: 2xx with another content type (a JSON or HTML body).
        """
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:  # inputs are checked up front: a last guard
            raise ConfigurationError(f"the request to {self.base_url} cannot be sent as JSON: {exc}") from None
        connect, connect_kind = plan.connect_wait()
        wait, wait_kind = plan.wait()
        if wait is not None and wait <= 0:
            raise plan.error("total", "headers")
        failure: Optional[PromptKitError] = None
        try:
            timeout = (connect, max(wait, 0.001) if wait is not None else None)
            with watching(control):
                # Never follow a redirect: it would carry the conversation (and, to the same
                # host, the credentials) wherever a server or a proxy points it.
                if self._template is not None and not self.session.cookies:
                    prepared = self._template.copy()
                    prepared.prepare_body(body, None)
                    response = self.session.send(prepared, stream=True, timeout=timeout, allow_redirects=False)
                else:
                    response = self.session.post(
                        self.url, data=body, headers=self._headers, stream=True, timeout=timeout, allow_redirects=False
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
            failure = plan.error(connect_kind, "connect", self._target)
        except requests.exceptions.ReadTimeout:
            failure = plan.error(wait_kind, "headers", self.base_url)
        except requests.exceptions.RequestException as exc:
            failure = APIConnectionError(f"could not connect to {connect_target(self.base_url)}: {self.redact(describe(exc))} ({self.base_url})")
        finally:
            if control is not None:
                control.detach()  # the socket watched while waiting; the stream is attached by its reader
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

