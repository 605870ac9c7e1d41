"""Conversation: history, one turn at a time, commits when a turn's stream ends.

A successful turn commits the user message, the assistant message(s) with
their tool calls, and the tool results, all at once. A failed turn commits
nothing (its tokens still count in the totals). A cancelled turn commits the
user message and the partial assistant text, as chat UIs do after "stop".
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

import attrs

from ._schema import json_fallback
from ._validate import check_budget, check_params, check_text, to_json
from .errors import BudgetExceededError, ConfigurationError, ConversationBusyError, StoreError, ToolError
from .prompts import placeholders, render
from .stream import Stream, StreamControl
from .tools import ToolRegistry
from .turn import Turn, TurnSettings
from .types import Response, ToolCall, ToolResult, Usage

if TYPE_CHECKING:  # pragma: no cover
    from .stores.binding import StoreBinding
    from .stores.protocol import ConversationStore
    from .stores.values import StoredConversation
    from .transport import Transport

__all__ = ["Conversation"]

logger = logging.getLogger(__name__)

# How long a new turn waits for a cancelled one to finish committing.
_CANCELLED_TURN_WAIT = 10.0
_RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "tools"})


class Conversation:
    """A chat with history. Create one with :meth:`promptkit.Client.conversation`.

    A Conversation runs one turn at a time: starting a second while one is in
    flight raises :class:`~promptkit.ConversationBusyError`. Reading
    ``messages``, ``usage`` and ``total_cost`` is safe from any thread.
    """

    def __init__(
        self,
        *,
        transport: "Transport",
        settings: TurnSettings,
        conversation_id: Optional[str] = None,
        system_prompt: Optional[str] = None,
        tools: Optional[Sequence[Any]] = None,
        max_cost: Optional[float] = None,
        variables: Optional[Mapping[str, Any]] = None,
        store: Optional["ConversationStore"] = None,
        stored_model: bool = False,
    ) -> None:
        max_cost = check_budget(max_cost)
        for key in settings.params:
            if key in _RESERVED_PARAMS:
                raise ConfigurationError(f"{key!r} is set by promptkit and cannot be passed as a request parameter")
        check_params(settings.params)
        check_text(system_prompt, "system_prompt", optional=True)
        if conversation_id is not None:
            check_text(conversation_id, "conversation_id")
            if not conversation_id:
                raise ConfigurationError("conversation_id must not be empty")
        self.id = conversation_id or f"conv_{time.time_ns()}"
        self._template = system_prompt
        self._variables: Dict[str, Any] = dict(variables or {})
        self.max_cost = max_cost
        self._transport = transport
        self._settings = settings
        self._tools = ToolRegistry(tools or ())
        self._lock = threading.Lock()  # guards the fields below
        self._busy = threading.Lock()  # held for the whole turn
        self._messages: List[Dict[str, Any]] = []
        if system_prompt:
            self._messages.append({"role": "system", "content": self._render(strict=False)})
        self._usage = Usage()
        self._cost = 0.0
        self._pending: Dict[str, ToolCall] = {}
        self._results: Dict[str, ToolResult] = {}
        self._last: Optional[Response] = None
        self._active: Optional[StreamControl] = None  # the in-flight turn's control
        self._unstored_usage = Usage()  # failed turns: counted here, not stored
        self._unstored_cost = 0.0
        self._binding: Optional["StoreBinding"] = None
        if store is not None:
            from .stores.binding import StoreBinding  # stores load only when used
            from .stores.protocol import ConversationStore

            if not isinstance(store, ConversationStore):
                raise ConfigurationError(f"store must implement promptkit.stores.ConversationStore, got {store!r}")
            self._binding = StoreBinding(store, self.id)
            stored = self._binding.load() if conversation_id else None
            if stored is not None:
                if system_prompt is not None and system_prompt != stored.meta.system_prompt:
                    logger.warning("conversation %s resumes with its stored system prompt, not the one given", self.id)
                self._template = stored.meta.system_prompt
                if stored_model and stored.meta.model:  # the caller named no model: keep the stored one
                    self._settings = attrs.evolve(self._settings, model=stored.meta.model)
                self._restore(stored)

    def _sync(self, binding: "StoreBinding") -> None:
        """Catch up with the store before a turn: other workers' turns, or a deletion."""
        from .stores.binding import VANISHED

        stored = binding.sync()
        if stored is VANISHED:
            # Deleted (or expired) in the store: start afresh there and here, keeping the totals paid.
            with self._lock:
                self._messages = self._messages[:1] if self._messages and self._messages[0]["role"] == "system" else []
                self._pending, self._results = {}, {}
        elif stored is not None:
            self._restore(stored)

    def _restore(self, stored: "StoredConversation") -> None:
        """Take history, totals and pending tool calls from the store."""
        from .stores.binding import pending_calls

        pending = pending_calls(stored)
        with self._lock:
            self._messages = stored.messages()
            if self._template and self._messages and self._messages[0]["role"] == "system":
                # Keep this object's prompt: set_var() may have changed it since the first turn.
                self._messages[0] = {"role": "system", "content": self._render_locked(strict=False)}
            self._usage = stored.usage_totals() + self._unstored_usage
            self._cost = stored.total_cost() + self._unstored_cost
            self._results.clear()
            self._pending = {
                c["id"]: ToolCall.create(c["id"], c.get("function", {}).get("name", ""), c.get("function", {}).get("arguments", ""))
                for c in pending
            }

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, messages={len(self._messages)})"

    # -- system prompt ---------------------------------------------------------
    @property
    def system_prompt(self) -> Optional[str]:
        """The system prompt with its ``{{variables}}`` filled in (as written when some are unset)."""
        return None if self._template is None else self._render(strict=False)

    @property
    def variables(self) -> Dict[str, Any]:
        """A copy of the system-prompt variables."""
        with self._lock:
            return dict(self._variables)

    def set_var(self, name: str, value: Any) -> None:
        """Set a system-prompt variable; the next turn sends the re-rendered prompt."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ConfigurationError(f"variable names are identifiers, got {name!r}")
        with self._lock:
            self._variables[name] = value
            if self._template and self._messages and self._messages[0].get("role") == "system":
                self._messages[0] = {"role": "system", "content": self._render_locked(strict=False)}

    def _render(self, *, strict: bool) -> str:
        with self._lock:
            return self._render_locked(strict=strict)

    def _render_locked(self, *, strict: bool) -> str:
        assert self._template is not None
        if strict:
            return render(self._template, self._variables)
        known = {name: self._variables[name] for name in placeholders(self._template) if name in self._variables}
        missing = {name: "{{" + name + "}}" for name in placeholders(self._template) if name not in known}
        return render(self._template, {**known, **missing})

    # -- state ---------------------------------------------------------------
    @property
    def messages(self) -> List[Dict[str, Any]]:
        """A copy of the committed history as OpenAI message dicts (system prompt first)."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def _history_snapshot(self) -> List[Dict[str, Any]]:
        # A shallow copy is enough for a turn: committed message dicts are never changed in place.
        with self._lock:
            return list(self._messages)

    @property
    def usage(self) -> Usage:
        """Tokens of every turn so far, failed and cancelled ones included."""
        with self._lock:
            return self._usage

    @property
    def total_cost(self) -> float:
        """USD cost of every turn so far, failed and cancelled ones included."""
        with self._lock:
            return self._cost

    @property
    def last_response(self) -> Optional[Response]:
        """The Response of the last turn that ended with ``done``."""
        with self._lock:
            return self._last

    @property
    def pending_tool_calls(self) -> List[ToolCall]:
        """Tool calls of the last turn that still need a result (tools without handlers)."""
        with self._lock:
            return [call for call_id, call in self._pending.items() if call_id not in self._results]

    @property
    def tools(self) -> ToolRegistry:
        """The conversation's tools."""
        return self._tools

    # -- tools -----------------------------------------------------------------
    def on_tool(self, name: str, handler: Optional[Callable[..., Any]] = None) -> Any:
        """Attach a handler to a tool whose schema was given as an OpenAI dict.

        Use it as ``conv.on_tool("name", fn)`` or as a decorator ``@conv.on_tool("name")``.
        """
        if handler is None:
            return self._tools.on_tool(name)
        return self._tools.on_tool(name, handler)

    def add_tool_result(self, call_id: str, result: Any, *, is_error: bool = False) -> None:
        """Answer a pending tool call; continue with ``send()`` / ``send_stream()`` and no message.

        A non-str ``result`` is sent JSON-encoded.
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

    # -- turns -------------------------------------------------------------------
    def send(self, message: Optional[str] = None, **kwargs: Any) -> Response:
        """Send a message and wait for the whole reply: ``send_stream(...).result()``.

        Raises the turn's error (with ``.partial``) if it fails.
        """
        return self.send_stream(message, **kwargs).result()

    def send_stream(
        self,
        message: Optional[str] = None,
        *,
        on_content: Optional[Callable[[str], Any]] = None,
        on_tool_call: Optional[Callable[[ToolCall], Any]] = None,
        on_tool_result: Optional[Callable[[ToolResult], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
        on_done: Optional[Callable[[Response], Any]] = None,
        buffer_size: int = 10,
        max_retries: Optional[int] = None,
    ) -> Stream:
        """Send a message and return a :class:`~promptkit.Stream` of the reply's events.

        Returns once the server has answered 2xx with an event stream; errors
        before that (HTTP status, connection, timeouts, a non-stream body) are
        raised here after retries. Later errors arrive as the stream's single
        ``error`` event. ``message=None`` continues after pending tool calls
        were answered with :meth:`add_tool_result`.
        """
        check_text(message, "message", optional=True)
        self._transport.check_open()
        if not isinstance(buffer_size, int) or isinstance(buffer_size, bool) or buffer_size < 1:
            raise ConfigurationError(f"buffer_size must be a positive int, got {buffer_size!r}")
        if not self._acquire_turn():
            raise ConversationBusyError(f"conversation {self.id} already has a turn in flight; wait for it to end")
        binding = self._binding
        try:
            if binding is not None and not binding.begin():
                raise ConversationBusyError(f"conversation {self.id} has a turn in flight in another worker")
        except BaseException:
            self._busy.release()  # a busy or failing store must not leave this object locked
            raise
        try:
            if binding is not None:
                self._sync(binding)
            if self._template:
                # An unresolved {{variable}}, or a value that is not valid text, fails here, before any I/O.
                check_text(self._render(strict=True), "the rendered system prompt")
            budget = self._budget_left()
            settings = self._settings
            if max_retries is not None:
                settings = _with_retries(settings, max_retries)
            new_messages = self._start_messages(message)
            control = StreamControl(buffer_size)
            self._active = control  # from here on, cancel() reaches this turn, whatever it is waiting for
            turn = Turn(
                transport=self._transport,
                settings=settings,
                history=self._history_snapshot(),
                new_messages=new_messages,
                tools=self._tools,
                sink=self,
                started=time.monotonic(),
                budget=budget,
            )
            turn.start(control)  # connect and wait for the headers, retrying; returns early when cancelled
        except BaseException:
            self._end_turn()  # nothing was consumed: the request never got an answer
            raise
        try:
            stream = Stream(
                turn.run,
                buffer_size=buffer_size,
                on_content=on_content,
                on_tool_call=on_tool_call,
                on_tool_result=on_tool_result,
                on_error=on_error,
                on_done=on_done,
                progress=turn.progress,
                control=control,
            )
        except BaseException:  # no worker thread could be started: close the response, free the turn
            turn.discard()
            self._end_turn()
            raise
        self._transport.track(stream)  # Client.close() cancels it
        return stream

    def cancel(self) -> None:
        """Cancel the turn in flight, from any thread, whatever it is doing. Returns at once.

        It reaches the turn in every phase: connecting, waiting for the response
        headers, backing off between retries or sleeping for ``Retry-After``
        (where ``send_stream()`` has not returned yet), streaming, and running
        tool handlers. The turn ends as cancelled, not as an error: a
        ``send_stream()`` still waiting returns a Stream whose only event is
        ``done`` with ``finish_reason == "cancelled"`` (and ``send()`` returns
        that Response); a running stream ends as :meth:`Stream.cancel` ends it.
        A turn cancelled before any of its reply reached the consumer commits
        nothing. Does nothing when no turn is in flight.
        """
        active = self._active
        if active is not None:
            active.cancel()

    def _acquire_turn(self) -> bool:
        """Take the turn lock. A cancelled turn still finishing (an abandoned
        stream, a break) is waited for: it ends promptly and commits first."""
        if self._busy.acquire(blocking=False):
            return True
        active = self._active
        return active is not None and active.cancelled and self._busy.acquire(timeout=_CANCELLED_TURN_WAIT)

    def _budget_left(self) -> Optional[float]:
        """USD this turn may spend; raises when nothing is left."""
        if self.max_cost is None:
            return None
        spent = self.total_cost
        if spent >= self.max_cost:
            raise BudgetExceededError(
                f"conversation {self.id} has spent ${spent:.6f} of its max_cost ${self.max_cost:.6f}; no turn was started"
            )
        return self.max_cost - spent

    def _start_messages(self, message: Optional[str]) -> List[Dict[str, Any]]:
        """The messages this turn adds before the reply: tool results answered, then the user message."""
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

    # -- TurnSink: called on the worker thread before the terminal event ---------
    def commit(self, messages: List[Dict[str, Any]], response: Response) -> None:
        """Record a turn that ended with ``done`` (in the store first) and release the conversation.

        Raises:
            StoreError: the store failed (after retries within a short bound) or another
                worker stored a turn at the same index (``StoreConflictError``); nothing
                is committed, the tokens still count, and ``partial`` is ``response``,
                the reply the user saw.
        """
        try:
            if self._binding is not None:
                try:
                    self._binding.append(messages, response, system_prompt=self._system_message(), model=self._settings.model)
                except StoreError as error:
                    self._count_unstored(response)  # refused by the store, but its tokens were paid for
                    error.partial = response
                    raise
            with self._lock:
                self._messages.extend(copy.deepcopy(messages))
                self._usage = self._usage + response.usage
                self._cost += response.cost
                self._last = response
                self._results.clear()
                self._pending = {}
                if response.finish_reason == "tool_calls":
                    answered = {r.call_id for r in response.tool_results}
                    self._pending = {c.id: c for c in response.tool_calls if c.id not in answered}
        finally:
            self._end_turn()

    def fail(self, partial: Optional[Response]) -> None:
        """Record the tokens of a turn that commits nothing (it failed, or was cancelled before
        anything reached the user), in the store too so they survive a resume, and release the
        conversation."""
        try:
            if partial is not None and partial.finish_reason == "cancelled":
                with self._lock:
                    self._last = partial
            if partial is not None and (partial.usage.total_tokens or partial.cost):
                binding = self._binding
                # Stored once the conversation exists (its first committed turn creates it), so they survive a resume.
                if binding is not None and binding.stored_turns and binding.record_failure(
                    partial, system_prompt=self._system_message(), model=self._settings.model
                ):
                    with self._lock:
                        self._usage = self._usage + partial.usage
                        self._cost += partial.cost
                else:
                    self._count_unstored(partial)
        finally:
            self._end_turn()

    def _system_message(self) -> Optional[str]:
        """The system prompt as sent (stored with the conversation's first turn)."""
        with self._lock:
            return self._messages[0]["content"] if self._messages and self._messages[0]["role"] == "system" else None

    def _count_unstored(self, response: Response) -> None:
        """Add the tokens of a turn that is not committed (failed, or refused by the store) to the totals."""
        with self._lock:
            self._usage = self._usage + response.usage
            self._cost += response.cost
            self._unstored_usage = self._unstored_usage + response.usage
            self._unstored_cost += response.cost

    def renew(self) -> None:
        """Keep the store's turn lock alive between tool rounds."""
        if self._binding is not None:
            self._binding.renew()

    def _end_turn(self) -> None:
        try:
            if self._binding is not None:
                self._binding.end()
        finally:
            self._busy.release()


def _with_retries(settings: TurnSettings, max_retries: int) -> TurnSettings:
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an int >= 0, got {max_retries!r}")
    return attrs.evolve(settings, policy=attrs.evolve(settings.policy, max_retries=max_retries))
