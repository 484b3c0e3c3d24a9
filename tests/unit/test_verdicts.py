"""Verdicts read back: `train --feedback` folds benign events into the baseline,
`evaluate --feedback-labels` takes verdicts as labels."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pytest

from ocsf_detect.feedback import Verdict
from ocsf_detect_tools.cli import main
from ocsf_detect_tools.verdicts import (
    VerdictSourceError,
    benign_lines,
    read_verdicts,
    verdict_labels,
)

TINY = "min_class_events = 30\n[train]\nmax_steps = 30\nwidth = 16\ndim = 8\n"


def verdict(uid: str, kind: str, event: dict, at: int = 1) -> Verdict:
    return Verdict(
        finding_uid=f"finding-{uid}",
        verdict=kind,  # type: ignore[arg-type]
        class_uid=event["class_uid"],
        event=event,
        bundle_version="1.0.0+abc",
        received_ms=at,
    )


def write_jsonl(path: Path, verdicts: list[Verdict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(v.model_dump()) + b"\n" for v in verdicts))
    return path


def test_the_latest_verdict_per_finding_wins_in_files_and_directories(tmp_path, live_traffic):
    event = live_traffic.events[0]
    first = verdict("a", "benign", event, at=1)
    later = verdict("a", "malicious", event, at=2)
    jsonl = write_jsonl(tmp_path / "v.jsonl", [later, first])
    folder = tmp_path / "verdicts"
    folder.mkdir()
    (folder / "finding-a.json").write_bytes(orjson.dumps(later.model_dump()))
    for source in (jsonl, folder):
        (only,) = read_verdicts(str(source))
        assert only.verdict == "malicious"
    assert verdict_labels([later]) == {event["metadata"]["uid"]: 1}
    assert benign_lines([first, later]) == [orjson.dumps(event)]
    (tmp_path / "bad.jsonl").write_text('{"verdict": "benign"}\n')
    with pytest.raises(VerdictSourceError, match=r"bad\.jsonl:1: not a verdict"):
        read_verdicts(str(tmp_path / "bad.jsonl"))


def test_verdicts_on_two_events_of_one_alert_group_are_both_kept(tmp_path, live_traffic):
    # the messages of an alert group share the group's uid, each about another event
    a, b = live_traffic.events[:2]
    source = write_jsonl(
        tmp_path / "v.jsonl", [verdict("g", "benign", a, at=1), verdict("g", "benign", b, at=2)]
    )
    kept = read_verdicts(str(source))
    assert sorted(v.event["metadata"]["uid"] for v in kept) == sorted(
        e["metadata"]["uid"] for e in (a, b)
    )


def test_the_same_event_judged_through_two_findings_is_one_subject(tmp_path, live_traffic):
    event = live_traffic.events[0]
    source = write_jsonl(
        tmp_path / "v.jsonl",
        [verdict("group-a", "benign", event, at=1), verdict("f-b", "malicious", event, at=2)],
    )
    (only,) = read_verdicts(str(source))
    assert (only.verdict, only.finding_uid) == ("malicious", "finding-f-b")


def test_an_unreadable_verdicts_file_is_a_verdict_source_error(tmp_path):
    fake = tmp_path / "v.jsonl.gz"
    fake.write_bytes(b"plain text, not gzip\n")
    with pytest.raises(VerdictSourceError, match="cannot read the verdicts"):
        read_verdicts(str(fake))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b'{"a": 1}\n' * 1000)[:30])
    with pytest.raises(VerdictSourceError, match="not a complete gzip file"):
        read_verdicts(str(cut))


def test_train_feedback_adds_the_benign_events_to_the_baseline(
    tmp_path, baseline_traffic, live_traffic, capsys
):
    # Given a small baseline and verdicts on three live events, two of them benign
    base = tmp_path / "base.jsonl"
    base.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in baseline_traffic.events[:300]))
    judged = [e for e in live_traffic.events if e["class_uid"] == 4001][:3]
    verdicts = write_jsonl(
        tmp_path / "verdicts.jsonl",
        [
            verdict("1", "benign", judged[0]),
            verdict("2", "benign", judged[1]),
            verdict("3", "malicious", judged[2]),
        ],
    )
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    out = tmp_path / "bundle"
    # When training with --feedback
    argv = ["train", "--events", str(base), "--out", str(out), "--config", str(config)]
    assert main([*argv, "--feedback", str(verdicts)]) == 0
    # Then the two benign events are part of the baseline and the source is recorded
    assert "2 events judged benign join the baseline" in capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["events"] == 302
    assert [Path(s).name for s in manifest["training"]["sources"]] == [
        "base.jsonl",
        "verdicts.jsonl",
    ]


def test_evaluate_takes_verdicts_as_labels(tmp_path, bundle_dir, live_traffic, capsys):
    # Given live events and verdicts on four of them: two malicious, two benign, one of
    # them an event the evaluated file lacks
    events = live_traffic.events[:300]
    live = tmp_path / "live.jsonl"
    live.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    absent = live_traffic.events[400]
    verdicts = write_jsonl(
        tmp_path / "verdicts.jsonl",
        [
            verdict("m1", "malicious", events[5]),
            verdict("m2", "malicious", absent),
            verdict("b1", "benign", events[7]),
            verdict("b2", "benign", events[8]),
        ],
    )
    argv = ["evaluate", "--bundle", str(bundle_dir), "--events", str(live), "--json"]
    # When evaluating with the verdicts as the only labels
    assert main([*argv, "--feedback-labels", str(verdicts)]) == 0
    result = json.loads(capsys.readouterr().out)
    # Then the four judged events are the labelled ones, the absent one evaluated too
    assert (result["n_labeled"], result["n_malicious"]) == (4, 2)
    assert result["n_events"] == 301
    # And without any labels the command says what to give
    assert main(argv) == 2
    assert "--feedback-labels" in capsys.readouterr().err
