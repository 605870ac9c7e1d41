"""The exception hierarchy.

Every error promptkit raises derives from :class:`PromptKitError`. Errors that
come from the API carry ``partial``: the :class:`~promptkit._types.Response`
assembled so far (``None`` when nothing had arrived). No message ever contains
the API key: messages are built from the server's reply and the request's
method and URL only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._types import Response

__all__ = [
    "PromptKitError",
    "ConfigurationError",
    "ConversationBusyError",
    "CallbackError",
    "UsageError",
    "ClientClosedError",
    "ToolError",
    "BudgetExceededError",
    "StoreError",
    "OutputValidationError",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
    "APIConnectionError",
    "APITimeoutError",
    "StreamError",
    "StreamTruncatedError",
]


class PromptKitError(Exception):
    """Base class of every error raised by promptkit."""


class ConfigurationError(PromptKitError, ValueError):
    """A bad option or a missing API key; raised before any I/O."""


class ConversationBusyError(PromptKitError):
    """A second turn was started while one is still in flight on the conversation."""


class CallbackError(PromptKitError):
    """A user callback raised. The original exception is ``__cause__``.

    ``partial`` is the turn's Response when the callback that raised was
    ``on_done`` (the turn had already ended and was committed), else ``None``.
    """

    def __init__(self, message: str, *, partial: Optional["Response"] = None) -> None:
        super().__init__(message)
        self.partial = partial


class UsageError(PromptKitError, RuntimeError):
    """The program used a promptkit object wrongly: a bug to fix, not a condition to retry.

    For example a second consumer of a :class:`~promptkit.Stream` (it has
    one), iterating a Stream after :meth:`~promptkit.Stream.result` returned or
    raised (its events were consumed by that call), or a turn on a closed
    :class:`~promptkit.Client` (:class:`ClientClosedError`). Also a
    ``RuntimeError``, which is what such misuse raised before.
    """


class ClientClosedError(UsageError):
    """The :class:`~promptkit.Client` was closed: it starts no more turns.

    A :class:`UsageError`, and so also a ``RuntimeError``.
    """


class ToolError(PromptKitError):
    """A tool definition is invalid, a tool result is missing, or the tool loop ran too long.

    ``partial`` holds the turn's Response so far when the tool loop stopped a turn.
    """

    def __init__(self, message: str, *, partial: Optional["Response"] = None) -> None:
        super().__init__(message)
        self.partial = partial


class BudgetExceededError(PromptKitError):
    """The conversation's ``max_cost`` budget is spent (before or during a turn)."""

    def __init__(self, message: str, *, partial: Optional["Response"] = None) -> None:
        super().__init__(message)
        self.partial = partial


class StoreError(PromptKitError):
    """A conversation store failed: its backend is down, frozen, locked, corrupt or read-only, or it is closed.

    The message names the store (without credentials), the operation and a
    short cause, e.g. ``RedisStore(redis://127.0.0.1:6379/0): append failed:
    connection refused``. No exception of the backend's driver (redis-py,
    sqlite3) is chained to it.

    Attributes:
        partial: when a turn's commit failed after its reply was streamed,
            that turn's :class:`~promptkit._types.Response` (what the user
            saw), so the application can keep it; else ``None``.
        store: the store's safe description (no password), or ``None``.
        operation: the store operation that failed (``"load"``, ``"append"``,
            ``"acquire"``, ...), or ``None``.
        attempts: how many times the operation was tried.
    """

    def __init__(
        self,
        message: str,
        *,
        store: Optional[str] = None,
        operation: Optional[str] = None,
        partial: Optional["Response"] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.store = store
        self.operation = operation
        self.partial = partial
        self.attempts = 1

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class OutputValidationError(PromptKitError, ValueError):
    """A structured reply (``response_format=``) is not valid JSON or does not fit its format.

    The message quotes the validation message and the start of the reply.

    Attributes:
        raw: the reply's text, as the model sent it.
        errors: the validation message: the JSON syntax error, or where and
            how the value breaks the format (``$.age: expected an integer,
            got the string 'ten'``).
        partial: the turn's Response, when a turn raised it; else ``None``.
    """

    def __init__(self, message: str, *, raw: str, errors: str, partial: Optional["Response"] = None) -> None:
        start = raw[:80] + ("..." if len(raw) > 80 else "")
        super().__init__(f"{message}: {errors} (the reply starts: {start!r})")
        self.raw = raw
        self.errors = errors
        self.partial = partial


class APIError(PromptKitError):
    """An error from the API or the transport.

    Attributes:
        partial: the Response assembled before the failure, or ``None``.
        attempts: how many HTTP attempts were made for this request.
    """

    def __init__(self, message: str, *, partial: Optional["Response"] = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.partial = partial
        self.attempts = attempts

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message


class APIStatusError(APIError):
    """The server answered with a non-2xx status.

    Attributes:
        status_code: the HTTP status.
        body: the parsed JSON body when it was JSON, else the text (truncated).
        request_id: the ``x-request-id`` header, when the server sent one.
        retry_after: the wait the server asked for (``Retry-After``), in seconds, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
        partial: Optional["Response"] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, partial=partial, attempts=attempts)
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.retry_after = retry_after


class BadRequestError(APIStatusError):
    """400 or 422: the request was rejected."""


class AuthenticationError(APIStatusError):
    """401 or 403: the key is missing, wrong or lacks permission."""


class NotFoundError(APIStatusError):
    """404: unknown model or wrong base URL."""


class RateLimitError(APIStatusError):
    """429. ``retry_after`` holds the server's requested wait in seconds, or ``None``."""


class ServerError(APIStatusError):
    """5xx."""


class APIConnectionError(APIError):
    """The connection failed: refused, reset, DNS, TLS."""


class APITimeoutError(APIConnectionError):
    """A connect, idle or total deadline passed.

    Attributes:
        kind: ``"connect"``, ``"idle"`` or ``"total"``.
    """

    def __init__(self, message: str, *, kind: str = "idle", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.kind = kind


class StreamError(APIError):
    """The stream itself was bad: an in-band ``{"error": ...}``, a malformed chunk, a wrong content type.

    Attributes:
        body: the in-band error object or the offending text, when there is one.
        retryable: whether the failure is transient (a malformed or truncated
            stream, an in-band server or overload error), so that an attempt that
            failed this way before any output reached the consumer is retried.
    """

    retryable = False

    def __init__(self, message: str, *, body: Any = None, retryable: Optional[bool] = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.body = body
        if retryable is not None:
            self.retryable = retryable


class StreamTruncatedError(StreamError):
    """The body ended before ``[DONE]`` and without a ``finish_reason``."""

    retryable = True
