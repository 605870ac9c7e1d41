"""Redis connections for promptkit's Redis engines (RedisStore and RedisStreamLog): bounded, and described safely.

Both take a URL or a redis-py client, talk over a pool of their own with a
timeout on every operation and no hidden retries, and describe failures
without credentials. redis-py is imported only when a connection is made.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from typing import Any, NamedTuple, Optional, Tuple

from ._errors import ConfigurationError

__all__ = ["Link", "connect", "text", "ms", "describe", "bounded", "failure_cause", "scrub", "url_password"]

logger = logging.getLogger(__name__)


class Link(NamedTuple):
    """A connection made by :func:`connect`."""

    given: Any  # the client given, or made from the URL (only its settings are used)
    client: Any  # the bounded client to talk over
    owned: bool  # whether the owner closes ``client``
    secret: Optional[str]  # the password, to scrub from messages
    where: str  # redis://host:port/db, never the password


def connect(url_or_client: Any, owner: str, timeout: float) -> Tuple[Any, Link]:
    """``(the redis module, a Link)`` for a redis URL or a redis-py client.

    Raises:
        ConfigurationError: redis-py is missing, the URL is malformed, or
            ``url_or_client`` is neither a URL nor a client.
    """
    if not isinstance(url_or_client, str) and not hasattr(url_or_client, "register_script"):
        raise ConfigurationError(f"{owner} needs a redis URL or a redis.Redis client, got {type(url_or_client).__name__}")
    try:
        import redis
    except ImportError:
        raise ConfigurationError(f"{owner} needs redis-py: pip install 'promptkit[redis]'") from None
    given = url_or_client
    if isinstance(url_or_client, str):
        try:
            given = redis.Redis.from_url(url_or_client)
        except ValueError as exc:  # redis-py's message may quote the URL, password included
            reason = scrub(str(exc), url_password(url_or_client))
        else:
            reason = ""
        if reason:
            raise ConfigurationError(f"{owner} got a malformed redis URL: {reason}")
    secret = (getattr(getattr(given, "connection_pool", None), "connection_kwargs", None) or {}).get("password")
    where = describe(given)
    client, owned = bounded(redis, given, timeout, owner)
    if isinstance(url_or_client, str):
        if owned:
            given.close()  # only its settings were needed
        else:
            owned = True
    return redis, Link(given, client, owned, secret, where)


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


def describe(client: Any) -> str:
    """Where the client points, as ``redis://host:port/db`` or ``unix://path``: never its password."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return type(client).__name__  # a cluster client or a custom one: no single address to name
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if "SSL" in getattr(client.connection_pool.connection_class, "__name__", "") else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def bounded(redis: Any, client: Any, timeout: float, owner: str = "RedisStore") -> Tuple[Any, bool]:
    """A client on a pool of its own with ``timeout`` on every connect and read, and no hidden retries.

    redis-py waits forever for a frozen server when ``socket_timeout`` is
    ``None``, and retries with growing backoff by default (10 times in
    redis-py 8): neither may hold a turn hostage. The pool copies the
    client's connection settings (host, password, TLS, decoding), so the
    caller's own client and its settings stay untouched. Returns the client
    to use and whether the store owns (and closes) it; a client without a
    plain connection pool (cluster, sentinel) is used as it is.
    """
    pool: Any = getattr(client, "connection_pool", None)
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        logger.warning(
            "%s cannot bound %s's operations itself: set socket_timeout on that client", owner, type(client).__name__
        )
        return client, False
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = timeout
    if "path" not in kwargs:  # unix sockets take no connect timeout
        kwargs["socket_connect_timeout"] = timeout
    kwargs["retry"] = Retry(NoBackoff(), 0)  # promptkit retries a commit itself, within its own bound
    own = redis.ConnectionPool(connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs)
    return redis.Redis(connection_pool=own), True


def failure_cause(redis: Any, exc: BaseException, timeout: float, secret: Optional[str]) -> str:
    """A short, credential-free reason for a redis-py failure."""
    text = str(exc)
    if isinstance(exc, (redis.TimeoutError, socket.timeout)):
        return f"no answer within {timeout:g}s (timed out)"
    if isinstance(exc, redis.AuthenticationError):
        return "authentication failed"
    if isinstance(exc, redis.ConnectionError):
        lowered = text.lower()
        if "refused" in lowered:
            return "connection refused"
        if "timeout" in lowered or "timed out" in lowered:
            return f"no answer within {timeout:g}s (timed out)"
        return "connection lost"
    return scrub(f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else '(no message)'}", secret)


def scrub(text: str, secret: Optional[str]) -> str:
    return text.replace(secret, "***") if secret else text


def url_password(url: str) -> Optional[str]:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None
