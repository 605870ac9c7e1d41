"""The stream log: every event of a published turn, kept so that any worker can replay and follow it.

:class:`StreamLog` is the interface the publisher (:mod:`promptkit.web._publish`)
and the follower (:mod:`promptkit.web._follow`) speak; :class:`MemoryStreamLog`
is its in-process engine, for a single-process app with no Redis, and
:class:`~promptkit.web.RedisStreamLog` the one that spans workers and machines.

The entries of one stream are numbered ``1, 2, 3, ...`` and their ids are
``"0-1"``, ``"0-2"``, ... in every engine (Redis Stream ids with the sequence
number as their second part), so an id says where it is in the stream and a
gap is seen, never silently skipped. The last entry is the turn's terminal
event (``done`` or ``error``); a log that holds it is finished, and stays
readable until its time to live runs out.
"""

from __future__ import annotations

import abc
import asyncio
import re
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import attrs

from .._errors import ConfigurationError, PromptKitError

if TYPE_CHECKING:  # pragma: no cover
    from .._stream import Stream

__all__ = [
    "LogEntry",
    "StreamInfo",
    "StreamLog",
    "MemoryStreamLog",
    "StreamNotFoundError",
    "entry_id",
    "parse_entry_id",
    "new_stream_id",
    "check_key",
    "DEFAULT_TTL",
    "DEFAULT_LEASE",
    "DEFAULT_MAX_EVENTS",
]

DEFAULT_TTL = 3600.0
"""Seconds a published stream stays readable after its last event (and while it runs)."""

DEFAULT_LEASE = 10.0
"""Seconds a producer's lease lasts without renewal: how soon followers learn that it died."""

DEFAULT_MAX_EVENTS = 100_000
"""The most events one stream's log keeps (older ones are trimmed, and a resume from them fails plainly)."""

TERMINAL_TYPES = ("done", "error")

_ENTRY_ID = re.compile(r"0-(0|[1-9][0-9]{0,17})\Z")
_STREAM_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")


class StreamNotFoundError(PromptKitError, LookupError):
    """No published stream has this id (it never existed, or its time to live ran out).

    The web helpers answer it with HTTP 404. Also a ``LookupError``.
    """


def entry_id(seq: int) -> str:
    """The id of a stream's ``seq``-th entry (1-based): ``"0-<seq>"``."""
    return f"0-{seq}"


def parse_entry_id(value: Any) -> int:
    """The sequence number in an entry id such as a ``Last-Event-ID`` header (``"0-17"`` -> 17; ``"0-0"``: before the first).

    Raises:
        ConfigurationError: ``value`` is not an entry id (before any I/O).
    """
    match = _ENTRY_ID.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        shown = value if isinstance(value, str) and len(value) <= 40 else type(value).__name__
        raise ConfigurationError(f"not a stream event id (expected 0-<n>, as sent in the id: field): {shown!r}")
    return int(match.group(1))


def check_stream_id(value: Any, name: str = "stream_id") -> str:
    """``value`` if it is a usable stream id or key: 1 to 128 of ``A-Z a-z 0-9 _ . : -``."""
    if not isinstance(value, str) or not _STREAM_ID.match(value):
        raise ConfigurationError(f"{name} must be 1 to 128 characters of A-Z a-z 0-9 _ . : -, got {value!r}")
    return value


def check_key(value: Any) -> str:
    """``value`` if it is a usable key (a conversation id, say): a non-empty str of at most 1024 characters."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise ConfigurationError(f"key must be a non-empty str of at most 1024 characters, got {value!r:.80}")
    return value


def new_stream_id() -> str:
    """A fresh, unguessable stream id (``ps_`` and 24 hex digits)."""
    return f"ps_{secrets.token_hex(12)}"


def check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or value != value:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive int, got {value!r}")
    return value


@attrs.frozen
class LogEntry:
    """One event of a published stream: its ``seq`` (1-based), its ``id`` (``"0-<seq>"``) and the event dict.

    ``event`` is ``StreamEvent.to_dict()`` as the producer wrote it.
    """

    seq: int
    event: Mapping[str, Any]

    @property
    def id(self) -> str:
        """The entry id, sent as the SSE ``id:`` and given back as ``Last-Event-ID``."""
        return entry_id(self.seq)

    @property
    def terminal(self) -> bool:
        """Whether this is the stream's last event (``done`` or ``error``)."""
        return self.event.get("type") in TERMINAL_TYPES


@attrs.frozen
class StreamInfo:
    """What a log knows of one stream: its key, how many events it holds, and whether it ended."""

    stream_id: str
    key: Optional[str]
    events: int
    finished: bool
    stop_requested: bool = False

    @property
    def last_id(self) -> Optional[str]:
        """The id of the newest entry (``None`` before the first event)."""
        return entry_id(self.events) if self.events else None


