"""The CLI end to end on a small generated training set: train, inspect, score, evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import orjson
import pytest
from ocsf_detect.cli import main

pytestmark = pytest.mark.slow

SMALL = """
min_class_events = 30
[train]
epochs = 3
max_steps = 150
width = 32
blocks = 1
dim = 16
[index]
recall_sample = 200
"""


def test_train_inspect_score_evaluate(
    tmp_path: Path, baseline_traffic, live_traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given generated baseline and live files with labels
    base = tmp_path / "base.jsonl.gz"
    from ocsf_detect.eventio import write_jsonl

    write_jsonl(baseline_traffic.events[:2500], base)
    live = tmp_path / "live.jsonl"
    live.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in live_traffic.events) + b"oops\n")
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uid", "is_malicious"])
        w.writerows((lab.uid, lab.is_malicious) for lab in live_traffic.labels)
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    bundle = tmp_path / "bundle"

    # When training, then Then a bundle and its archive exist
    assert (
        main(
            [
                "train",
                "--events",
                str(base),
                "--out",
                str(bundle),
                "--config",
                str(config),
                "--alert-rate",
                "0.01",
                "--archive",
                str(tmp_path / "b.zip"),
            ]
        )
        == 0
    )
    assert (bundle / "manifest.json").is_file()
    assert (tmp_path / "b.zip").is_file()
    assert "bundle 1.0.0+" in capsys.readouterr().out

    assert main(["inspect", str(bundle), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "class 4001" in out
    assert "golden scores reproduce" in out

    # Scoring writes one JSON line per input line, bad lines included
    scored = tmp_path / "scored.jsonl"
    assert (
        main(["score", "--bundle", str(bundle), "--events", str(live), "--out", str(scored)]) == 0
    )
    rows = [json.loads(x) for x in scored.read_text().splitlines()]
    assert len(rows) == len(live_traffic.events) + 1
    assert rows[-1]["status"] == "rejected"
    assert rows[-1]["reason"] == "invalid_json"
    assert {r["status"] for r in rows[:-1]} == {"scored"}

    # Evaluate prints the metrics and references as JSON, and writes plots
    assert (
        main(
            [
                "evaluate",
                "--bundle",
                str(bundle),
                "--events",
                str(live),
                "--labels",
                str(labels),
                "--json",
                "--plots",
                str(tmp_path / "plots"),
                "--baseline",
                str(base),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    for key in ("roc_auc", "average_precision", "threshold_recall", "n_events", "n_labeled"):
        assert key in report
    assert set(report["baselines"]) == {"isolation_forest", "exact_knn"}
    assert report["n_labeled"] == len(live_traffic.events)
    assert 0.5 < report["roc_auc"] <= 1.0
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {"roc.png", "pr.png", "scores.png"}


def test_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "--bundle", str(tmp_path), "--events", "nope.jsonl"]) == 2
    assert "manifest.json is missing" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"class_uid": 1007, "time": 1}\n')
    assert main(["train", "--events", str(empty), "--out", str(tmp_path / "b")]) == 2
    assert "no supported class" in capsys.readouterr().err
