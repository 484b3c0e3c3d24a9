"""``ocsf-detect replay`` end to end on the embedded emulator: the findings it received
go to --out, every rejected line is counted in the quarantine, and the exit status
says whether too much was rejected."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest

from ocsf_detect import names
from ocsf_detect_tools.cli import main

pytestmark = pytest.mark.slow


def test_replay_writes_the_findings_it_received(
    tmp_path, bundle_dir, live_traffic, capsys, monkeypatch
):
    # Given live traffic with attacks and 30 lines that are not events, replayed by a
    # stream function whose groups speak at their first anomaly
    monkeypatch.setenv(names.ENV_GROUP_NOTIFY_MIN_COUNT, "1")
    events = tmp_path / "live.jsonl"
    lines = [orjson.dumps(e) for e in live_traffic.events] + [b'{"x": 1}'] * 30
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "findings.jsonl.gz"
    argv = ["replay", "--bundle", str(bundle_dir), "--events", str(events), "--json"]
    # When replayed with the findings written out
    assert main([*argv, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    # Then every finding SNS delivered is in the file, and each rejected line was quarantined
    findings = [json.loads(x) for x in gzip.decompress(out.read_bytes()).splitlines()]
    assert summary["anomalies"] > 0
    assert len(findings) == summary["alert_messages_sns"] == summary["notifications_sns"]
    # one message or more per alert group, fewer than the anomalies it grouped
    assert summary["grouped_anomalies"] == summary["anomalies"]
    assert summary["alert_groups"] <= len(findings) <= summary["anomalies"]
    assert {f["class_uid"] for f in findings} == {2004}
    assert summary["rejected"] == summary["quarantined"] == 30
    assert [p.name for p in tmp_path.iterdir() if p.name != "live.jsonl"] == [out.name]

    # When replayed again with the default policy (a group speaks at its second anomaly)
    monkeypatch.delenv(names.ENV_GROUP_NOTIFY_MIN_COUNT)
    assert main([*argv, "--out", str(out)]) == 0
    default = json.loads(capsys.readouterr().out)
    quieter = [json.loads(x) for x in gzip.decompress(out.read_bytes()).splitlines()]
    # Then the same anomalies fall into the same groups, and only groups that counted two
    # or more speak: fewer messages, each about a group of at least two (with what the
    # previous window carried across its boundary)
    assert (default["anomalies"], default["alert_groups"]) == (
        summary["anomalies"],
        summary["alert_groups"],
    )
    assert default["grouped_anomalies"] == default["anomalies"]
    assert len(quieter) == default["notifications_sns"] < summary["notifications_sns"]
    assert summary["quiet_groups"] == 0 < default["quiet_groups"]
    assert default["alerts_sns"] + default["quiet_groups"] == default["alert_groups"]
    assert quieter
    assert all(f["count"] + f["unmapped"]["group"]["carried_count"] >= 2 for f in quieter)


def test_replay_of_rejected_lines_reads_the_quarantine_and_exits_3(tmp_path, bundle_dir, capsys):
    events = tmp_path / "rejected.jsonl"
    events.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(250)))
    argv = ["replay", "--bundle", str(bundle_dir), "--events", str(events), "--json"]
    assert main([*argv, "--batch-size", "100"]) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["quarantined"] == summary["rejected"] == 250
    assert "250 of 250 lines" in captured.err


def test_a_benign_verdict_silences_near_duplicates_in_a_later_replay(
    tmp_path, bundle_dir, detector, live_traffic, capsys, monkeypatch
):
    # every anomaly's finding is published (groups speak at their first anomaly), so the
    # replay's findings show which events alerted
    monkeypatch.setenv(names.ENV_GROUP_NOTIFY_MIN_COUNT, "1")
    from ocsf_detect.detector.scorer import Scored
    from tests.integration.test_feedback_loop import near_duplicates

    # Given a false positive (labelled benign by the generator), four near-duplicates of it
    # and a port scan probe, replayed once: all of them alert
    pairs = list(zip(detector.score_objects(live_traffic.events), live_traffic.labels, strict=True))

    def first_anomaly(kind: str) -> dict:
        return next(
            o.event
            for o, label in pairs
            if isinstance(o, Scored) and o.is_anomaly and label.attack_type == kind
        )

    judged, other = first_anomaly("benign"), first_anomaly("port_scan")
    copies = near_duplicates(judged)
    events = tmp_path / "live.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in [judged, *copies, other]) + b"\n")
    argv = ["replay", "--bundle", str(bundle_dir), "--events", str(events), "--json"]
    out = tmp_path / "findings.jsonl"
    assert main([*argv, "--out", str(out)]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["anomalies"] == 6
    assert (before["feedback_vectors"], before["silenced_by_feedback"]) == (0, 0)
    finding = next(
        f
        for f in map(json.loads, out.read_text().splitlines())
        if f["metadata"]["correlation_uid"] == judged["metadata"]["uid"]
    )

    # When an analyst's benign verdict on that finding (as the API keeps it) is given
    verdicts = tmp_path / "verdicts.jsonl"
    verdict = {
        "finding_uid": finding["finding_info"]["uid"],
        "verdict": "benign",
        "note": "backup job",
        "class_uid": judged["class_uid"],
        "event": finding["evidences"][0]["data"],
        "bundle_version": "an earlier bundle",
        "received_ms": 1_700_000_000_000,
    }
    verdicts.write_bytes(orjson.dumps(verdict) + b"\n")
    assert main([*argv, "--feedback", str(verdicts), "--out", str(out)]) == 0
    after = json.loads(capsys.readouterr().out)

    # Then the judged event and its near-duplicates are silenced; the port scan still alerts
    assert after["feedback_vectors"] == 1
    assert after["anomalies"] == 1
    assert after["silenced_by_feedback"] == 5
    published = [json.loads(x) for x in out.read_text().splitlines()]
    assert {f["metadata"]["correlation_uid"] for f in published} == {other["metadata"]["uid"]}
    assert after["scored"] == before["scored"] == 6


def test_replay_refuses_a_feedback_source_it_cannot_read(tmp_path, bundle_dir, capsys):
    events = tmp_path / "live.jsonl"
    events.write_bytes(b'{"class_uid": 4001, "time": 1700000000000}\n')
    bad = tmp_path / "verdicts.jsonl"
    bad.write_bytes(b'{"verdict": "maybe"}\n')
    argv = ["replay", "--bundle", str(bundle_dir), "--events", str(events)]
    assert main([*argv, "--feedback", str(bad)]) == 2
    assert "--feedback" in capsys.readouterr().err
    assert main([*argv, "--feedback", str(tmp_path / "missing.jsonl")]) == 2
