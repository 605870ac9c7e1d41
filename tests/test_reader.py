"""read_body: one response body to stream events, with a scripted fake HTTP stream."""

from __future__ import annotations

import json
from typing import List, Optional, Union

import pytest

from promptkit.accumulator import Accumulator
from promptkit.errors import APITimeoutError, StreamError, StreamTruncatedError
from promptkit.reader import read_body
from promptkit.stream import StreamControl


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


def run(script: List[Union[bytes, BaseException]], **kwargs: object) -> tuple:
    control = StreamControl(100)
    acc = Accumulator()
    http = FakeHTTP(script)
    outputs: List[int] = []
    options = dict(idle=5.0, deadline=None, timeout_error=lambda kind: APITimeoutError(kind, kind=kind), on_output=lambda: outputs.append(1))
    options.update(kwargs)
    read_body(control, http, acc, **options)  # type: ignore[arg-type]
    items = []
    while not control.queue.empty():
        item = control.queue.get_nowait()
        items.append(item)
    return acc, http, items, outputs


def events_of(items: list) -> list:
    return [e for item in items for e in (item if isinstance(item, list) else [item])]


def test_one_queue_item_per_read_and_done_finishes_the_body() -> None:
    wire = chunk("a") + chunk("b") + chunk(finish="stop") + b"data: [DONE]\n\n"
    acc, http, items, outputs = run([wire])
    assert len(items) == 1 and [e.content for e in events_of(items)] == ["a", "b"]
    assert http.finished and acc.finish_reason == "stop" and outputs == [1]


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
    assert info.value.kind == "idle"


def test_content_before_an_in_band_error_is_delivered_first() -> None:
    control_items = []
    with pytest.raises(StreamError, match="boom"):
        control = StreamControl(100)
        try:
            read_body(control, FakeHTTP([chunk("x") + b'data: {"error": {"message": "boom"}}\n\n']), Accumulator(),
                      idle=5.0, deadline=None, timeout_error=lambda k: APITimeoutError(k), on_output=lambda: None)
        finally:
            control_items = events_of([control.queue.get_nowait() for _ in range(control.queue.qsize())])
    assert [e.content for e in control_items] == ["x"]


def test_malformed_json_is_a_stream_error() -> None:
    with pytest.raises(StreamError, match="malformed chunk"):
        run([b"data: {not json\n\n"])


def test_after_read_runs_after_each_read_with_events() -> None:
    calls: List[int] = []
    run([chunk("a"), b": c\n\n", chunk("b"), b"data: [DONE]\n\n"], after_read=lambda: calls.append(1))
    assert len(calls) == 2
