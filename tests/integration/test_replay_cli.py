"""``ocsf-detect replay`` end to end on the embedded emulator: the findings it received
go to --out, every rejected line is counted in the quarantine, and the exit status
says whether too much was rejected."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest

from ocsf_detect_tools.cli import main

pytestmark = pytest.mark.slow


def test_replay_writes_the_findings_it_received(tmp_path, bundle_dir, live_traffic, capsys):
    # Given live traffic with attacks and 30 lines that are not events
    events = tmp_path / "live.jsonl"
    lines = [orjson.dumps(e) for e in live_traffic.events[:600]] + [b'{"x": 1}'] * 30
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


def test_replay_of_rejected_lines_reads_the_quarantine_and_exits_3(tmp_path, bundle_dir, capsys):
    events = tmp_path / "rejected.jsonl"
    events.write_bytes(b"".join(b'{"n": %d}\n' % i for i in range(250)))
    argv = ["replay", "--bundle", str(bundle_dir), "--events", str(events), "--json"]
    assert main([*argv, "--batch-size", "100"]) == 3
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["quarantined"] == summary["rejected"] == 250
    assert "250 of 250 lines" in captured.err
