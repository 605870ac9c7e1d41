"""A turn's timeout plan: computed once when the turn starts, asked by every wait.

A :class:`~promptkit.Timeout` says how long each kind of wait may last; the
plan turns it into the waits of one turn, measured against one total
deadline, and builds the right :class:`~promptkit.APITimeoutError` the first
time, so no error has its kind rewritten after it was raised.
"""

from __future__ import annotations

import time
from typing import Optional, Tuple

import attrs

from ._errors import APITimeoutError
from ._types import Timeout

__all__ = ["TimeoutPlan"]

_monotonic = time.monotonic
_FLOOR = 0.001  # a socket timeout of 0 would mean non-blocking


@attrs.frozen
class TimeoutPlan:
    """The waits of one turn: ``connect``, ``idle`` (headers, then between events) and a total deadline.

    Attributes:
        connect: seconds to open a connection, or ``None``.
        idle: seconds to wait for the response headers and then between two parsed events, or ``None``.
        total: the turn's whole budget in seconds (for messages), or ``None``.
        deadline: ``time.monotonic()`` at which the turn is over, or ``None``.
    """

    connect: Optional[float]
    idle: Optional[float]
    total: Optional[float]
    deadline: Optional[float]

    @classmethod
    def start(cls, timeout: Timeout, now: Optional[float] = None) -> "TimeoutPlan":
        """The plan of a turn starting ``now`` (``time.monotonic()`` by default)."""
        started = _monotonic() if now is None else now
        total = timeout.total
        return cls(
            connect=timeout.connect,
            idle=timeout.idle,
            total=total,
            deadline=None if total is None else started + total,
        )

    def _left(self) -> Optional[float]:
        return None if self.deadline is None else self.deadline - _monotonic()

    def connect_wait(self) -> Tuple[Optional[float], str]:
        """How long the next connection attempt may take, and which limit ends it: ``"connect"`` or ``"total"``."""
        left = self._left()
        if left is not None and (self.connect is None or left < self.connect):
            return max(_FLOOR, left), "total"
        return self.connect, "connect"

    def wait(self, idle_left: Optional[float] = None) -> Tuple[Optional[float], str]:
        """How long the next read may block, and which limit ends it: ``"idle"`` or ``"total"``.

        ``idle_left`` is what remains of the idle time when part of it was
        spent on comments (``None``: the whole idle time).
        """
        idle = self.idle if idle_left is None else idle_left
        left = self._left()
        if left is not None and (idle is None or left < idle):
            return max(0.0, left), "total"
        return (None if idle is None else max(0.0, idle)), "idle"

    def allows(self, delay: float) -> bool:
        """Whether a wait of ``delay`` seconds ends before the deadline."""
        return self.deadline is None or _monotonic() + delay < self.deadline

    def expired(self) -> bool:
        """Whether the total deadline has passed."""
        return self.deadline is not None and _monotonic() >= self.deadline

    def error(self, kind: str, phase: str = "events", where: str = "") -> APITimeoutError:
        """The timeout error for a wait that ran out.

        Args:
            kind: ``"connect"``, ``"idle"`` or ``"total"``.
            phase: ``"connect"``, ``"headers"`` or ``"events"``: what was being waited for.
            where: the host and base URL, for connect and header waits.
        """
        if kind == "total":
            during = {"headers": " waiting for response headers", "connect": " connecting"}.get(phase, "")
            return APITimeoutError(f"the turn exceeded its total deadline of {self.total}s{during}", kind="total")
        if kind == "connect":
            return APITimeoutError(f"timed out connecting to {where}", kind="connect")
        if phase == "headers":
            return APITimeoutError(f"timed out waiting for response headers from {where}", kind="idle")
        return APITimeoutError(f"no event from the server for {self.idle}s", kind="idle")
