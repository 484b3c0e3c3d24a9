"""Classes' networks trained side by side in worker processes give the bundle a build
gives when it trains them one after the other, and a failing worker names its class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from ocsf_detect_tools.build import build_bundle
from ocsf_detect_tools.config import DetectorConfig
from ocsf_detect_tools.training.fit import TrainConfig, observe_training
from ocsf_detect_tools.training.parallel import (
    MIN_PARALLEL_ROWS,
    TrainingWorkerError,
    TrainJob,
    train_all,
    worker_count,
)


def _job(n: int, path: Path, class_uid: int = 4001) -> TrainJob:
    rng = np.random.default_rng(class_uid)
    return TrainJob(
        class_uid,
        rng.normal(size=(n, 4)).astype(np.float32),
        rng.integers(0, 3, size=(n, 1)).astype(np.int64),
        [3],
        TrainConfig(dim=4, width=8, blocks=1, batch_size=64, epochs=2, max_steps=10),
        path,
    )


def test_workers_are_automatic_only_for_builds_big_enough(tmp_path, monkeypatch) -> None:
    from ocsf_detect_tools.training import parallel

    monkeypatch.setattr(parallel, "available_cores", lambda: 2)
    small = [_job(100, tmp_path / "a.onnx"), _job(100, tmp_path / "b.onnx")]
    big = [_job(MIN_PARALLEL_ROWS // 2, tmp_path / f"{i}.onnx") for i in range(3)]
    assert worker_count(small, 0) == 1
    assert worker_count(big, 0) == 2  # one per core, not one per class
    assert worker_count(small, 8) == 2  # never more than the jobs or the cores
    assert worker_count(big[:1], 0) == 1


def test_a_failing_worker_names_its_class(tmp_path) -> None:
    jobs = [_job(200, tmp_path / "ok.onnx"), _job(200, tmp_path / "missing" / "x.onnx", 3002)]
    reports = train_all(jobs, workers=2)
    assert next(reports).steps > 0
    assert (tmp_path / "ok.onnx").stat().st_size > 0
    with pytest.raises(TrainingWorkerError, match=r"class 3002 failed in its worker"):
        next(reports)


def test_a_build_in_workers_equals_the_build_in_one_process(tmp_path, baseline_traffic) -> None:
    lines = [orjson.dumps(e) for e in baseline_traffic.events[:2500]]
    train = {"max_steps": 20, "epochs": 2}
    bundles = {}
    steps_seen: dict[int, list[tuple[int, int]]] = {}
    for workers in (1, 2):
        config = DetectorConfig.model_validate({"train": {**train, "workers": workers}})
        seen: list[tuple[int, int]] = []
        with observe_training(lambda step, total, loss, elapsed: seen.append((step, total))):  # noqa: B023
            build_bundle(lines, tmp_path / f"w{workers}", config)
        bundles[workers] = tmp_path / f"w{workers}"
        steps_seen[workers] = [s for s in seen if s[0] == 1]
    one, two = (json.loads((bundles[w] / "manifest.json").read_text()) for w in (1, 2))
    assert len(one["models"]) >= 2
    # the networks are the same bytes; so are the thresholds, bands and golden events
    for name, model in one["models"].items():
        onnx = model["model"]["file"]
        assert (bundles[1] / onnx).read_bytes() == (bundles[2] / onnx).read_bytes()
        other = two["models"][name]
        for key in ("threshold", "severity_bands", "index", "features", "tails"):
            assert model[key] == other[key], (name, key)
    assert one["golden_events"] == two["golden_events"]
    # every file, the index files included, and so the bundle's version
    assert one["files"] == two["files"]
    assert one["bundle_version"] == two["bundle_version"]
    # a progress observer hears of every class in both cases
    assert len(steps_seen[1]) == len(steps_seen[2]) == len(one["models"])
