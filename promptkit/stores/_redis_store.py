"""RedisStore: conversations in Redis, shared by any number of web workers and hosts.

Needs redis-py (``pip install 'promptkit[redis]'``), imported only when a
store is created from a URL, so ``promptkit`` imports without it.

Keys, for a conversation ``ID`` and the prefix ``promptkit:``::

    promptkit:{ID}:meta    string: the ConversationMeta JSON
    promptkit:{ID}:turns   list: one StoredTurn JSON per turn, oldest first
    promptkit:{ID}:lock    string: the turn lock's owner, with a PX expiry

The braces are a Redis Cluster hash tag: a conversation's keys live in one
slot, so the Lua scripts below may touch them together.
"""

from __future__ import annotations

import logging
import socket
import urllib.parse
from typing import Any, Callable, List, Optional, Tuple, TypeVar

from .._errors import ConfigurationError, StoreError
from ._protocol import (
    DEFAULT_LOCK_TTL,
    DEFAULT_STORE_TIMEOUT,
    check_id,
    check_index,
    check_optional_seconds,
    check_seconds,
    check_turn,
)
from ._values import ConversationMeta, StoreConflictError, StoredConversation, StoredTurn, StoreFormatError

__all__ = ["RedisStore"]

logger = logging.getLogger(__name__)

# KEYS: meta, turns. ARGV: index, turn JSON, meta JSON, ttl in ms (0: none).
# Returns {1, new length} when appended, {0, stored length} on a conflict.
_APPEND = """
local stored = redis.call('LLEN', KEYS[2])
if stored ~= tonumber(ARGV[1]) then
  return {0, stored}
end
if stored == 0 then
  redis.call('SET', KEYS[1], ARGV[3])
end
local length = redis.call('RPUSH', KEYS[2], ARGV[2])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
return {1, length}
"""

# KEYS: lock. ARGV: owner, ttl in ms. Takes a free lock, or renews the owner's own.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

# KEYS: lock. ARGV: owner. Deletes the lock only if the owner holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_MISSING_REDIS = "RedisStore needs redis-py: pip install 'promptkit[redis]'"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _ms(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


_T = TypeVar("_T")


def _describe(client: Any) -> str:
    """Where the client points, as ``redis://host:port/db`` or ``unix://path``: never its password."""
    kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        return type(client).__name__  # a cluster client or a custom one: no single address to name
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    scheme = "rediss" if "SSL" in getattr(client.connection_pool.connection_class, "__name__", "") else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _bounded(redis: Any, client: Any, timeout: float) -> Tuple[Any, bool]:
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
            "RedisStore cannot bound %s's operations itself: set socket_timeout on that client", type(client).__name__
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


def _cause(redis: Any, exc: BaseException, timeout: float, secret: Optional[str]) -> str:
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
    return _scrub(f"{type(exc).__name__}: {text.splitlines()[0][:200] if text else '(no message)'}", secret)


def _scrub(text: str, secret: Optional[str]) -> str:
    return text.replace(secret, "***") if secret else text


def _url_password(url: str) -> Optional[str]:
    try:
        return urllib.parse.urlsplit(url).password
    except ValueError:
        return None


