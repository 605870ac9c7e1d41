"""read_body: one response body to batches of stream events, with a scripted fake HTTP stream."""

from __future__ import annotations

import json
from typing import List, Optional, Union

import pytest

from promptkit._timeouts import TimeoutPlan
from promptkit._dialects.chat_decoder import Accumulator
from promptkit._errors import APITimeoutError, StreamError, StreamTruncatedError
from promptkit._reader import read_body
from promptkit._stream import StreamControl
from promptkit._types import Timeout


class FakeHTTP:
    """Returns scripted reads; a TimeoutError in the script is raised; records the waits asked for."""

    def __init__(self, script: List[Union[bytes, BaseException]]) -> None:
        self.script = list(script)
        self.waits: List[Optional[float]] = []
        self.finished = False

    def read1(self, timeout: Optional[float]) -> bytes:
        self.waits.append(timeout)
        item = self.script.pop(0) if self.script else b""
        if isinstance(item, BaseException):
            raise item
        return item

    def finish(self) -> None:
        self.finished = True


def chunk(content: str = "", finish: Optional[str] = None) -> bytes:
    delta = {"content": content} if content else {}
    body = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def plan(idle: float = 5.0, total: Optional[float] = None) -> TimeoutPlan:
    return TimeoutPlan.start(Timeout(idle=idle, total=total))


def run(script: List[Union[bytes, BaseException]], idle: float = 5.0) -> tuple:
    """Read the script; return the accumulator, the fake, the batches and their last flags."""
    acc = Accumulator()
    http = FakeHTTP(script)
    batches = []
    lasts = []
    for events, last in read_body(StreamControl(100), http, acc, plan(idle)):  # type: ignore[arg-type]
        batches.append(events)
        lasts.append(last)
    return acc, http, batches, lasts


def events_of(batches: list) -> list:
    return [e for batch in batches for e in batch]


def test_one_batch_per_read_and_done_finishes_the_body() -> None:
    wire = chunk("a") + chunk("b") + chunk(finish="stop") + b"data: [DONE]\n\n"
    acc, http, batches, lasts = run([wire])
    assert len(batches) == 1 and [e.content for e in events_of(batches)] == ["a", "b"]
    assert http.finished and acc.finish_reason == "stop" and lasts == [True]


def test_splits_across_reads_give_the_same_events() -> None:
    wire = chunk("hé") + chunk("llo") + chunk(finish="stop") + b"data: [DONE]\n\n"
    pieces = [wire[i : i + 7] for i in range(0, len(wire), 7)]
    acc, _, items, _ = run(pieces)
    assert "".join(e.content for e in events_of(items)) == "héllo"


def test_eof_without_done_or_finish_is_truncation() -> None:
    with pytest.raises(StreamTruncatedError):
        run([chunk("a")])


def test_eof_after_finish_reason_is_success_and_unterminated_done_too() -> None:
    acc, _, _, _ = run([chunk("a") + chunk(finish="stop")])
    assert acc.finish_reason == "stop"
    acc, _, items, _ = run([chunk("a") + b"data: [DONE]"])
    assert [e.content for e in events_of(items)] == ["a"]


def test_comments_do_not_reset_idle() -> None:
    # A comment-only read: the next read may only wait what is left of the idle time.
    _, http, _, _ = run([b": keep-alive\n\n", chunk(finish="stop"), b"data: [DONE]\n\n"], idle=5.0)
    assert http.waits[0] == 5.0 and http.waits[1] is not None and http.waits[1] < 5.0
    assert http.waits[2] == 5.0  # an event arrived: the full idle time again


def test_idle_timeout_raises_the_kind() -> None:
    with pytest.raises(APITimeoutError) as info:
        run([chunk("a"), TimeoutError()])
    assert info.value.kind == "idle" and "no event from the server for 5.0s" in str(info.value)


def test_a_read_bounded_by_the_total_deadline_says_total() -> None:
    # The deadline is nearer than the idle time: the read waits only until it, and its timeout is "total".
    http = FakeHTTP([TimeoutError()])
    with pytest.raises(APITimeoutError) as info:
        list(read_body(StreamControl(10), http, Accumulator(), plan(idle=30.0, total=2.0)))  # type: ignore[arg-type]
    assert info.value.kind == "total" and http.waits[0] is not None and http.waits[0] <= 2.0


def test_content_before_an_in_band_error_is_delivered_first() -> None:
    batches = read_body(
        StreamControl(100), FakeHTTP([chunk("x") + b'data: {"error": {"message": "boom"}}\n\n']), Accumulator(), plan()  # type: ignore[arg-type]
    )
    events, last = next(batches)
    assert [e.content for e in events] == ["x"] and not last
    with pytest.raises(StreamError, match="boom"):
        next(batches)


def test_malformed_json_is_a_stream_error() -> None:
    with pytest.raises(StreamError, match="malformed chunk"):
        run([b"data: {not json\n\n"])


def test_a_batch_per_read_with_events_and_only_the_final_one_is_last() -> None:
    _, _, batches, lasts = run([chunk("a"), b": c\n\n", chunk("b"), chunk(finish="stop") + b"data: [DONE]\n\n"])
    assert [[e.content for e in batch] for batch in batches] == [["a"], ["b"]]
    assert lasts == [False, False]  # the [DONE] read brought no event: the reply ended after the last batch


def test_a_cancel_stops_reading_quietly() -> None:
    control = StreamControl(10)
    http = FakeHTTP([chunk("a"), chunk("b")])
    batches = read_body(control, http, Accumulator(), plan())  # type: ignore[arg-type]
    assert [e.content for e in next(batches)[0]] == ["a"]
    control.cancel()
    assert list(batches) == [] and len(http.waits) == 2  # the read in flight returned; nothing more was read
