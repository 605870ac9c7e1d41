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
from typing import Any, Callable, List, Optional, TypeVar

from .._errors import ConfigurationError, StoreError
from .._redis import connect, failure_cause, ms
from .._redis import text as _text
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

_T = TypeVar("_T")

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

def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


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
        self._redis, link = connect(url_or_client, "RedisStore", self.timeout)
        self._given, self._client, self._owns_client = link.given, link.client, link.owned
        self._secret = link.secret
        self.description = f"RedisStore({link.where})"
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
            cause = failure_cause(self._redis, exc, self.timeout, self._secret)
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
        ttl_ms = 0 if self.ttl is None else ms(self.ttl)
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
        return bool(int(self._run("acquire", lambda: self._acquire(keys=[key], args=[owner, ms(seconds)], client=self._client))))

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
