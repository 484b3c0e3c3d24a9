"""Small held-out sets: the threshold is the higher of the order statistic and the tail's
point for the rate, so a held-out set whose top events score low does not set it low."""

from __future__ import annotations

import numpy as np
import pytest

from ocsf_detect.detector.calibrate import (
    MIN_EXCEEDANCES,
    alert_threshold,
    calibrate,
    severity_ids,
    threshold_for,
)

RATE = 0.005


def test_with_few_held_out_events_the_tail_guards_against_a_low_order_statistic() -> None:
    # Given 500 held-out sets of 200 normal scores each (exponential: P(s >= x) = e^-x)
    # and a large fresh set of normal traffic
    rng = np.random.default_rng(0)
    fresh = rng.exponential(size=200_000)
    tail, empirical = [], []
    for _ in range(500):
        held_out = rng.exponential(size=200)
        tail.append(threshold_for(held_out, RATE))
        empirical.append(alert_threshold(held_out, RATE))
    tail_t, emp_t = np.array(tail), np.array(empirical)
    # Then the threshold is never below the order statistic, and above it wherever the
    # top tenth of the set says the rate lies further out
    assert (tail_t >= emp_t).all()
    assert 0.2 < (tail_t > emp_t).mean() < 0.9
    # so the false-alarm rate on fresh traffic spikes less: the worst tenth of the
    # held-out sets alert on less, and the median stays at or under the configured rate
    rates = np.array([(fresh >= t).mean() for t in tail_t])
    emp_rates = np.array([(fresh >= t).mean() for t in emp_t])
    assert np.quantile(rates, 0.9) < 0.9 * np.quantile(emp_rates, 0.9)
    assert np.median(rates) <= RATE


def test_with_enough_held_out_events_the_empirical_quantile_stands() -> None:
    rng = np.random.default_rng(1)
    n = int(np.ceil(MIN_EXCEEDANCES / RATE))  # 10 held-out events expected beyond it
    scores = rng.exponential(size=n)
    assert threshold_for(scores, RATE) == alert_threshold(scores, RATE)
    assert calibrate(scores, RATE).threshold == alert_threshold(scores, RATE)
    # one event fewer: the higher of the order statistic and the tail's point for the rate
    fewer = scores[: n - 1]
    u = np.quantile(fewer, 0.9)
    tail = u + (fewer[fewer > u] - u).mean() * np.log(0.1 / RATE)
    expected = max(alert_threshold(fewer, RATE), tail)
    assert threshold_for(fewer, RATE) == pytest.approx(expected, rel=1e-6)


def test_tail_bands_rise_above_every_held_out_score() -> None:
    # Given small held-out sets, where the threshold for 0.5% is at or beyond their maximum
    rng = np.random.default_rng(2)
    for _ in range(50):
        scores = rng.exponential(size=100)
        cal = calibrate(scores, RATE)
        mins = [b.min_score for b in cal.bands]
        assert cal.threshold >= scores.max()
        # Then Low < Medium < High < Critical, and High lies above every held-out score
        assert mins == sorted(mins)
        assert len(set(mins)) == 4
        assert mins[2] > max(scores.max(), cal.threshold)
        assert severity_ids(np.array([cal.threshold, mins[2]]), cal.bands).tolist() == [2, 4]


def test_a_degenerate_tail_falls_back_to_the_tie_rule() -> None:
    # Repetitive traffic: the top tenth of a small held-out set ties exactly
    scores = np.concatenate([np.linspace(0, 1, 170), np.full(30, 3.0)])
    threshold = threshold_for(scores, RATE)
    assert threshold > 3.0
    assert threshold == alert_threshold(scores, RATE)
    # and a held-out set of zeros still never alerts at zero
    assert threshold_for(np.zeros(50), RATE) > 0
