"""Stream: the one module that starts threads.

A turn is a generator of steps (:meth:`promptkit._turn.Turn.steps`): each
step reads the HTTP body until one read's events are parsed (or runs a tool
round) and yields them; the generator's value is the Response. A
:class:`_Driver` runs the steps and puts each batch of
:class:`~promptkit._types.StreamEvent` objects into a bounded
:class:`_Channel`, from which the consumer takes them by iterating the
:class:`Stream` or calling :meth:`Stream.result`.

Who runs a step is whoever needs it, one thread at a time (the driver's
lock): the consumer itself, when it finds the channel empty, so a token goes
from the socket to the ``for`` loop on one thread, without waking another;
a worker thread, started only for a consumer that must be woken while the
model is silent (``iter_sse`` with a heartbeat); and whoever ends the turn
early (:meth:`Stream.close` from another thread, a conversation starting its
next turn after a cancel, a garbage-collected stream). A slow consumer
slows the socket read (backpressure); a cancel shuts the socket down, so a
thread blocked in ``recv`` wakes at once, and lifts the channel's bound, so
a worker blocked in ``put`` does too.

:class:`Stream` built from a plain ``run(control)`` callable (which emits
through :meth:`StreamControl.emit`) runs it on a worker thread instead.
Neither the driver nor a worker holds a reference to the :class:`Stream`
object, so an abandoned stream is garbage collected, and collection cancels
it.
"""

from __future__ import annotations

import contextvars
import enum
import itertools
import logging
import sys
import threading
from collections import deque
from queue import Empty
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple, cast

from ._sse_out import SSEFrames
from ._errors import CallbackError, PromptKitError, StreamError, UsageError
from ._types import Response, StreamEvent, Usage

__all__ = ["Stream", "StreamControl", "start_thread"]

logger = logging.getLogger(__name__)

_ids = itertools.count(1)
_PUT_POLL = 0.25  # a safety net: a cancel wakes a worker waiting for room at once
_BATCH = 64  # events one channel slot may hold when the consumer lags behind


