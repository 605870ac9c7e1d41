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
from typing import Any, AsyncGenerator, AsyncIterator, Callable, Dict, Generator, Iterator, List, Mapping, NamedTuple, Optional

from .._errors import ConfigurationError, PromptKitError, StoreError
from .._sse_out import HEARTBEAT, sse_event
from .._types import StreamEvent
from ._log import LogEntry, StreamLog, StreamNotFoundError, check_stream_id, parse_entry_id

__all__ = ["FollowBody", "AsyncFollowBody", "ProducerLostError", "ResumeReply", "resume_reply", "PROTOCOLS", "check_protocol", "RECONNECT_MS"]

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


class _Cursor:
    """Where a follower is, and what it does next: the following logic without the I/O.

    The synchronous follower (:func:`follow`) and the asynchronous one
    (:func:`afollow`) drive it the same way: read with :meth:`wait`, hand
    entries to :meth:`take`; after a silent read, :meth:`beat` and then (the
    producer check) :meth:`checked`.
    """

    def __init__(self, log: StreamLog, after: int, heartbeat: Optional[float]) -> None:
        if after < 0:
            raise ConfigurationError(f"after must be a seq of 0 or more, got {after!r}")
        self.poll = log.poll
        self.max_events = log.max_events
        self.expected = after + 1  # the seq of the next entry
        self.heartbeat = heartbeat
        self.beat_at = None if heartbeat is None else time.monotonic() + heartbeat
        self.ended = False  # the log holds its terminal event: what is there is all there will be
        self.done = False

    @property
    def after(self) -> int:
        return self.expected - 1

    def wait(self) -> float:
        """How long the next read may wait for an entry."""
        if self.ended:
            return 0.0
        if self.beat_at is None:
            return self.poll
        return max(0.0, min(self.poll, self.beat_at - time.monotonic()))

    def take(self, entries: List[LogEntry]) -> List[LogEntry]:
        """What to send of a non-empty read (a gap becomes one error entry, seq 0); sets :attr:`done`."""
        if entries[0].seq != self.expected:
            self.done = True
            return [LogEntry(0, _gap_event(self.after, entries[0].seq, self.max_events))]
        out = []
        for entry in entries:
            out.append(entry)
            if entry.terminal:
                self.done = True
                return out
        self.expected = entries[-1].seq + 1
        if self.heartbeat is not None:
            self.beat_at = time.monotonic() + self.heartbeat
        return out

    def beat(self) -> bool:
        """After a silent read: whether a heartbeat is due now (sets :attr:`done` past the terminal event)."""
        if self.ended:
            self.done = True  # the client already has the terminal event
            return False
        if self.beat_at is not None and self.heartbeat is not None and time.monotonic() >= self.beat_at:
            self.beat_at = time.monotonic() + self.heartbeat
            return True
        return False

    def checked(self, stream_id: str, lost: bool, finished: bool) -> None:
        """The producer check's outcome: a lost producer was declared, or the stream finished."""
        if lost:
            logger.warning("stream %s: its producer's lease lapsed; ended it with an error", stream_id)
        self.ended = finished  # then one more read takes the rest, terminal included


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
    needs were trimmed away. After each silent poll it ends a stream whose
    producer's lease lapsed (:meth:`StreamLog.declare_lost`).

    Raises:
        StreamNotFoundError: the stream is not (or no longer) in the log.
    """
    cursor = _Cursor(log, after, heartbeat)
    while not closing.is_set():
        entries = log.read(stream_id, cursor.after, cursor.wait())
        if entries:
            yield from cursor.take(entries)
        elif cursor.beat():
            yield None
        if cursor.done:
            return
        if not entries:
            lost = log.declare_lost(stream_id, lost_event(log.lease))
            cursor.checked(stream_id, lost, log.info(stream_id).finished)


async def afollow(
    log: StreamLog,
    stream_id: str,
    after: int,
    heartbeat: Optional[float],
    closing: threading.Event,
) -> AsyncGenerator[Optional[LogEntry], None]:
    """:func:`follow` for an event loop: it waits in the log's ``aread``, holding no thread."""
    cursor = _Cursor(log, after, heartbeat)
    while not closing.is_set():
        entries = await log.aread(stream_id, cursor.after, cursor.wait())
        if entries:
            for entry in cursor.take(entries):
                yield entry
        elif cursor.beat():
            yield None
        if cursor.done:
            return
        if not entries:
            lost = await log.adeclare_lost(stream_id, lost_event(log.lease))
            cursor.checked(stream_id, lost, (await log.ainfo(stream_id)).finished)


Encoder = Callable[[Mapping[str, Any], Optional[str]], bytes]


