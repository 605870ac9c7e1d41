"""The Vercel AI SDK's UI message stream protocol (what ``useChat`` reads), and its chat request body.

Checked against the ``ai`` npm package 7.0.173 (``uiMessageChunkSchema``,
``processUIMessageStream``, ``HttpChatTransport``; the tests run the package
itself, pinned in ``tests/node/package.json``).

**The stream.** An SSE body of ``data: <chunk JSON>`` frames ending with
``data: [DONE]``, served with :data:`AI_SDK_HEADERS` besides promptkit's
:data:`~promptkit.web.SSE_HEADERS`. :class:`UIMessageEncoder` turns promptkit
event dicts (:meth:`StreamEvent.to_dict() <promptkit.StreamEvent.to_dict>`, or
the same dicts read back from a log) into those frames:

=====================  ============================================================
promptkit event        chunks
=====================  ============================================================
(the first chunk)      ``start`` (``messageId``), ``start-step``
``content``            ``text-start`` (once per part), ``text-delta``
``reasoning``          ``reasoning-start`` (once per part), ``reasoning-delta``
``tool_call_delta``    ``tool-input-start`` (once per call), ``tool-input-delta``
``tool_call``          ``tool-input-available`` (``input``: the arguments), or
                       ``tool-input-error`` when the arguments are not a JSON object
``tool_result``        ``tool-output-available`` (``output``: the exact string sent
                       to the model), or ``tool-output-error`` (``errorText``)
(the next tool round)  ``finish-step``, ``start-step``
``done``               ``finish-step``, ``finish`` (``finishReason``,
                       ``messageMetadata``), ``[DONE]``
``done``, cancelled    ``message-metadata``, ``abort`` (``reason: "cancelled"``), ``[DONE]``
``error``              ``error`` (``errorText``), ``[DONE]``
=====================  ============================================================

A text or reasoning part is closed (``text-end``, ``reasoning-end``) when the
other kind or a tool call starts, and before every step end and terminal
chunk, so the assembled message has no part left ``streaming``.

**Tools.** promptkit runs its tools on the server, as the AI SDK's own
``streamText`` runs tools that have an ``execute`` function, and the chunks
are the ones ``streamText`` sends for those: no ``providerExecuted`` (that
marks tools the *model provider* ran) and, by default, no ``dynamic``, so the
assembled message has one ``tool-<name>`` part per call (``state``
``output-available`` with ``input`` and ``output``), which a front end renders
by name. ``dynamic_tools=True`` marks them ``dynamic`` instead: ``dynamic-tool``
parts carrying ``toolName``, for a front end that renders every tool alike.
A call whose turn ended without a result (no handler: ``finish_reason ==
"tool_calls"``) stays ``input-available``.

**The request.** :func:`parse_chat_request` reads the JSON body that
``DefaultChatTransport`` POSTs (``id``, ``messages``, ``trigger``,
``messageId`` and the ``body`` option's extra keys) into an
:class:`AIChatRequest`: the last user message's text and images, ready for
``conversation.send_stream(request.message, images=list(request.images))``.

Pure: no I/O, no threads.
"""

from __future__ import annotations

import re
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
)

from .._errors import ConfigurationError
from .._sse_out import dumps
from .._types import ToolCall
from .._validate import check_text
from ._ai_sdk_request import AIChatRequest, parse_chat_request

__all__ = [
    "AI_SDK_HEADERS",
    "AI_SDK_FINISH_REASONS",
    "UIMessageEncoder",
    "AIChatRequest",
    "parse_chat_request",
]

AI_SDK_HEADERS: Mapping[str, str] = MappingProxyType({"x-vercel-ai-ui-message-stream": "v1"})
"""The response headers the UI message stream protocol adds to :data:`~promptkit.web.SSE_HEADERS`.

The AI SDK's ``createUIMessageStreamResponse`` sends ``content-type:
text/event-stream``, ``cache-control: no-cache``, ``x-accel-buffering: no``
(all three in ``SSE_HEADERS`` already), ``x-vercel-ai-ui-message-stream: v1``
and ``connection: keep-alive``. The last is left out: a WSGI application may
not set a hop-by-hop header (PEP 3333; ``wsgiref``, which Django's development
server runs on, rejects it), HTTP/2 forbids it, and HTTP/1.1 keeps the
connection alive without it.
"""

AI_SDK_FINISH_REASONS: Mapping[str, str] = MappingProxyType({
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
})  # fmt: skip
"""promptkit's ``finish_reason`` to the ``finish`` chunk's ``finishReason``; any other reason is ``"other"``."""

_DONE = b"data: [DONE]\n\n"
_BAD_ID = re.compile(r"[\r\n\x00]")

ErrorText = Callable[[Mapping[str, Any]], str]
"""Makes an ``error`` chunk's ``errorText`` from the event's ``error`` dict (``{"type", "message"[, "status_code"]}``)."""


