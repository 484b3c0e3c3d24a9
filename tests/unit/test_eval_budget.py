"""Recall at the alert budget (benchmarks/evaluate_shared.py): every scorer may alert on
at most the configured share of the scored benign events."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from evaluate_shared import recall_at_benign_rate


def test_no_more_benign_events_alert_than_the_budget_allows() -> None:
    # 200 benign scores 0..199, 1%: the threshold is their 99th percentile taken at the
    # next higher score, 198, so one benign event (199) alerts, within the 2 allowed. The
    # attacks at 198.5 and 199.5 lie above it and are found, the one at 197.5 is not
    y = np.r_[np.zeros(200, dtype=np.int64), np.ones(3, dtype=np.int64)]
    scores = np.r_[np.arange(200.0), [198.5, 199.5, 197.5]]
    assert recall_at_benign_rate(y, scores, 0.01) == 2 / 3
    # half the benign events may alert: every attack is found
    assert recall_at_benign_rate(y, scores, 0.5) == 1.0
    # a larger budget never finds fewer attacks
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(1000, dtype=np.int64), np.ones(50, dtype=np.int64)]
    scores = np.r_[rng.normal(size=1000), rng.normal(3.0, 1.0, size=50)]
    found = [recall_at_benign_rate(y, scores, r) for r in (0.001, 0.005, 0.05, 0.5)]
    assert found == sorted(found)
    assert 0.0 < found[1] < 1.0


def test_attacks_tied_with_the_benign_tail_do_not_count() -> None:
    # four benign events share the top score with the only attack: at a budget of 1%
    # of 100 benign events, alerting at that score would alert on four benign events
    y = np.r_[np.zeros(100, dtype=np.int64), [1]]
    scores = np.r_[np.zeros(96), np.full(4, 5.0), [5.0]]
    assert recall_at_benign_rate(y, scores, 0.01) == 0.0
    # above every benign event it is found
    scores[-1] = 6.0
    assert recall_at_benign_rate(y, scores, 0.01) == 1.0


def test_unscored_events_never_alert_and_no_attacks_gives_nan() -> None:
    y = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.0, 0.1, 0.2, np.nan, 9.0])
    assert recall_at_benign_rate(y, scores, 0.0) == 0.5
    assert math.isnan(recall_at_benign_rate(np.zeros(3, dtype=np.int64), scores[:3], 0.1))
