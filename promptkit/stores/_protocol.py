"""The store protocol that every conversation store implements, and lock helpers.

A store keeps a conversation as its meta and an ordered list of committed
turns. Every turn is written with one atomic
:meth:`ConversationStore.append_turn` that names the turn's position, so two
workers that race on one conversation are detected (one of them gets
:class:`~promptkit.stores.StoreConflictError`) and never interleaved.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from typing import Any, Iterator, List, Optional, Protocol, runtime_checkable

from .._errors import ConfigurationError, ConversationBusyError
from ._values import ConversationMeta, StoredConversation, StoredTurn

__all__ = ["DEFAULT_LOCK_TTL", "DEFAULT_STORE_TIMEOUT", "ConversationStore", "new_owner", "turn_lock"]

DEFAULT_LOCK_TTL = 60.0
"""Seconds a turn lock lives unless renewed or released."""

DEFAULT_STORE_TIMEOUT = 5.0
"""Seconds a store operation may wait for its backend (an answer from Redis, SQLite's write lock)."""


@runtime_checkable
class ConversationStore(Protocol):
    """Where conversations live between turns, processes and restarts.

    Implement these methods to write your own store. Every method must be
    safe to call from several threads at once, and a store shared by several
    processes must keep its guarantees across them.

    The guarantees promptkit relies on:

    * :meth:`append_turn` is atomic: it writes the whole turn (and, for the
      first turn, the meta) or nothing, and it refuses a turn whose ``index``
      is not the number of turns already stored.
    * A conversation exists from its first committed turn on. A store never
      holds a conversation with zero turns.
    * :meth:`acquire` is a lock with an expiry, so a worker killed mid-turn
      does not lock its conversation forever.
    * A store created with ``ttl`` forgets a conversation ``ttl`` seconds
      after its last committed turn; until then it behaves as if it had none.
    * A failing backend raises :class:`~promptkit.StoreError` (never its
      driver's own exceptions), naming the store and the operation, within a
      bounded time (``timeout``, :data:`DEFAULT_STORE_TIMEOUT` by default).
      promptkit turns any other exception a store raises into one too.
    """

    def load(self, conversation_id: str) -> Optional[StoredConversation]:
        """Read a conversation.

        Args:
            conversation_id: the conversation.

        Returns:
            The meta and every committed turn, oldest first, read as one
            consistent snapshot; ``None`` when there is no such conversation
            (never written, deleted, or expired).

        Raises:
            StoreFormatError: the stored data is from a newer major format version.
        """
        ...

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: ConversationMeta) -> None:
        """Atomically append ``turn`` as turn number ``index`` (0-based).

        When the conversation does not exist and ``index == 0``, it is created
        with ``meta``; for later turns ``meta`` is ignored (the first one is
        kept). The check of the turn count and the write are one atomic step.

        Args:
            conversation_id: the conversation.
            turn: the committed turn.
            index: the number of turns the writer believes are stored.
            meta: the conversation's meta, written with the first turn.

        Raises:
            StoreConflictError: the store holds a different number of turns
                than ``index``; nothing was written.
        """
        ...

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        """Take the conversation's turn lock for ``owner``, for ``ttl`` seconds.

        Calling it again while ``owner`` holds the lock renews the lock for
        another ``ttl``. Never blocks waiting for another owner.

        Args:
            conversation_id: the conversation (it need not exist yet).
            owner: a unique name for the lock holder, e.g. from :func:`new_owner`.
            ttl: seconds until the lock expires; ``None`` uses the store's
                ``lock_ttl`` (60 s by default).

        Returns:
            ``True`` when ``owner`` now holds the lock, ``False`` when another
            owner holds an unexpired one.
        """
        ...

    def release(self, conversation_id: str, owner: str) -> None:
        """Release the turn lock if ``owner`` holds it; do nothing otherwise.

        Args:
            conversation_id: the conversation.
            owner: the name given to :meth:`acquire`.
        """
        ...

    def list_ids(self) -> List[str]:
        """The ids of every stored, unexpired conversation, sorted."""
        ...

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation and its turns (not its turn lock).

        Returns:
            Whether the conversation existed.
        """
        ...

    def close(self) -> None:
        """Release the store's connections. Idempotent."""
        ...


# -- helpers ---------------------------------------------------------------------


def new_owner() -> str:
    """A lock owner name unique to this call: host, process, thread and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"


@contextlib.contextmanager
def turn_lock(
    store: ConversationStore, conversation_id: str, *, owner: Optional[str] = None, ttl: Optional[float] = None
) -> Iterator[str]:
    """Hold a conversation's turn lock for the ``with`` block.

    Args:
        store: the store.
        conversation_id: the conversation.
        owner: the lock owner; a fresh :func:`new_owner` by default.
        ttl: the lock's lifetime; the store's ``lock_ttl`` by default.

    Yields:
        The owner name (pass it to ``store.acquire`` to renew the lock).

    Raises:
        ConversationBusyError: another owner holds the lock.
    """
    name = owner or new_owner()
    if not store.acquire(conversation_id, name, ttl):
        raise ConversationBusyError(
            f"conversation {conversation_id} has a turn in flight in another worker; wait for it to end"
        )
    try:
        yield name
    finally:
        store.release(conversation_id, name)


def check_id(conversation_id: Any) -> str:
    """Validate a conversation id (a non-empty str)."""
    if not isinstance(conversation_id, str) or not conversation_id:
        raise ConfigurationError(f"conversation_id must be a non-empty str, got {conversation_id!r}")
    return conversation_id


def check_index(index: Any) -> int:
    """Validate a turn index (an int >= 0)."""
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ConfigurationError(f"index must be an int >= 0, got {index!r}")
    return index


def check_seconds(name: str, value: Any) -> float:
    """Validate a positive number of seconds."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value != value:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_optional_seconds(name: str, value: Any) -> Optional[float]:
    """Validate a positive number of seconds or ``None``."""
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or value != value:
        raise ConfigurationError(f"{name} must be a positive number of seconds or None, got {value!r}")
    return float(value)


def check_turn(turn: Any, meta: Any) -> None:
    """Validate append_turn's value arguments."""
    if not isinstance(turn, StoredTurn):
        raise ConfigurationError(f"turn must be a StoredTurn, got {type(turn).__name__}")
    if not isinstance(meta, ConversationMeta):
        raise ConfigurationError(f"meta must be a ConversationMeta, got {type(meta).__name__}")
