"""A conversation's ``max_cost``: validated when the conversation is made, checked before each turn.

The check during a turn, after each read, is the turn's own (:mod:`promptkit._turn`):
it gets the amount :func:`budget_left` returns.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from ._errors import BudgetExceededError, ConfigurationError

__all__ = ["check_max_cost", "budget_left"]


def check_max_cost(max_cost: Any) -> Optional[float]:
    """``max_cost``: ``None`` or a positive, finite number of USD."""
    if max_cost is None:
        return None
    if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not math.isfinite(max_cost) or max_cost <= 0:
        raise ConfigurationError(f"max_cost must be a positive, finite number of USD or None, got {max_cost!r}")
    return float(max_cost)


def budget_left(max_cost: Optional[float], spent: float, conversation_id: str) -> Optional[float]:
    """USD a new turn may spend (``None``: no budget).

    Raises:
        BudgetExceededError: ``spent`` has reached ``max_cost``; no turn is started.
    """
    if max_cost is None:
        return None
    if spent >= max_cost:
        raise BudgetExceededError(
            f"conversation {conversation_id} has spent ${spent:.6f} of its max_cost ${max_cost:.6f}; no turn was started"
        )
    return max_cost - spent
