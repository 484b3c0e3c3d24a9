"""Compare the self-supervised objectives on labeled data (the numbers in docs/model.md).

For each class present in both files, using one bundle's fitted feature specs: exact k-NN
on raw features (unweighted, and with categorical mismatches weighted as the isometry
objective does), IsolationForest, and k-NN in the embedding of each training objective.
Prints one JSON object. Example:

    python benchmarks/compare_objectives.py --bundle B --baseline base.jsonl.gz \\
        --events live.jsonl.gz --labels live.labels.csv
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from ocsf_detect.detector.index import exact_knn
from ocsf_detect.detector.scorer import Detector
from ocsf_detect.ocsf import Parsed
from ocsf_detect_tools.build import for_features
from ocsf_detect_tools.evaluation import read_labels
from ocsf_detect_tools.eventio import event_uid, read_lines
from ocsf_detect_tools.training.fit import TrainConfig, embed, train_embedding

METHODS = ("isometry", "hybrid", "reconstruction", "contrastive")


def knn_score(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    _, d = exact_knn(train, test, k)
    return d.mean(axis=1)


def quality(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {
        "roc_auc": round(float(roc_auc_score(y, s)), 4),
        "average_precision": round(float(average_precision_score(y, s)), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True, help="for its fitted feature specs")
    ap.add_argument("--baseline", type=Path, required=True)
    ap.add_argument("--events", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    detector = Detector.load(args.bundle)
    labels = read_labels(args.labels)
    result: dict[str, dict[str, object]] = {}
    for c in detector.classes:
        pipeline = detector.pipeline(c)

        def matrix(path: Path, c: int = c):  # type: ignore[no-untyped-def]
            parsed = [
                p
                for p in detector.parser.parse_many(read_lines(path))
                if isinstance(p, Parsed) and p.class_uid == c
            ]
            return parsed, pipeline.transform_parsed(parsed)  # noqa: B023

        _, base = matrix(args.baseline)
        live_p, live = matrix(args.events)
        y = np.array([labels.get(event_uid(p.event) or "", 0) for p in live_p])
        if y.min() == y.max():
            continue
        cards = pipeline.cardinalities
        tr, te = base.dense(cards), live.dense(cards)
        target = for_features(TrainConfig(), pipeline, base.categorical)  # the isometry's
        cw, novel = target.category_weights, (pipeline.novel_columns, target.novel_weight)
        tr_w, te_w = base.dense(cards, cw, novel), live.dense(cards, cw, novel)
        row: dict[str, object] = {
            "events": len(y),
            "malicious": int(y.sum()),
            "raw_knn": quality(y, knn_score(tr, te, args.k)),
            "weighted_raw_knn": quality(y, knn_score(tr_w, te_w, args.k)),
            "isolation_forest": quality(
                y, -IsolationForest(n_estimators=200, random_state=0).fit(tr).score_samples(te)
            ),
        }
        for method in args.methods.split(","):
            start = time.perf_counter()
            model, _ = train_embedding(
                base.numeric,
                base.categorical,
                cards,
                for_features(TrainConfig(method=method), pipeline, base.categorical),
            )
            s = knn_score(
                embed(model, base.numeric, base.categorical),
                embed(model, live.numeric, live.categorical),
                args.k,
            )
            row[f"embedding_{method}"] = {
                **quality(y, s),
                "train_seconds": round(time.perf_counter() - start, 1),
            }
        result[str(c)] = row
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
