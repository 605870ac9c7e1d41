"""Stream: queue, backpressure, callbacks, cancel, one terminal event. No HTTP here."""

from __future__ import annotations

import contextvars
import gc
import threading
from queue import Empty
from typing import Any, Callable, List

import pytest


from promptkit._errors import APIConnectionError, CallbackError, StreamError, UsageError
from promptkit._stream import _BATCH, _Channel, Stream, StreamControl
from promptkit._types import Response, StreamEvent


def producer(texts: List[str], *, final: str = "stop", gate: "threading.Event | None" = None) -> Callable[[StreamControl], Response]:
    """A run function emitting content events, optionally waiting on ``gate`` after the first."""

    def run(control: StreamControl) -> Response:
        sent = []
        for n, text in enumerate(texts):
            if not control.emit(StreamEvent("content", content=text)):
                return Response(content="".join(sent), finish_reason="cancelled")
            sent.append(text)
            if n == 0 and gate is not None:
                while not gate.wait(0.01):
                    if control.cancelled:
                        return Response(content="".join(sent), finish_reason="cancelled")
        return Response(content="".join(sent), finish_reason=final)

    return run


def test_iterates_events_then_one_done() -> None:
    stream = Stream(producer(["a", "b", "c"]))
    events = list(stream)
    assert [e.type for e in events] == ["content", "content", "content", "done"]
    assert events[-1].final is not None and events[-1].final.content == "abc"
    assert list(stream) == []  # the terminal event is never delivered twice
    assert stream.result().content == "abc"
    with pytest.raises(UsageError, match="result"):
        list(stream)  # nor after result(): that is a bug, and says so


def test_callbacks_run_in_consumer_thread_in_order() -> None:
    seen: List[Any] = []
    me = threading.current_thread()

    def note(kind: str) -> Callable[[Any], None]:
        def cb(arg: Any) -> None:
            assert threading.current_thread() is me
            seen.append((kind, arg if kind != "done" else arg.content))

        return cb

    resp = Stream(producer(["x", "y"]), on_content=note("content"), on_done=note("done")).result()
    assert resp.content == "xy"
    assert seen == [("content", "x"), ("content", "y"), ("done", "xy")]


def test_callback_raising_cancels_and_raises_callback_error() -> None:
    gate = threading.Event()

    def bad(text: str) -> None:
        raise ValueError("nope")

    stream = Stream(producer(["a", "b"], gate=gate), on_content=bad)
    with pytest.raises(CallbackError) as info:
        stream.result()
    assert isinstance(info.value.__cause__, ValueError)
    assert stream.cancelled
    with pytest.raises(CallbackError):
        stream.result()  # the same outcome again, no hang


def test_error_from_run_is_the_terminal_event() -> None:
    def run(control: StreamControl) -> Response:
        control.emit(StreamEvent("content", content="partial"))
        raise APIConnectionError("reset", partial=Response(content="partial"))

    stream = Stream(run)
    events = list(stream)
    assert [e.type for e in events] == ["content", "error"]
    assert isinstance(events[-1].error, APIConnectionError)
    with pytest.raises(APIConnectionError) as info:
        stream.result()
    assert info.value.partial is not None and info.value.partial.content == "partial"


def test_unexpected_exception_becomes_stream_error() -> None:
    def run(control: StreamControl) -> Response:
        raise KeyError("bug")

    with pytest.raises(StreamError) as info:
        Stream(run).result()
    assert isinstance(info.value.__cause__, KeyError)


def test_break_cancels_and_result_returns_cancelled() -> None:
    gate = threading.Event()
    stream = Stream(producer(["first", "never"], gate=gate))
    for event in stream:
        assert event.content == "first"
        break
    assert stream.cancelled
    resp = stream.result()
    assert resp.finish_reason == "cancelled" and resp.content == "first"


def test_a_full_channel_blocks_the_worker_until_the_consumer_takes_a_slot() -> None:
    # The cancelled() check runs when every slot is full, just before the worker waits: the handshake.
    channel = _Channel(2)
    full = threading.Event()

    def cancelled() -> bool:
        full.set()
        return False

    for n in range(2 * _BATCH):  # the consumer took nothing: each put joins the newest slot, then a new slot
        assert channel.put([StreamEvent("content", content=str(n))], cancelled)
    assert not full.is_set()
    blocked = threading.Thread(target=channel.put, args=([StreamEvent("content", content="x")], cancelled))
    blocked.start()
    assert full.wait(5.0)  # both slots hold _BATCH events: the worker waits (backpressure)
    assert blocked.is_alive()
    first = channel.get()
    assert [e.content for e in first] == [str(n) for n in range(_BATCH)]
    blocked.join(5.0)
    assert not blocked.is_alive()
    assert [e.content for e in channel.get()] == [str(n) for n in range(_BATCH, 2 * _BATCH)]
    assert [e.content for e in channel.get()] == ["x"]  # the newest slot was full: a slot of its own


