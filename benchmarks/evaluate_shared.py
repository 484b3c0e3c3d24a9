"""Detection quality on the shared labeled data, next to the references: the table in
docs/results.md. Needs ../shared/data (or OCSF_DETECT_DATA) and the train extra.

Protocols (labels are used only to measure):
- nsl-kdd: train on the benign rows of the first half, evaluate on the second half.
- nsl-kdd-hard: the same bundle on the second half's rows of difficulty 20 or less (the
  rows most of 21 reference classifiers got wrong: how KDDTest-21 is drawn from KDDTest+).
- iot23, per capture with both classes: train on the first half of the capture in time
  (unlabeled, contamination included), evaluate on the second half.
- iot23, per benign-only capture (the honeypots): the same split; the share of the
  second half that alerts, against the configured alert rate (false alarms under drift).
References (IsolationForest, exact k-NN on the same features) are fitted on the same
training events.

    python benchmarks/evaluate_shared.py [--out-dir .eval] [--json] [--config FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import orjson

from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect_tools.build import build_bundle
from ocsf_detect_tools.config import DetectorConfig, load_config
from ocsf_detect_tools.evaluation import EvaluationError, evaluate
from ocsf_detect_tools.eventio import read_lines

DATA = Path(os.environ.get("OCSF_DETECT_DATA", "../shared/data"))


def uid_of(line: bytes) -> str:
    return str(orjson.loads(line)["metadata"]["uid"])


def run_case(
    name: str,
    train: list[bytes],
    test: list[bytes],
    labels: dict[str, int],
    out: Path,
    config: DetectorConfig,
    bundle: str | None = None,
) -> dict[str, object]:
    """``bundle``: the name of an earlier case whose bundle (trained on ``train``) to reuse."""
    if bundle is None:
        print(f"{name}: training on {len(train):,}, evaluating {len(test):,}", file=sys.stderr)
        build_bundle(train, out / name, config)
    detector = Detector.load(out / (bundle or name))
    try:
        ev = evaluate(detector, test, labels, baseline_lines=train)
    except EvaluationError as exc:
        return {"case": name, "skipped": str(exc)}
    return {"case": name, **ev.as_dict()}


def run_benign(
    name: str, train: list[bytes], test: list[bytes], out: Path, config: DetectorConfig
) -> dict[str, object]:
    print(f"{name}: training on {len(train):,}, alerts on {len(test):,}", file=sys.stderr)
    build_bundle(train, out / name, config)
    scored = [o for o in Detector.load(out / name).score_batch(test) if isinstance(o, Scored)]
    alerts = sum(o.is_anomaly for o in scored)
    return {
        "case": name,
        "events": len(scored),
        "alerts": alerts,
        "alert_rate": round(alerts / len(scored), 4) if scored else None,
        "target_alert_rate": config.alert_rate,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", type=Path, default=Path(".eval"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--config", type=Path, help="detector TOML (defaults otherwise)")
    args = ap.parse_args()
    config = load_config(args.config).model_copy(update={"min_class_events": 30})
    cases = []
    nsl = DATA / "nsl-kdd"
    lines = read_lines(nsl / "KDDTrain+_20Percent.ocsf.jsonl.gz")
    with (nsl / "KDDTrain+_20Percent.labels.csv").open() as fh:
        nsl_rows = list(csv.DictReader(fh))
    nsl_labels = {r["uid"]: int(r["is_malicious"]) for r in nsl_rows}
    hard = {r["uid"] for r in nsl_rows if int(r["difficulty"]) <= 20}
    half = len(lines) // 2
    benign_first = [x for x in lines[:half] if nsl_labels[uid_of(x)] == 0]
    cases.append(("nsl-kdd", benign_first, lines[half:], nsl_labels, None))
    hard_second = [x for x in lines[half:] if uid_of(x) in hard]
    cases.append(("nsl-kdd-hard", benign_first, hard_second, nsl_labels, "nsl-kdd"))
    iot = DATA / "iot23"
    with (iot / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    iot_labels = {r["uid"]: int(r["is_malicious"]) for r in rows}
    capture_of = {r["uid"]: r["capture"] for r in rows}
    by_capture: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    for line in read_lines(iot / "ocsf_network_activity.jsonl.gz"):
        event = orjson.loads(line)
        by_capture[capture_of[event["metadata"]["uid"]]].append((event["time"], line))
    benign_cases = []
    for capture, items in sorted(by_capture.items()):
        ys = {iot_labels[uid_of(x)] for _, x in items}
        items.sort(key=lambda t: t[0])
        mid = len(items) // 2
        first, second = [x for _, x in items[:mid]], [x for _, x in items[mid:]]
        if ys == {0, 1}:
            cases.append((capture, first, second, iot_labels, None))
        elif ys == {0}:
            benign_cases.append((capture, first, second))
    wanted = set(args.only.split(",")) if args.only else None
    if wanted is not None:
        wanted |= {b for n, *_, b in cases if n in wanted and b is not None}
    results = [
        run_case(n, tr, te, lab, args.out_dir, config, bundle)
        for n, tr, te, lab, bundle in cases
        if wanted is None or n in wanted
    ]
    benign = [
        run_benign(n, tr, te, args.out_dir, config)
        for n, tr, te in benign_cases
        if wanted is None or n in wanted
    ]
    if args.json:
        print(json.dumps({"quality": results, "benign_alert_rate": benign}, indent=2))
        return
    print("| case | malicious / labeled | ROC-AUC ours / IF / kNN | AP ours / IF / kNN |")
    print("|---|---|---|---|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['case']} | skipped: {r['skipped']} | | |")
            continue
        b = r["baselines"]
        print(
            f"| {r['case']} | {r['n_malicious']:,} / {r['n_labeled']:,} | "
            f"{r['roc_auc']:.4f} / {b['isolation_forest']['roc_auc']:.4f} / "
            f"{b['exact_knn']['roc_auc']:.4f} | {r['average_precision']:.4f} / "
            f"{b['isolation_forest']['average_precision']:.4f} / "
            f"{b['exact_knn']['average_precision']:.4f} |"
        )
    print()
    print("| benign-only capture | events (second half) | alerts | alert rate (target) |")
    print("|---|---|---|---|")
    for r in benign:
        print(
            f"| {r['case']} | {r['events']:,} | {r['alerts']} | "
            f"{r['alert_rate']} ({r['target_alert_rate']}) |"
        )


if __name__ == "__main__":
    main()
