"""Every real OCSF sample in ../shared/data goes through the parser with an outcome, and
a baseline made of them trains a model for every class with enough events."""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.features.pipeline import FeaturePipeline
from ocsf_detect.ocsf import EventParser, Parsed, Rejected, RejectReason, Unsupported
from ocsf_detect.ocsf.classes import DETECTION_FINDING, class_name
from ocsf_detect.ocsf.parser import decode_event
from ocsf_detect_tools.build import build_bundle
from ocsf_detect_tools.config import DetectorConfig
from tests.conftest import require_data

pytestmark = pytest.mark.data

_IPV4 = re.compile(r"^(\d{1,3}\.\d{1,3}\.\d{1,3}\.)(\d{1,3})$")


def _sample_lines() -> list[bytes]:
    root = require_data("ocsf-samples")
    files = sorted(root.glob("*/events.jsonl"))
    assert files, f"no */events.jsonl under {root}"
    return [line for path in files for line in path.read_bytes().splitlines() if line.strip()]


def test_real_samples_parse_without_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _sample_lines()
    parser = EventParser(
        {uid: FeaturePipeline(s).plan for uid, s in DetectorConfig().class_specs().items()}
    )
    # per class: parsed, unsupported, and rejected by reason
    tally: dict[object, Counter[str]] = defaultdict(Counter)
    for line in lines:
        outcome = parser.parse(line)
        assert isinstance(outcome, Parsed | Unsupported | Rejected)
        decoded = decode_event(line)
        key = decoded.get("class_uid") if isinstance(decoded, dict) else "(not an object)"
        if isinstance(outcome, Parsed):
            tally[key]["parsed"] += 1
        elif isinstance(outcome, Unsupported):
            tally[key]["unsupported (no curated spec)"] += 1
        else:
            tally[key][f"rejected {outcome.reason.value} {outcome.field or ''}".strip()] += 1
            # No catch-all: every rejection names what is wrong with the event.
            assert outcome.reason is not RejectReason.INVALID_INPUT, outcome
    total = sum(sum(c.values()) for c in tally.values())
    with capsys.disabled():
        print(f"\n{total} real OCSF events, per class:")
        for key, counts in sorted(tally.items(), key=lambda kv: str(kv[0])):
            name = class_name(key) if isinstance(key, int) else ""
            parts = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
            print(f"  {key!s:>8} {name:32.32s} {parts}")
    assert total >= 600
    # Most real samples are read: rejections are the few upstream fragments without the
    # base fields (provenance.csv says which), not whole families of events.
    rejected = sum(n for c in tally.values() for k, n in c.items() if k.startswith("rejected"))
    assert rejected <= 0.1 * total, dict(tally)
    parsed_classes = {k for k, c in tally.items() if c["parsed"]}
    assert {4001, 4003, 3002, 6003, 4002, 1007, 3001, 1001} <= parsed_classes


def _perturbed(event: dict[str, Any], rng: random.Random, n: int) -> dict[str, Any]:
    """A copy of a real event as another occurrence of it could look: another time in a
    week, other host addresses of the same networks, other amounts; the same shape."""
    out = dict(event)  # the walk below copies every container it changes
    if isinstance(out.get("time"), int):
        out["time"] = 1_772_409_600_000 + rng.randrange(7 * 86_400_000)
    out.pop("time_dt", None)
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {**out["metadata"], "uid": f"perturbed-{n}"}

    def walk(node: Any, key: str) -> Any:
        if isinstance(node, dict):
            return {k: walk(v, k) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, key) for v in node]
        if isinstance(node, str) and (m := _IPV4.match(node)):
            return f"{m.group(1)}{rng.randrange(1, 255)}"
        numeric_amount = not (
            key.endswith(("_id", "uid", "_time", "port")) or key in ("time", "code")
        )
        if isinstance(node, int) and not isinstance(node, bool) and numeric_amount:
            return int(node * rng.uniform(0.5, 2.0))
        return node

    return walk(out, "")


def test_a_baseline_of_perturbed_samples_models_every_class_with_enough(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given ten perturbed copies of every real sample that is a JSON object
    rng = random.Random(0)
    events = [e for e in map(decode_event, _sample_lines()) if isinstance(e, dict)]
    baseline = [_perturbed(e, rng, i * 10 + j) for i, e in enumerate(events) for j in range(10)]
    lines = [orjson.dumps(e) for e in baseline]
    config = DetectorConfig.model_validate(
        {
            "min_class_events": 50,
            "min_derived_events": 150,
            "train": {"max_steps": 6, "epochs": 1, "width": 16, "dim": 8, "blocks": 1},
            "index": {
                "recall_sample": 50,
                "ef_construction": 32,
                "M": 8,
                "contamination": 0.0,
                "recall_target": 0.5,
            },
        }
    )
    # When train builds a bundle on them
    manifest = build_bundle(lines, tmp_path / "b", config)
    # Then every class that reaches its minimum has a model, curated or derived
    parser = EventParser({uid: FeaturePipeline(s).plan for uid, s in config.class_specs().items()})
    counts: Counter[int] = Counter()
    curated_parsed: Counter[int] = Counter()
    for line in lines:
        outcome = parser.parse(line)
        if isinstance(outcome, Parsed):
            curated_parsed[outcome.class_uid] += 1
        elif isinstance(outcome, Unsupported):
            counts[outcome.class_uid] += 1
    expected = {c for c, n in curated_parsed.items() if n >= config.min_class_events} | {
        c for c, n in counts.items() if n >= config.min_derived_events and c != DETECTION_FINDING
    }
    assert set(manifest.classes) == expected
    assert any(m.spec_origin == "derived" for m in manifest.models.values())
    assert any(m.spec_origin == "curated" for m in manifest.models.values())
    # And every other class of the baseline is named with why it has no model
    for c, n in counts.items():
        if c not in expected and c != DETECTION_FINDING:
            assert manifest.training.unmodelled[str(c)].baseline_events == n
    # And the bundle scores the real samples of every modelled class
    detector = Detector.load(tmp_path / "b")
    outcomes = detector.score_objects(events)
    scored = {o.class_uid for o in outcomes if isinstance(o, Scored)}
    with capsys.disabled():
        print(f"\nthe real samples against a bundle trained on {len(lines):,} perturbed copies:")
        for c in sorted(set(counts) | set(curated_parsed)):
            got = Counter(
                o.status if not isinstance(o, Unsupported) or o.reason is None else o.reason.value
                for e, o in zip(events, outcomes, strict=True)
                if e.get("class_uid") == c
            )
            model = manifest.models.get(str(c))
            origin = f"{model.spec_origin} spec" if model else "no model"
            print(f"  {c:>8} {class_name(c):32.32s} {origin:14s} {dict(sorted(got.items()))}")
    assert scored == expected
