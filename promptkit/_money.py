"""Showing a USD cost: one rule for ``Response.summary()``, the CLI and :mod:`promptkit.pricing`.

A leaf module, so that the value classes (:mod:`promptkit._types`) and the
price tables (:mod:`promptkit.pricing`, which builds on them) both use it
without importing each other.
"""

from __future__ import annotations

import math

__all__ = ["format_cost"]


def format_cost(cost: float, known: bool = True) -> str:
    """Format a USD cost as ``Response.summary()`` and the CLI show it.

    Two significant digits below $1 (``"$0.000047"``, ``"$0.000084"``,
    ``"$0.0032"``, ``"$0.41"``), cents from $1 on (``"$1.23"``, ``"$1,234.50"``):
    a small cost never rounds to a misleading ``"$0.0001"`` or ``"$0.0000"``.
    ``0`` is ``"$0.00"`` and an unknown cost ``"n/a"``.
    """
    if not known or not math.isfinite(cost):
        return "n/a"
    if cost <= 0:
        return "$0.00" if cost == 0 else f"-{format_cost(-cost)}"
    if cost >= 0.995:  # rounds to $1.00 or more: cents
        return f"${cost:,.2f}"
    decimals = 1 - math.floor(math.log10(cost))
    rounded = round(cost, decimals)
    decimals = max(2, 1 - math.floor(math.log10(rounded)))  # 0.0996 rounds up to 0.10, not 0.100
    return f"${rounded:.{decimals}f}"