class _Channel:
    """The hand-off from the worker to the consumer: at most ``bound`` slots, one lock.

    A slot holds a list of events (what one or more reads produced) or, last,
    the terminal event. While the consumer has not taken the newest slot, a
    new batch joins it (up to :data:`_BATCH` events): the consumer gets those
    events no later than it would have as slots of their own, with one hand-off
    instead of many. So a burst costs a few hand-offs, not one per event, and
    a consumer that keeps up (an empty channel) gets each read at once.

    Each side waits on a lock of its own that the other side releases: fewer
    lock operations per hand-off than ``queue.Queue``'s conditions.
    """

    __slots__ = ("_items", "_lock", "_bound", "_consumer", "_producer", "_consumer_waits", "_producer_waits")

    def __init__(self, bound: int) -> None:
        self._items: "deque[Any]" = deque()
        self._lock = threading.Lock()
        self._bound = bound
        # Held while nobody waits; a waiter blocks acquiring it, the other side releases it.
        self._consumer = threading.Lock()
        self._consumer.acquire()
        self._producer = threading.Lock()
        self._producer.acquire()
        self._consumer_waits = False
        self._producer_waits = False

    def put(self, events: List[StreamEvent], cancelled: Callable[[], bool]) -> bool:
        """Hand ``events`` (a list the channel now owns) over; wait while every slot is full.

        Returns ``False`` (and drops them) once ``cancelled()``.
        """
        while True:
            with self._lock:
                items = self._items
                if items:
                    newest = items[-1]
                    if newest.__class__ is list and len(newest) < _BATCH:
                        newest.extend(events)
                        return True
                if len(items) < self._bound:
                    items.append(events)
                    if self._consumer_waits:
                        self._consumer_waits = False
                        self._consumer.release()
                    return True
                if cancelled():
                    return False
                self._producer_waits = True
            self._wait(self._producer, _PUT_POLL, consumer=False)
            if cancelled():
                return False

    def close(self, terminal: StreamEvent) -> None:
        """Add the terminal event: it always fits, and nothing joins it."""
        with self._lock:
            self._items.append(terminal)
            if self._consumer_waits:
                self._consumer_waits = False
                self._consumer.release()

    def unbound(self) -> None:
        """Lift the bound (a cancel): a worker waiting for room goes on at once."""
        with self._lock:
            self._bound = sys.maxsize
            if self._producer_waits:
                self._producer_waits = False
                self._producer.release()

    def take(self) -> Any:
        """The next slot, or ``None`` when the channel is empty (never waits)."""
        with self._lock:
            items = self._items
            if not items:
                return None
            item = items.popleft()
            if self._producer_waits:
                self._producer_waits = False
                self._producer.release()
            return item

    def get(self, timeout: Optional[float] = None) -> Any:
        """The next slot, waiting for one (at most ``timeout`` seconds: then ``queue.Empty``)."""
        while True:
            with self._lock:
                items = self._items
                if items:
                    item = items.popleft()
                    if self._producer_waits:
                        self._producer_waits = False
                        self._producer.release()
                    return item
                self._consumer_waits = True
            if not self._wait(self._consumer, timeout, consumer=True):
                raise Empty

    def _wait(self, waiter: "threading.Lock", timeout: Optional[float], *, consumer: bool) -> bool:
        """Block until the other side releases ``waiter``; ``False`` on a timeout."""
        if waiter.acquire(True, -1 if timeout is None else timeout):
            return True
        with self._lock:
            if consumer and self._consumer_waits:
                self._consumer_waits = False
                return False
            if not consumer and self._producer_waits:
                self._producer_waits = False
                return False
        waiter.acquire()  # released as the wait timed out: take it back, so it blocks the next wait
        return True

    def take_terminal(self) -> Optional[StreamEvent]:
        """The terminal event if it is in the channel, which then holds only it (what was read
        ahead of it after a cancel is dropped); ``None`` otherwise."""
        with self._lock:
            items = self._items
            if items and items[-1].__class__ is not list:
                terminal: StreamEvent = items[-1]
                items.clear()
                items.append(terminal)  # a consumer in another thread may still be waiting for it
                return terminal
            return None


