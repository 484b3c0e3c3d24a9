"""Replays in every producer's record format, of events mixed with hostile records: every
event is accounted for, and every alert reaches both channels."""

from __future__ import annotations

import base64
import io
import json
import os
from contextlib import redirect_stdout

import orjson
import pytest

from ocsf_detect import names
from ocsf_detect_tools.producers import RECORD_FORMATS
from ocsf_detect_tools.replay import replay
from tests.conftest import require_data

MIB = 1024 * 1024


def hostile_lines() -> list[bytes]:
    """Records a producer should not send, but will."""
    return [
        b"not json",
        b'{"time": 1741939200000}',  # no class_uid
        b'{"class_uid": 4001, "time": NaN}',
        b'{"class_uid": 4001, "time": 1, "x": "\xff\xfe"}',  # not UTF-8
        b'{"class_uid": 4001, "time": "\xef\xbf\xbf"}',  # U+FFFF, which SQS refuses raw
        b"[" * 100 + b"]" * 100,
        b"[1, 2]",
        b"\x1f\x8b not gzip after all",
        b"\xf3\x89\x9a\xc2 not an aggregate",
        # over 1 MiB and incompressible: fits no record in any format
        base64.b64encode(os.urandom(MIB + MIB // 2)),
        # over 1 MiB but compressible: a gzip record carries it, the function refuses it
        orjson.dumps({"class_uid": 4001, "time": 1, "pad": "x" * (MIB + 10)}),
    ]


def mixed(events: list[dict], hostile: list[bytes]) -> list[bytes]:
    lines = [orjson.dumps(e) for e in events]
    step = max(1, len(lines) // (len(hostile) + 1))
    for n, line in enumerate(hostile):
        lines.insert((n + 1) * step + n, line)
    return lines


def assert_every_event_accounted_for(summary: dict, lines: list[bytes]) -> None:
    assert summary["events_in"] == len(lines)
    assert summary["events_in"] == (
        summary["scored"] + summary["rejected"] + summary["unsupported"] + summary["failed"]
    ), summary
    assert summary["failed"] == 0, summary
    # every anomaly is in one alert group or suppressed; each group spoke on both channels
    # or stayed quiet (below the count a group speaks at)
    assert summary["grouped_anomalies"] + summary["suppressed"] == summary["anomalies"]
    assert summary["alerts_sns"] == summary["alerts_eventbridge"]
    assert summary["alerts_sns"] + summary["quiet_groups"] == summary["alert_groups"]
    assert summary["notifications_sns"] == summary["notifications_eventbridge"]
    assert summary["alerts_quarantined"] == 0  # no channel refused a finding for good
    # every rejection that reached the stream is in the quarantine, once
    assert summary["quarantined"] == summary["rejected"] - summary["rejected_before_put"]


@pytest.mark.parametrize("record_format", RECORD_FORMATS)
def test_replay_of_generated_and_hostile_records(
    emulator_url, bundle_dir, live_traffic, record_format, monkeypatch
):
    # Given generated traffic with attacks, mixed with hostile records, and groups that
    # speak at their first anomaly (so that every group's message is checked on both
    # channels)
    monkeypatch.setenv(names.ENV_GROUP_NOTIFY_MIN_COUNT, "1")
    lines = mixed(live_traffic.events[:600], hostile_lines())
    # When it is replayed, packed as this format's producers pack it
    summary = replay(bundle_dir, lines, batch_size=50, record_format=record_format)
    # Then every event is accounted for and every alert reached both channels
    assert_every_event_accounted_for(summary, lines)
    assert summary["anomalies"] > 0
    assert summary["quiet_groups"] == 0
    assert summary["alerts_sns"] == summary["alert_groups"] > 0
    assert summary["record_format"] == record_format
    # ... the incompressible 1.5 MiB line never reached Kinesis; the compressible one
    # did, inside a gzip record, where the function refused it
    compressing = record_format in ("gzip", "cloudwatch-logs")
    assert summary["rejected_before_put"] == (1 if compressing else 2)
    assert summary["rejected"] >= len(hostile_lines()) - 2
    if record_format == "json":
        assert summary["records_in"] == len(lines) - 2
    else:  # several events per record (plus CloudWatch's control message)
        assert summary["records_in"] < len(lines) // 5


@pytest.mark.data
@pytest.mark.parametrize("record_format", RECORD_FORMATS)
def test_replay_of_real_samples_and_hostile_records(emulator_url, bundle_dir, record_format):
    root = require_data("ocsf-samples")
    events = [
        orjson.loads(line)
        for path in sorted(root.glob("*/events.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip() and line.lstrip().startswith(b"{")
    ]
    events = [e for e in events if isinstance(e, dict)]
    lines = mixed(events, hostile_lines())
    summary = replay(bundle_dir, lines, batch_size=100, record_format=record_format)
    assert_every_event_accounted_for(summary, lines)
    # the test bundle models 4001, 4003 and 3002: the samples' other classes are unsupported
    assert summary["scored"] > 100
    assert summary["unsupported"] > 100


def test_replay_cli_packs_kpl_and_counts_a_line_too_large(
    emulator_url, bundle_dir, live_traffic, tmp_path
):
    from ocsf_detect_tools.cli import main

    # Given an events file with one line beyond the Kinesis record cap
    events = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in live_traffic.events[:200]]
    lines.insert(50, base64.b64encode(os.urandom(MIB + 1)))
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    # When it is replayed as KPL aggregates
    with redirect_stdout(out):
        code = main(
            [
                "replay", "--bundle", str(bundle_dir), "--events", str(events),
                "--record-format", "kpl", "--json",
            ]
        )  # fmt: skip
    # Then the run finishes, the line is rejected before the put and counted
    assert code == 0
    summary = json.loads(out.getvalue())
    assert summary["events_in"] == 201
    assert summary["rejected_before_put"] == 1
    assert summary["records_in"] < 20
    assert_every_event_accounted_for(summary, lines)
