"""Conversation: history, one turn at a time, commits when a turn's stream ends.

A successful turn commits the user message, the assistant message(s) with
their tool calls, and the tool results, all at once. A failed turn commits
nothing (its tokens still count in the totals). A cancelled turn commits the
user message and the partial assistant text, as chat UIs do after "stop".

This module orchestrates; the state lives elsewhere: the history and totals in
:mod:`promptkit._history`, the system prompt in :mod:`promptkit._system_prompt`,
the ``max_cost`` check in :mod:`promptkit._budget`, and the store's side in
:mod:`promptkit.stores._binding`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Sequence

import attrs

from ._budget import budget_left, check_max_cost
from ._history import History
from ._images import ImageInput, MessageInput, message_content
from ._system_prompt import SystemPrompt
from ._validate import check_params, check_text
from ._errors import ConfigurationError, ConversationBusyError, StoreError
from ._stream import Stream, StreamControl
from ._tools import ToolRegistry
from ._turn import Turn, TurnSettings
from ._types import Response, ToolCall, ToolResult, Usage

if TYPE_CHECKING:  # pragma: no cover
    from .stores._binding import StoreBinding
    from .stores._protocol import ConversationStore
    from ._transport import Transport

__all__ = ["Conversation"]

logger = logging.getLogger(__name__)

# How long a new turn waits for a cancelled one to finish committing.
_CANCELLED_TURN_WAIT = 10.0
_RESERVED_PARAMS = frozenset({"model", "messages", "stream", "stream_options", "tools"})


class _Opening:
    """A turn that has no Stream yet, as :meth:`Transport.track` sees it: ``Client.close()`` cancels it."""

    __slots__ = ("_control", "__weakref__")

    def __init__(self, control: StreamControl) -> None:
        self._control = control

    def cancel(self) -> None:
        self._control.cancel()

    def close(self, timeout: Optional[float] = None) -> None:
        self._control.cancel()  # the caller's own thread opens the turn: nothing to wait for here


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
        max_cost = check_max_cost(max_cost)
        for key in settings.params:
            if key in _RESERVED_PARAMS:
                raise ConfigurationError(f"{key!r} is set by promptkit and cannot be passed as a request parameter")
        check_params(settings.params)
        settings.dialect.check_params(settings.params)
        check_text(system_prompt, "system_prompt", optional=True)
        if conversation_id is not None:
            check_text(conversation_id, "conversation_id")
            if not conversation_id:
                raise ConfigurationError("conversation_id must not be empty")
        self.id = conversation_id or f"conv_{time.time_ns()}"
        self._prompt = SystemPrompt(system_prompt, variables)
        self.max_cost = max_cost
        self._transport = transport
        self._settings = settings
        self._tools = ToolRegistry(tools or ())
        self._busy = threading.Lock()  # held for the whole turn
        self._history = History(self._prompt.message())
        self._active: Optional[StreamControl] = None  # the in-flight turn's control
        self._binding: Optional["StoreBinding"] = None
        if store is not None:
            from .stores._binding import bind  # stores load only when used

            self._binding = bind(store, self.id)
            stored = self._binding.load() if conversation_id else None
            if stored is not None:
                if system_prompt is not None and system_prompt != stored.meta.system_prompt:
                    logger.warning("conversation %s resumes with its stored system prompt, not the one given", self.id)
                self._prompt = SystemPrompt(stored.meta.system_prompt, variables)
                if stored_model and stored.meta.model:  # the caller named no model: keep the stored one
                    self._settings = attrs.evolve(self._settings, model=stored.meta.model)
                self._binding.restore(self._history, stored, self._prompt.message)

    def __repr__(self) -> str:
        return f"Conversation(id={self.id!r}, messages={len(self._history)})"

    # -- system prompt ---------------------------------------------------------
    @property
    def system_prompt(self) -> Optional[str]:
        """The system prompt with its ``{{variables}}`` filled in (as written when some are unset)."""
        return self._prompt.text()

    @property
    def variables(self) -> Dict[str, Any]:
        """A copy of the system-prompt variables."""
        return self._prompt.variables

    def set_var(self, name: str, value: Any) -> None:
        """Set a system-prompt variable; the next turn sends the re-rendered prompt."""
        self._prompt.set(name, value)
        self._history.replace_system(self._prompt.message)

    # -- state ---------------------------------------------------------------
    @property
    def messages(self) -> List[Dict[str, Any]]:
        """A copy of the committed history as OpenAI message dicts (system prompt first)."""
        return self._history.messages()

    @property
    def usage(self) -> Usage:
        """Tokens of every turn so far, failed and cancelled ones included."""
        return self._history.usage

    @property
    def total_cost(self) -> float:
        """USD cost of every turn so far, failed and cancelled ones included."""
        return self._history.cost

    @property
    def last_response(self) -> Optional[Response]:
        """The Response of the last turn that ended with ``done``."""
        return self._history.last

    @property
    def pending_tool_calls(self) -> List[ToolCall]:
        """Tool calls of the last turn that still need a result (tools without handlers)."""
        return self._history.pending()

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
        self._history.add_tool_result(call_id, result, is_error=is_error)

    # -- turns -------------------------------------------------------------------
    def send(self, message: Optional[MessageInput] = None, **kwargs: Any) -> Response:
        """Send a message and wait for the whole reply: ``send_stream(...).result()``.

        Takes the same arguments as :meth:`send_stream`, ``images=[...]``
        included. Raises the turn's error (with ``.partial``) if it fails.
        """
        return self.send_stream(message, **kwargs).result()

    def send_stream(
        self,
        message: Optional[MessageInput] = None,
        *,
        images: Optional[Sequence[ImageInput]] = None,
        on_content: Optional[Callable[[str], Any]] = None,
        on_reasoning: Optional[Callable[[str], Any]] = None,
        on_tool_call: Optional[Callable[[ToolCall], Any]] = None,
        on_tool_result: Optional[Callable[[ToolResult], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
        on_done: Optional[Callable[[Response], Any]] = None,
        buffer_size: int = 10,
        max_retries: Optional[int] = None,
        response_format: Any = None,
        tool_call_deltas: bool = False,
    ) -> Stream:
        """Send a message and return a :class:`~promptkit.Stream` of the reply's events.

        Returns once the server has answered 2xx with an event stream; errors
        before that (HTTP status, connection, timeouts, a non-stream body) are
        raised here after retries. Later errors arrive as the stream's single
        ``error`` event. ``message=None`` continues after pending tool calls
        were answered with :meth:`add_tool_result`. ``response_format`` asks this
        turn for structured output (see :meth:`promptkit.Client.conversation`).
        ``tool_call_deltas=True`` adds a ``tool_call_delta`` event per piece of a
        tool call's arguments, naming the call, with ``event.parsed``, the
        arguments parsed so far. A :meth:`cancel` from
        another thread while this still waits makes it return at once, with a
        Stream that ends ``done`` with ``finish_reason == "cancelled"``.

        ``message`` is text, or a list of OpenAI content parts
        (``{"type": "text", "text": ...}`` and ``{"type": "image_url",
        "image_url": {"url": <http(s) or data: URL>, "detail"?: ...}}``).
        ``images`` adds images after the text, in order (without a message,
        the images alone make the user message): each a file path,
        ``bytes``, an http(s) URL (sent as is, never fetched here) or a
        ``data:image/...;base64,`` URL. Files and bytes are sent as data URLs
        whose type (PNG, JPEG, GIF or WEBP) is read from their first bytes.
        The user message in history then has a list of parts as its
        ``content``; without images it stays a plain str. A bad image (an
        unknown type, a missing or empty file, another URL scheme, over 20 MB)
        raises :class:`~promptkit.ConfigurationError` naming it, before any
        network I/O.
        """
        content = message_content(message, images)  # reads image files: before the turn lock and any network I/O
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
                binding.catch_up(self._history, self._prompt.message)
            # An unresolved {{variable}}, or a value that is not valid text, fails here, before any I/O.
            self._prompt.check()
            budget = budget_left(self.max_cost, self.total_cost, self.id)
            settings = self._settings
            if max_retries is not None:
                settings = _with_retries(settings, max_retries)
            if response_format is not None:  # this turn's structured output, instead of the conversation's
                from ._structured import OutputFormat

                settings = attrs.evolve(settings, output=OutputFormat.create(response_format))
            if tool_call_deltas:  # tool-call arguments observed as they stream, parsed so far
                settings = attrs.evolve(settings, tool_call_deltas=True)
            new_messages = self._history.start(content)
            control = StreamControl(buffer_size)
            self._active = control  # from here on, cancel() reaches this turn, whatever it is waiting for
            opening = _Opening(control)
            self._transport.track(opening)  # and so does Client.close(), before the Stream exists
            turn = Turn(
                transport=self._transport,
                settings=settings,
                history=self._history.snapshot(),
                new_messages=new_messages,
                tools=self._tools,
                sink=self,
                started=time.monotonic(),
                budget=budget,
                conversation_id=self.id,
            )
            turn.start(control)  # connect and wait for the headers, retrying; returns early when cancelled
        except BaseException:
            self._end_turn()  # nothing was consumed: the request never got an answer
            raise
        try:
            stream = Stream(
                steps=turn.steps,  # its buffer is the control's, made above with buffer_size slots
                on_content=on_content,
                on_reasoning=on_reasoning,
                on_tool_call=on_tool_call,
                on_tool_result=on_tool_result,
                on_error=on_error,
                on_done=on_done,
                progress=turn.progress,
                control=control,
                structured=settings.output is not None,
                model=settings.model,
            )
        except BaseException as error:  # the stream could not be made: close the response, free the turn
            turn.discard()
            turn.abandon(error)
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
        if active is None or not active.cancelled:
            return False
        active.settle(_CANCELLED_TURN_WAIT)  # nobody may be running its last steps: run them here
        return self._busy.acquire(timeout=_CANCELLED_TURN_WAIT)

    # -- TurnSink: called by the turn's last step, before the terminal event ---------
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
                    self._binding.append(messages, response, system_prompt=self._history.system_message(), model=self._settings.model)
                except StoreError as error:
                    self._history.record(response, stored=False)  # refused by the store, but its tokens were paid for
                    error.partial = response
                    raise
            self._history.commit(messages, response)
        finally:
            self._end_turn()

    def fail(self, partial: Optional[Response]) -> None:
        """Record the tokens of a turn that commits nothing (it failed, or was cancelled before
        anything reached the user), in the store too so they survive a resume, and release the
        conversation."""
        try:
            self._history.fail(partial)
            if partial is not None and (partial.usage.total_tokens or partial.cost):
                binding = self._binding
                # Stored once the conversation exists (its first committed turn creates it), so they survive a resume.
                stored = bool(
                    binding is not None
                    and binding.stored_turns
                    and binding.record_failure(partial, system_prompt=self._history.system_message(), model=self._settings.model)
                )
                self._history.record(partial, stored=stored)
        finally:
            self._end_turn()

    @property
    def renews(self) -> bool:
        """Whether :meth:`renew` has a store's turn lock to keep alive."""
        return self._binding is not None

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
