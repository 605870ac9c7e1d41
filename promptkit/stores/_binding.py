"""The link between one Conversation and its store: locks, sync, atomic appends."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar, Union

from .._errors import ConfigurationError, PromptKitError, StoreError
from .._types import Response, ToolCall
from ._protocol import DEFAULT_LOCK_TTL, ConversationStore, new_owner
from ._values import ConversationMeta, StoreConflictError, StoredConversation, StoredTurn

if TYPE_CHECKING:  # pragma: no cover
    from .._history import History

__all__ = ["StoreBinding", "VANISHED", "Vanished", "bind", "pending_calls", "COMMIT_RETRY_BUDGET", "FAILED"]

logger = logging.getLogger(__name__)

COMMIT_RETRY_BUDGET = 1.5
"""Seconds within which a failed commit is tried again (a conflict never is), before its error ends the turn."""
_COMMIT_BACKOFF = (0.05, 0.1, 0.2, 0.4)  # then 0.4 s between attempts

FAILED = "error"
"""The ``finish_reason`` of a stored failed turn: no messages, only the tokens and cost it consumed."""

_T = TypeVar("_T")


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
        self._unreleased: Optional[str] = None  # a lock we could not release: ours to take again
        # Renew the turn lock three times per lifetime; custom stores without lock_ttl: the default.
        self._renew_every = float(getattr(store, "lock_ttl", DEFAULT_LOCK_TTL) or DEFAULT_LOCK_TTL) / 3
        self._renewed = 0.0

    def _call(self, operation: str, action: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call the store; whatever a custom store raises that is not promptkit's becomes a StoreError.

        (The built-in stores translate their backend's exceptions themselves.)
        """
        try:
            return action(*args, **kwargs)
        except PromptKitError:
            raise
        except Exception as exc:
            name = type(self.store).__name__
            raise StoreError(
                f"{name}: {operation} failed: {type(exc).__name__}: {exc}", store=name, operation=operation
            ) from exc

    def load(self) -> Optional[StoredConversation]:
        """The stored conversation, remembering how many turns it has."""
        stored = self._call("load", self.store.load, self.id)
        if stored is not None:
            self.stored_turns = len(stored.turns)
            self.meta = stored.meta
        return stored

    def restore(self, history: "History", stored: StoredConversation, system: Callable[[], Optional[str]]) -> None:
        """Give ``history`` the stored messages, totals and pending tool calls.

        ``system`` re-renders a stored system message (see :meth:`History.restore`).
        """
        history.restore(
            stored.messages(),
            usage=stored.usage_totals(),
            cost=stored.total_cost(),
            pending=[
                ToolCall.create(c["id"], c.get("function", {}).get("name", ""), c.get("function", {}).get("arguments", ""))
                for c in pending_calls(stored)
            ],
            system=system,
        )

    def catch_up(self, history: "History", system: Callable[[], Optional[str]]) -> None:
        """Before a turn (under the turn lock): bring ``history`` up to date with the store,
        taking other workers' turns, or starting afresh when the conversation was deleted."""
        stored = self.sync()
        if isinstance(stored, Vanished):
            # Deleted (or expired) in the store: start afresh there and here, keeping the totals paid.
            history.clear()
        elif stored is not None:
            self.restore(history, stored, system)

    def begin(self) -> bool:
        """Take the turn lock; ``False`` when another worker holds it."""
        # After a failed release the lock may still be ours: taking it again under the same name renews it.
        owner = self._unreleased or new_owner()
        try:
            taken = self._call("acquire", self.store.acquire, self.id, owner)
        except StoreError:
            self._unreleased = owner  # a request that timed out may still take the lock when the store wakes up
            raise
        if not taken:
            return False
        self._owner, self._unreleased = owner, None
        self._renewed = time.monotonic()
        return True

    def renew(self) -> None:
        """Extend the turn lock while a long turn goes on (throttled: cheap to call per read)."""
        if self._owner is not None and time.monotonic() - self._renewed >= self._renew_every:
            self._renewed = time.monotonic()
            try:
                self._call("acquire", self.store.acquire, self.id, self._owner)
            except StoreError:  # the reply goes on; the commit will tell whether the store is back
                logger.warning("could not renew the turn lock of conversation %s", self.id, exc_info=True)

    def sync(self) -> Union[StoredConversation, None, "Vanished"]:
        """What changed in the store since we last looked.

        Returns:
            The stored conversation when other workers added turns; ``VANISHED``
            when it was deleted (or expired) after we stored turns, so the
            conversation starts afresh; ``None`` when nothing changed.
        """
        stored = self._call("load", self.store.load, self.id)
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
        """Store a committed turn at the next index, trying again within :data:`COMMIT_RETRY_BUDGET`.

        Raises:
            StoreConflictError: another worker stored a turn at this index (never retried).
            StoreError: the store still failed when the budget ran out (``attempts`` says how often it was tried).
        """
        meta = self._meta(system_prompt, model)
        turn = StoredTurn.from_response(messages, response)
        deadline = time.monotonic() + COMMIT_RETRY_BUDGET
        attempt = 0
        while True:
            attempt += 1
            try:
                self._call("append", self.store.append_turn, self.id, turn, index=self.stored_turns, meta=meta)
                break
            except StoreConflictError as conflict:
                # A failed attempt may have been written after all (the answer was lost): that is no conflict.
                if attempt > 1 and conflict.stored == self.stored_turns + 1 and self._landed(turn):
                    break
                raise
            except StoreError as error:
                delay = _COMMIT_BACKOFF[min(attempt, len(_COMMIT_BACKOFF)) - 1]
                if time.monotonic() + delay >= deadline:
                    error.attempts = attempt
                    raise
                logger.warning("storing a turn of conversation %s failed (%s); trying again in %.2fs", self.id, error, delay)
                time.sleep(delay)  # a short, bounded backoff on the worker thread; the reply is already delivered
        self._stored(meta)

    def _meta(self, system_prompt: Optional[str], model: str) -> ConversationMeta:
        """The conversation's stored meta, or the one its first stored turn creates."""
        return self.meta or ConversationMeta(system_prompt=system_prompt, created_at=time.time(), model=model)

    def _stored(self, meta: ConversationMeta) -> None:
        """One more turn is in the store."""
        self.meta = meta
        self.stored_turns += 1

    def _landed(self, turn: StoredTurn) -> bool:
        try:
            stored = self._call("load", self.store.load, self.id)
        except StoreError:
            return False
        return stored is not None and len(stored.turns) == self.stored_turns + 1 and stored.turns[-1] == turn

    def record_failure(self, response: Response, *, system_prompt: Optional[str], model: str) -> bool:
        """Store the tokens and cost of a failed turn as a turn without messages (one attempt).

        Returns:
            Whether it was stored; ``False`` (logged) when the store refused,
            in which case the tokens count in this process only.
        """
        meta = self._meta(system_prompt, model)
        turn = StoredTurn(
            messages=[],
            usage=response.usage,
            cost=response.cost,
            latency_ms=response.latency_ms,
            finish_reason=FAILED,
            model=response.model,
        )
        try:
            self._call("append", self.store.append_turn, self.id, turn, index=self.stored_turns, meta=meta)
        except StoreError as error:
            logger.warning("the tokens of a failed turn of conversation %s were not stored: %s", self.id, error)
            return False
        self._stored(meta)
        return True

    def end(self) -> None:
        """Release the turn lock (never raises: the lock also expires on its own, and this binding may take it again)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            try:
                self._call("release", self.store.release, self.id, owner)
            except Exception:  # the lock expires anyway; the turn's outcome matters more
                self._unreleased = owner
                logger.warning("could not release the turn lock of conversation %s", self.id, exc_info=True)


def bind(store: Any, conversation_id: str) -> StoreBinding:
    """A binding of ``conversation_id`` to ``store``.

    Raises:
        ConfigurationError: ``store`` does not implement :class:`~promptkit.stores.ConversationStore`.
    """
    if not isinstance(store, ConversationStore):
        raise ConfigurationError(f"store must implement promptkit.stores.ConversationStore, got {store!r}")
    return StoreBinding(store, conversation_id)


def pending_calls(stored: StoredConversation) -> List[Dict[str, Any]]:
    """The tool calls of the last stored turn that have no result yet (``tool_calls`` entries).

    Failed turns (which store no messages) are skipped: the calls they did not answer are still pending.
    """
    turns = [turn for turn in stored.turns if turn.finish_reason != FAILED]
    if not turns or turns[-1].finish_reason != "tool_calls":
        return []
    messages = turns[-1].messages
    answered = {m.get("tool_call_id") for m in messages if m.get("role") == "tool"}
    calls: List[Dict[str, Any]] = []
    for message in messages:
        if message.get("role") == "assistant":
            calls = [c for c in message.get("tool_calls") or [] if c.get("id") not in answered]
    return calls
