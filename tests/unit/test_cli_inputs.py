"""Every command over a corpus of broken inputs: a user mistake is one line on stderr and
status 2; input that is read but all (or mostly) rejected is status 3; no traceback."""

from __future__ import annotations

import gzip
import io
import os
import random
import sys
import threading
from pathlib import Path

import orjson
import pytest

from ocsf_detect_tools.cli import COMMANDS, main

GOOD_EVENT = orjson.dumps(
    {
        "class_uid": 4001,
        "time": 1741939200000,
        "metadata": {"uid": "e-1", "version": "1.3.0"},
        "src_endpoint": {"ip": "10.0.0.1", "port": 50000},
        "dst_endpoint": {"ip": "10.0.0.2", "port": 443},
    }
)


def broken_event_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a file that is not JSON lines, what the one-line message must say)."""
    rng = random.Random(22)
    files = {
        "empty": (b"", "is empty"),
        "blank lines": (b"\n  \n\n", "holds only blank lines"),
        "json array": (b'[{"class_uid": 4001, "time": 1}, {"class_uid": 4001}]\n', "JSON array"),
        "csv": (b"uid,is_malicious\na,1\nb,0\n", "looks like CSV"),
        "binary": (bytes(rng.randrange(256) for _ in range(2048)) + b"\x00", "binary data"),
        "plain text": (b"hello, this is not an event\n", "looks like CSV"),
        "prose": (b"hello this is not an event\n", "does not start with a JSON object"),
        "utf-16 json lines": (GOOD_EVENT.decode().encode("utf-16"), "binary data"),
    }
    out = {}
    for name, (data, says) in files.items():
        path = tmp / f"{name.replace(' ', '_')}.jsonl"
        path.write_bytes(data)
        out[name] = (path, says)
    not_gzip = tmp / "not_gzip.jsonl.gz"
    not_gzip.write_bytes(GOOD_EVENT + b"\n")
    out["named .gz but not gzip"] = (not_gzip, "not a complete gzip file")
    cut = tmp / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(GOOD_EVENT * 500)[:30])
    out["gzip cut short"] = (cut, "not a complete gzip file")
    gz_array = tmp / "array.jsonl.gz"
    gz_array.write_bytes(gzip.compress(b"[" + GOOD_EVENT + b"]"))
    out["gzipped json array"] = (gz_array, "JSON array")
    folder = tmp / "a_folder"
    folder.mkdir()
    out["a directory"] = (folder, "is a directory")
    out["missing"] = (tmp / "nope.jsonl", "does not exist")
    return out


def broken_label_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (a labels file that is not a labels CSV, what the message must say)."""
    files = {
        "empty": (b"", "is empty"),
        "binary": (b"\x00\x01\x02\xff" * 100, "binary data"),
        "not utf-8": (b"uid,is_malicious\n\xff\xfe,1\n", "is not UTF-8"),
        "json": (b'[{"uid": "a", "is_malicious": 1}]', "holds JSON, not CSV"),
        "no header": (b"a,1\nb,0\n", "missing column(s)"),
        "not 1/0": (b"uid,is_malicious\ne-1,yes\n", "is_malicious must be 1 or 0"),
    }
    out = {}
    for name, (data, says) in files.items():
        path = tmp / f"labels_{name.replace(' ', '_').replace('/', '')}.csv"
        path.write_bytes(data)
        out[name] = (path, says)
    not_gzip = tmp / "labels_not_gzip.csv.gz"
    not_gzip.write_bytes(b"uid,is_malicious\ne-1,1\n")
    out["named .gz but not gzip"] = (not_gzip, "not a complete gzip file")
    out["missing"] = (tmp / "nope.csv", "does not exist")
    return out


EVENT_CASES = [
    "empty",
    "blank lines",
    "json array",
    "csv",
    "binary",
    "plain text",
    "prose",
    "utf-16 json lines",
    "named .gz but not gzip",
    "gzip cut short",
    "gzipped json array",
    "a directory",
    "missing",
]
LABEL_CASES = ["empty", "binary", "not utf-8", "json", "no header", "not 1/0", "missing"]
LABEL_CASES.append("named .gz but not gzip")


def event_commands(events: Path, bundle: Path, tmp: Path, labels: Path) -> dict[str, list[str]]:
    """Every command that reads events, with ``events`` as its input."""
    return {
        "score": ["score", "--bundle", str(bundle), "--events", str(events)],
        "evaluate": [
            "evaluate",
            "--bundle",
            str(bundle),
            "--events",
            str(events),
            "--labels",
            str(labels),
        ],
        "evaluate --baseline": [
            "evaluate",
            "--bundle",
            str(bundle),
            "--events",
            str(tmp / "good.jsonl"),
            "--labels",
            str(labels),
            "--baseline",
            str(events),
        ],
        "train": ["train", "--events", str(events), "--out", str(tmp / "new-bundle")],
        "report": [
            "report",
            "--bundle",
            str(bundle),
            "--events",
            str(events),
            "--out",
            str(tmp / "report.html"),
        ],
        "replay": ["replay", "--bundle", str(bundle), "--events", str(events)],
        "demo": ["demo", "--events", str(events), "--out", str(tmp / "demo-out")],
    }


