"""Training the classes' networks side by side, one process per core.

Each class's network trains on one thread (``TrainConfig.threads``), so a build of
several classes on a machine of several cores trains them in parallel: a fresh
interpreter per job (``python -m ocsf_detect_tools.training.parallel JOB REPORT``; not
a fork of a process that may run threads, and not ``multiprocessing``'s spawn, which
re-runs the caller's main script), each training one class and writing its ONNX file.
Training is seeded per class (``train_embedding``), so a job gives the same network in a
worker as in the build's own process; the results come back in the jobs' order.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ocsf_detect_tools.training.fit import TrainConfig, TrainReport

MIN_PARALLEL_ROWS = 20_000
"""Below this many training rows over all classes, the classes train one after the other:
starting a worker (a fresh interpreter importing torch) costs seconds, about what a
small class takes to train."""


@dataclass(frozen=True)
class TrainJob:
    """One class's network: its model inputs, settings and where its ONNX file goes."""

    class_uid: int
    numeric: np.ndarray
    categorical: np.ndarray
    cardinalities: list[int]
    config: TrainConfig
    onnx_path: Path


def run_job(job: TrainJob) -> TrainReport:
    """Train ``job``'s network and write it as ONNX (in a worker, or in this process)."""
    from ocsf_detect_tools.training.export import export_onnx
    from ocsf_detect_tools.training.fit import train_embedding

    model, report = train_embedding(job.numeric, job.categorical, job.cardinalities, job.config)
    export_onnx(model, job.numeric.shape[1], job.categorical.shape[1], job.onnx_path)
    return report


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(jobs: Sequence[TrainJob], requested: int) -> int:
    """``requested`` workers (0: automatic), never more than jobs or cores; automatic is
    one per core when the build is big enough for workers to pay off."""
    if requested == 0:
        rows = sum(len(j.numeric) for j in jobs)
        requested = available_cores() if rows >= MIN_PARALLEL_ROWS else 1
    return max(1, min(requested, len(jobs), available_cores()))


class TrainingWorkerError(RuntimeError):
    """A worker process failed; the message carries the end of its error output."""


def train_all(
    jobs: Sequence[TrainJob], workers: int, run: Callable[[TrainJob], TrainReport] = run_job
) -> Iterator[TrainReport]:
    """Each job's report, in the jobs' order, as soon as it and those before it are done:
    ``run`` in this process with one worker, else each job in a worker process."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run(job)
        return
    with (
        tempfile.TemporaryDirectory(prefix="ocsf-detect-train-") as tmp,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        futures = [pool.submit(_in_worker, job, Path(tmp) / str(i)) for i, job in enumerate(jobs)]
        for future in futures:
            yield future.result()


def _in_worker(job: TrainJob, stem: Path) -> TrainReport:
    job_file, report_file = stem.with_suffix(".job"), stem.with_suffix(".report")
    job_file.write_bytes(pickle.dumps(job))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(job_file), str(report_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise TrainingWorkerError(
            f"training class {job.class_uid} failed in its worker (exit {done.returncode}): "
            + " | ".join(tail)
        )
    report: TrainReport = pickle.loads(report_file.read_bytes())
    return report


def _worker_main(job_file: str, report_file: str) -> None:
    # Files the build wrote a moment ago in its own private temporary directory.
    job: TrainJob = pickle.loads(Path(job_file).read_bytes())
    Path(report_file).write_bytes(pickle.dumps(run_job(job)))


if __name__ == "__main__":
    _worker_main(*sys.argv[1:3])
