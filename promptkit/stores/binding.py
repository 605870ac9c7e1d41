"""The link between one Conversation and its store: locks, sync, atomic appends."""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from ..types import Response
from .protocol import DEFAULT_LOCK_TTL, ConversationStore, new_owner
from .values import ConversationMeta, StoredConversation, StoredTurn

__all__ = ["StoreBinding", "VANISHED", "Vanished", "pending_calls"]

logger = logging.getLogger(__name__)


class Vanished:
    """The type of :data:`VANISHED`."""


VANISHED = Vanished()
"""What :meth:`StoreBinding.sync` returns when the stored conversation was deleted or expired."""


class StoreBinding:
    """One conversation's view of a store.

    A turn takes the store's turn lock (:meth:`begin`), brings the local
    history up to date with turns other workers committed (:meth:`sync`),
    appends its own turn atomically at the index it expects (:meth:`append`),
    and lets the lock go (:meth:`end`). The index check makes two workers that
    both believe they hold the lock (an expired one) fail cleanly, never
    interleave.
    """

    def __init__(self, store: ConversationStore, conversation_id: str) -> None:
        self.store = store
        self.id = conversation_id
        self.stored_turns = 0
        self.meta: Optional[ConversationMeta] = None
        self._owner: Optional[str] = None
        # Renew the turn lock three times per lifetime; custom stores without lock_ttl: the default.
        self._renew_every = float(getattr(store, "lock_ttl", DEFAULT_LOCK_TTL) or DEFAULT_LOCK_TTL) / 3
        self._renewed = 0.0

    def load(self) -> Optional[StoredConversation]:
        """The stored conversation, remembering how many turns it has."""
        stored = self.store.load(self.id)
        if stored is not None:
            self.stored_turns = len(stored.turns)
            self.meta = stored.meta
        return stored

    def begin(self) -> bool:
        """Take the turn lock; ``False`` when another worker holds it."""
        owner = new_owner()
        if not self.store.acquire(self.id, owner):
            return False
        self._owner = owner
        self._renewed = time.monotonic()
        return True

    def renew(self) -> None:
        """Extend the turn lock while a long turn goes on (throttled: cheap to call per read)."""
        if self._owner is not None and time.monotonic() - self._renewed >= self._renew_every:
            self._renewed = time.monotonic()
            self.store.acquire(self.id, self._owner)

    def sync(self) -> Union[StoredConversation, None, "Vanished"]:
        """What changed in the store since we last looked.

        Returns:
            The stored conversation when other workers added turns; ``VANISHED``
            when it was deleted (or expired) after we stored turns, so the
            conversation starts afresh; ``None`` when nothing changed.
        """
        stored = self.store.load(self.id)
        if stored is None:
            if self.stored_turns:
                self.stored_turns, self.meta = 0, None
                return VANISHED
            return None
        if len(stored.turns) == self.stored_turns:
            return None
        self.stored_turns = len(stored.turns)
        self.meta = stored.meta
        return stored

    def append(self, messages: Sequence[Mapping[str, Any]], response: Response, *, system_prompt: Optional[str], model: str) -> None:
        """Store a committed turn at the next index (raises ``StoreConflictError`` if it is taken)."""
        meta = self.meta or ConversationMeta(system_prompt=system_prompt, created_at=time.time(), model=model)
        self.store.append_turn(self.id, StoredTurn.from_response(messages, response), index=self.stored_turns, meta=meta)
        self.meta = meta
        self.stored_turns += 1

    def end(self) -> None:
        """Release the turn lock (never raises: the lock also expires on its own)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            try:
                self.store.release(self.id, owner)
            except Exception:  # the lock expires anyway; the turn's outcome matters more
                logger.warning("could not release the turn lock of conversation %s", self.id, exc_info=True)


def pending_calls(stored: StoredConversation) -> List[Dict[str, Any]]:
    """The tool calls of the last stored turn that have no result yet (``tool_calls`` entries)."""
    if not stored.turns or stored.turns[-1].finish_reason != "tool_calls":
        return []
    messages = stored.turns[-1].messages
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    calls: List[Dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "assistant":
            calls = [c for c in message.get("tool_calls") or [] if c.get("id") not in answered]
    return calls
