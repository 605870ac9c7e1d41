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
from typing import Any, List, Optional

from ..errors import ConfigurationError
from .protocol import DEFAULT_LOCK_TTL, check_id, check_index, check_optional_seconds, check_seconds, check_turn
from .values import ConversationMeta, StoreConflictError, StoredConversation, StoredTurn, StoreError

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
    ) -> None:
        self.ttl = check_optional_seconds("ttl", ttl)
        self.lock_ttl = check_seconds("lock_ttl", lock_ttl)
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {prefix!r}")
        self.prefix = prefix
        if isinstance(url_or_client, str):
            try:
                import redis
            except ImportError:
                raise ConfigurationError(_MISSING_REDIS) from None
            self._client = redis.Redis.from_url(url_or_client)
            self._owns_client = True
        elif hasattr(url_or_client, "register_script"):
            self._client = url_or_client
            self._owns_client = False
        else:
            raise ConfigurationError(
                f"RedisStore needs a redis URL or a redis.Redis client, got {type(url_or_client).__name__}"
            )
        self._append = self._client.register_script(_APPEND)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._release = self._client.register_script(_RELEASE)
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, ttl={self.ttl})"

    @property
    def client(self) -> Any:
        """The redis-py client the store uses."""
        return self._client

    def _key(self, conversation_id: str, part: str) -> str:
        return f"{self.prefix}{{{conversation_id}}}:{part}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this RedisStore is closed")

    def load(self, conversation_id: str) -> Optional[StoredConversation]:
        """Read a conversation in one MULTI; ``None`` when it is missing or expired.

        See :meth:`ConversationStore.load <promptkit.stores.ConversationStore.load>`.
        """
        check_id(conversation_id)
        self._check_open()
        with self._client.pipeline(transaction=True) as pipe:
            pipe.get(self._key(conversation_id, "meta"))
            pipe.lrange(self._key(conversation_id, "turns"), 0, -1)
            meta, turns = pipe.execute()
        if meta is None or not turns:
            return None
        return StoredConversation(
            id=conversation_id,
            meta=ConversationMeta.from_json(_text(meta)),
            turns=[StoredTurn.from_json(_text(t)) for t in turns],
        )

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: ConversationMeta) -> None:
        """Append ``turn`` as turn ``index`` with one Lua script. See :class:`~promptkit.stores.ConversationStore`.

        Raises:
            StoreConflictError: the store holds a different number of turns than ``index``.
        """
        check_id(conversation_id)
        check_index(index)
        check_turn(turn, meta)
        self._check_open()
        ttl_ms = 0 if self.ttl is None else _ms(self.ttl)
        done, length = self._append(
            keys=[self._key(conversation_id, "meta"), self._key(conversation_id, "turns")],
            args=[index, turn.to_json(), meta.to_json(), ttl_ms],
        )
        if not int(done):
            raise StoreConflictError(conversation_id, index, int(length))

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        """Take or renew the turn lock: ``SET lock owner PX ttl`` when it is free or ``owner``'s.

        See :meth:`ConversationStore.acquire <promptkit.stores.ConversationStore.acquire>`.
        """
        check_id(conversation_id)
        seconds = self.lock_ttl if ttl is None else check_seconds("ttl", ttl)
        self._check_open()
        return bool(int(self._acquire(keys=[self._key(conversation_id, "lock")], args=[owner, _ms(seconds)])))

    def release(self, conversation_id: str, owner: str) -> None:
        """Release the turn lock if ``owner`` holds it (an atomic compare-and-delete)."""
        check_id(conversation_id)
        self._check_open()
        self._release(keys=[self._key(conversation_id, "lock")], args=[owner])

    def list_ids(self) -> List[str]:
        """The ids of every unexpired conversation, sorted (a ``SCAN`` over the meta keys)."""
        self._check_open()
        head = f"{self.prefix}{{"
        tail = "}:meta"
        ids = set()
        for key in self._client.scan_iter(match=_glob_escape(head) + "*" + _glob_escape(tail), count=500):
            text = _text(key)
            if text.startswith(head) and text.endswith(tail):
                ids.add(text[len(head) : -len(tail)])
        return sorted(ids)

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation's meta and turns; ``True`` when it existed."""
        check_id(conversation_id)
        self._check_open()
        with self._client.pipeline(transaction=True) as pipe:
            pipe.exists(self._key(conversation_id, "turns"))
            pipe.delete(self._key(conversation_id, "meta"), self._key(conversation_id, "turns"))
            existed, _ = pipe.execute()
        return bool(existed)

    def close(self) -> None:
        """Close the client if the store created it from a URL. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()