def test_a_consumer_that_keeps_up_gets_each_read_as_its_own_slot() -> None:
    channel = _Channel(10)
    got: List[Any] = []
    waiting = threading.Event()

    def consume() -> None:
        waiting.set()
        got.append(channel.get(5.0))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert waiting.wait(5.0)
    assert channel.put([StreamEvent("content", content="a")], lambda: False)
    consumer.join(5.0)
    assert [e.content for e in got[0]] == ["a"]
    with pytest.raises(Empty):
        channel.get(0.01)  # nothing more: a timed get says so


def test_slow_consumer_gets_every_event_in_order() -> None:
    def run(control: StreamControl) -> Response:
        for n in range(1000):
            if not control.emit(StreamEvent("content", content=str(n))):
                break
        return Response(finish_reason="stop")

    stream = Stream(run, buffer_size=3)
    assert [e.content for e in stream if e.type == "content"] == [str(n) for n in range(1000)]


def test_cancel_wakes_a_worker_blocked_on_a_full_queue() -> None:
    finished = threading.Event()

    def run(control: StreamControl) -> Response:
        n = 0
        while control.emit(StreamEvent("content", content="x")):
            n += 1
        finished.set()
        return Response(finish_reason="cancelled")

    stream = Stream(run, buffer_size=2)
    stream.cancel()
    assert finished.wait(5.0)
    stream.close(timeout=5.0)
    assert stream.result().finish_reason == "cancelled"


def test_abandoned_stream_is_cancelled_by_garbage_collection() -> None:
    gate = threading.Event()
    stopped = threading.Event()

    def run(control: StreamControl) -> Response:
        control.emit(StreamEvent("content", content="a"))
        while not gate.wait(0.01):
            if control.cancelled:
                stopped.set()
                return Response(finish_reason="cancelled")
        return Response(finish_reason="stop")

    stream = Stream(run)
    del stream
    gc.collect()
    assert stopped.wait(5.0)


def test_with_block_closes_and_joins() -> None:
    gate = threading.Event()
    with Stream(producer(["a", "b"], gate=gate)) as stream:
        first = next(iter(stream))
        assert first.content == "a"
    assert stream.done
    assert stream.result().finish_reason == "cancelled"


def test_one_consumer_only() -> None:
    gate = threading.Event()
    stream = Stream(producer(["a", "b"], gate=gate))
    it = iter(stream)
    next(it)
    with pytest.raises(RuntimeError, match="one consumer"):
        next(iter(stream))
    gate.set()
    rest = list(it)
    assert rest[-1].type == "done"


def test_cancel_is_idempotent_and_thread_safe() -> None:
    gate = threading.Event()
    stream = Stream(producer(["a", "b"], gate=gate))
    threads = [threading.Thread(target=stream.cancel) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5.0)
    stream.cancel()
    assert stream.result().finish_reason == "cancelled"


def test_to_dict_has_the_five_keys() -> None:
    events = list(Stream(producer(["hi"])))
    for event in events:
        d = event.to_dict()
        assert {"type", "content", "tool_call", "final", "error"} <= set(d)
    assert events[-1].to_dict()["final"]["content"] == "hi"
    err = StreamEvent("error", error=APIConnectionError("boom")).to_dict()
    assert err["error"] == {"type": "APIConnectionError", "message": "boom"}


def test_close_from_another_thread_still_gives_the_consumer_its_terminal_event() -> None:
    started = threading.Event()
    release = threading.Event()

    def run(control: StreamControl) -> Response:
        control.emit(StreamEvent("content", content="a"))
        started.set()
        while not release.wait(0.01) and not control.cancelled:
            pass
        return Response(content="a", finish_reason="cancelled" if control.cancelled else "stop")

    stream = Stream(run)
    seen: List[str] = []

    def consume() -> None:
        for event in stream:
            seen.append(event.type)

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(5)
    stream.close(timeout=5)  # another thread closes while the consumer iterates
    consumer.join(5)
    assert not consumer.is_alive()
    assert seen[-1] == "done" and seen.count("done") == 1


# -- misuse: UsageError ----------------------------------------------------------


