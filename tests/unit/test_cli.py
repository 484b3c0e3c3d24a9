"""The CLI end to end on a small generated training set: train, inspect, score, evaluate."""

from __future__ import annotations

import csv
import gzip
import json
import shutil
from pathlib import Path

import orjson
import pytest

from ocsf_detect_tools.cli import main

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
    from ocsf_detect_tools.eventio import write_jsonl

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
    # each class's manifest records the category weights its network was trained with,
    # one per categorical field, and inspect names the fields whose weight was shared
    manifest = json.loads((bundle / "manifest.json").read_text())
    for model in manifest["models"].values():
        trained = model["training"]["config"]
        assert len(trained["category_weights"]) == model["model"]["n_categorical"]
        assert all(0 < w <= trained["category_weight"] for w in trained["category_weights"])
    assert out.count("category weights below x8") == len(manifest["models"])

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
    # the demo reads its config before it writes, generates or trains anything
    demo_out = tmp_path / "demo"
    assert main(["demo", "--config", str(tmp_path / "nope.toml"), "--out", str(demo_out)]) == 2
    assert "nope.toml does not exist" in capsys.readouterr().err
    assert not demo_out.exists()


def _mistakes(tmp: Path, bundle: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (arguments, what the one-line message must say)."""
    not_gzip = tmp / "plain.jsonl.gz"
    not_gzip.write_bytes(b'{"class_uid": 4001}\n')
    full = tmp / "full.jsonl.gz"
    with gzip.open(full, "wb") as fh:
        fh.write(b'{"class_uid": 4001, "time": 1}\n' * 2000)
    cut = tmp / "cut.jsonl.gz"
    cut.write_bytes(full.read_bytes()[:40])
    keep = tmp / "keep"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    webapp = tmp / "webapp"  # a manifest.json of another kind, beside the user's files
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "my app"}')
    (webapp / "index.html").write_text("mine")
    with_extra = tmp / "with_extra"  # a bundle, and a file that is not part of it
    shutil.copytree(bundle, with_extra)
    (with_extra / "notes.txt").write_text("mine")
    link = tmp / "link"
    link.symlink_to(keep, target_is_directory=True)
    labels = tmp / "half.csv"
    labels.write_text("uid,is_malicious\na,0.5\n")
    events = tmp / "e.jsonl"
    events.write_text('{"class_uid": 4001, "time": 1741939200000}\n')
    train = ["train", "--events", str(events), "--out", str(tmp / "b")]
    return {
        "events file is a directory": (
            ["score", "--bundle", str(bundle), "--events", str(tmp)],
            "is a directory",
        ),
        "not gzip": (
            ["score", "--bundle", str(bundle), "--events", str(not_gzip)],
            "not a complete gzip",
        ),
        "gzip cut short": (
            ["score", "--bundle", str(bundle), "--events", str(cut)],
            "not a complete gzip",
        ),
        "out is a directory": (
            ["score", "--bundle", str(bundle), "--events", str(events), "--out", str(keep)],
            "Is a directory",
        ),
        "train over a directory that is not a bundle": (
            ["train", "--events", str(events), "--out", str(keep)],
            "holds no bundle",
        ),
        "train over a directory with another kind of manifest.json": (
            ["train", "--events", str(events), "--out", str(webapp)],
            "holds no bundle",
        ),
        "train over a bundle with files of the user's": (
            ["train", "--events", str(events), "--out", str(with_extra)],
            "files that are not part of it (notes.txt)",
        ),
        "train into a symbolic link": (
            ["train", "--events", str(events), "--out", str(link)],
            "is a symbolic link",
        ),
        "alert rate zero": ([*train, "--alert-rate", "0"], "greater than 0"),
        "alert rate nan": ([*train, "--alert-rate", "nan"], "finite number"),
        "labels not 1/0": (
            ["evaluate", "--bundle", str(bundle), "--events", str(events), "--labels", str(labels)],
            "is_malicious must be 1 or 0",
        ),
    }


MISTAKES = [
    "events file is a directory",
    "not gzip",
    "gzip cut short",
    "out is a directory",
    "train over a directory that is not a bundle",
    "train over a directory with another kind of manifest.json",
    "train over a bundle with files of the user's",
    "train into a symbolic link",
    "alert rate zero",
    "alert rate nan",
    "labels not 1/0",
]


@pytest.mark.parametrize("name", MISTAKES)
def test_a_user_mistake_is_one_line_and_status_2(name, tmp_path, bundle_dir, capsys):
    argv, says = _mistakes(tmp_path, bundle_dir)[name]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ocsf-detect: error: ")
    assert says in err
    assert "\n" not in err
    # nothing of the user's lost
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"
    assert (tmp_path / "webapp" / "index.html").read_text() == "mine"
    assert (tmp_path / "with_extra" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["serve", "--bundle", "b", "--port", "99999"], "99999 is not a TCP port"),
        (["bench", "--events", "-5"], "-5 is not a positive count"),
        (["publish", "--bundle", "b", "--bucket", "x", "--stage", "nope"], "invalid choice"),
    ],
)
def test_out_of_range_flags_are_refused_by_the_parser(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert says in capsys.readouterr().err


def test_score_creates_the_output_directory(tmp_path, bundle_dir):
    events = tmp_path / "e.jsonl"
    events.write_text('{"class_uid": 4001, "time": 1741939200000}\n')
    out = tmp_path / "new" / "sub" / "o.jsonl"
    assert (
        main(["score", "--bundle", str(bundle_dir), "--events", str(events), "--out", str(out)])
        == 0
    )
    assert out.read_text().count("\n") == 1


def test_inspect_verify_fails_when_golden_scores_do_not_reproduce(tmp_path, bundle_dir, capsys):
    from release_hook.golden import Tolerance
    from release_hook.settings import HookSettings

    # --verify applies the release hook's rule with the hook's default tolerance
    fields = HookSettings.model_fields
    hook = (fields["abs_tolerance"].default, fields["rel_tolerance"].default)
    assert hook == (Tolerance().absolute, Tolerance().relative)
    # Given a copy of a bundle whose manifest says one golden event scored 5 more
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    assert main(["inspect", str(copy), "--verify"]) == 0
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["golden_events"][1]["score"] += 5.0
    (copy / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    # Then --verify refuses it, naming the event, as the pre-traffic hook would
    assert main(["inspect", str(copy), "--verify"]) == 2
    err = capsys.readouterr().err
    assert "golden events [1] (of " in err
    assert "score differently than when the bundle was built" in err


def test_a_train_run_that_exits_3_leaves_the_earlier_bundle(tmp_path, baseline_traffic, capsys):
    from ocsf_detect_tools.eventio import write_jsonl

    base = tmp_path / "base.jsonl"
    write_jsonl(baseline_traffic.events[:1500], base)
    config = tmp_path / "small.toml"
    config.write_text(SMALL)
    out = tmp_path / "bundle"
    train = ["train", "--events", str(base), "--out", str(out), "--config", str(config)]
    assert main(train) == 0
    before = (out / "manifest.json").read_bytes()
    # When more than half of the next run's lines are rejected
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"not": "an OCSF event"}\n' * 2000)
    capsys.readouterr()
    assert main([*train[:3], str(junk), *train[3:]]) == 3
    # Then it says so, and the earlier bundle is still there, as it was
    captured = capsys.readouterr()
    assert "were rejected" in captured.err
    assert "not written" in captured.out
    assert (out / "manifest.json").read_bytes() == before
