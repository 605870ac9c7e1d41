"""MemoryStore: conversations in this process's memory, for tests and single-process apps."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import attrs

from ._protocol import DEFAULT_LOCK_TTL, check_id, check_index, check_optional_seconds, check_seconds, check_turn
from ._values import ConversationMeta, StoreConflictError, StoredConversation, StoredTurn, StoreError

__all__ = ["MemoryStore"]

logger = logging.getLogger(__name__)


@attrs.define
class _Entry:
    meta_json: str
    turns: List[str]  # JSON text: a loaded turn never aliases the stored one
    expires_at: Optional[float]


class MemoryStore:
    """A :class:`~promptkit.stores.ConversationStore` in memory, guarded by one lock.

    Thread-safe; nothing survives the process. Turns are kept as their JSON,
    so what ``load`` returns never shares state with the store, just as with
    the persistent stores.

    Args:
        lock_ttl: default lifetime of a turn lock, in seconds.
        ttl: forget a conversation this many seconds after its last
            committed turn; ``None`` keeps it for the life of the store.
        clock: the time source for expiries (``time.monotonic`` by default;
            tests may inject a fake clock).
    """

    def __init__(
        self,
        *,
        lock_ttl: float = DEFAULT_LOCK_TTL,
        ttl: Optional[float] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lock_ttl = check_seconds("lock_ttl", lock_ttl)
        self.ttl = check_optional_seconds("ttl", ttl)
        self._clock = clock
        self._mutex = threading.Lock()
        self._convs: Dict[str, _Entry] = {}
        self._locks: Dict[str, Tuple[str, float]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStore(conversations={len(self._convs)}, ttl={self.ttl})"

    def _live(self, conversation_id: str, now: float) -> Optional[_Entry]:
        # Called with the mutex held; drops an expired conversation on sight.
        entry = self._convs.get(conversation_id)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
            del self._convs[conversation_id]
            return None
        return entry

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("this MemoryStore is closed")

    def load(self, conversation_id: str) -> Optional[StoredConversation]:
        """Read a conversation; ``None`` when it is missing or expired.

        See :meth:`ConversationStore.load <promptkit.stores.ConversationStore.load>`.
        """
        check_id(conversation_id)
        with self._mutex:
            self._check_open()
            entry = self._live(conversation_id, self._clock())
            if entry is None:
                return None
            meta_json, turns = entry.meta_json, list(entry.turns)
        return StoredConversation(
            id=conversation_id,
            meta=ConversationMeta.from_json(meta_json),
            turns=[StoredTurn.from_json(t) for t in turns],
        )

    def append_turn(self, conversation_id: str, turn: StoredTurn, *, index: int, meta: ConversationMeta) -> None:
        """Append ``turn`` as turn ``index``, atomically. See :class:`~promptkit.stores.ConversationStore`.

        Raises:
            StoreConflictError: the store holds a different number of turns than ``index``.
        """
        check_id(conversation_id)
        check_index(index)
        check_turn(turn, meta)
        turn_json = turn.to_json()
        with self._mutex:
            self._check_open()
            now = self._clock()
            entry = self._live(conversation_id, now)
            stored = 0 if entry is None else len(entry.turns)
            if stored != index:
                raise StoreConflictError(conversation_id, index, stored)
            if entry is None:
                entry = self._convs[conversation_id] = _Entry(meta.to_json(), [], None)
            entry.turns.append(turn_json)
            entry.expires_at = None if self.ttl is None else now + self.ttl

    def acquire(self, conversation_id: str, owner: str, ttl: Optional[float] = None) -> bool:
        """Take or renew the turn lock. See :class:`~promptkit.stores.ConversationStore`."""
        check_id(conversation_id)
        seconds = self.lock_ttl if ttl is None else check_seconds("ttl", ttl)
        with self._mutex:
            self._check_open()
            now = self._clock()
            held = self._locks.get(conversation_id)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._locks[conversation_id] = (owner, now + seconds)
            return True

    def release(self, conversation_id: str, owner: str) -> None:
        """Release the turn lock if ``owner`` holds it. See :class:`~promptkit.stores.ConversationStore`."""
        check_id(conversation_id)
        with self._mutex:
            held = self._locks.get(conversation_id)
            if held is not None and held[0] == owner:
                del self._locks[conversation_id]

    def list_ids(self) -> List[str]:
        """The ids of every unexpired conversation, sorted."""
        with self._mutex:
            self._check_open()
            now = self._clock()
            return sorted(cid for cid in list(self._convs) if self._live(cid, now) is not None)

    def delete(self, conversation_id: str) -> bool:
        """Delete a conversation; ``True`` when it existed (and had not expired)."""
        check_id(conversation_id)
        with self._mutex:
            self._check_open()
            existed = self._live(conversation_id, self._clock()) is not None
            self._convs.pop(conversation_id, None)
            return existed

    def purge_expired(self) -> int:
        """Drop every expired conversation and lock now; returns how many conversations went."""
        with self._mutex:
            now = self._clock()
            gone = [cid for cid, e in self._convs.items() if e.expires_at is not None and e.expires_at <= now]
            for cid in gone:
                del self._convs[cid]
            for cid in [cid for cid, (_, until) in self._locks.items() if until <= now]:
                del self._locks[cid]
            return len(gone)

    def close(self) -> None:
        """Drop everything; later calls raise :class:`~promptkit.stores.StoreError`. Idempotent."""
        with self._mutex:
            self._closed = True
            self._convs.clear()
            self._locks.clear()
