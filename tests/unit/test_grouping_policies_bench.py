"""``benchmarks/grouping_policies.py`` on a small scored set: every policy counts the same
anomalies, each into one group, and the table's figures add up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import grouping_policies as bench

from ocsf_detect_tools.simulate.traffic import write_labels_csv


def test_the_grouping_policy_table_adds_up(tmp_path, bundle_dir, live_traffic, capsys) -> None:
    events = tmp_path / "live.jsonl"
    events.write_bytes(b"\n".join(orjson.dumps(e) for e in live_traffic.events) + b"\n")
    labels = tmp_path / "live.labels.csv"
    write_labels_csv(live_traffic.labels, labels)
    argv = ["--bundle", str(bundle_dir), "--events", str(events), "--labels", str(labels)]
    assert bench.main([*argv, "--key", "3002=user.name", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = report["policies"]
    assert report["keys"] == {"3002": ["user.name"]}
    assert len(rows) == len(bench.POLICIES)
    anomalies = rows[0]["anomalies"]
    assert anomalies > 10
    for row in rows:
        assert row["anomalies"] == anomalies
        assert 1 <= row["groups"] <= anomalies
        assert row["notifications"] == row["openings"] + row["updates"] + row["closing_updates"]
        assert row["openings"] + row["quiet_groups"] == row["groups"]
        assert row["attack_types_never_notified"] is not None
        assert row["attack_anomalies_in_quiet_groups"] is not None
    by_name = {r["policy"]: r for r in rows}
    # speaking at the first anomaly leaves no group quiet; the default (at the second)
    # leaves the one-offs quiet and publishes less
    first = by_name["24 h windows, speak at the first"]
    assert first["quiet_groups"] == first["attack_anomalies_in_quiet_groups"] == 0
    assert first["openings"] == first["groups"] == rows[0]["groups"]
    assert 0 < rows[0]["quiet_groups"] < rows[0]["groups"]
    assert rows[0]["notifications"] < first["notifications"]
    # a higher count never speaks more often; longer windows never make more groups
    assert by_name["speak at 3 anomalies"]["openings"] <= rows[0]["openings"]
    assert rows[0]["groups"] <= by_name["1 h windows, speak at 2"]["groups"]
    # the table form prints one line per policy
    assert bench.main(argv) == 0
    table = capsys.readouterr().out
    assert all(name in table for name in bench.POLICIES)
