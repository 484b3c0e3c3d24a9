"""Training shows its progress and stops at its time bound."""

from __future__ import annotations

import dataclasses
import io

import numpy as np

from ocsf_detect_tools.cli.progress import TrainingProgress
from ocsf_detect_tools.training.fit import TrainConfig, observe_training, train_embedding


def small_inputs(n: int = 512) -> tuple[np.ndarray, np.ndarray, list[int]]:
    rng = np.random.default_rng(0)
    numeric = rng.normal(size=(n, 4)).astype(np.float32)
    categorical = rng.integers(0, 3, size=(n, 1)).astype(np.int64)
    return numeric, categorical, [3]


def test_every_step_is_observed_and_the_report_counts_them():
    seen: list[tuple[int, int]] = []
    config = TrainConfig(dim=4, width=8, blocks=1, batch_size=64, epochs=3, max_steps=1000)
    with observe_training(lambda step, total, loss, elapsed: seen.append((step, total))):
        _, report = train_embedding(*small_inputs(), config)
    assert seen == [(i, 24) for i in range(1, 25)]  # 3 epochs x 512 / 64 batches
    assert report.steps == 24
    assert not report.stopped_early


def test_steps_not_passes_decide_unless_a_set_is_tiny():
    config = TrainConfig(dim=4, width=8, blocks=1, batch_size=64, max_steps=40, epochs=10)
    _, small = train_embedding(*small_inputs(256), config)  # 4 batches a pass
    _, large = train_embedding(*small_inputs(1024), config)  # 16 batches a pass
    _, tiny = train_embedding(*small_inputs(128), config)  # 2 batches a pass
    assert (small.steps, small.epochs) == (40, 10)
    assert (large.steps, large.epochs) == (48, 3)  # rounded up to a whole pass
    assert (tiny.steps, tiny.epochs) == (20, 10)  # the passes' cap


def test_training_stops_at_its_time_bound():
    config = TrainConfig(dim=4, width=8, blocks=1, batch_size=64, epochs=100, max_steps=800)
    _, report = train_embedding(*small_inputs(), dataclasses.replace(config, max_seconds=0.0))
    assert report.stopped_early
    assert report.steps == 1
    assert report.epochs == 1
    assert len(report.losses) == 1


def test_a_terminal_sees_steps_loss_elapsed_and_eta():
    out = io.StringIO()
    progress = TrainingProgress(None, stream=out, force=True)
    progress.label = "class 4001 (Network Activity)"
    progress(1, 100, 0.5, 2.0)
    progress(100, 100, 0.25, 100.0)  # the last step is always drawn, and ends the line
    text = out.getvalue()
    assert "\r  class 4001 (Network Activity) [" in text
    assert "1/100 steps  loss 0.5000  elapsed 2s, ETA 3m18s" in text
    assert "100/100 steps  loss 0.2500  elapsed 1m40s, ETA 0s" in text
    assert text.endswith("\n")


def test_the_eta_is_capped_by_the_time_bound_and_a_cut_line_is_ended():
    out = io.StringIO()
    progress = TrainingProgress(60.0, stream=out, force=True)
    progress(1, 100, 0.5, 2.0)  # 198 s to go at this pace, but training stops at 60 s
    assert out.getvalue().endswith("elapsed 2s, ETA 58s ")
    progress.end_line()
    assert out.getvalue().endswith("\n")


def test_a_log_gets_one_line_per_class():
    out = io.StringIO()
    progress = TrainingProgress(600.0, stream=out)
    for label in ("class 3002 (Authentication)", "class 4001 (Network Activity)"):
        progress.label = label
        for step in range(1, 101):
            progress(step, 100, 0.1, step * 0.01)
    assert out.getvalue().splitlines() == [
        "  class 3002 (Authentication): training 100 steps, at most 10m00s",
        "  class 4001 (Network Activity): training 100 steps, at most 10m00s",
    ]
