"""Margins over the references (benchmarks/evaluate_shared.py): a difference that is
only floating-point rounding is a tie, not a loss."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from evaluate_shared import margin


def test_a_metric_tied_up_to_rounding_is_not_a_loss() -> None:
    # scikit-learn's AP of a perfect ranking sums to 1.0000000000000002 for some labelings
    assert margin(1.0, 1.0000000000000002) == 0.0
    assert margin(0.5, 0.5) == 0.0
    assert abs(margin(0.9, 0.95) + 0.05) < 1e-12
    assert margin(0.95, 0.9) > 0.0
