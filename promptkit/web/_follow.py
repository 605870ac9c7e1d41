"""Following a published stream: replay its log from a point, then its live events, to the terminal one.

A follower is what a browser's connection is in resumable mode: the
response body of :func:`~promptkit.web.flask_response` (with ``log=``) and of
the resume responses. It holds no thread of its own (it runs in the
server's request thread) and nothing of the turn: when the browser leaves,
only the follower ends. It waits in the log's ``read`` (a condition wait
in memory, a blocking ``XREAD`` in Redis), for at most the log's poll
interval at a time, and after a silent poll it asks the log whether the
producer's lease lapsed, so a producer that died ends every follower with
one ``error`` event instead of a hang.

Two output formats frame the same log: promptkit's own events
(``event: <type>`` / ``id: <entry id>`` / ``data: <event.to_dict() JSON>``) and
the Vercel AI SDK's UI message stream (:mod:`promptkit.web._ai_sdk`).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Dict, Generator, Iterator, Mapping, NamedTuple, Optional

from .._errors import ConfigurationError, PromptKitError
from .._sse_out import HEARTBEAT, sse_event
from .._types import StreamEvent
from ._log import LogEntry, StreamLog, StreamNotFoundError, check_stream_id, parse_entry_id

__all__ = ["FollowBody", "ProducerLostError", "ResumeReply", "resume_reply", "PROTOCOLS", "check_protocol", "RECONNECT_MS"]

logger = logging.getLogger(__name__)

PROTOCOLS = ("promptkit", "ai-sdk")
"""The output formats: promptkit's own SSE events, and the Vercel AI SDK's UI message stream."""

RECONNECT_MS = 1000
"""The ``retry:`` a resumable response announces: how soon (ms) an ``EventSource`` reconnects after a drop."""


class ProducerLostError(PromptKitError):
    """The worker producing a stream stopped renewing its lease (it died or froze): the stream ended unfinished.

    Followers receive it as the stream's terminal ``error`` event.
    """


def check_protocol(protocol: Any) -> str:
    if protocol not in PROTOCOLS:
        raise ConfigurationError(f"protocol must be one of {', '.join(map(repr, PROTOCOLS))}, got {protocol!r}")
    return str(protocol)


def lost_event(lease: float) -> Dict[str, Any]:
    """The terminal event a follower writes for a producer whose lease lapsed."""
    error = ProducerLostError(
        f"the worker producing this stream stopped renewing its {lease:g}s lease (it died or froze); "
        "the reply is incomplete"
    )
    return StreamEvent("error", error=error).to_dict()


def _gap_event(after: int, first: int, max_events: int) -> Dict[str, Any]:
    error = StreamNotFoundError(
        f"the log no longer holds events 0-{after + 1} to 0-{first - 1} (it keeps the newest {max_events})"
    )
    return StreamEvent("error", error=error).to_dict()


def follow(
    log: StreamLog,
    stream_id: str,
    after: int,
    heartbeat: Optional[float],
    closing: threading.Event,
) -> Generator[Optional[LogEntry], None, None]:
    """The entries after seq ``after``, live ones as they are appended, to the terminal one.

    Yields ``None`` after ``heartbeat`` seconds without an entry. Ends after
    the terminal entry (at once when ``after`` is already past it), when
    ``closing`` is set (checked at least every ``log.poll`` seconds), or with
    a terminal error entry of its own (seq 0: not in the log) when entries it
    needs were trimmed away.

    Raises:
        StreamNotFoundError: the stream is not (or no longer) in the log.
    """
    if after < 0:
        raise ConfigurationError(f"after must be a seq of 0 or more, got {after!r}")
    poll = log.poll
    expected = after + 1
    beat_at = None if heartbeat is None else time.monotonic() + heartbeat
    ended = False  # the log holds its terminal event: what is there is all there will be
    while not closing.is_set():
        wait = 0.0 if ended else poll if beat_at is None else max(0.0, min(poll, beat_at - time.monotonic()))
        entries = log.read(stream_id, expected - 1, wait)
        if entries:
            if entries[0].seq != expected:
                yield LogEntry(0, _gap_event(expected - 1, entries[0].seq, log.max_events))
                return
            for entry in entries:
                yield entry
                if entry.terminal:
                    return
            expected = entries[-1].seq + 1
            if heartbeat is not None:
                beat_at = time.monotonic() + heartbeat
            continue
        if ended:
            return  # the client already has the terminal event
        if beat_at is not None and heartbeat is not None and time.monotonic() >= beat_at:
            yield None
            beat_at = time.monotonic() + heartbeat
        if log.declare_lost(stream_id, lost_event(log.lease)):
            logger.warning("stream %s: its producer's lease lapsed; ended it with an error", stream_id)
        ended = log.info(stream_id).finished  # then one more read takes the rest, terminal included


Encoder = Callable[[Mapping[str, Any], Optional[str]], bytes]


def _promptkit_frame(event: Mapping[str, Any], event_id: Optional[str]) -> bytes:
    return sse_event(str(event.get("type")), event, event_id=event_id)


class FollowBody:
    """The SSE bytes of a published stream from a point on, as a WSGI response iterable.

    Iterating yields the frames; ``close()`` (every WSGI server calls it)
    only stops following: the turn goes on. Thread-safe the way
    :class:`~promptkit.web.SSEBody` is, so :class:`~promptkit.web.AsyncSSEBody`
    can wrap it for ASGI servers.

    Args:
        log: the stream log.
        stream_id: the published stream.
        after: the seq of the last event the client has (0: from the start).
        heartbeat: seconds of silence before a ``: keep-alive`` comment; ``None``: none.
        protocol: ``"promptkit"`` or ``"ai-sdk"``.
        prelude: bytes sent first (a ``retry:`` field).
    """

    def __init__(
        self,
        log: StreamLog,
        stream_id: str,
        *,
        after: int = 0,
        heartbeat: Optional[float] = 15.0,
        protocol: str = "promptkit",
        prelude: bytes = b"",
    ) -> None:
        self.log = log
        self.stream_id = stream_id
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._frames = self._generate(after, heartbeat, check_protocol(protocol), prelude)

    def _generate(self, after: int, heartbeat: Optional[float], protocol: str, prelude: bytes) -> Iterator[bytes]:
        if prelude:
            yield prelude
        if protocol == "ai-sdk":
            from ._ai_sdk import UIMessageEncoder

            # The UI stream is stateful (open parts, steps): replay the log from the start
            # through the encoder, and send only what comes after the client's last event.
            encoder = UIMessageEncoder(self.stream_id)
            encode: Encoder = lambda event, event_id: encoder.encode(event, event_id=event_id)  # noqa: E731
            start, skip = 0, after
        else:
            encode, start, skip = _promptkit_frame, after, 0
        try:
            for entry in follow(self.log, self.stream_id, start, heartbeat, self._closing):
                if entry is None:
                    yield HEARTBEAT
                    continue
                frame = encode(entry.event, entry.id if entry.seq else None)
                if frame and (entry.seq > skip or entry.seq == 0):
                    yield frame
        except PromptKitError as error:  # the log failed (or expired) mid-way: one clear error, not a cut
            logger.warning("stream %s: following failed: %s", self.stream_id, error)
            frame = encode(StreamEvent("error", error=error).to_dict(), None)
            if frame:
                yield frame

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with self._lock:
            if self._closed:
                raise StopIteration
            return next(self._frames)

    def cancel(self) -> None:
        """Stop following at the next poll (returns at once); the turn goes on."""
        self._closing.set()

    def close(self) -> None:
        """Stop following; idempotent. The turn goes on, and stays resumable."""
        self._closing.set()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            close = getattr(self._frames, "close", None)
            if close is not None:
                close()


class ResumeReply(NamedTuple):
    """A resume request's answer: ``status`` 200 with ``body``, or 204 (nothing more to send) with none."""

    status: int
    body: Optional[FollowBody]


