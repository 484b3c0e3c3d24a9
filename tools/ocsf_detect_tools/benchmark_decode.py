"""The decoder against the JSON library it is built on (``ocsf-detect bench``).

``decode_vs_orjson``: decoding and validating an event (``EventParser.parse_many`` with
the bundle's field plans) over ``orjson.loads`` of the same bytes; ``e2e_vs_orjson``:
batched scoring end to end (``Detector.score_batch``: decode, features, ONNX, k-NN,
thresholds) per event over the same. Same events, same run; numbers only, never
pass/fail. ``orjson.loads`` and decoding are timed in turn, five rounds, and each keeps
its best round, so that a burst of load on a shared machine cannot land on one side of
the ratio only; scoring end to end keeps the best of three.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

TARGETS = {"decode_vs_orjson": 3.0, "e2e_vs_orjson": 15.0}


def _best_seconds(*fns: Callable[[], Any], repeat: int = 3) -> list[float]:
    """Each function's best time over ``repeat`` rounds; a round runs them in turn."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bench_decode_ratios(bundle_dir: Path, lines: Sequence[bytes]) -> dict[str, Any]:
    """Per-event times of ``orjson.loads``, decode + validation and end-to-end scoring of
    ``lines``, and the two ratios (see the module docstring)."""
    from ocsf_detect.detector.scorer import Detector
    from ocsf_detect.gcpause import gc_paused

    detector = Detector.load(bundle_dir)
    raws = list(lines)
    detector.score_batch(raws[:500])  # warm-up: ONNX session, index pages
    loads = orjson.loads

    def json_only() -> None:
        for raw in raws:
            loads(raw)

    with gc_paused():
        orjson_s, decode_s = _best_seconds(
            json_only, lambda: detector.parser.parse_many(raws), repeat=5
        )
        (e2e_s,) = _best_seconds(lambda: detector.score_batch(raws))
    n = len(raws)
    return {
        "events": n,
        "orjson_us_per_event": round(orjson_s / n * 1e6, 3),
        "decode_us_per_event": round(decode_s / n * 1e6, 3),
        "e2e_us_per_event": round(e2e_s / n * 1e6, 3),
        "decode_vs_orjson": round(decode_s / orjson_s, 2),
        "e2e_vs_orjson": round(e2e_s / orjson_s, 2),
        "targets": TARGETS,
    }