class StreamControl:
    """The worker's side of a stream: emit events, notice cancellation, run tool handlers.

    Shared by the worker thread and the :class:`Stream`; holds no reference to
    the Stream itself.
    """

    __slots__ = ("channel", "_cancelled", "cancel_error", "_lock", "_http", "_wake", "_delivered", "driver")

    def __init__(self, buffer_size: int) -> None:
        self.channel = _Channel(buffer_size)
        self.driver: Optional["_Driver"] = None  # set by a Stream made from a turn's steps
        self._cancelled = False
        self.cancel_error: Optional[BaseException] = None
        self._lock = threading.Lock()
        self._http: Optional[Any] = None
        self._wake = threading.Event()
        self._delivered = 0  # characters of content handed to the consumer

    @property
    def cancelled(self) -> bool:
        """Whether the consumer cancelled the stream."""
        return self._cancelled

    def cancel(self, error: Optional[BaseException] = None) -> None:
        """Stop the stream. Thread-safe, idempotent, returns at once.

        ``error`` (a callback's failure) makes the turn end as that error
        instead of as a cancelled success.
        """
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            self.cancel_error = error
            http = self._http
        self._wake.set()
        # Lift the bound so a worker blocked in put() returns now; nobody consumes in order any more.
        self.channel.unbound()
        if http is not None:
            http.abort()

    def deliver(self, event: StreamEvent) -> bool:
        """Called by the consumer as it takes an event: ``False`` once cancelled (drop it).

        Counting and the cancel check happen under the lock that :meth:`cancel`
        takes, so the text counted as delivered when a cancel lands is exactly
        what the consumer got: the turn commits that, never the read-ahead.
        """
        if event.type != "content":
            return not self._cancelled  # nothing to count: the flag alone decides
        with self._lock:
            if self._cancelled:
                return False
            self._delivered += len(event.content)
            return True

    @property
    def delivered(self) -> int:
        """Characters of content the consumer has taken (frozen once cancelled)."""
        with self._lock:
            return self._delivered

    def attach(self, http: Any) -> None:
        """Register the open HTTP stream so that cancel() can abort it."""
        with self._lock:
            self._http = http
            cancelled = self._cancelled
        if cancelled:
            http.abort()

    def detach(self) -> None:
        """Forget the HTTP stream (it is finished)."""
        with self._lock:
            self._http = None

    def emit(self, event: StreamEvent) -> bool:
        """Queue an event for the consumer, waiting while the buffer is full.

        Returns ``False`` (and drops the event) once the stream is cancelled.
        """
        return self.emit_many([event])

    def _is_cancelled(self) -> bool:
        return self._cancelled

    def emit_many(self, events: List[StreamEvent]) -> bool:
        """Hand over the events one read produced, in one operation; the channel owns the list now.

        Returns ``False`` (and drops them) once the stream is cancelled.
        """
        return not self._cancelled and self.channel.put(events, self._is_cancelled)

    def finish(self, terminal: StreamEvent) -> None:
        """Queue the terminal event; it is never dropped."""
        self.channel.close(terminal)

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless cancelled first; returns ``False`` when cancelled."""
        if seconds > 0:
            self._wake.wait(seconds)
        return not self._cancelled

    def settle(self, timeout: Optional[float] = None) -> None:
        """After a cancel: make sure the turn runs to its end, running its last steps on this
        thread when no other thread is (at most ``timeout`` seconds of waiting for one that is)."""
        driver = self.driver
        if driver is not None:
            driver.finish(timeout)


def start_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start a daemon thread named ``promptkit-<name>``.

    Every thread promptkit starts goes through here (the tool pool of
    :func:`promptkit._pool.run_parallel` too), so they are all named alike and
    easy to account for, and each runs in a copy of its starter's
    :mod:`contextvars` context.
    """
    # The caller's context variables go along (a copy): its OpenTelemetry span, a web framework's
    # request context, so that a tool handler on this thread sees what its caller saw.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target, *args), name=f"promptkit-{name}", daemon=True)
    thread.start()
    return thread


def _failed(exc: BaseException) -> StreamEvent:
    """The terminal event of a turn that raised ``exc``: its own error, or (a bug) one clear StreamError."""
    if isinstance(exc, PromptKitError):
        return StreamEvent("error", error=exc)
    logger.error("unexpected error in a promptkit stream", exc_info=exc)
    error = StreamError(f"unexpected error in the stream: {exc!r}")
    error.__cause__ = exc
    return StreamEvent("error", error=error)


def _worker(control: StreamControl, run: Callable[[StreamControl], Response]) -> None:
    terminal: Optional[StreamEvent] = None
    try:
        terminal = StreamEvent("done", final=run(control))
    except BaseException as exc:  # a bug must still end the stream with one clear error
        terminal = _failed(exc)
    finally:
        if terminal is None:  # pragma: no cover - only if StreamEvent itself failed
            terminal = StreamEvent("error", error=StreamError("stream ended without a result"))
        control.finish(terminal)


Steps = Generator[List[StreamEvent], None, Response]