def assert_one_line_error(err: str, says: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ocsf-detect: error: "), err
    assert says in lines[0], err
    assert "Traceback" not in err


@pytest.fixture
def good_inputs(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "good.jsonl"
    events.write_bytes(GOOD_EVENT + b"\n")
    labels = tmp_path / "good.csv"
    labels.write_text("uid,is_malicious\ne-1,1\n")
    return events, labels


@pytest.mark.parametrize(
    "command", ["score", "evaluate", "evaluate --baseline", "train", "report", "replay"]
)
@pytest.mark.parametrize("case", EVENT_CASES)
def test_a_broken_events_file_is_one_line_and_status_2(
    case, command, tmp_path, bundle_dir, good_inputs, capsys
):
    path, says = broken_event_files(tmp_path)[case]
    argv = event_commands(path, bundle_dir, tmp_path, good_inputs[1])[command]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, says)
    assert captured.out == ""
    assert not (tmp_path / "new-bundle").exists()
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("case", ["empty", "json array", "binary", "missing"])
def test_demo_refuses_broken_events_before_training(case, tmp_path, bundle_dir, capsys):
    path, says = broken_event_files(tmp_path)[case]
    assert main(["demo", "--events", str(path), "--out", str(tmp_path / "demo-out")]) == 2
    assert_one_line_error(capsys.readouterr().err, says)
    assert not (tmp_path / "demo-out" / "bundle").exists()


@pytest.mark.parametrize("case", LABEL_CASES)
@pytest.mark.parametrize("command", ["evaluate", "report", "demo"])
def test_a_broken_labels_file_is_one_line_and_status_2(
    case, command, tmp_path, bundle_dir, good_inputs, capsys
):
    labels, says = broken_label_files(tmp_path)[case]
    events = good_inputs[0]
    argv = {
        "evaluate": [
            "evaluate",
            "--bundle",
            str(bundle_dir),
            "--events",
            str(events),
            "--labels",
            str(labels),
        ],
        "demo": ["demo", "--events", str(events), "--labels", str(labels), "--out", str(tmp_path)],
        "report": [
            "report",
            "--bundle",
            str(bundle_dir),
            "--events",
            str(events),
            "--labels",
            str(labels),
            "--out",
            str(tmp_path / "r.html"),
        ],
    }[command]
    assert main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, says)


def test_labels_may_be_gzipped(tmp_path):
    from ocsf_detect_tools.evaluation import read_labels

    path = tmp_path / "labels.csv.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfuid,is_malicious\r\na,1\r\nb,0\r\n"))
    assert read_labels(path) == {"a": 1, "b": 0}


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["inspect", "{file}"], "not a bundle"),
        (["inspect", "{folder}"], "not a bundle"),
        (["inspect", "{garbage_bundle}"], "manifest.json"),
        (["serve", "--bundle", "{file}"], "not a bundle directory"),
        (["publish", "--bundle", "{folder}", "--bucket", "b"], "not a bundle"),
        (["score", "--bundle", "{file}", "--events", "{events}"], "manifest.json"),
        (["score", "--bundle", "{garbage_bundle}", "--events", "{events}"], "manifest.json"),
        (["generate", "--out", "{folder}", "--events", "5"], "Is a directory"),
        (["train", "--events", "{events}", "--out", "{file}"], "not a directory"),
        (["train", "--events", "{events}", "--out", "o", "--config", "{file}"], "TOML"),
        (["evaluate", "--bundle", "{bundle}", "--events", "{events}", "--labels", "{labels}",
          "--plots", "{file}"], "is a file"),
        (["score", "--bundle", "{bundle}", "--events", "{events}", "--out", "{folder}"],
         "Is a directory"),
    ],
)  # fmt: skip
def test_other_broken_inputs_are_one_line_and_status_2(
    argv, says, tmp_path, bundle_dir, good_inputs, capsys
):
    file = tmp_path / "a_file.txt"
    file.write_text("not = [toml\n")
    folder = tmp_path / "a_folder"
    folder.mkdir()
    garbage = tmp_path / "garbage_bundle"
    garbage.mkdir()
    (garbage / "manifest.json").write_bytes(b"\x00\x01 not json")
    values = {
        "file": file,
        "folder": folder,
        "garbage_bundle": garbage,
        "bundle": bundle_dir,
        "events": good_inputs[0],
        "labels": good_inputs[1],
    }
    try:
        assert main([a.format(**values) for a in argv]) == 2
    finally:
        # The registry keeps one S3 client per process; the one publish made here points
        # at no emulator, and later tests must not inherit it.
        from ocsf_detect_tools.registry import s3_client

        s3_client.cache_clear()
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, says)


