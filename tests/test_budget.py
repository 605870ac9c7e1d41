"""promptkit._budget: validating ``max_cost`` and what a new turn may still spend."""

from __future__ import annotations

import math
from typing import Any

import pytest

import promptkit
from promptkit._budget import budget_left, check_max_cost


@pytest.mark.parametrize("value", [0, -1, -0.5, math.inf, math.nan, True, "1", [1]])
def test_max_cost_must_be_a_positive_finite_number(value: Any) -> None:
    with pytest.raises(promptkit.ConfigurationError, match="max_cost"):
        check_max_cost(value)


def test_max_cost_becomes_a_float() -> None:
    assert check_max_cost(None) is None
    result = check_max_cost(2)
    assert result == 2.0 and isinstance(result, float)
    assert check_max_cost(0.01) == 0.01


def test_budget_left() -> None:
    assert budget_left(None, 123.0, "conv_1") is None
    assert budget_left(1.0, 0.25, "conv_1") == 0.75
    assert budget_left(1.0, 0.0, "conv_1") == 1.0


@pytest.mark.parametrize("spent", [1.0, 1.5])
def test_no_turn_once_the_budget_is_spent(spent: float) -> None:
    with pytest.raises(promptkit.BudgetExceededError, match=r"conv_7 has spent \$1\.[05]0* of its max_cost \$1\.0+; no turn"):
        budget_left(1.0, spent, "conv_7")
