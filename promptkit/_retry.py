"""Retry policy: which failures are retried, and how long to wait.

Pure: no I/O. Retries happen only before any content reached the user.
Retried: connection errors and timeouts, 408, 409, 429 and 5xx. The wait is
exponential backoff with jitter, or the server's ``Retry-After`` /
``retry-after-ms`` when it gives one, honoured up to :data:`MAX_RETRY_AFTER`
seconds; a longer requested wait is not retried at all (the error says so).
"""

from __future__ import annotations

import random
import time
from typing import Any, Mapping, Optional

import attrs

from ._errors import APIConnectionError, APIError, APIStatusError, StreamError

__all__ = ["RetryPolicy", "parse_retry_after", "MAX_RETRY_AFTER"]

MAX_RETRY_AFTER = 60.0
RETRYABLE_STATUS = frozenset({408, 409, 429})


def parse_retry_after(headers: Mapping[str, str], now: Optional[float] = None) -> Optional[float]:
    """The wait a server asked for, in seconds, from ``retry-after-ms`` or ``Retry-After``.

    ``Retry-After`` may be a number of seconds or an HTTP date. Returns
    ``None`` when neither header is present or parseable.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if value >= 0:
                return value
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
        return value if value >= 0 else None
    except ValueError:
        pass
    import email.utils  # only for the rare HTTP-date form; it is slow to import

    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if parsed is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


# In-band error types and codes that mean "the server is busy or broke", not "your request is wrong".
_TRANSIENT_INBAND = frozenset({
    "server_error", "internal_error", "internal_server_error", "api_error", "overloaded", "overloaded_error",
    "service_unavailable", "rate_limit_exceeded", "rate_limit_error", "timeout", "server_overloaded",
})  # fmt: skip


def is_retryable(error: APIError) -> bool:
    """Whether a failure before any output reached the consumer may be retried."""
    if isinstance(error, APIStatusError):
        return error.status_code in RETRYABLE_STATUS or error.status_code >= 500
    if isinstance(error, StreamError):
        return error.retryable or _transient_inband(error.body)
    return isinstance(error, APIConnectionError)


def _transient_inband(body: Any) -> bool:
    """Whether an in-band ``{"error": ...}`` object reports a transient server failure."""
    if not isinstance(body, dict):
        return False
    for key in ("type", "code", "status"):
        value = body.get(key)
        if isinstance(value, str) and value.strip().lower() in _TRANSIENT_INBAND:
            return True
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and (value in RETRYABLE_STATUS or 500 <= value < 600):
            return True
    return False


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with jitter.

    Attempt ``n`` (1-based, the failed one) waits ``min(max_delay, base_delay * 2**(n-1))``
    scaled by a random factor in ``[0.75, 1.0]``, unless the server said how long to wait.
    The jitter spreads clients that failed together, and is narrow enough that every
    uncapped wait is at least 1.5 times the one before it (a wider one, ``[0.5, 1.0]``,
    let two waits in a row come out equal, which a server reads as no backoff at all).
    """

    max_retries: int = 2
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait after failed attempt number ``attempt``."""
        if retry_after is not None:
            return retry_after
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        return backoff * (1.0 - random.random() / 4)

    def next_delay(self, error: APIError, attempt: int) -> Optional[float]:
        """The wait before the next attempt, or ``None`` when ``error`` must not be retried.

        When the server asks for a wait longer than ``max_retry_after``, the
        error's message is extended to say why it was not retried.
        """
        if attempt > self.max_retries or not is_retryable(error):
            return None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None and retry_after > self.max_retry_after:
            error.message += (
                f"; not retried: the server asked to wait {retry_after:.0f}s, "
                f"more than the {self.max_retry_after:.0f}s promptkit waits"
            )
            return None
        return self.delay(attempt, retry_after)
