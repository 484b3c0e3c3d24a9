"""Margins over the references (benchmarks/evaluate_shared.py): a difference that is
only floating-point rounding is a tie, not a loss, and the margin of the mean over the
seeds stands beside the worst seed's."""

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


def _row(ours_by_seed: list[tuple[float, float]]) -> object:
    from cases import FUTURE, Case
    from evaluate_shared import Row, Run

    line = b'{"metadata": {"uid": "e1"}}'
    case = Case("c", FUTURE, [line], [line], {"e1": 1})
    refs = {
        "isolation_forest": {"roc_auc": 0.90, "average_precision": 0.50, "recall_at_rate": 0.2},
        "knn_5": {"roc_auc": 0.80, "average_precision": 0.60, "recall_at_rate": 0.1},
        "knn_20": {"roc_auc": 0.70, "average_precision": 0.40, "recall_at_rate": 0.0},
    }
    runs = {
        seed: Run(
            {
                "roc_auc": roc,
                "average_precision": ap,
                "recall": 0.5,
                "precision": 0.5,
                "recall_at_rate": 0.2,
                "alerts": 3,
            },
            {"roc_auc": roc, "average_precision": ap},
            0.01,
            1.0,
        )
        for seed, (roc, ap) in enumerate(ours_by_seed)
    }
    return Row(case, "defaults", refs, runs)


def test_the_mean_margin_tells_a_seeds_draw_from_the_design() -> None:
    from evaluate_shared import headline, summary

    # ROC-AUC: one seed below IsolationForest's 0.90, the mean above it (a draw);
    # AP: every seed below kNN5's 0.60 (the design)
    s = summary(_row([(0.95, 0.55), (0.86, 0.58), (0.93, 0.52)]))  # type: ignore[arg-type]
    assert abs(s["roc_auc"]["margin"] - (0.86 - 0.90)) < 1e-12
    assert abs(s["roc_auc"]["margin_mean"] - (0.04 / 3)) < 1e-12
    assert s["average_precision"]["best_reference"] == "knn_5"
    assert abs(s["average_precision"]["margin_mean"] - (0.55 - 0.60)) < 1e-12
    h = headline([s], "defaults")
    assert h["roc_auc"]["cases_at_or_above"] == 0
    assert h["roc_auc"]["cases_at_or_above_on_mean"] == 1
    assert h["average_precision"]["cases_at_or_above_on_mean"] == 0
