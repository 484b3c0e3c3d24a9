"""``benchmarks/batches.py``: the same events scored in one batch and in small batches."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from batches import compare


def test_a_flood_alerts_alike_in_one_batch_and_in_small_ones(
    bundle_dir: Path, live_traffic
) -> None:
    # Given a flood: the live attacks, repeated, among the live traffic
    attacks = [
        orjson.dumps(e)
        for e, label in zip(live_traffic.events, live_traffic.labels, strict=True)
        if label.is_malicious
    ]
    lines = [orjson.dumps(e) for e in live_traffic.events[:600]] + attacks * 8
    # When they are scored in one batch and in batches of 400
    got = compare(bundle_dir, lines, 400)
    # Then the re-check limit binds both ways, and every event alerts alike
    assert got["events"] == len(lines)
    assert got["unchecked"][0] > 0
    assert got["unchecked"][1] > 0
    assert got["rechecked"][0] < got["rechecked"][1]  # a limit per batch: more batches
    assert got["alerts_one_batch"] > len(attacks)
    assert got["differ"] == 0, got
    assert got["alerts_one_batch"] == got["alerts_by_size"]
