"""Running one round's tool handlers: a few at once, results in call order, bounded by timeouts."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, TypeVar

from ._stream import StreamControl, start_thread

__all__ = ["run_parallel"]

_ids = itertools.count(1)
_T = TypeVar("_T")
_POLL = 1.0  # a safety net only: a cancel notifies the waiting loop at once


class _Wake:
    """Attached to the stream's control while handlers run: a cancel wakes the waiting loop."""

    __slots__ = ("_changed",)

    def __init__(self, changed: threading.Condition) -> None:
        self._changed = changed

    def abort(self) -> None:
        with self._changed:
            self._changed.notify_all()


def run_parallel(
    control: StreamControl,
    tasks: Sequence[Callable[[], _T]],
    *,
    max_workers: int,
    timeouts: Sequence[Optional[float]],
    on_timeout: Callable[[int, bool], _T],
    deadline: Optional[float] = None,
) -> Optional[List[_T]]:
    """Run ``tasks`` on up to ``max_workers`` threads at once; results in task order (tool calls).

    A task still running ``timeouts[i]`` seconds after *it* started, or at
    the ``deadline`` (a ``time.monotonic()`` value), gets
    ``on_timeout(i, at_deadline)`` as its result and stops counting against
    ``max_workers``; its thread finishes on its own. Returns ``None`` when
    the stream is cancelled: tasks not started are dropped, running ones
    are left to finish.
    """
    count = len(tasks)
    results: List[Any] = [None] * count
    started: List[float] = [0.0] * count
    outcomes: Dict[int, Tuple[bool, Any]] = {}
    changed = threading.Condition()

    def runner(i: int) -> None:
        try:
            outcome: Tuple[bool, Any] = (True, tasks[i]())
        except BaseException as exc:  # handed to the worker, which fails the turn with it
            outcome = (False, exc)
        with changed:
            outcomes[i] = outcome
            changed.notify_all()

    running: Set[int] = set()
    next_task = 0
    control.attach(_Wake(changed))  # a cancel notifies `changed`: the loop below sees it at once
    try:
        with changed:
            while next_task < count or running:
                if control.cancelled:
                    return None
                now = time.monotonic()
                past_deadline = deadline is not None and now >= deadline
                while next_task < count and len(running) < max_workers and not past_deadline:
                    started[next_task] = time.monotonic()
                    running.add(next_task)
                    start_thread(runner, f"tool-{next(_ids)}", next_task)
                    next_task += 1
                for i in sorted(running):
                    limit = timeouts[i]
                    if i in outcomes:
                        ok, value = outcomes.pop(i)
                        if not ok:
                            raise value
                        results[i] = value
                    elif past_deadline:
                        results[i] = on_timeout(i, True)
                    elif limit is not None and now >= started[i] + limit:
                        results[i] = on_timeout(i, False)
                    else:
                        continue
                    running.discard(i)
                if past_deadline:
                    while next_task < count:  # never started: the deadline came first
                        results[next_task] = on_timeout(next_task, True)
                        next_task += 1
                if not running and next_task >= count:
                    break
                limits = [started[i] + t for i in running if (t := timeouts[i]) is not None]
                if deadline is not None:
                    limits.append(deadline)
                # Wake on a finished task, a timeout or a cancel (control.cancel() notifies).
                changed.wait(min([_POLL] + [max(0.0, limit - now) for limit in limits]))
        return results
    finally:
        control.detach()