class _Driver:
    """Runs a turn's steps, one at a time, on whichever thread needs the next events.

    Each step's batch goes into the control's channel; the end (the
    generator's Response, or its error) becomes the terminal event. The lock
    is held while a step runs, so exactly one thread reads the socket; each
    step runs in a copy of the context the stream was created in (its
    OpenTelemetry span, a web framework's request context), whichever thread
    runs it. Holds no reference to the :class:`Stream`.
    """

    __slots__ = ("_control", "_steps", "_context", "_lock", "_owner", "ended", "thread")

    def __init__(self, control: StreamControl, steps: Steps) -> None:
        self._control = control
        self._steps = steps
        self._context = contextvars.copy_context()
        self._lock = threading.Lock()
        self._owner: Optional[int] = None  # the thread running a step
        self.ended = False  # the terminal event is in the channel
        self.thread: Optional[threading.Thread] = None  # a worker running every step, once started

    def step_if_free(self) -> bool:
        """Run one step unless another thread is running one, or the turn ended; whether it ran."""
        if self.ended or not self._lock.acquire(blocking=False):
            return False
        try:
            if not self.ended:
                self._step()
        finally:
            self._lock.release()
        return True

    def _rest(self) -> None:
        """Run the remaining steps (the caller holds the lock)."""
        while not self.ended:
            self._step()

    def _step(self) -> None:
        """Run one step (the caller holds the lock): its batch, or the terminal event, into the channel."""
        control = self._control
        self._owner = threading.get_ident()
        try:
            events = self._context.run(next, self._steps)
        except StopIteration as stop:
            terminal = StreamEvent("done", final=stop.value)
        except Exception as exc:  # the turn's error; a bug still ends the stream with one clear error
            terminal = _failed(exc)
        except BaseException as exc:  # KeyboardInterrupt or SystemExit on the consumer's thread: end, then raise
            error = StreamError(f"the stream was interrupted: {exc!r}")
            self.ended = True
            control.cancel()
            control.finish(StreamEvent("error", error=error))
            raise
        else:
            control.emit_many(events)  # dropped once cancelled: the turn notices the cancel itself
            return
        finally:
            self._owner = None
        self.ended = True
        control.finish(terminal)

    def finish(self, timeout: Optional[float] = None) -> None:
        """Run the turn to its end here, or wait (up to ``timeout``) for the thread running it."""
        if self.ended or self._owner == threading.get_ident():
            return  # this thread is inside a step: that step goes on to the end of the (cancelled) turn
        thread = self.thread
        if thread is not None:
            if thread is not threading.current_thread():
                thread.join(timeout)
            return
        if not self._lock.acquire(True, -1 if timeout is None else timeout):
            return
        try:
            self._rest()
        finally:
            self._lock.release()

    def start_worker(self, name: str) -> None:
        """Run the remaining steps on a worker thread (a consumer that waits with a timeout needs one)."""
        if self.thread is None and not self.ended:
            self.thread = start_thread(self._run_all, name)

    def _run_all(self) -> None:
        with self._lock:
            self._rest()


class _State(enum.Enum):
    """Where a :class:`Stream` is in its consumption; it changes only in :meth:`Stream._move`.

    ``NEW -> CONSUMING -> ENDED -> RESULT``, and ``NEW -> ENDED`` when
    :meth:`Stream.close` collects the terminal event before anyone consumed.
    The one step back, ``CONSUMING -> NEW``, is a consumer that left without
    the terminal event when no terminal could be collected for it either.

    Cancellation is not a state here: it is the worker's side of the stream
    (:attr:`StreamControl.cancelled`, read without a lock on every put), and
    a cancelled stream still ends in exactly one terminal event. Whether the
    worker thread is alive is not one either: the terminal event in the
    queue says that it has finished.
    """

    NEW = "new"  # nobody has taken an event yet
    CONSUMING = "consuming"  # one consumer (an iterator, or result()) is taking events
    ENDED = "ended"  # the terminal event is known: the consumer took it, or close() collected it
    RESULT = "result"  # result() returned or raised it: the events are gone, iterating is a UsageError


_OPEN = (_State.NEW, _State.CONSUMING)  # states without a known terminal event


