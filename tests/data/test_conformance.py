"""Every real OCSF sample in ../shared/data goes through the parser with an outcome."""

from __future__ import annotations

from collections import Counter

import pytest

from ocsf_detect.features.pipeline import FeaturePipeline
from ocsf_detect.ocsf import EventParser, Parsed, Rejected, Unsupported
from ocsf_detect_tools.config import DetectorConfig
from tests.conftest import require_data

pytestmark = pytest.mark.data


def test_real_samples_parse_without_exceptions(capsys: pytest.CaptureFixture[str]) -> None:
    root = require_data("ocsf-samples")
    files = sorted(root.glob("*/events.jsonl"))
    assert files, f"no */events.jsonl under {root}"
    parser = EventParser(
        {uid: FeaturePipeline(s).plan for uid, s in DetectorConfig().class_specs().items()}
    )
    tally: Counter[tuple[str, object]] = Counter()
    total = 0
    for path in files:
        for line in path.read_bytes().splitlines():
            if not line.strip():
                continue
            total += 1
            outcome = parser.parse(line)
            assert isinstance(outcome, Parsed | Unsupported | Rejected)
            if isinstance(outcome, Parsed):
                tally[("parsed", outcome.class_uid)] += 1
            elif isinstance(outcome, Unsupported):
                tally[("unsupported", outcome.class_uid)] += 1
            else:
                tally[("rejected", outcome.reason.value)] += 1
    assert total >= 600
    # Most real samples are read: rejections are the few upstream fragments without the
    # base fields (provenance.csv says which), not whole families of events.
    rejected = sum(n for (status, _), n in tally.items() if status == "rejected")
    assert rejected <= 0.1 * total, tally
    with capsys.disabled():
        print(f"\n{total} real OCSF events:")
        for (status, key), n in sorted(tally.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
            print(f"  {status:12s} {key!s:22s} {n}")
    parsed_classes = {k for (s, k) in tally if s == "parsed"}
    assert {4001, 4003, 3002, 6003} <= parsed_classes
