"""benchmarks/views.py reads the served score's views with the bundle's own parts: their
sum is the served score wherever the served path did not re-check the event exactly."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from views import view_scores


def test_the_views_sum_to_the_served_score(detector, live_traffic) -> None:
    lines = [orjson.dumps(e) for e in live_traffic.events]
    views = view_scores(detector, lines)
    scored = np.isfinite(views["served"])
    assert scored.sum() > 100
    fine = np.nan_to_num(views["fine"])
    total = views["knn"] + views["trees"] + fine
    # the served path re-checks exactly only an event whose bound (the trees counted for
    # every event) reaches its class's threshold; elsewhere the score is the views' sum
    threshold = min(detector.manifest.models[k].threshold for k in detector.manifest.models)
    unchecked = scored & (views["bound"] < threshold)
    assert unchecked.sum() > 100
    assert np.allclose(views["served"][unchecked], total[unchecked], atol=1e-5)
    assert np.all(views["bound"][scored] >= total[scored] - 1e-9)
    # each view's evidence is a surprise beyond a floor: never negative
    for name in ("knn", "trees"):
        assert np.all(views[name][scored] >= 0.0)