class Stream:
    """The events of one turn, as they arrive.

    Iterate it (``for event in stream``) or call :meth:`result`. A Stream has
    one consumer. Callbacks given to ``send_stream`` run in the consuming
    thread, in event order, just before each event is yielded. Breaking out of
    the loop, :meth:`cancel`, :meth:`close`, leaving a ``with`` block and
    garbage collection all cancel the upstream request; the turn then ends
    with a ``done`` event whose Response has ``finish_reason == "cancelled"``.

    Misuse raises :class:`~promptkit.UsageError` (also a ``RuntimeError``):
    iterating while another iterator or :meth:`result` is consuming, and
    iterating after :meth:`result` returned or raised (it consumed the
    events). Iterating a stream whose terminal event was already taken (by
    an earlier loop) or collected (by a ``break``, :meth:`close` or ``with``)
    yields nothing. :meth:`result` may be called any number of times, before
    or after iterating, and gives the same outcome each time.
    """

    def __init__(
        self,
        run: Optional[Callable[[StreamControl], Response]] = None,
        *,
        steps: Optional[Callable[[StreamControl], Steps]] = None,
        buffer_size: int = 10,
        on_content: Optional[Callable[[str], Any]] = None,
        on_reasoning: Optional[Callable[[str], Any]] = None,
        on_tool_call: Optional[Callable[[Any], Any]] = None,
        on_tool_result: Optional[Callable[[Any], Any]] = None,
        on_error: Optional[Callable[[BaseException], Any]] = None,
        on_done: Optional[Callable[[Response], Any]] = None,
        progress: Optional[Callable[[], Tuple[Usage, float]]] = None,
        control: Optional[StreamControl] = None,
        structured: bool = False,
        model: Optional[str] = None,
    ) -> None:
        # A control made before the stream lets a cancel reach the turn while it is still opening.
        self._control = control if control is not None else StreamControl(buffer_size)
        self._progress = progress
        self._callbacks: Dict[str, Optional[Callable[[Any], Any]]] = {
            "content": on_content,
            "reasoning": on_reasoning,
            "tool_call_delta": None,
            "tool_call": on_tool_call,
            "tool_result": on_tool_result,
            "error": on_error,
            "done": on_done,
        }
        self._has_callbacks = any(cb is not None for cb in self._callbacks.values())
        self._structured = structured  # content events carry the value so far (response_format)
        self._model = model
        self._parsed: Any = None
        self._lock = threading.Lock()  # guards _state and _terminal, which change only in _move()
        self._state = _State.NEW
        self._terminal: Optional[StreamEvent] = None  # set exactly when _state leaves _OPEN
        self._name = f"stream-{next(_ids)}"
        self._thread: Optional[threading.Thread] = None
        self._driver: Optional[_Driver] = None
        if (run is None) == (steps is None):
            raise TypeError("Stream() takes one of run= and steps=")
        if steps is not None:
            # Nothing runs until a consumer (or a close) asks for events: see _take().
            self._driver = self._control.driver = _Driver(self._control, steps(self._control))
        else:
            assert run is not None
            self._thread = start_thread(_worker, self._name, self._control, run)

    # -- the lifecycle -----------------------------------------------------
    def _move(self, to: _State, terminal: Optional[StreamEvent] = None, *, replace: bool = False) -> _State:
        """Change the state (the only place that does); returns the state it was in.

        A move the stream is already past is a no-op, because the consumer
        and a close() from another thread may both come upon the terminal
        event. ``terminal`` goes with a move to ENDED; ``replace`` makes it
        win over one already known (a failed callback's error does).

        Raises:
            UsageError: a second consumer, or iterating after result().
        """
        with self._lock:
            was = self._state
            if to is _State.CONSUMING:
                if was is _State.CONSUMING:
                    raise UsageError("this Stream is already being consumed; a Stream has one consumer")
                if was is _State.RESULT:
                    raise UsageError(
                        "this Stream was consumed by result(); iterate it before calling result(), not after"
                    )
                if was is _State.NEW:
                    self._state = to
            elif to is _State.NEW:
                if was is _State.CONSUMING:
                    self._state = to
            elif to is _State.ENDED:
                assert terminal is not None
                if replace or self._terminal is None:
                    self._terminal = terminal
                if was in _OPEN:
                    self._state = to
            else:  # RESULT: only once the terminal event is known
                assert was is not _State.NEW and was is not _State.CONSUMING
                self._state = to
            return was

    # -- consuming -------------------------------------------------------
    def __iter__(self) -> Generator[StreamEvent, None, None]:
        # A generator: close() on it (or dropping it) before the end cancels, like a break.
        return cast(Generator[StreamEvent, None, None], self._events())

    def iter_sse(
        self, heartbeat: Optional[float] = 15.0, *, frame: Optional[Callable[[StreamEvent, int], bytes]] = None
    ) -> SSEFrames:
        """The stream as server-sent-event bytes, for a streaming HTTP response.

        Yields one ``event: <type>`` / ``id: <n>`` / ``data: <json of
        event.to_dict()>`` frame per event, a ``: keep-alive`` comment every
        ``heartbeat`` seconds while the model is silent, and ends after the
        terminal event. Closing it (web servers do when the client
        disconnects), even before the first frame, cancels the upstream
        request, and the turn is committed as cancelled. It consumes the
        stream, so the same rules as for iterating apply.

        ``frame(event, number)`` replaces promptkit's framing (``number``
        counts the events from 1); :mod:`promptkit.web` uses it for the AI
        SDK's UI message stream.
        """
        return SSEFrames(self._events(heartbeat), self._close_unless_done, frame)

    def _close_unless_done(self) -> None:
        if not self.done:
            self.close()

    def _events(self, heartbeat: Optional[float] = None) -> Generator[Optional[StreamEvent], None, None]:
        """Events in order (``None`` every ``heartbeat`` seconds of silence, when given)."""
        if self._move(_State.CONSUMING) is not _State.NEW:
            return  # ENDED: the terminal event was already taken or collected; there is nothing more
        driver = self._driver
        if driver is not None and heartbeat is not None:
            try:
                driver.start_worker(self._name)  # the wait for the next event must end at each heartbeat
            except BaseException:
                self._move(_State.NEW)  # nobody consumes: close() (or the collector) ends the turn
                raise
        get = self._take if driver is not None and driver.thread is None else self._control.channel.get
        deliver = self._control.deliver
        callbacks = self._has_callbacks
        structured = self._structured
        # Local, not the state: close() from another thread may end the state, and this
        # consumer must still receive its terminal event.
        last = False
        try:
            while True:
                if heartbeat is None:
                    item = get()
                else:
                    try:
                        item = get(heartbeat)
                    except Empty:
                        yield None
                        continue
                # An item is one event, or a list of the events one read produced.
                for event in item if item.__class__ is list else (item,):
                    kind = event.type
                    last = kind == "done" or kind == "error"
                    if last:
                        self._move(_State.ENDED, event)
                    elif not deliver(event):
                        continue  # cancelled: what was read ahead is not shown (nor committed)
                    if structured and kind == "content" and event.parsed is not None:
                        self._parsed = event.parsed
                    if callbacks:
                        self._dispatch(event)
                    yield event
                    if last:
                        return
        finally:
            if not last and not self.done:  # the consumer left early: break, exception, generator closed
                self.close()  # cancels, ends the turn and collects its terminal event: ENDED
                self._move(_State.NEW)  # a no-op unless no terminal could be collected: nobody consumes now

    def _take(self, timeout: Optional[float] = None) -> Any:
        """The next slot of the channel, running the turn's next step on this thread when it is empty."""
        channel = self._control.channel
        step = self._driver.step_if_free  # type: ignore[union-attr]
        while True:
            item = channel.take()
            if item is not None:
                return item
            if not step():
                # Another thread runs the turn (a close() from elsewhere ends it): its events, or
                # its terminal event, come through the channel.
                return channel.get(timeout)

    def _dispatch(self, event: StreamEvent) -> None:
        callback = self._callbacks[event.type]
        if callback is None:
            return
        if event.type == "content":
            arg: Any = event.content
        elif event.type == "reasoning":
            arg = event.reasoning
        elif event.type == "tool_call":
            arg = event.tool_call
        elif event.type == "tool_result":
            arg = event.tool_result
        elif event.type == "error":
            arg = event.error
        else:
            arg = event.final
        try:
            callback(arg)
        except Exception as exc:
            # on_done runs after the turn was committed: its error carries the Response.
            error = CallbackError(
                f"the on_{event.type} callback raised {type(exc).__name__}: {exc}",
                partial=event.final if event.type == "done" else None,
            )
            error.__cause__ = exc
            if not self.done:
                self._control.cancel(error)
                self._join()
            self._move(_State.ENDED, StreamEvent("error", error=error), replace=True)
            raise error from exc

    def result(self) -> Response:
        """Consume the rest of the stream (running callbacks) and return the Response.

        After a ``break``, :meth:`cancel` or :meth:`close` this returns the
        cancelled Response. Raises the stream's error if it ended in one.
        Iterating the stream afterwards raises :class:`~promptkit.UsageError`.

        Raises:
            UsageError: another consumer (an iterator not yet finished) is
                taking the events.
        """
        try:
            if not self.done:
                for _ in self._events():
                    pass
        finally:
            if self.done:  # also when a callback raised: result() raised, the events are gone
                self._move(_State.RESULT)
        terminal = self._terminal
        assert terminal is not None
        if terminal.type == "error":
            assert terminal.error is not None
            raise terminal.error
        assert terminal.final is not None
        return terminal.final

    @property
    def parsed_so_far(self) -> Any:
        """With ``response_format``: the structured value as far as the consumer has taken the reply
        (``None`` before any of it); each one refines the one before."""
        return self._parsed

    # -- stopping --------------------------------------------------------
    def cancel(self) -> None:
        """Stop the stream: returns at once. Thread-safe and idempotent."""
        self._control.cancel()

    def close(self, timeout: Optional[float] = None) -> None:
        """Cancel (if still running) and wait until the turn has ended: its last steps run on this
        thread when no other thread is running them (at most ``timeout`` seconds of waiting for one
        that is)."""
        self._control.cancel()
        self._join(timeout)
        if not self.done:
            self._collect_terminal()

    def _join(self, timeout: Optional[float] = None) -> None:
        """Wait until the turn has ended (running its last steps here when no thread runs them)."""
        if self._driver is not None:
            self._driver.finish(timeout)
        elif self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _collect_terminal(self) -> None:
        """Find the terminal event among what the worker left queued (no callbacks: the consumer left).

        It is put back: a consumer iterating in another thread while this
        thread called close() is waiting for it, and must get it. Anything
        else queued was read ahead after the cancel, which drops it anyway.
        """
        terminal = self._control.channel.take_terminal()
        if terminal is not None:
            self._move(_State.ENDED, terminal)

    @property
    def control(self) -> StreamControl:
        """The worker's side of this stream (for promptkit's own modules)."""
        return self._control

    @property
    def model(self) -> Optional[str]:
        """The model the turn asked for (``Response.model`` says which model answered)."""
        return self._model

    @property
    def usage_so_far(self) -> Usage:
        """The turn's usage so far: estimated while streaming, the server's figures once known."""
        return self._live()[0]

    @property
    def cost_so_far(self) -> float:
        """The turn's USD cost so far, from :attr:`usage_so_far`."""
        return self._live()[1]

    def _live(self) -> Tuple[Usage, float]:
        terminal = self._terminal
        if terminal is not None and terminal.final is not None:
            return terminal.final.usage, terminal.final.cost
        if self._progress is None:
            return Usage(), 0.0
        return self._progress()

    @property
    def done(self) -> bool:
        """Whether the consumer has seen (or close() collected) the terminal event."""
        return self._state not in _OPEN

    @property
    def cancelled(self) -> bool:
        """Whether cancel() was called (by the user, a break, or a failing callback)."""
        return self._control.cancelled

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned stream must not keep a socket and a thread busy, nor its conversation:
        # a cancelled turn nobody runs is ended on a thread of its own (it commits what was shown).
        control = getattr(self, "_control", None)
        if control is not None and getattr(self, "_state", None) in _OPEN:
            control.cancel()
            driver = getattr(self, "_driver", None)
            if driver is not None and not driver.ended and driver.thread is None:
                try:
                    driver.start_worker(self._name)
                except BaseException:  # interpreter shutdown: nothing can run any more
                    pass