def _default_error_text(error: Mapping[str, Any]) -> str:
    message = error.get("message")
    return message if isinstance(message, str) and message else "An error occurred."


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


class UIMessageEncoder:
    """Encodes one turn's promptkit event dicts as UI message stream frames, one event at a time.

    A deterministic state machine: the same events give the same bytes
    (part ids count up: ``text-1``, ``reasoning-2``, ...; nothing depends on
    time or chance), so a stream can be resumed by encoding its events again
    from the start and dropping the bytes already sent. Use one encoder per
    turn, from one thread.

    Args:
        message_id: the assistant message's id, sent in the ``start`` chunk
            (``useChat`` makes one up when it is ``None``). Give one when the
            stream can be resumed, so that the replay is known as the same message.
        dynamic_tools: mark tool calls ``dynamic`` (``dynamic-tool`` parts)
            rather than ``tool-<name>`` parts; see the module docstring.
        metadata: send ``messageMetadata`` (``model``, ``finish_reason``,
            ``usage``, ``cost``) with the ``finish`` chunk, or in a
            ``message-metadata`` chunk before ``abort``. ``False`` for a
            front end whose ``messageMetadataSchema`` would reject it.
        error_text: makes the ``error`` chunk's ``errorText`` from the error
            dict; default: its ``message`` (promptkit's error messages never
            hold an API key; pass a function to show users something vaguer).

    Raises:
        ConfigurationError: ``message_id`` is not a str or ``None``.
    """

    def __init__(
        self,
        message_id: Optional[str] = None,
        *,
        dynamic_tools: bool = False,
        metadata: bool = True,
        error_text: Optional[ErrorText] = None,
    ) -> None:
        self._message_id = check_text(message_id, "message_id", optional=True)
        self._dynamic = bool(dynamic_tools)
        self._metadata = bool(metadata)
        self._error_text = error_text or _default_error_text
        self._started = False
        self._ended = False
        self._parts = 0  # the counter part ids come from
        self._open: Optional[Tuple[str, str]] = None  # the open text or reasoning part: (kind, id)
        self._inputs: Set[str] = set()  # calls of this step with a tool-input-start
        self._calls: Set[str] = set()  # calls of this step with their input available (or in error)
        self._after_results = False  # a tool result was sent: the next model output is a new step

    @property
    def ended(self) -> bool:
        """Whether a terminal event (``done`` or ``error``) was encoded; later events give no bytes."""
        return self._ended

    def encode(self, event: Mapping[str, Any], *, event_id: Optional[str] = None) -> bytes:
        """The SSE bytes of one event: zero or more ``data: <json>`` frames.

        ``event_id`` (e.g. a stream log's entry id) goes in an ``id:`` line of
        the event's last frame, so a client's last seen id always ends a whole
        event; an event that gives no chunk (an empty delta, an unknown type,
        anything after the terminal event) gives no bytes, id included.

        Raises:
            ConfigurationError: ``event`` is not a dict with a str ``type``, or
                ``event_id`` holds a line break or NUL.
        """
        if not isinstance(event, Mapping) or not isinstance(event.get("type"), str):
            raise ConfigurationError(f"an event must be a dict with a str 'type' (StreamEvent.to_dict()), got {event!r:.80}")
        if event_id is not None and (not isinstance(event_id, str) or _BAD_ID.search(event_id)):
            raise ConfigurationError(f"event_id must be a str without line breaks or NUL, got {event_id!r:.80}")
        if self._ended:
            return b""
        chunks = self._chunks(event)
        done = self._ended
        if not chunks and not done:
            return b""
        if not self._started:
            self._started = True
            start: Dict[str, Any] = {"type": "start"}
            if self._message_id is not None:
                start["messageId"] = self._message_id
            chunks[:0] = [start, {"type": "start-step"}]
        frames = [b"data: " + dumps(chunk).encode("ascii") + b"\n\n" for chunk in chunks]
        if done:
            frames.append(_DONE)
        if event_id is not None:
            frames[-1] = b"id: " + event_id.encode("utf-8") + b"\n" + frames[-1]
        return b"".join(frames)

    def encode_all(self, events: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
        """The bytes of each event in turn, leaving out the events that give none."""
        for event in events:
            data = self.encode(event)
            if data:
                yield data

    # -- one event to chunks ----------------------------------------------------------------------

    def _chunks(self, event: Mapping[str, Any]) -> List[Dict[str, Any]]:
        kind = event["type"]
        if kind == "content":
            return self._text("text", _str(event.get("content")))
        if kind == "reasoning":
            return self._text("reasoning", _str(event.get("reasoning")))
        if kind == "tool_call_delta":
            return self._tool_delta(_dict(event.get("tool_call")), _str(event.get("content")))
        if kind == "tool_call":
            return self._tool_call(_dict(event.get("tool_call")))
        if kind == "tool_result":
            return self._tool_result(_dict(event.get("tool_result")))
        if kind == "done":
            return self._done(_dict(event.get("final")))
        if kind == "error":
            return self._error(_dict(event.get("error")))
        return []  # a type this encoder does not know: nothing, rather than a broken resume

    def _next_id(self, kind: str) -> str:
        self._parts += 1
        return f"{kind}-{self._parts}"

    def _close(self) -> List[Dict[str, Any]]:
        if self._open is None:
            return []
        kind, part_id = self._open
        self._open = None
        return [{"type": f"{kind}-end", "id": part_id}]

    def _output(self) -> List[Dict[str, Any]]:
        """Before model output: the step boundary when tool results came before it."""
        if not self._after_results:
            return []
        self._after_results = False
        self._inputs.clear()
        self._calls.clear()
        return self._close() + [{"type": "finish-step"}, {"type": "start-step"}]

    def _text(self, kind: str, delta: str) -> List[Dict[str, Any]]:
        if not delta:
            return []
        chunks = self._output()
        if self._open is None or self._open[0] != kind:
            chunks += self._close()
            self._open = (kind, self._next_id(kind))
            chunks.append({"type": f"{kind}-start", "id": self._open[1]})
        chunks.append({"type": f"{kind}-delta", "id": self._open[1], "delta": delta})
        return chunks

    def _tool(self, chunk: Dict[str, Any]) -> Dict[str, Any]:
        if self._dynamic:
            chunk["dynamic"] = True
        return chunk

    def _tool_delta(self, call: Mapping[str, Any], delta: str) -> List[Dict[str, Any]]:
        call_id = _str(call.get("id"))
        if not call_id or (call_id in self._inputs and not delta):
            return []
        chunks = self._output()
        if call_id not in self._inputs:
            chunks += self._close()
            self._inputs.add(call_id)
            chunks.append(self._tool({"type": "tool-input-start", "toolCallId": call_id, "toolName": _str(call.get("name"))}))
        if delta:
            chunks.append({"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": delta})
        return chunks

    def _tool_call(self, call: Mapping[str, Any]) -> List[Dict[str, Any]]:
        call_id = _str(call.get("id"))
        if not call_id:
            return []
        chunks = self._output() + self._close()
        self._calls.add(call_id)
        name = _str(call.get("name"))
        problem = call.get("arguments_error")
        raw = _str(call.get("arguments_json"))
        if not isinstance(problem, str):  # to_dict() leaves it out: the same parse finds it again
            problem = ToolCall.create(call_id, name, raw).arguments_error
        if problem:
            chunks.append(self._tool({"type": "tool-input-error", "toolCallId": call_id, "toolName": name,
                                      "input": raw, "errorText": problem}))  # fmt: skip
        else:
            arguments = call.get("arguments")
            chunks.append(self._tool({"type": "tool-input-available", "toolCallId": call_id, "toolName": name,
                                      "input": dict(arguments) if isinstance(arguments, Mapping) else {}}))  # fmt: skip
        return chunks

    def _tool_result(self, result: Mapping[str, Any]) -> List[Dict[str, Any]]:
        call_id = _str(result.get("call_id"))
        if not call_id:
            return []
        chunks = self._close()
        if call_id not in self._calls:  # never announced: the client would reject a result of an unknown call
            self._calls.add(call_id)
            chunks.append(self._tool({"type": "tool-input-available", "toolCallId": call_id,
                                      "toolName": _str(result.get("name")), "input": {}}))  # fmt: skip
        content = _str(result.get("content"))
        if result.get("is_error"):
            chunks.append(self._tool({"type": "tool-output-error", "toolCallId": call_id, "errorText": content}))
        else:
            chunks.append(self._tool({"type": "tool-output-available", "toolCallId": call_id, "output": content}))
        self._after_results = True
        return chunks

    def _message_metadata(self, final: Mapping[str, Any]) -> Dict[str, Any]:
        return {key: final.get(key) for key in ("model", "finish_reason", "usage", "cost")}

    def _done(self, final: Mapping[str, Any]) -> List[Dict[str, Any]]:
        self._ended = True
        reason = final.get("finish_reason")
        chunks = self._close()
        if reason == "cancelled":
            if self._metadata:
                chunks.append({"type": "message-metadata", "messageMetadata": self._message_metadata(final)})
            chunks.append({"type": "abort", "reason": "cancelled"})
            return chunks
        finish: Dict[str, Any] = {"type": "finish", "finishReason": AI_SDK_FINISH_REASONS.get(_str(reason), "other")}
        if self._metadata:
            finish["messageMetadata"] = self._message_metadata(final)
        return chunks + [{"type": "finish-step"}, finish]

    def _error(self, error: Mapping[str, Any]) -> List[Dict[str, Any]]:
        self._ended = True
        return self._close() + [{"type": "error", "errorText": self._error_text(error)}]