def test_flag_mistakes_are_one_line_and_status_2(capsys):
    for argv in (
        ["score", "--bundle", "b"],
        ["score", "--format", "xml", "--bundle", "b", "--events", "e"],
        ["score", "--bundle", "b", "--events", "e", "--max-rejected", "2"],
        ["nonsense"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err, err
        assert "error:" in err


def rejected_lines(tmp: Path, good: int, bad: int) -> Path:
    path = tmp / f"mixed-{good}-{bad}.jsonl"
    path.write_bytes(
        GOOD_EVENT + b"\n" + b"\n".join([GOOD_EVENT] * (good - 1) + [b'{"x": 1}'] * bad)
    )
    return path


@pytest.mark.parametrize("command", ["score", "evaluate", "report"])
def test_every_line_rejected_is_status_3(command, tmp_path, bundle_dir, good_inputs, capsys):
    events = tmp_path / "rejected.jsonl"
    events.write_bytes(b'{"x": 1}\n{"class_uid": 4001}\n{"time": "x", "class_uid": "?"}\n')
    argv = event_commands(events, bundle_dir, tmp_path, good_inputs[1])[command]
    assert main(argv) == 3
    err = capsys.readouterr().err
    assert "3 of 3 lines of" in err
    assert "were rejected (every line" in err
    assert "Traceback" not in err


def test_more_than_max_rejected_is_status_3_and_the_share_is_a_flag(tmp_path, bundle_dir, capsys):
    # Given 4 good and 6 rejected lines: 60% rejected
    events = rejected_lines(tmp_path, 4, 6)
    score = ["score", "--bundle", str(bundle_dir), "--events", str(events)]
    # Then the default (50%) makes it status 3, with one line saying so
    assert main(score) == 3
    err = capsys.readouterr().err
    assert "6 of 10 lines" in err
    assert "(60% of the lines; --max-rejected 0.5)" in err
    # And a looser share accepts it, the outcomes unchanged
    assert main([*score, "--max-rejected", "70%"]) == 0
    out = capsys.readouterr().out
    assert out.count('"status":"rejected"') == 6


def test_events_come_from_stdin(monkeypatch, bundle_dir, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(GOOD_EVENT))))
    assert main(["score", "--bundle", str(bundle_dir), "--events", "-"]) == 0
    assert orjson.loads(capsys.readouterr().out)["status"] == "scored"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    assert main(["score", "--bundle", str(bundle_dir), "--events", "-"]) == 2
    assert_one_line_error(capsys.readouterr().err, "standard input is empty")


def test_a_byte_order_mark_costs_no_event_and_a_named_pipe_is_read(tmp_path, bundle_dir, capsys):
    # An editor's UTF-8 byte-order mark before the first event
    marked = tmp_path / "bom.jsonl"
    marked.write_bytes(b"\xef\xbb\xbf" + GOOD_EVENT + b"\n" + GOOD_EVENT + b"\n")
    assert main(["score", "--bundle", str(bundle_dir), "--events", str(marked)]) == 0
    rows = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["scored", "scored"]
    # A named pipe (what a shell's <(...) gives) is read like a file
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(GOOD_EVENT + b"\n",))
    writer.start()
    try:
        assert main(["score", "--bundle", str(bundle_dir), "--events", str(fifo)]) == 0
    finally:
        writer.join(timeout=10)
    assert orjson.loads(capsys.readouterr().out)["status"] == "scored"


def test_an_internal_failure_is_one_line_without_a_traceback(monkeypatch, tmp_path, capsys):
    from ocsf_detect_tools.cli import score

    def broken(_: Path) -> None:
        raise RuntimeError("the index file is unreadable\nsecond line")

    monkeypatch.setattr(score, "load_detector", broken)
    monkeypatch.delenv("OCSF_DETECT_DEBUG", raising=False)
    assert main(["score", "--bundle", str(tmp_path), "--events", "e.jsonl"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "internal error: RuntimeError: the index file is unreadable" in err
    assert "Traceback" not in err


def test_every_command_has_a_description_and_there_is_a_version(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        description = text.split("\n\n")[1]
        assert description.strip(), name
        assert not description.lstrip().startswith("options"), name
        assert "exit status: 0 done; 2 a user mistake" in " ".join(text.split())
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("ocsf-detect ")


def test_report_without_labels_has_no_recall_section(tmp_path, bundle_dir, live_traffic, capsys):
    events = tmp_path / "live.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in live_traffic.events[:500]))
    out = tmp_path / "r.html"
    argv = ["report", "--bundle", str(bundle_dir), "--events", str(events), "--out", str(out)]
    assert main([*argv, "--title", "week 12"]) == 0
    page = out.read_text()
    assert "<title>week 12</title>" in page
    for section in ("summary", "top-alerts", "scores", "alerts-over-time"):
        assert f'<section id="{section}">' in page
    assert 'id="recall"' not in page
    assert "Top alerts" in capsys.readouterr().out


def test_a_config_that_is_not_utf8_text_is_one_line_and_status_2(tmp_path, capsys):
    config = tmp_path / "detector.toml"
    config.write_bytes(b"\xff\xfe[train]\x00")
    events = tmp_path / "e.jsonl"
    events.write_bytes(GOOD_EVENT + b"\n")
    argv = ["train", "--events", str(events), "--out", str(tmp_path / "o"), "--config"]
    assert main([*argv, str(config)]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a TOML text file (not UTF-8")