@attrs.frozen
class Appended:
    """What :meth:`StreamLog.append` did: the entry's ``seq`` (0: not written), and what the producer must do.

    ``live`` is ``False`` when the stream no longer takes events (a follower
    declared its producer lost, or it expired): the producer must stop.
    ``stop`` is ``True`` when someone asked the stream to stop.
    """

    seq: int
    live: bool = True
    stop: bool = False


class StreamLog(abc.ABC):
    """Where published streams live: an append-only log per stream, a lease per producer, and stop requests.

    The web helpers use it through :func:`promptkit.web.publish` and the
    resume responses; applications call :meth:`stop`, :meth:`current` and
    :meth:`info`. Implement it to put the log on another engine; the
    in-process :class:`MemoryStreamLog` is the reference.

    Thread-safe. Each method but :meth:`read` returns promptly.

    Attributes:
        ttl: seconds a stream stays readable after its last event.
        lease: seconds a producer's lease lasts without renewal.
        max_events: the most events one stream keeps.
    """

    ttl: float
    lease: float
    max_events: int

    @property
    def poll(self) -> float:
        """The longest a follower waits for an event before it checks that the producer is alive."""
        return min(1.0, self.lease / 5)

    # -- producers -----------------------------------------------------
    @abc.abstractmethod
    def create(self, stream_id: str, key: Optional[str]) -> None:
        """Start a stream's log and take its lease; ``key`` (e.g. a conversation id) then names it as current.

        Raises:
            ConfigurationError: a stream with this id exists.
        """

    @abc.abstractmethod
    def append(self, stream_id: str, event: Mapping[str, Any], seq: int = 0) -> Appended:
        """Append one event (a terminal one ends the stream and its lease).

        ``seq`` (from 1; 0: none) is the seq the event must get: an append
        that finds it already there returns it without writing again, so a
        producer may retry an append whose answer it did not get.
        """

    @abc.abstractmethod
    def hold(self, stream_id: str, stream: "Stream") -> None:
        """Keep the lease of a stream this process produces alive, and cancel ``stream`` when asked to stop."""

    @abc.abstractmethod
    def release(self, stream_id: str) -> None:
        """Stop holding a stream (its producer ended); the lease lapses."""

    # -- followers -----------------------------------------------------
    @abc.abstractmethod
    def read(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        """The entries after ``after`` (a seq), waiting up to ``timeout`` seconds for the first one.

        Returns what is there (possibly from ``after + 2`` on when older
        entries were trimmed: the caller checks the sequence), or ``[]``.

        Raises:
            StreamNotFoundError: the stream does not exist (or expired).
        """

    async def aread(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        """:meth:`read` for an event loop. The engines here wait without a thread; this default runs
        :meth:`read` in the loop's executor (override it in an engine with an async client)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.read, stream_id, after, timeout)

    async def ainfo(self, stream_id: str) -> StreamInfo:
        """:meth:`info` for an event loop (this default: in the loop's executor)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.info, stream_id)

    async def adeclare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        """:meth:`declare_lost` for an event loop (this default: in the loop's executor)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.declare_lost, stream_id, event)

    @abc.abstractmethod
    def info(self, stream_id: str) -> StreamInfo:
        """What the log knows of a stream.

        Raises:
            StreamNotFoundError: the stream does not exist (or expired).
        """

    @abc.abstractmethod
    def declare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        """End a running stream whose lease lapsed (its producer died) with ``event``; whether it did.

        Atomic: of all the followers that notice, one writes the event, and a
        producer that was only slow finds its stream ended at its next append.
        """

    # -- anyone ------------------------------------------------------------
    @abc.abstractmethod
    def stop(self, stream_id: str) -> bool:
        """Ask a running stream to stop, from any worker; whether it was running.

        The producer cancels its turn (within milliseconds on a live process),
        which then ends with a ``done`` event whose ``final.finish_reason`` is
        ``"cancelled"``, and is committed as cancelled.
        """

    @abc.abstractmethod
    def current(self, key: str) -> Optional[str]:
        """The id of the newest stream published under ``key``, while its log lasts; else ``None``."""

    def close(self) -> None:
        """Release what the log holds (connections); idempotent."""

    def __enter__(self) -> "StreamLog":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _wake(future: "asyncio.Future[None]") -> None:
    if not future.done():
        future.set_result(None)


class _Record:
    """One stream in a :class:`MemoryStreamLog`, with the condition its followers wait on."""

    def __init__(self, key: Optional[str], now: float, lock: threading.Lock) -> None:
        self.key = key
        self.changed = threading.Condition(lock)  # one per stream: an append wakes only its followers
        # Followers on event loops: (loop, future) pairs, woken with the condition's waiters.
        self.waiters: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]] = []
        self.entries: List[LogEntry] = []  # the newest ``max_events``
        self.count = 0  # every entry ever appended: the last seq
        self.finished = False
        self.stop = False
        self.expires = now


class MemoryStreamLog(StreamLog):
    """A :class:`StreamLog` in this process's memory: resumable streams for a single-process app.

    Followers wait on their stream's condition (an asyncio future on an
    event loop), so one waiting costs no thread of its own and no polling,
    and an append wakes only that stream's followers. A reconnect must reach
    the same process (one worker, or sticky sessions); use :class:`~promptkit.web.RedisStreamLog` across workers.
    The producer cannot die apart from its followers here, so there is no
    lease to watch.

    Args:
        ttl: seconds a stream stays readable after its last event.
        max_events: the most events one stream keeps.
    """

    def __init__(self, *, ttl: float = DEFAULT_TTL, max_events: int = DEFAULT_MAX_EVENTS) -> None:
        self.ttl = check_seconds("ttl", ttl)
        self.max_events = check_count("max_events", max_events)
        self.lease = DEFAULT_LEASE
        self._lock = threading.Lock()
        self._streams: Dict[str, _Record] = {}
        self._current: Dict[str, str] = {}
        self._held: Dict[str, "Stream"] = {}

    def __repr__(self) -> str:
        return f"MemoryStreamLog(ttl={self.ttl:g}, max_events={self.max_events})"

    def _prune(self, now: float) -> None:
        expired = [sid for sid, record in self._streams.items() if record.finished and record.expires <= now]
        for sid in expired:
            record = self._streams.pop(sid)
            if record.key is not None and self._current.get(record.key) == sid:
                del self._current[record.key]

    def _record(self, stream_id: str) -> _Record:
        record = self._streams.get(stream_id)
        if record is None or (record.finished and record.expires <= time.monotonic()):
            raise StreamNotFoundError(f"no stream {stream_id!r} in the log (never published, or expired)")
        return record

    def create(self, stream_id: str, key: Optional[str]) -> None:
        check_stream_id(stream_id)
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            if stream_id in self._streams:
                raise ConfigurationError(f"a stream {stream_id!r} is already in the log")
            self._streams[stream_id] = _Record(key, now + self.ttl, self._lock)
            if key is not None:
                self._current[key] = stream_id

    def append(self, stream_id: str, event: Mapping[str, Any], seq: int = 0) -> Appended:
        with self._lock:
            record = self._streams.get(stream_id)
            if record is not None and 0 < seq <= record.count:
                return Appended(seq, stop=record.stop)  # a retry of an append that was written
            if record is None or record.finished:
                return Appended(0, live=False)
            record.count += 1
            record.entries.append(LogEntry(record.count, event))
            if len(record.entries) > self.max_events:
                del record.entries[: len(record.entries) - self.max_events]
            if event.get("type") in TERMINAL_TYPES:
                record.finished = True
            record.expires = time.monotonic() + self.ttl
            record.changed.notify_all()
            waiters, record.waiters = record.waiters, []
            appended = Appended(record.count, stop=record.stop)
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed: nobody waits there any more
                pass
        return appended

    def hold(self, stream_id: str, stream: "Stream") -> None:
        with self._lock:
            self._held[stream_id] = stream
            record = self._streams.get(stream_id)
            stop = record is not None and record.stop
        if stop:
            stream.cancel()

    def release(self, stream_id: str) -> None:
        with self._lock:
            self._held.pop(stream_id, None)

    def read(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                record = self._record(stream_id)
                if record.count > after:
                    first = record.count - len(record.entries) + 1  # the seq of entries[0]
                    return record.entries[max(0, after + 1 - first):]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                record.changed.wait(remaining)

    async def aread(self, stream_id: str, after: int, timeout: float) -> List[LogEntry]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                record = self._record(stream_id)
                if record.count > after:
                    first = record.count - len(record.entries) + 1
                    return record.entries[max(0, after + 1 - first):]
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                future: "asyncio.Future[None]" = loop.create_future()
                record.waiters.append((loop, future))
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                with self._lock:
                    if (loop, future) in record.waiters:
                        record.waiters.remove((loop, future))

    async def ainfo(self, stream_id: str) -> StreamInfo:
        return self.info(stream_id)  # memory only: nothing to wait for

    async def adeclare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        return False

    def info(self, stream_id: str) -> StreamInfo:
        check_stream_id(stream_id)
        with self._lock:
            record = self._record(stream_id)
            return StreamInfo(stream_id, record.key, record.count, record.finished, record.stop)

    def declare_lost(self, stream_id: str, event: Mapping[str, Any]) -> bool:
        return False  # the producer lives and dies with this process, and so with every follower

    def stop(self, stream_id: str) -> bool:
        check_stream_id(stream_id)
        with self._lock:
            record = self._streams.get(stream_id)
            if record is None or record.finished:
                return False
            record.stop = True
            stream = self._held.get(stream_id)
        if stream is not None:
            stream.cancel()
        return True

    def current(self, key: str) -> Optional[str]:
        check_key(key)
        with self._lock:
            self._prune(time.monotonic())
            return self._current.get(key)
