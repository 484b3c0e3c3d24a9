"""Outputs are written under a temporary name and renamed when complete: Ctrl-C in the
middle leaves the earlier file (or none), never a partial one, and no temporary file."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest

from ocsf_detect_tools.cli import main
from ocsf_detect_tools.cli.progress import Progress


def events_file(tmp: Path, traffic: Any, n: int = 200) -> Path:
    path = tmp / "live.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in traffic.events[:n]))
    return path


def labels_file(tmp: Path, traffic: Any, n: int = 200) -> Path:
    path = tmp / "labels.csv"
    rows = [f"{lab.uid},{lab.is_malicious}" for lab in traffic.labels[:n]]
    path.write_text("uid,is_malicious\n" + "\n".join(rows) + "\n")
    return path


class InterruptedProgress(Progress):
    """A user pressing Ctrl-C after the first chunk has been written."""

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        if self.done > n:
            raise KeyboardInterrupt


@pytest.mark.parametrize("name", ["outcomes.jsonl", "outcomes.jsonl.gz"])
def test_ctrl_c_during_score_keeps_the_earlier_output_and_no_partial_file(
    name, tmp_path, bundle_dir, live_traffic, monkeypatch, capsys
):
    from ocsf_detect_tools.cli import score

    # Given an earlier complete output and a run interrupted after its first chunk
    out = tmp_path / "out" / name
    out.parent.mkdir()
    out.write_bytes(b"earlier\n")
    monkeypatch.setattr(score, "CHUNK", 50)
    monkeypatch.setattr(score, "Progress", InterruptedProgress)
    argv = [
        "score",
        "--bundle",
        str(bundle_dir),
        "--events",
        str(events_file(tmp_path, live_traffic)),
    ]
    # When interrupted, Then status 130, the earlier file intact and nothing else
    assert main([*argv, "--out", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert out.read_bytes() == b"earlier\n"
    assert [p.name for p in out.parent.iterdir()] == [name]
    # And a complete run replaces it whole
    monkeypatch.setattr(score, "Progress", Progress)
    assert main([*argv, "--out", str(out)]) == 0
    data = gzip.decompress(out.read_bytes()) if name.endswith(".gz") else out.read_bytes()
    assert len(data.splitlines()) == 200
    assert [p.name for p in out.parent.iterdir()] == [name]
    assert oct(out.stat().st_mode & 0o777) != oct(0o600)  # as open() makes it, not mkstemp


def test_ctrl_c_while_drawing_plots_leaves_no_plot(
    tmp_path, bundle_dir, live_traffic, monkeypatch, capsys
):
    from matplotlib.figure import Figure

    saved: list[str] = []
    original = Figure.savefig

    def interrupted_savefig(self: Figure, fname: Any, *args: Any, **kwargs: Any) -> None:
        if saved:
            raise KeyboardInterrupt
        original(self, fname, *args, **kwargs)
        saved.append(str(fname))

    monkeypatch.setattr(Figure, "savefig", interrupted_savefig)
    plots = tmp_path / "plots"
    argv = [
        "evaluate",
        "--bundle",
        str(bundle_dir),
        "--events",
        str(events_file(tmp_path, live_traffic, 2000)),
        "--labels",
        str(labels_file(tmp_path, live_traffic, 2000)),
        "--plots",
        str(plots),
    ]
    assert main(argv) == 130
    assert len(saved) == 1  # one image was complete when Ctrl-C came
    assert not plots.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv", "live.jsonl"]


def test_ctrl_c_during_train_keeps_the_earlier_bundle(
    tmp_path, bundle_dir, baseline_traffic, monkeypatch, capsys
):
    import shutil

    from ocsf_detect_tools.training import fit

    # Given an earlier bundle at --out and a build interrupted while training its 2nd class
    out = tmp_path / "bundle"
    shutil.copytree(bundle_dir, out)
    before = sorted((p.name, p.stat().st_size) for p in out.iterdir())
    calls: list[int] = []
    original = fit.train_embedding

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fit, "train_embedding", interrupted)
    base = tmp_path / "base.jsonl"
    base.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in baseline_traffic.events[:1500]))
    config = tmp_path / "small.toml"
    config.write_text("min_class_events = 30\n[train]\nmax_steps = 20\nwidth = 16\ndim = 8\n")
    archive = tmp_path / "bundle.zip"
    argv = ["train", "--events", str(base), "--out", str(out), "--config", str(config)]
    assert main([*argv, "--archive", str(archive)]) == 130
    # Then the earlier bundle is untouched and no staging directory or archive is left
    assert sorted((p.name, p.stat().st_size) for p in out.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.jsonl", "bundle", "small.toml"]


def test_sigint_to_a_real_score_process_leaves_no_output(tmp_path, bundle_dir, live_traffic):
    import os
    import signal
    import subprocess
    import sys
    import time

    # Given a scoring run that is still scoring when Ctrl-C comes, however fast the
    # machine: each batch of the real scorer is held back a second
    events = tmp_path / "many.jsonl"
    block = b"".join(orjson.dumps(e) + b"\n" for e in live_traffic.events)
    events.write_bytes(block * 10)  # 20,000 events: four batches, four seconds at least
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code = (
        # started in the background (CI), SIGINT is inherited ignored and Python sets no
        # KeyboardInterrupt handler: the child puts it back, as a terminal would have it
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from ocsf_detect.detector.scorer import Detector\n"
        "real = Detector.score_batch\n"
        "def held_back(self, raws):\n"
        "    time.sleep(1.0)\n"
        "    return real(self, raws)\n"
        "Detector.score_batch = held_back\n"
        "from ocsf_detect_tools.cli import main\n"
        "sys.exit(main())"
    )
    argv = ["score", "--bundle", str(bundle_dir), "--events", str(events)]
    process = subprocess.Popen(
        [sys.executable, "-c", code, *argv, "--out", str(out_dir / "o.jsonl")],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(out_dir.iterdir()), "the run never opened its output"
    time.sleep(0.5)  # inside the scoring loop
    # When Ctrl-C reaches it
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    # Then it says so in one line, and neither the output nor a partial file remains
    assert process.returncode == 130, err
    assert err.strip() == "ocsf-detect: interrupted; no partial output was kept"
    assert list(out_dir.iterdir()) == []
