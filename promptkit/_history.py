"""A conversation's committed state: messages, pending tool calls, staged results, totals.

One lock guards all of it, so a reader on any thread sees either the state
before a turn was committed or the state after, never half of it. The
conversation decides *when* a turn commits or fails (and whether its store
took it); this module only records the outcome.
"""

from __future__ import annotations

import copy
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

from ._schema import json_fallback
from ._validate import check_text, to_json
from ._errors import ConfigurationError, ToolError
from ._types import Response, ToolCall, ToolResult, Usage

__all__ = ["History"]


class History:
    """Committed messages (OpenAI dicts, system prompt first), the last reply's
    unanswered tool calls and the results staged for them, usage and cost
    totals, and the last response. Safe to use from any thread.

    The totals count every turn, failed ones included. The tokens of turns
    that are in no store (failed before the conversation was stored, or
    refused by the store) are also kept apart, so that a restore from the
    store (:meth:`restore`) keeps counting them.
    """

    def __init__(self, system: Optional[str] = None) -> None:
        self._lock = threading.Lock()  # guards every field below
        self._messages: List[Dict[str, Any]] = []
        if system is not None:
            self._messages.append({"role": "system", "content": system})
        self._usage = Usage()
        self._cost = 0.0
        self._pending: Dict[str, ToolCall] = {}
        self._results: Dict[str, ToolResult] = {}
        self._last: Optional[Response] = None
        self._unstored_usage = Usage()
        self._unstored_cost = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)

    # -- reading -----------------------------------------------------------------
    def messages(self) -> List[Dict[str, Any]]:
        """A deep copy of the committed messages."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def snapshot(self) -> List[Dict[str, Any]]:
        """The committed messages for a turn to send (a shallow copy)."""
        # Enough for a turn: committed message dicts are never changed in place, only replaced.
        with self._lock:
            return list(self._messages)

    @property
    def usage(self) -> Usage:
        """Tokens of every turn so far."""
        with self._lock:
            return self._usage

    @property
    def cost(self) -> float:
        """USD cost of every turn so far."""
        with self._lock:
            return self._cost

    @property
    def last(self) -> Optional[Response]:
        """The Response of the last turn that ended with ``done``."""
        with self._lock:
            return self._last

    def pending(self) -> List[ToolCall]:
        """The last reply's tool calls that have no staged result yet."""
        with self._lock:
            return [call for call_id, call in self._pending.items() if call_id not in self._results]

    def system_message(self) -> Optional[str]:
        """The content of the system message, or ``None`` when the history has none."""
        with self._lock:
            return self._messages[0]["content"] if self._messages and self._messages[0]["role"] == "system" else None

    # -- changing ----------------------------------------------------------------
    def replace_system(self, render: Callable[[], Optional[str]]) -> None:
        """Re-render the system message, if the history has one (``render`` returning ``None`` keeps it).

        ``render`` is called under this history's lock, so of two concurrent
        calls the later one writes what it rendered last.
        """
        with self._lock:
            self._replace_system(render)

    def _replace_system(self, render: Callable[[], Optional[str]]) -> None:
        if self._messages and self._messages[0].get("role") == "system":
            content = render()
            if content is not None:
                self._messages[0] = {"role": "system", "content": content}

    def add_tool_result(self, call_id: str, result: Any, *, is_error: bool = False) -> None:
        """Stage the result of a pending tool call; a non-str ``result`` is JSON-encoded.

        Raises:
            ToolError: no pending call has this id.
            ConfigurationError: the result cannot be sent as text or JSON.
        """
        with self._lock:
            call = self._pending.get(call_id)
            if call is None:
                known = ", ".join(self._pending) or "none"
                raise ToolError(f"no pending tool call with id {call_id!r} (pending: {known})")
            what = f"the result of tool call {call_id!r}"
            if isinstance(result, str):
                content = result
                check_text(content, what)
            else:
                content = to_json(result, what, default=json_fallback)
            self._results[call_id] = ToolResult(call_id, call.name, content, is_error)

    def start(self, message: Union[None, str, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
        """The messages a new turn adds before the reply: the staged tool results, then the user message.

        ``message`` is the user message's ``content``, already checked: a str,
        or a list of content parts (text and images) that the history takes over.

        Raises:
            ToolError: a pending tool call has no result.
            ConfigurationError: ``message`` is ``None`` and no tool result is staged.
        """
        with self._lock:
            missing = [call_id for call_id in self._pending if call_id not in self._results]
            if missing:
                raise ToolError(
                    "the last reply has tool calls without results: "
                    + ", ".join(missing)
                    + "; call add_tool_result(call_id, result) for each before continuing"
                )
            staged = [self._results[call_id].to_message() for call_id in self._pending]
        if message is None and not staged:
            raise ConfigurationError("send() needs a message (None only continues after add_tool_result)")
        if message is not None:
            staged.append({"role": "user", "content": message})
        return staged

    def commit(self, messages: List[Dict[str, Any]], response: Response) -> None:
        """Record a turn that ended with ``done``: its messages, its totals, its unanswered tool calls.

        The history takes ``messages`` over: the caller (the turn) must not change them afterwards.
        """
        with self._lock:
            # The turn built these dicts for this commit and keeps none of them: no copy needed
            # (readers get deep copies from messages()).
            self._messages.extend(messages)
            self._usage = self._usage + response.usage
            self._cost += response.cost
            self._last = response
            self._results.clear()
            self._pending = {}
            if response.finish_reason == "tool_calls":
                answered = {r.call_id for r in response.tool_results}
                self._pending = {c.id: c for c in response.tool_calls if c.id not in answered}

    def fail(self, partial: Optional[Response]) -> None:
        """Note a turn that commits nothing: a cancelled one becomes the last response.

        Its tokens are counted by :meth:`record`.
        """
        if partial is not None and partial.finish_reason == "cancelled":
            with self._lock:
                self._last = partial

    def record(self, response: Response, *, stored: bool) -> None:
        """Add the tokens and cost of a turn that committed no messages to the totals.

        ``stored``: whether the store holds them (as a failed turn); if not,
        they are also counted apart, to survive a :meth:`restore`.
        """
        with self._lock:
            self._usage = self._usage + response.usage
            self._cost += response.cost
            if not stored:
                self._unstored_usage = self._unstored_usage + response.usage
                self._unstored_cost += response.cost

    def restore(
        self,
        messages: List[Dict[str, Any]],
        *,
        usage: Usage,
        cost: float,
        pending: Iterable[ToolCall],
        system: Callable[[], Optional[str]],
    ) -> None:
        """Replace the state with a stored one (another worker's turns), keeping the unstored totals.

        ``system`` re-renders a stored system message: this object's variables
        may have changed since the store saw the prompt.
        """
        with self._lock:
            self._messages = messages
            self._replace_system(system)
            self._usage = usage + self._unstored_usage
            self._cost = cost + self._unstored_cost
            self._results.clear()
            self._pending = {call.id: call for call in pending}

    def clear(self) -> None:
        """Start afresh (the stored conversation was deleted): drop all but the system message,
        and every pending call and staged result; keep the totals, they were paid."""
        with self._lock:
            self._messages = self._messages[:1] if self._messages and self._messages[0]["role"] == "system" else []
            self._pending, self._results = {}, {}
