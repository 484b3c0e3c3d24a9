"""Throughput benchmarks behind ``ocsf-detect bench`` (numbers, never pass/fail).

1. ``parse_features``: decode + parse + feature extraction of Network Activity events,
   ours next to a plain ``json.loads`` + full pydantic model loop, same events, same run.
2. ``scoring``: raw JSON bytes to outcomes for 10,000 Network Activity events against a
   50,000-vector index, batched (one ONNX run + one k-NN query per class) next to a
   per-record path (one model call and one index query per event), plus stage times and
   bundle load time. ONNX and hnswlib run on one thread.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import ocsf_detect
from ocsf_detect import __version__
from ocsf_detect.gcpause import gc_paused


def _rate(fn: Callable[[], Any], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def network_events(data_dir: Path | None, n: int) -> tuple[list[bytes], str]:
    """Real iot23 4001 events when the shared data is present, else generated ones."""
    if data_dir is not None:
        path = data_dir / "iot23" / "ocsf_network_activity.jsonl.gz"
        if path.is_file():
            from ocsf_detect_tools.eventio import read_lines

            lines = read_lines(path)
            reps = -(-n // len(lines))
            return (lines * reps)[:n], str(path.relative_to(data_dir.parent))
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    events = generate_traffic(int(n * 2.2), seed=99, attacks=False).events
    lines = [orjson.dumps(e) for e in events if e["class_uid"] == 4001][:n]
    return lines, "generated 4001 traffic"


def bench_parse_features(lines: list[bytes]) -> dict[str, Any]:
    from ocsf_detect.features.pipeline import FeaturePipeline, fit_spec
    from ocsf_detect.ocsf import EventParser, Parsed
    from ocsf_detect_tools.ocsf_models import NetworkActivity
    from ocsf_detect_tools.specs import default_specs

    sample = [orjson.loads(x) for x in lines[:5000]]
    spec = fit_spec(default_specs()[4001], sample, np.array([e["time"] for e in sample]))
    pipeline = FeaturePipeline(spec)
    parser = EventParser({4001: pipeline.plan})
    paths = [p.split(".") for p in pipeline.plan.paths]

    def ours() -> None:
        outcomes = parser.parse_many(lines)
        pipeline.transform_parsed([o for o in outcomes if isinstance(o, Parsed)])

    def reference() -> None:
        # The straightforward path doing the same work: json.loads, validate the whole
        # event with the full pydantic model, read the used fields off the model one event
        # at a time, then the same vectorised feature transform.
        rows, times = [], []
        for line in lines:
            event = NetworkActivity.model_validate(json.loads(line))
            rows.append(tuple(_from_model(event, path) for path in paths))
            times.append(event.time)
        pipeline.transform(rows, np.asarray(times))

    n = len(lines)
    ours_rate = _rate(ours, n)
    ref_rate = _rate(reference, n)
    return {
        "events": n,
        "events_per_s": round(ours_rate),
        "reference_json_pydantic_events_per_s": round(ref_rate),
        "reference": "json.loads + full pydantic model + the same feature transform",
        "speedup": round(ours_rate / ref_rate, 2),
        "target_events_per_s": 60_000,
    }


def _from_model(model: Any, path: list[str]) -> Any:
    node = model
    for key in path:
        if node is None:
            return None
        if isinstance(node, dict):
            node = node.get(key)
        else:
            value = getattr(node, key, None)
            node = value if value is not None else (node.model_extra or {}).get(key)
    return node


def bench_scoring(bundle_dir: Path, lines: list[bytes], per_record_n: int = 1000) -> dict[str, Any]:
    from ocsf_detect.detector.bundle import embedding_of
    from ocsf_detect.detector.scorer import (
        Detector,
        covered_by,
        feature_rerank,
        fine_features,
        isolation_of,
        nearest_behaviours,
    )
    from ocsf_detect.detector.surprise import combined

    detector = Detector.load(bundle_dir)  # warm the page cache
    load_ms = min(Detector.load(bundle_dir).load_ms for _ in range(3))
    detector.score_batch(lines[:500])  # warm-up
    detector.times = type(detector.times)()
    n = len(lines)
    start = time.perf_counter()
    runs = 3
    for _ in range(runs):
        outcomes = detector.score_batch(lines)
    batched = n * runs / (time.perf_counter() - start)
    stage_ms = {k: round(v / runs, 2) for k, v in detector.times.ms.items()}

    loaded = detector._classes[4001]
    info = loaded.info
    pipeline = detector.pipeline(4001)
    tails = (info.tails.knn, info.tails.isolation) if info.tails else None
    cover = None if info.isolation is None else info.isolation.cover()
    fine = loaded.fine

    def per_record() -> None:
        with gc_paused():
            for raw in lines[:per_record_n]:
                parsed = detector.parser.parse(raw)
                m = pipeline.transform_parsed([parsed])  # type: ignore[list-item]
                emb = embedding_of(loaded.session, info, m.numeric, m.categorical)
                space = feature_rerank(loaded, pipeline, m)  # bundle format 12
                labels, d = nearest_behaviours(loaded.index, emb, info.index.k, space)
                isolation = isolation_of(loaded.isolation, m.numeric, m.categorical)
                score = combined(d.mean(axis=1), isolation, tails, covered_by(d, cover))
                if fine is not None:  # bundle format 13
                    known = d[:, 0] if space is None else None
                    rows = fine_features(loaded, pipeline, m)  # bundle format 15
                    near = labels if space is None else None
                    score = score + fine.evidence(fine.nearest(emb, known, rows, near))
                _ = float(score[0]) >= info.threshold

    single = _rate(per_record, per_record_n, repeat=2)
    return {
        "events": n,
        "index_vectors": info.index.n_items,
        "events_per_s": round(batched),
        "per_record_events_per_s": round(single),
        "speedup": round(batched / single, 1),
        "stage_ms": stage_ms,
        "bundle_load_ms": round(load_ms, 1),
        "scored": sum(1 for o in outcomes if o.status == "scored"),
        # alerts are re-checked by exact search (up to a per-batch limit): the share of
        # anomalous events sets that cost
        "anomalies": sum(1 for o in outcomes if getattr(o, "is_anomaly", False)),
        "targets": {"events_per_s": 20_000, "speedup": 30, "bundle_load_ms": 300},
    }


def _build_code_digest() -> str:
    """A digest of the code that generates the benchmark's traffic and builds its bundle
    (simulate, ocsf, features, training, detector), so that a change to it builds a new
    benchmark bundle even when the settings are the same."""
    runtime = Path(ocsf_detect.__file__).parent
    tools = Path(__file__).parent
    digest = hashlib.sha256()
    folders = [runtime / p for p in ("features", "detector", "ocsf")]
    folders += [tools / p for p in ("training", "simulate")]
    for folder in folders:
        for path in sorted(folder.glob("*.py")):
            digest.update(path.read_bytes())
    for path in (tools / "build.py", tools / "specs.py", tools / "config.py"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def normal_traffic(n: int, seed: int = 900) -> list[bytes]:
    """``n`` generated benign 4001 events from a seed the benchmark bundle was not
    trained on: traffic like the baseline, where few events alert."""
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    events = [e for e in generate_traffic(3 * n, seed=seed, attacks=False).events]
    lines = [orjson.dumps(e) for e in events if e["class_uid"] == 4001]
    return lines[:n]


def bench_bundle(cache: Path, index_size: int, log: Callable[[str], None]) -> Path:
    """A bundle whose 4001 index holds about ``index_size`` vectors, cached under a key of
    the build settings and code (a change of either builds a new one)."""
    from ocsf_detect_tools.build import build_bundle
    from ocsf_detect_tools.config import DetectorConfig
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    # Every baseline event indexed (no distinct-radius merging), so the index has the
    # stated size: the benchmark measures search cost at that size. With no radius there
    # is no cover, so the trees judge every event (their cost is the same either way).
    config = DetectorConfig.model_validate(
        {
            "train": {"max_steps": 600},
            "index": {"distinct_radius": 0.0},
            "isolation": {"scope": "all"},
        }
    )
    key = hashlib.sha256(
        f"{__version__} {config.model_dump_json()} {_build_code_digest()}".encode()
    ).hexdigest()
    bundle = cache / f"bundle-{index_size}-{key[:12]}"
    if (bundle / "manifest.json").is_file():
        return bundle
    need = int(index_size / (1 - config.holdout) / (1 - config.index.contamination)) + 200
    log(f"building a benchmark bundle with a {index_size:,}-vector index (once, cached)")
    events: list[dict[str, Any]] = []
    seed = 500
    while len(events) < need:
        batch = generate_traffic(need, seed=seed, attacks=False).events
        events += [e for e in batch if e["class_uid"] == 4001]
        seed += 1
    lines = [orjson.dumps(e) for e in events[:need]]
    with gc_paused():
        build_bundle(lines, bundle, config, log=log)
    return bundle


def bench_training(sizes: list[int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    """``train`` with the default configuration on ``n`` generated normal events (every
    class the simulator makes) for each ``n`` of ``sizes``: wall time from the lines to a
    written bundle, events per second, and the steps each class trained for (fewer than
    planned when ``[train] max_minutes`` stopped it)."""
    import tempfile

    from ocsf_detect_tools.build import build_bundle
    from ocsf_detect_tools.config import DetectorConfig
    from ocsf_detect_tools.simulate.traffic import generate_traffic
    from ocsf_detect_tools.training.fit import observe_training

    results = []
    for n in sizes:
        lines = [orjson.dumps(e) for e in generate_traffic(n, seed=700, attacks=False).events]
        steps = _StepCount()
        log(f"training on {n:,} generated events (default configuration)")
        with tempfile.TemporaryDirectory() as tmp, observe_training(steps):
            start = time.perf_counter()
            build_bundle(lines, Path(tmp) / "bundle", DetectorConfig())
            seconds = time.perf_counter() - start
        results.append(
            {
                "events": n,
                "seconds": round(seconds, 1),
                "train_events_per_s": round(n / seconds, 1),
                "steps_per_class": [done for done, _ in steps.per_class],
                "stopped_early": any(done < planned for done, planned in steps.per_class),
            }
        )
    return results


class _StepCount:
    """A training observer: (steps done, steps planned) of each class trained."""

    def __init__(self) -> None:
        self.per_class: list[tuple[int, int]] = []

    def __call__(self, step: int, total: int, loss: float, elapsed: float) -> None:
        if step == 1:
            self.per_class.append((0, total))
        self.per_class[-1] = (step, total)
