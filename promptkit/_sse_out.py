"""Output framing: every byte promptkit sends to a browser, as SSE frames or JSON text frames.

The input side (parsing a model server's event stream) is :mod:`promptkit._sse`;
this module is its mirror for what a web response writes. Everything that
frames goes through here: :meth:`Stream.iter_sse <promptkit.Stream.iter_sse>`
(:class:`SSEFrames`) and
:mod:`promptkit.web` (its error events and WebSocket frames).

Every frame carries compact JSON. JSON escapes newlines, so a ``data:`` field
is always one line: content holding ``"\\n\\ndata: x"`` or ``"event: done"``
can never forge an event on the client side. ``ensure_ascii`` also keeps
U+2028/U+2029 escaped, which some JavaScript line readers split on.

It imports nothing of promptkit but :mod:`promptkit._types`, so both
:mod:`promptkit._stream` and :mod:`promptkit.web` can use it.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Generator, Iterator, Mapping, Optional, Union

from ._types import StreamEvent

__all__ = ["HEARTBEAT", "dumps", "json_frame", "sse_event", "sse_frame", "error_frame", "SSEFrames"]

HEARTBEAT = b": keep-alive\n\n"
"""An SSE comment: keeps proxies and browsers from closing a silent stream."""


def dumps(data: Mapping[str, Any]) -> str:
    """Compact JSON, one line, ASCII only: the body of every frame."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True, default=str)


def json_frame(event: StreamEvent) -> str:
    """The JSON text of one event: ``{"type", "content", "tool_call", "final", "error"}``."""
    return dumps(event.to_dict())


def sse_event(event_type: str, data: Mapping[str, Any], *, event_id: Union[int, str, None] = None) -> bytes:
    """One server-sent event: ``event: <type>``, optional ``id:``, ``data: <json of data>``, blank line."""
    head = f"event: {event_type}\n" if event_id is None else f"event: {event_type}\nid: {event_id}\n"
    return f"{head}data: {dumps(data)}\n\n".encode("utf-8")


def sse_frame(event: StreamEvent, *, event_id: Optional[int] = None) -> bytes:
    """One server-sent event for ``event``: ``event: <type>``, optional ``id:``, ``data: <json>``, blank line."""
    return sse_event(event.type, event.to_dict(), event_id=event_id)


def error_frame(error: BaseException) -> Dict[str, Any]:
    """The JSON-safe error event for an error raised before a stream existed (e.g. by ``send_stream``)."""
    return StreamEvent("error", error=error).to_dict()


class SSEFrames:
    """The iterator :meth:`Stream.iter_sse <promptkit.Stream.iter_sse>` returns: SSE bytes, and ``close()`` stops.

    It frames ``events`` (``None`` in it means "silent for a heartbeat
    interval"), numbering the events ``id: 1``, ``id: 2``, ..., or hands each
    event and its number to ``frame`` for another format (empty bytes: no frame). A class
    rather than a generator, because closing a generator that never started
    runs none of its code, and a client may leave before the first frame:
    :meth:`close` always calls ``stop``.
    """

    def __init__(
        self,
        events: Iterator[Optional[StreamEvent]],
        stop: Callable[[], None],
        frame: Optional[Callable[[StreamEvent, int], bytes]] = None,
    ) -> None:
        self._events = events
        self._stop = stop
        self._frame = frame
        self._frames = self._generate()

    def _generate(self) -> Generator[bytes, None, None]:
        events = self._events
        frame = self._frame
        number = 0
        try:
            for event in events:
                if event is None:
                    yield HEARTBEAT
                else:
                    number += 1
                    if frame is None:
                        yield sse_frame(event, event_id=number)
                    else:
                        data = frame(event, number)
                        if data:
                            yield data
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a generator's own cleanup (the Stream's: cancel when it had not ended)

    def __iter__(self) -> "SSEFrames":
        return self

    def __next__(self) -> bytes:
        return next(self._frames)

    def close(self) -> None:
        """Stop: close the frames, then ``stop()`` (the Stream's: cancel if still running, wait for the worker)."""
        self._frames.close()
        self._stop()
