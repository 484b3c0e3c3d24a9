"""Evaluation references: exact k-NN never counts an event as its own neighbour, and large
inputs are fitted on a bounded sample."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from ocsf_detect_tools import evaluation
from ocsf_detect_tools.evaluation import _knn_scores, evaluate


def brute_force(reference_rows: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Mean distance to the k nearest of the reference rows, skipping the query itself."""
    out = np.empty(len(queries))
    for q in range(len(queries)):
        rows = [r for r in reference_rows if r != q]
        d = np.sort(np.linalg.norm(queries[rows] - queries[q], axis=1))
        out[q] = d[:k].mean()
    return out


def test_knn_scores_on_a_sample_of_the_queries_skip_the_query_itself() -> None:
    rng = np.random.default_rng(4)
    queries = rng.normal(size=(300, 5))
    picked = np.sort(rng.choice(300, 120, replace=False))
    got = _knn_scores(queries[picked], queries, 7, picked)
    assert got == pytest.approx(brute_force(picked, queries, 7), rel=1e-5)
    # and with every query a reference (the threshold's own scores)
    every = np.arange(300)
    assert _knn_scores(queries, queries, 7, every) == pytest.approx(
        brute_force(every, queries, 7), rel=1e-5
    )


def test_large_inputs_fit_the_references_on_a_sample(
    monkeypatch: pytest.MonkeyPatch, detector, live_traffic
) -> None:
    monkeypatch.setattr(evaluation, "MAX_REFERENCE_EVENTS", 300)
    lines = [orjson.dumps(e) for e in live_traffic.events]
    labels = {lb.uid: int(lb.is_malicious) for lb in live_traffic.labels}
    result = evaluate(detector, lines, labels)
    assert result.reference_fit == "the evaluated events (transductive) (a random 300 per class)"
    for ref in result.baselines.values():
        # the references still rank the injected attacks, from 300 events per class
        assert 0.6 < ref.roc_auc <= 1.0


def test_the_report_names_classes_whose_references_had_no_baseline(
    detector, baseline_traffic, live_traffic
) -> None:
    # Given a baseline with Network Activity only, and live traffic of three classes
    baseline = [orjson.dumps(e) for e in baseline_traffic.events if e["class_uid"] == 4001]
    lines = [orjson.dumps(e) for e in live_traffic.events]
    labels = {lb.uid: int(lb.is_malicious) for lb in live_traffic.labels}
    # When evaluating, Then the other classes' references are said to be transductive
    fit = evaluate(detector, lines, labels, baseline).reference_fit
    assert fit.startswith("baseline events; for class(es) ")
    assert "3002" in fit
    assert "4003" in fit
    assert "4001" not in fit
