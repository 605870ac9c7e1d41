"""Conversation stores: history that survives restarts and is shared by many workers.

* :class:`MemoryStore`: this process only (tests, scripts).
* :class:`SQLiteStore`: one file, shared by the processes of one machine.
* :class:`RedisStore`: shared by workers on any number of hosts
  (``pip install 'promptkit[redis]'``).

Write your own by implementing :class:`ConversationStore`; the values it
stores are :class:`StoredTurn` and :class:`ConversationMeta`, as versioned JSON.
"""

from ._memory_store import MemoryStore
from ._protocol import DEFAULT_LOCK_TTL, DEFAULT_STORE_TIMEOUT, ConversationStore, new_owner, turn_lock
from ._redis_store import RedisStore
from ._spec import open_store
from ._sqlite_store import SQLiteStore
from ._values import (
    FORMAT_VERSION,
    ConversationMeta,
    StoreConflictError,
    StoredConversation,
    StoredTurn,
    StoreError,
    StoreFormatError,
)

__all__ = [
    "ConversationStore",
    "MemoryStore",
    "SQLiteStore",
    "RedisStore",
    "StoredTurn",
    "ConversationMeta",
    "StoredConversation",
    "StoreError",
    "StoreConflictError",
    "StoreFormatError",
    "FORMAT_VERSION",
    "DEFAULT_LOCK_TTL",
    "DEFAULT_STORE_TIMEOUT",
    "new_owner",
    "turn_lock",
    "open_store",
]