def test_a_second_consumer_in_another_thread_raises_usage_error() -> None:
    gate = threading.Event()
    took_first = threading.Event()
    seen: List[str] = []
    stream = Stream(producer(["a", "b"], gate=gate))

    def consume() -> None:
        for event in stream:
            seen.append(event.type)
            took_first.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert took_first.wait(5)
    with pytest.raises(UsageError, match="one consumer") as info:
        next(iter(stream))
    assert isinstance(info.value, RuntimeError)  # what it raised before UsageError existed
    with pytest.raises(UsageError, match="one consumer"):
        stream.result()  # result() consumes too
    gate.set()
    consumer.join(5)
    assert not consumer.is_alive()
    assert seen == ["content", "content", "done"]  # the first consumer lost nothing
    assert stream.result().content == "ab"


def test_iterating_after_result_returned_raises_usage_error() -> None:
    stream = Stream(producer(["a"]))
    assert stream.result().content == "a"
    with pytest.raises(UsageError, match="result"):
        next(iter(stream))
    with pytest.raises(UsageError, match="result"):
        next(stream.iter_sse(heartbeat=None))
    assert stream.result().content == "a"  # result() itself may be called again


def test_iterating_after_result_raised_raises_usage_error() -> None:
    def run(control: StreamControl) -> Response:
        raise APIConnectionError("reset")

    stream = Stream(run)
    with pytest.raises(APIConnectionError):
        stream.result()
    with pytest.raises(UsageError, match="result"):
        list(stream)
    with pytest.raises(APIConnectionError):
        stream.result()  # the same outcome again


def test_iterating_after_result_raised_a_callback_error_raises_usage_error() -> None:
    def bad(text: str) -> None:
        raise ValueError("nope")

    stream = Stream(producer(["a", "b"], gate=threading.Event()), on_content=bad)
    with pytest.raises(CallbackError):
        stream.result()
    with pytest.raises(UsageError, match="result"):
        list(stream)


@pytest.mark.parametrize("ending", ["loop", "break", "close", "with"])
def test_iterating_after_the_terminal_event_was_taken_or_collected_yields_nothing(ending: str) -> None:
    gate = threading.Event()
    stream = Stream(producer(["a", "b"], gate=gate if ending != "loop" else None))
    if ending == "loop":
        assert [e.type for e in stream][-1] == "done"
    elif ending == "break":
        for _ in stream:
            break
    elif ending == "close":
        stream.close()
    else:
        with stream:
            next(iter(stream))
    assert stream.done
    assert list(stream) == []
    assert list(stream.iter_sse(heartbeat=None)) == []
    expected = "stop" if ending == "loop" else "cancelled"
    assert stream.result().finish_reason == expected  # result() after iterating keeps returning the Response


def test_a_stream_names_the_model_its_turn_asked_for() -> None:
    import promptkit
    from promptkit.testing import MockServer

    with MockServer() as server, promptkit.Client(base_url=server.url, api_key="k", model="gpt-4.1-mini") as client:
        stream = client.conversation().send_stream("q")
        assert stream.model == "gpt-4.1-mini"
        stream.result()
        other = client.conversation(model="gpt-4o").send_stream("q")
        assert other.model == "gpt-4o"
        other.result()


# -- a turn's steps: run by whichever thread needs the next events ----------------------------------

_WHERE: "contextvars.ContextVar[str]" = contextvars.ContextVar("where", default="unset")


def stepper(texts: List[str], threads: List[threading.Thread], *, interrupt: bool = False,
            silent: "threading.Event | None" = None) -> Callable[[StreamControl], Any]:
    """A turn's steps: one batch per text, each step noting the thread that ran it (and the context
    variable it saw); ``silent`` makes the turn wait for it (or a cancel) before the last text;
    ``interrupt`` raises KeyboardInterrupt in its last step."""

    def steps(control: StreamControl) -> Any:
        sent: List[str] = []
        for n, text in enumerate(texts):
            threads.append(threading.current_thread())
            assert _WHERE.get() == "sender"  # the context the stream was made in, on any thread
            if silent is not None and n == len(texts) - 1:
                while not silent.is_set():
                    if not control.sleep(0.01):
                        return Response(content="".join(sent), finish_reason="cancelled")
            if control.cancelled:
                return Response(content="".join(sent), finish_reason="cancelled")
            yield [StreamEvent("content", content=text)]
            sent.append(text)
        threads.append(threading.current_thread())
        if interrupt:
            raise KeyboardInterrupt
        return Response(content="".join(sent), finish_reason="stop")

    return steps


