"""The demo pipeline end to end on a small generated set: counts invariant and alert
delivery through the emulated Kinesis, SNS and EventBridge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocsf_detect_tools.cli import main

pytestmark = pytest.mark.slow


# the pipeline's invariants, not detection quality: a bundle that trains in seconds
SMALL_CONFIG = """
min_class_events = 30
[train]
max_steps = 400
width = 64
blocks = 2
dim = 32
[index]
recall_sample = 200
ef_construction = 100
"""


def test_demo_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "small.toml"
    config.write_text(SMALL_CONFIG)
    code = main(
        [
            "demo",
            "--baseline-events",
            "3000",
            "--live-events",
            "600",
            "--out",
            str(tmp_path / "out"),
            "--config",
            str(config),
            "--json",
            "--batch-size",
            "200",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["events"] == 600
    assert summary["scored"] == 600
    # every anomaly the stream saw is in one alert group or suppressed; every group spoke
    # on both channels or stayed quiet
    assert summary["grouped_anomalies"] + summary["suppressed"] == summary["anomalies"]
    assert summary["alerts_sns"] == summary["alerts_eventbridge"]
    assert summary["alerts_sns"] + summary["quiet_groups"] == summary["alert_groups"]
    assert summary["alert_groups"] > 0
    assert summary["notifications_sns"] == summary["notifications_eventbridge"]
    assert "Top alert groups" in out
    assert summary["quarantined"] == 0
    assert "Top alerts" in out
    report = tmp_path / "out" / "report.html"
    assert report.is_file()
    assert "data:image/png;base64," in report.read_text()