class RedisStore:
    """A :class:`~promptkit.stores.ConversationStore` in Redis.

    Every write is one Lua script, so it is atomic for every client of the
    server. Thread-safe: redis-py clients pool their connections.

    Args:
        url_or_client: a URL such as ``"redis://localhost:6379/0"`` (the store
            owns that client and closes it in :meth:`close`), or a
            ``redis.Redis`` client you own (``decode_responses`` either way).
        ttl: forget a conversation this many seconds after its last committed
            turn (Redis ``PEXPIRE`` on its keys); ``None`` keeps it forever.
        lock_ttl: default lifetime of a turn lock, in seconds.
        prefix: the prefix of every key.
        timeout: how long any operation may wait for Redis, in seconds (the
            connect and read timeout of the store's connections). The store
            talks over a pool of its own built from the client's settings, so
            this holds even for a client made without ``socket_timeout``, and
            it does not change that client. A frozen or unreachable server
            then fails the operation with :class:`~promptkit.StoreError`.

    Raises:
        ConfigurationError: redis-py is not installed (only when given a URL,
            the only case that needs the import), or an argument is invalid.
    """

    def __init__(
        self,
        url_or_client: Any,
        *,
        ttl: Optional[float] = None,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        prefix: str = "promptkit:",
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        self.ttl = check_optional_seconds("ttl", ttl)
        self.timeout = check_seconds("timeout", timeout)
        self.lock_ttl = check_seconds("lock_ttl", lock_ttl)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        self.prefix = prefix
        if not isinstance(url_or_client, str) and not hasattr(url_or_client, "register_script"):
            raise ConfigurationError(
                f"RedisStore needs a redis URL or a redis.Redis client, got {type(url_or_client).__name__}"
            )
        try:
            import redis
        except ImportError:
            raise ConfigurationError(_MISSING_REDIS) from None
        self._redis = redis
        given = url_or_client
        if isinstance(url_or_client, str):
            try:
                given = redis.Redis.from_url(url_or_client)
            except ValueError as exc:  # redis-py's message may quote the URL, password included
                reason = _scrub(str(exc), _url_password(url_or_client))
            else:
                reason = ""
            if reason:
                raise ConfigurationError(f"RedisStore got a malformed redis URL: {reason}")
        self._given = given
        self._secret = (getattr(getattr(given, "connection_pool", None), "connection_kwargs", None) or {}).get("password")
        self.description = f"RedisStore({_describe(given)})"
        self._client, self._owns_client = _bounded(redis, given, self.timeout)
        if isinstance(url_or_client, str):
            if self._owns_client:
                given.close()  # only its settings were needed
            else:
                self._owns_client = True
        self._append = self._client.register_script(_APPEND)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._closed = False

    def __repr__(self) -> str:
        return f"{self.description[:-1]}, prefix={self.prefix!r}, ttl={self.ttl})"

    def __str__(self) -> str:
        return self.description

    @property
    def client(self) -> Any:
        """The redis-py client given (or made from the URL); the store's own commands use a bounded copy."""
        return self._given

    def _run(self, operation: str, action: Callable[[], _T]) -> _T:
        """Run one Redis operation; any redis-py failure becomes a :class:`~promptkit.StoreError`."""
        self._check_open()
        try:
            return action()
        except (self._redis.RedisError, OSError) as exc:
            cause = _cause(self._redis, exc, self.timeout, self._secret)
        # Raised outside the except block: redis-py's exception stays out of __context__.
        raise StoreError(
            f"{self.description}: {operation} failed: {cause}", store=self.description, operation=operation
        )

    def _key(self, conversation_id: str, part: str) -> str:
        return f"{self.prefix}{{{conversation_id}}}:{part}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.description} is closed", store=self.description)

    def load(self, conversation_id: str) -> Optional[StoredConversation]:
        """Read a conversation in one MULTI; ``None`` when it is missing or expired.

        See :meth:`ConversationStore.load <promptkit.stores.ConversationStore.load>`.
        """
        check_id(conversation_id)

        def read() -> Any:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.get(self._key(conversation_id, "meta"))
                pipe.lrange(self._key(conversation_id, "turns"), 0, -1)
                return pipe.execute()

        meta, turns = self._run("load", read)
        if meta is None or not turns:
            return None
        try:
            return StoredConversation(
                id=conversation_id,
                meta=ConversationMeta.from_json(_text(meta)),
                turns=[StoredTurn.from_json(_text(t)) for t in turns],
            )
        except StoreFormatError as error:
            reason = str(error)
        raise StoreFormatError(f"{self.description}: load failed: {reason}", store=self.description, operation="load")

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: ConversationMeta) -> None:
        """Append ``turn`` as turn ``index`` with one Lua script. See :class:`~promptkit.stores.ConversationStore`.

        Raises:
            StoreConflictError: the store holds a different number of turns than ``index``.
        """
        check_id(conversation_id)
        check_index(index)
        check_turn(turn, meta)
        ttl_ms = 0 if self.ttl is None else _ms(self.ttl)
        done, length = self._run(
            "append",
            lambda: self._append(
                keys=[self._key(conversation_id, "meta"), self._key(conversation_id, "turns")],
                args=[index, turn.to_json(), meta.to_json(), ttl_ms],
                client=self._client,
            ),
        )
        if not int(done):
            raise StoreConflictError(conversation_id, index, int(length))

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        """Take or renew the turn lock: ``SET lock owner PX ttl`` when it is free or ``owner``'s.

        See :meth:`ConversationStore.acquire <promptkit.stores.ConversationStore.acquire>`.
        """
        check_id(conversation_id)
        seconds = self.lock_ttl if ttl is None else check_seconds("ttl", ttl)
        key = self._key(conversation_id, "lock")
        return bool(int(self._run("acquire", lambda: self._acquire(keys=[key], args=[owner, _ms(seconds)], client=self._client))))

    def release(self, conversation_id: str, owner: str) -> None:
        """Release the turn lock if ``owner`` holds it (an atomic compare-and-delete)."""
        check_id(conversation_id)
        key = self._key(conversation_id, "lock")
        self._run("release", lambda: self._release(keys=[key], args=[owner], client=self._client))

    def list_ids(self) -> List[str]:
        """The ids of every unexpired conversation, sorted (a ``SCAN`` over the meta keys)."""
        head = f"{self.prefix}{{"
        tail = "}:meta"
        ids = set()
        pattern = _glob_escape(head) + "*" + _glob_escape(tail)
        for key in self._run("list", lambda: list(self._client.scan_iter(match=pattern, count=500))):
            text = _text(key)
            if text.startswith(head) and text.endswith(tail):
                ids.add(text[len(head) : -len(tail)])
        return sorted(ids)

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation's meta and turns; ``True`` when it existed."""
        check_id(conversation_id)

        def drop() -> Any:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.exists(self._key(conversation_id, "turns"))
                pipe.delete(self._key(conversation_id, "meta"), self._key(conversation_id, "turns"))
                return pipe.execute()

        existed, _ = self._run("delete", drop)
        return bool(existed)

    def close(self) -> None:
        """Close the store's connections (never those of a client you gave it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()
            self._client.connection_pool.disconnect()  # a client built on a given pool leaves it open
