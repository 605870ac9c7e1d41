"""Reading one response body: bytes -> server-sent events -> chunks -> stream events.

The per-chunk hot path. It runs on the stream's worker thread, enforces the
idle and total deadlines, and hands everything one read produced to the
consumer in one queue operation.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Callable, List, Optional

from .accumulator import Accumulator
from .errors import APITimeoutError, StreamError, StreamTruncatedError
from .limits import json_excess
from .sse import SSEParser
from .stream import StreamControl
from .types import StreamEvent

if TYPE_CHECKING:  # pragma: no cover
    from .transport import HTTPStream

__all__ = ["read_body"]

_monotonic = time.monotonic
_loads = json.loads


def read_body(
    control: StreamControl,
    http: "HTTPStream",
    acc: Accumulator,
    *,
    idle: Optional[float],
    deadline: Optional[float],
    timeout_error: Callable[[str], APITimeoutError],
    on_output: Callable[[], None],
    after_read: Optional[Callable[[], None]] = None,
) -> None:
    """Read ``http`` into ``acc`` and ``control`` until ``[DONE]``, EOF or cancel.

    Args:
        idle: the longest wait between two parsed events (comments do not count).
        deadline: the turn's total deadline, a ``time.monotonic()`` value.
        timeout_error: builds the error for an ``"idle"`` or ``"total"`` timeout.
        on_output: called before the events of each read go out (time to first token).
        after_read: called after each read that produced events (the budget check).

    Raises:
        APITimeoutError: a deadline passed.
        APIConnectionError: the connection broke.
        StreamError: an in-band error, a malformed chunk, a crossed
            :class:`~promptkit.Limits` bound (``acc.limits``), or
            (StreamTruncatedError) EOF before ``[DONE]`` without a finish_reason.
    """
    limits = acc.limits
    max_depth = limits.max_json_depth
    values_chars = 2 * limits.max_json_values
    parser = SSEParser(limits)
    feed = parser.feed
    accumulate = acc.feed
    emit_many = control.emit_many
    last = _monotonic()
    fresh = True  # an event just arrived: the read may wait the whole idle time
    while True:
        now = _monotonic()
        # While events flow, wait stays exactly `idle` (no settimeout per read);
        # after a comment-only read it shrinks to what is left of the idle time.
        wait = idle if fresh or idle is None else idle - (now - last)
        kind = "idle"
        if deadline is not None and (wait is None or deadline - now < wait):
            wait, kind = deadline - now, "total"
        if wait is not None and wait <= 0:
            raise timeout_error(kind)
        try:
            data = http.read1(wait)
        except TimeoutError:
            if control.cancelled:
                return
            raise timeout_error(kind) from None
        if control.cancelled:
            return
        if not data:
            tail = parser.close()
            if tail is not None and tail.data == "[DONE]":
                break
            if acc.finish_reason is None:
                raise StreamTruncatedError("the stream ended before [DONE] and without a finish_reason")
            break  # a finished reply whose server omitted [DONE]
        events = feed(data)
        if not events:
            fresh = False
            continue  # comments and partial lines do not count as activity
        fresh = True
        last = _monotonic()
        # One queue operation per read: every event this read completed goes out together.
        out: List[StreamEvent] = []
        done = False
        try:
            for sse in events:
                text = sse.data
                if text == "[DONE]":
                    out.extend(acc.finish())
                    done = True
                    break
                # Nesting needs a "[" or "{" per level, and a value takes two characters
                # with its separator: two counts clear nearly every chunk, so the exact
                # check (json_excess) runs only where it could fail.
                if len(text) >= values_chars or text.count("{") + text.count("[") > max_depth:
                    excess = json_excess(text, limits)
                    if excess is not None:
                        raise excess
                try:
                    chunk = _loads(text)
                except (ValueError, RecursionError) as exc:
                    # ValueError also covers an integer of more digits than Python
                    # converts; RecursionError a depth limit set above the interpreter's.
                    reason = str(exc)[:120]
                    if sse.event == "error":
                        raise StreamError(f"the server sent an error event: {text[:300]}", body=text) from None
                    raise StreamError(
                        f"malformed chunk (not JSON: {reason}): {text[:200]!r}", body=text, retryable=True
                    ) from None
                if sse.event == "error" and not (isinstance(chunk, dict) and "error" in chunk):
                    raise StreamError(f"the server sent an error event: {text[:300]}", body=chunk)
                produced = accumulate(chunk)
                if produced:
                    out.extend(produced)
        finally:
            if out:  # what came before an in-band error is delivered before the error
                on_output()
                emit_many(out)
        if done:
            http.finish()
            return
        if after_read is not None:
            after_read()
    finish = acc.finish()
    if finish:
        emit_many(finish)