def resume_reply(
    log: StreamLog,
    stream_id: Optional[str],
    *,
    last_event_id: Optional[str] = None,
    heartbeat: Optional[float] = 15.0,
    protocol: str = "promptkit",
    replay_finished: bool = True,
) -> ResumeReply:
    """The answer to a resume request, framework-neutral.

    204 when there is nothing to resume (``stream_id`` is ``None``, the client
    already has the terminal event, or the stream finished and
    ``replay_finished`` is false): an ``EventSource`` stops reconnecting on a
    204, and the AI SDK's ``resume`` takes it for "no active stream".

    Raises:
        ConfigurationError: a malformed ``stream_id``, ``last_event_id`` or ``protocol``,
            or an event id the stream never had (before any I/O for the first three).
        StreamNotFoundError: no such stream in the log (HTTP 404).
        StoreError: the log's engine failed.
    """
    check_protocol(protocol)
    if stream_id is None:
        return ResumeReply(204, None)
    check_stream_id(stream_id)
    after = 0 if last_event_id is None or not last_event_id.strip() else parse_entry_id(last_event_id)
    info = log.info(stream_id)
    if after > info.events:
        raise ConfigurationError(f"stream {stream_id!r} has no event 0-{after} (it has {info.events} so far)")
    if info.finished and (after >= info.events or not replay_finished):
        return ResumeReply(204, None)
    prelude = f"retry: {RECONNECT_MS}\n\n".encode("ascii") if protocol == "promptkit" else b""
    body = FollowBody(log, stream_id, after=after, heartbeat=heartbeat, protocol=protocol, prelude=prelude)
    return ResumeReply(200, body)
