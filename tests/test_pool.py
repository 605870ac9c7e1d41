"""run_parallel: tool handlers a few at once, results in call order, per-call timeouts."""

from __future__ import annotations

import threading

from promptkit._pool import run_parallel
from promptkit._stream import StreamControl


def test_run_parallel_keeps_call_order() -> None:
    control = StreamControl(10)
    second_done = threading.Event()

    def first() -> str:
        assert second_done.wait(5.0)  # finishes after the second
        return "one"

    def second() -> str:
        second_done.set()
        return "two"

    results = run_parallel(control, [first, second], max_workers=2, timeouts=[None, None], on_timeout=lambda i, at_deadline: "late")
    assert results == ["one", "two"]


def test_run_parallel_timeout_gives_timeout_result() -> None:
    control = StreamControl(10)
    release = threading.Event()

    def slow() -> str:
        release.wait(5.0)
        return "slow"

    try:
        results = run_parallel(control, [slow], max_workers=1, timeouts=[0.05], on_timeout=lambda i, at_deadline: f"timeout {i}")
        assert results == ["timeout 0"]
    finally:
        release.set()