def make_stepped(steps: Callable[[StreamControl], Any], **kwargs: Any) -> Stream:
    token = _WHERE.set("sender")
    try:
        return Stream(steps=steps, **kwargs)
    finally:
        _WHERE.reset(token)


def stream_threads() -> List[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("promptkit-stream")]


def test_the_consumer_runs_the_steps_itself_starting_no_thread() -> None:
    threads: List[threading.Thread] = []
    stream = make_stepped(stepper(["a", "b", "c"], threads))
    assert threads == []  # nothing runs before someone asks for an event
    events = []
    for event in stream:
        events.append(event)
        assert stream_threads() == []
    assert [e.type for e in events] == ["content", "content", "content", "done"]
    assert events[-1].final is not None and events[-1].final.content == "abc"
    assert set(threads) == {threading.current_thread()}


def test_steps_need_exactly_one_of_run_and_steps() -> None:
    with pytest.raises(TypeError):
        Stream()
    with pytest.raises(TypeError):
        Stream(producer(["a"]), steps=stepper(["a"], []))


def test_a_heartbeat_consumer_gets_a_worker_and_keep_alives_while_the_turn_is_silent() -> None:
    threads: List[threading.Thread] = []
    silent = threading.Event()
    stream = make_stepped(stepper(["a", "b"], threads, silent=silent))
    frames = stream.iter_sse(heartbeat=0.01)
    chunks = []
    for frame in frames:
        chunks.append(frame)
        if frame.startswith(b": keep-alive"):
            silent.set()  # the worker waits in the last step: the consumer was woken anyway
    assert b"".join(chunks).count(b"event: content") == 2 and b"event: done" in chunks[-1]
    assert any(c.startswith(b": keep-alive") for c in chunks)
    assert threading.current_thread() not in threads and {t.name.split("-")[1] for t in threads} == {"stream"}


def test_close_from_another_thread_ends_a_turn_the_consumer_is_running() -> None:
    threads: List[threading.Thread] = []
    stream = make_stepped(stepper(["a", "b"], threads, silent=threading.Event()))
    seen: List[StreamEvent] = []
    consumer = threading.Thread(target=lambda: seen.extend(stream), name="test-consumer")
    consumer.start()
    while len(threads) < 2:  # the consumer is inside the silent last step
        threading.Event().wait(0.001)
    stream.close(timeout=5)  # cancels: the step notices, and the turn ends on the consumer's thread
    consumer.join(5)
    assert not consumer.is_alive()
    assert [e.type for e in seen] == ["content", "done"] and seen[-1].final.finish_reason == "cancelled"  # type: ignore[union-attr]
    assert set(threads) == {consumer}


def test_close_runs_the_last_steps_when_nobody_else_does() -> None:
    threads: List[threading.Thread] = []
    stream = make_stepped(stepper(["a", "b"], threads))
    events = iter(stream)
    assert next(events).content == "a"
    stream.cancel()
    helper = threading.Thread(target=stream.close, name="test-closer")
    helper.start()
    helper.join(5)
    assert stream.done and threads[-1] is helper  # the closing thread ran the rest
    assert stream.result().finish_reason == "cancelled"
    assert [e.type for e in events] == ["done"]  # the loop still in progress gets the terminal event


def test_settle_runs_a_cancelled_turn_to_its_end() -> None:
    threads: List[threading.Thread] = []
    stream = make_stepped(stepper(["a", "b"], threads))
    stream.cancel()
    stream.control.settle(5)  # what a conversation's next turn does after a cancel
    assert threads == [threading.current_thread()]
    assert stream.result().finish_reason == "cancelled"


def test_an_abandoned_stream_is_ended_on_a_thread_of_its_own() -> None:
    threads: List[threading.Thread] = []
    ended = threading.Event()

    def steps(control: StreamControl) -> Any:
        try:
            yield from stepper(["a", "b"], threads)(control)
        finally:
            ended.set()
        return Response(finish_reason="cancelled")

    stream = make_stepped(steps)
    del stream
    gc.collect()
    assert ended.wait(5)  # the generator ran to its end (it was not just dropped)
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(5)
    assert threads and all(t.name.startswith("promptkit-stream") for t in threads)


def test_keyboard_interrupt_in_a_step_ends_the_stream_and_reaches_the_consumer() -> None:
    stream = make_stepped(stepper(["a"], [], interrupt=True))
    events: List[StreamEvent] = []
    with pytest.raises(KeyboardInterrupt):
        for event in stream:
            events.append(event)
    assert [e.type for e in events] == ["content"]
    assert stream.done
    with pytest.raises(StreamError, match="interrupted"):
        stream.result()
