"""Whether an event's alert depends on the batch it comes in: each case's events scored in
one batch (as ``evaluate_shared.py`` scores them) and again in batches of ``--size``.

    python benchmarks/batches.py [--out-dir .eval] [--only nsl-kdd,unsw-nb15] [--seeds 0,1,2]
                                 [--size 500] [--json]

Reads the bundles ``evaluate_shared.py`` builds (the same ``--out-dir`` and keys; a
missing bundle is built, as there). The served path re-checks by exact search at most 5%
of a class batch (at least 32 events) of the scores that could reach the threshold
(``detector.scorer.serve_scores``); beyond that limit an event keeps the score the
approximate search gave it, never below the exact one, so under a flood of anomalies
which events are re-checked depends on the batch, and an event whose approximate score
reaches the threshold while its exact score does not alerts in one batching and not in
another. Per (case, protocol, seed): alerts both ways, the events whose alert differs,
and the re-checked and unchecked counts both ways (docs/results.md, "Alerts and the
batch"). ``--only`` names cases as ``evaluate_shared.py`` does.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from cases import load_cases
from evaluate_shared import MIN_CLASS_EVENTS, Harness, build_code_digest

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect_tools.config import load_config


def alerts_of(detector: Detector, lines: Sequence[bytes], size: int) -> tuple[np.ndarray, int, int]:
    """Each event's alert, scored in batches of ``size``; and the re-checked and unchecked
    counts (a fresh ``detector``: its counters start at zero)."""
    alerts: list[bool] = []
    for start in range(0, len(lines), size):
        outcomes = detector.score_batch(lines[start : start + size])
        alerts += [isinstance(o, Scored) and bool(o.is_anomaly) for o in outcomes]
    return np.array(alerts, dtype=bool), detector.rechecks.rechecked, detector.rechecks.unchecked


def compare(bundle: Path, lines: Sequence[bytes], size: int) -> dict[str, Any]:
    one, rechecked_one, unchecked_one = alerts_of(Detector.load(bundle), lines, max(len(lines), 1))
    by, rechecked_by, unchecked_by = alerts_of(Detector.load(bundle), lines, size)
    return {
        "events": len(lines),
        "alerts_one_batch": int(one.sum()),
        "alerts_by_size": int(by.sum()),
        "differ": int((one != by).sum()),
        "rechecked": [rechecked_one, rechecked_by],
        "unchecked": [unchecked_one, unchecked_by],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out-dir", type=Path, default=Path(".eval"))
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--size", type=int, default=500, help="events per batch, the second way")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.size < 1:
        ap.error("--size must be at least 1")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    # the config evaluate_shared.py builds its bundles with (the same cache keys)
    config = load_config(None).model_copy(update={"min_class_events": MIN_CLASS_EVENTS})
    harness = Harness(args.out_dir, build_code_digest())
    only = set(args.only.split(",")) if args.only else None
    rows = []
    if not args.json:
        print(
            f"| case | protocol | seed | events | alerts, one batch | alerts, by {args.size} "
            "| differ | re-checked (one / by) | unchecked (one / by) |"
        )
        print("|---" * 9 + "|")
    for case in load_cases(only=only):
        for seed in seeds:
            got = compare(harness.bundle(case, config, seed), case.test, args.size)
            row = {"case": case.name, "protocol": case.protocol, "seed": seed, **got}
            rows.append(row)
            if not args.json:
                print(
                    f"| {case.name} | {case.protocol} | {seed} | {got['events']:,} "
                    f"| {got['alerts_one_batch']:,} | {got['alerts_by_size']:,} "
                    f"| {got['differ']} | {got['rechecked'][0]:,} / {got['rechecked'][1]:,} "
                    f"| {got['unchecked'][0]:,} / {got['unchecked'][1]:,} |",
                    flush=True,
                )
    if args.json:
        print(json.dumps({"size": args.size, "rows": rows}, indent=2))
    else:
        differ = sum(r["differ"] for r in rows)
        scored = sum(r["events"] for r in rows)
        print(
            f"\n{differ} of {scored:,} scored events alert differently in batches of {args.size}."
        )


if __name__ == "__main__":
    main()