def _promptkit_frame(event: Mapping[str, Any], event_id: Optional[str]) -> bytes:
    return sse_event(str(event.get("type")), event, event_id=event_id)


class _Framer:
    """A follower's output: the entries (and heartbeats) of one stream as SSE bytes, in one protocol."""

    def __init__(self, stream_id: str, after: int, protocol: str) -> None:
        if protocol == "ai-sdk":
            from ._ai_sdk import UIMessageEncoder

            # The UI stream is stateful (open parts, steps): replay the log from the start
            # through the encoder, and send only what comes after the client's last event.
            encoder = UIMessageEncoder(stream_id)
            self.encode: Encoder = lambda event, event_id: encoder.encode(event, event_id=event_id)  # noqa: E731
            self.start, self.skip = 0, after
        else:
            self.encode, self.start, self.skip = _promptkit_frame, after, 0

    def frame(self, entry: Optional[LogEntry]) -> bytes:
        """The bytes for one entry (``None``: a heartbeat); empty when nothing is to be sent."""
        if entry is None:
            return HEARTBEAT
        data = self.encode(entry.event, entry.id if entry.seq else None)
        return data if entry.seq > self.skip or entry.seq == 0 else b""

    def failed(self, stream_id: str, error: BaseException) -> bytes:
        """The one error frame of a follower whose log failed (or expired) mid-way.

        An engine's failure is logged whole; the browser is told only that the
        log failed (the message would name the server's internal address).
        """
        logger.warning("stream %s: following failed: %s", stream_id, error)
        if isinstance(error, StoreError):
            error = StoreError("the stream log is unavailable; the reply may still finish (reload to see it)")
        return self.encode(StreamEvent("error", error=error).to_dict(), None)


class FollowBody:
    """The SSE bytes of a published stream from a point on, as a WSGI response iterable.

    Iterating yields the frames; ``close()`` (every WSGI server calls it)
    only stops following: the turn goes on. Thread-safe the way
    :class:`~promptkit.web.SSEBody` is. Under ASGI, :meth:`asynchronous`
    gives the same frames as an async iterable that holds no thread.

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
        self.after = after
        self.heartbeat = heartbeat
        self.protocol = check_protocol(protocol)
        self.prelude = prelude
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._frames = self._generate()

    def _generate(self) -> Iterator[bytes]:
        if self.prelude:
            yield self.prelude
        framer = _Framer(self.stream_id, self.after, self.protocol)
        try:
            for entry in follow(self.log, self.stream_id, framer.start, self.heartbeat, self._closing):
                data = framer.frame(entry)
                if data:
                    yield data
        except PromptKitError as error:  # the log failed (or expired) mid-way: one clear error, not a cut
            data = framer.failed(self.stream_id, error)
            if data:
                yield data

    async def _agenerate(self) -> AsyncIterator[bytes]:
        if self.prelude:
            yield self.prelude
        framer = _Framer(self.stream_id, self.after, self.protocol)
        try:
            async for entry in afollow(self.log, self.stream_id, framer.start, self.heartbeat, self._closing):
                data = framer.frame(entry)
                if data:
                    yield data
        except PromptKitError as error:
            data = framer.failed(self.stream_id, error)
            if data:
                yield data

    def asynchronous(self) -> "AsyncFollowBody":
        """The same frames as an async iterable for ASGI servers (use one or the other, not both)."""
        return AsyncFollowBody(self)

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


class AsyncFollowBody:
    """A :class:`FollowBody`'s frames as an async iterable: an ASGI follower holds no thread while it waits.

    It waits in the log's ``aread`` (a future resolved by the producer in
    memory, an asyncio ``XREAD BLOCK`` in Redis). A cancelled response task
    (the client left) only ends the follower. ``close()`` is what Django
    calls as the response's resource closer.
    """

    def __init__(self, body: FollowBody) -> None:
        self._body = body

    @property
    def stream_id(self) -> str:
        """The followed stream."""
        return self._body.stream_id

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._body._agenerate()

    def close(self) -> None:
        """Stop following at the next poll; the turn goes on."""
        self._body.cancel()


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
    blank = last_event_id is None or (isinstance(last_event_id, str) and not last_event_id.strip())
    after = 0 if blank else parse_entry_id(last_event_id)
    info = log.info(stream_id)
    if after > info.events:
        raise ConfigurationError(f"stream {stream_id!r} has no event 0-{after} (it has {info.events} so far)")
    if info.finished and (after >= info.events or not replay_finished):
        return ResumeReply(204, None)
    prelude = f"retry: {RECONNECT_MS}\n\n".encode("ascii") if protocol == "promptkit" else b""
    body = FollowBody(log, stream_id, after=after, heartbeat=heartbeat, protocol=protocol, prelude=prelude)
    return ResumeReply(200, body)
