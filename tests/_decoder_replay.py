"""Reading a recorded body through the real reader into any decoder: whole, in random reads, or byte by byte."""

from __future__ import annotations

import random
from typing import Any, Generic, List, Optional, TypeVar

import attrs

from promptkit._errors import StreamError
from promptkit._reader import read_body
from promptkit._stream import StreamControl
from promptkit._types import StreamEvent
from tests.test_reader import FakeHTTP, plan

HOWS = ("whole", "random-1", "random-2", "random-3", "bytewise")
D = TypeVar("D")


@attrs.define
class Outcome(Generic[D]):
    """What one way of reading a body produced."""

    events: List[StreamEvent]
    error: Optional[StreamError]
    decoder: D
    finished: bool  # the reader released the body as a finished reply


def reads_of(data: bytes, how: str) -> List[bytes]:
    """``data`` cut as one of :data:`HOWS` says (``random-<seed>``: reads of 1 to 300 bytes)."""
    if how == "whole":
        return [data]
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(int(how.split("-")[1]))
    reads, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, 300)
        reads.append(data[pos : pos + size])
        pos += size
    return reads


def read(reads: List[bytes], decoder: Any) -> "Outcome[Any]":
    """Read ``reads`` with :func:`promptkit._reader.read_body` into ``decoder``, as a turn does."""
    http = FakeHTTP(list(reads))
    events: List[StreamEvent] = []
    error: Optional[StreamError] = None
    try:
        for batch, _ in read_body(StreamControl(10**6), http, decoder, plan()):  # type: ignore[arg-type]
            events.extend(batch)
    except StreamError as exc:
        error = exc
    return Outcome(events, error, decoder, http.finished)
