"""Reading one response body: bytes -> server-sent events -> JSON payloads -> the dialect's decoder -> stream events.

The per-chunk hot path. It runs on the thread running the turn (usually the
consumer's own), enforces the
idle and total deadlines of the turn's :class:`~promptkit._timeouts.TimeoutPlan`,
and yields everything one read produced as one batch, which the turn hands to
the consumer in one queue operation.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

from ._timeouts import TimeoutPlan
from ._dialects import Decoder
from ._errors import StreamError, StreamTruncatedError
from ._limits import json_excess
from ._sse import SSEParser
from ._stream import StreamControl
from ._types import StreamEvent

if TYPE_CHECKING:  # pragma: no cover
    from ._transport import HTTPStream

__all__ = ["read_body"]

_monotonic = time.monotonic
_loads = json.loads


def read_body(
    control: StreamControl, http: "HTTPStream", acc: Decoder, plan: TimeoutPlan
) -> Iterator[Tuple[List[StreamEvent], bool]]:
    """Read ``http`` into ``acc`` until ``[DONE]``, the decoder's end, EOF or cancel; yield the events of each read.

    Each item is ``(events, last)``: never empty, ``last`` for the batch that ends the reply. The events a read produced before an in-band error
    are yielded before the error is raised. The caller emits each batch (one
    queue operation). After ``[DONE]``, or the event after which the decoder
    says the reply ended (``acc.ended``: the Responses API's
    ``response.completed``), the body's end is read and the connection
    released; at EOF the decoder's closing events come last.

    Raises:
        APITimeoutError: the idle time or the total deadline passed (its kind says which).
        APIConnectionError: the connection broke.
        StreamError: an in-band error, a malformed chunk, a crossed
            :class:`~promptkit.Limits` bound (``acc.limits``), or
            (StreamTruncatedError) EOF before the reply was complete (``acc.complete``).
    """
    limits = acc.limits
    max_depth = limits.max_json_depth
    values_chars = 2 * limits.max_json_values
    parser = SSEParser(limits)
    feed = parser.feed
    accumulate = acc.feed
    idle = plan.idle
    no_deadline = plan.deadline is None
    last = _monotonic()
    fresh = True  # an event just arrived: the read may wait the whole idle time
    pending: List[StreamEvent] = []  # events of an unterminated last event (see _last_event)
    while True:
        # While events flow, the wait stays exactly `idle` (no settimeout per read);
        # after a comment-only read it shrinks to what is left of the idle time.
        if fresh and no_deadline:
            wait, kind = idle, "idle"  # the common case, without a call per read
        else:
            wait, kind = plan.wait(None if fresh or idle is None else idle - (_monotonic() - last))
        if wait is not None and wait <= 0:
            raise plan.error(kind)
        try:
            data = http.read1(wait)
        except TimeoutError:
            if control.cancelled:
                return
            raise plan.error(kind) from None
        if control.cancelled:
            return
        if not data:
            tail = parser.close()
            if tail is not None and tail.data == "[DONE]":
                break
            if tail is not None and not acc.complete:
                # The body's last event lost only its blank line (a server that closes right after
                # response.completed or message_stop): the reply is whole if that event completes it.
                pending = _last_event(acc, tail.event, tail.data)
            if not acc.complete:
                raise StreamTruncatedError(acc.truncation)
            break  # a finished reply whose server omitted [DONE]
        events = feed(data)
        if not events:
            fresh = False
            continue  # comments and partial lines do not count as activity
        fresh = True
        last = _monotonic()
        out: List[StreamEvent] = []
        done = False
        failure: Optional[StreamError] = None
        for sse in events:
            text = sse.data
            if text == "[DONE]":
                try:
                    out.extend(acc.finish())
                except StreamError as error:
                    failure = error
                    break
                done = True
                break
            # Nesting needs a "[" or "{" per level, and a value takes two characters
            # with its separator: two counts clear nearly every chunk, so the exact
            # check (json_excess) runs only where it could fail.
            if len(text) >= values_chars or text.count("{") + text.count("[") > max_depth:
                failure = json_excess(text, limits)
                if failure is not None:
                    break
            try:
                chunk = _loads(text)
            except (ValueError, RecursionError) as exc:
                # ValueError also covers an integer of more digits than Python
                # converts; RecursionError a depth limit set above the interpreter's.
                reason = str(exc)[:120]
                if sse.event == "error":
                    failure = StreamError(f"the server sent an error event: {text[:300]}", body=text)
                else:
                    failure = StreamError(f"malformed chunk (not JSON: {reason}): {text[:200]!r}", body=text, retryable=True)
                break
            event = sse.event
            if event != "message":
                if event == "error" and not (isinstance(chunk, dict) and ("error" in chunk or chunk.get("type") == "error")):
                    failure = StreamError(f"the server sent an error event: {text[:300]}", body=chunk)
                    break
                if chunk.__class__ is dict and "type" not in chunk:
                    chunk["type"] = event  # a server that names the event only in the SSE field
            try:
                produced = accumulate(chunk)
                if produced:
                    out.extend(produced)
                if acc.ended:  # the decoder's protocol says the reply is over: read no further
                    out.extend(acc.finish())
                    done = True
                    break
            except StreamError as error:
                failure = error
                break
        if out:  # what came before an in-band error is delivered before the error
            yield out, done
        if failure is not None:
            raise failure
        if done:
            http.finish()
            return
    finish = pending + acc.finish()
    if finish:
        yield finish, True


def _last_event(acc: Decoder, event: str, text: str) -> List[StreamEvent]:
    """Feed an unterminated last event to ``acc`` when it is a whole JSON payload; its events (or none)."""
    excess = json_excess(text, acc.limits)
    if excess is not None:
        raise excess
    try:
        chunk = _loads(text)
    except (ValueError, RecursionError):
        return []  # cut inside the payload: the truncation stands
    if chunk.__class__ is dict and "type" not in chunk and event not in ("message", "error"):
        chunk["type"] = event
    return acc.feed(chunk)
