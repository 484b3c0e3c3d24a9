"""``benchmarks/overlay_cold.py`` on a small overlay: both read settings load every vector
through real S3 calls to the emulator (how fast is the benchmark's to print, not a
test's to judge)."""

from __future__ import annotations

import sys
from pathlib import Path

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from overlay_cold import cold_load, fill


def test_the_cold_overlay_benchmark_loads_every_vector_one_or_many_at_a_time(emulator_url):
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="overlay-bench")
    shape = (6, (5, 5, 5))  # rows beside the vectors, as format 15 keeps them
    fill(s3, "overlay-bench", vectors=40, dim=4, shape=shape)
    rows = [
        cold_load("overlay-bench", 4, shape, concurrency, latency_s=0.005) for concurrency in (1, 8)
    ]
    assert [r["vectors"] for r in rows] == [40, 40]
    assert [r["read_concurrency"] for r in rows] == [1, 8]
    # read as a class that needs rows of another shape, not one is taken
    other = cold_load("overlay-bench", 4, (7, (5, 5, 5)), 8, latency_s=0.0)
    assert other["vectors"] == 0
