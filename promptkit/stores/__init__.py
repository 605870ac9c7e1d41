"""Conversation stores: history that survives restarts and is shared by many workers.

* :class:`MemoryStore`: this process only (tests, scripts).
* :class:`SQLiteStore`: one file, shared by the processes of one machine.
* :class:`RedisStore`: shared by workers on any number of hosts
  (``pip install 'promptkit[redis]'``).

Write your own by implementing :class:`ConversationStore`; the values it
stores are :class:`StoredTurn` and :class:`ConversationMeta`, as versioned JSON.
"""

from .memory_store import MemoryStore
from .protocol import DEFAULT_LOCK_TTL, DEFAULT_STORE_TIMEOUT, ConversationStore, new_owner, turn_lock
from .redis_store import RedisStore
from .spec import open_store
from .sqlite_store import SQLiteStore
from .values import (
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
