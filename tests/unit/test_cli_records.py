"""What ``score`` writes: the documented record, unsupported events named with a reason,
Detection Findings, and neighbours a reader can find in the training input."""

from __future__ import annotations

import orjson
import pytest

from ocsf_detect_tools.cli import main

RECORD_FIELDS = {
    "line",
    "status",
    "class_uid",
    "class_name",
    "score",
    "threshold",
    "is_anomaly",
    "severity_id",
    "severity",
    "neighbors",
    "explanation",
    "uid",
}


def score(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["score", *argv]) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_score_record_has_the_documented_fields(tmp_path, bundle_dir, live_traffic, capsys):
    events = tmp_path / "e.jsonl"
    account_change = {"class_uid": 3001, "time": 1741939200000, "metadata": {"uid": "a"}}
    events.write_bytes(
        orjson.dumps(live_traffic.events[0])
        + b"\n"
        + orjson.dumps(account_change)
        + b"\n{not json\n"
    )
    scored, unsupported, rejected = score(
        ["--bundle", str(bundle_dir), "--events", str(events), "--max-rejected", "1"], capsys
    )
    assert set(scored) == RECORD_FIELDS
    assert scored["line"] == 1
    assert scored["uid"] == live_traffic.events[0]["metadata"]["uid"]
    assert {"id", "distance"} == set(scored["neighbors"][0])
    # An unsupported event is named from the OCSF schema and says why it was not scored
    assert unsupported["class_name"] == "Account Change"
    assert unsupported["reason"] == "no_model"
    assert "no model for class 3001 (Account Change)" in unsupported["message"]
    assert "4001 Network Activity" in unsupported["message"]
    assert rejected["line"] == 3
    assert rejected["reason"] == "invalid_json"


def test_findings_format_emits_the_stream_findings_of_anomalies(
    tmp_path, bundle_dir, live_traffic, capsys
):
    from ocsf_detect.detector.scorer import Detector, Scored
    from ocsf_detect.findings import build_finding

    events = tmp_path / "live.jsonl"
    lines = [orjson.dumps(e) for e in live_traffic.events]
    events.write_bytes(b"\n".join(lines) + b"\n")
    detector = Detector.load(bundle_dir)
    anomalies = [o for o in detector.score_batch(lines) if isinstance(o, Scored) and o.is_anomaly]
    assert anomalies  # the live traffic has injected attacks
    findings = score(
        ["--bundle", str(bundle_dir), "--events", str(events), "--format", "findings"], capsys
    )
    assert len(findings) == len(anomalies)
    first = findings[0]
    expected = build_finding(anomalies[0], bundle_version=detector.bundle_version, created_ms=1)
    assert first["class_uid"] == 2004
    assert first["finding_info"]["uid"] == expected["finding_info"]["uid"]
    assert set(first) == set(expected)


def test_neighbours_without_metadata_uid_are_lines_of_the_training_input(
    tmp_path, baseline_traffic, live_traffic, capsys
):
    # Given a baseline whose events carry no metadata.uid
    base = tmp_path / "base.jsonl"
    events = [dict(e, metadata={"version": "1.3.0"}) for e in baseline_traffic.events[:1500]]
    base_lines = [orjson.dumps(e) for e in events]
    base.write_bytes(b"\n".join(base_lines) + b"\n")
    config = tmp_path / "small.toml"
    config.write_text("min_class_events = 30\n[train]\nmax_steps = 30\nwidth = 16\ndim = 8\n")
    bundle = tmp_path / "bundle"
    train = ["train", "--events", str(base), "--out", str(bundle), "--config", str(config)]
    assert main(train) == 0
    capsys.readouterr()
    live = tmp_path / "live.jsonl"
    live.write_bytes(orjson.dumps(live_traffic.events[0]) + b"\n")
    # When scoring, Then each neighbour is "line N": an event of the same class at line N
    (record,) = score(["--bundle", str(bundle), "--events", str(live)], capsys)
    for neighbour in record["neighbors"]:
        kind, number = neighbour["id"].split(" ")
        assert kind == "line"
        assert orjson.loads(base_lines[int(number) - 1])["class_uid"] == record["class_uid"]
