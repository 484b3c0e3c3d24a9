"""Each view of the served score on its own, per case, protocol and seed: where the sum
of the views' evidence gains on its best view and where a weak view pulls it down.

    python benchmarks/views.py [--out-dir .eval] [--only nsl-kdd,unsw-nb15] [--seeds 0,1,2]

Reads the bundles ``evaluate_shared.py`` builds (the same ``--out-dir`` and keys; a
missing bundle is built, as there) and scores each case's events view by view with the
bundle's own parts (``ocsf_detect.detector``): the k-NN view's evidence (its surprise
beyond its floor), the isolation trees' evidence, the fine view's, and the served score,
next to the plain references. The views come from the HNSW search, before the served
path's exact re-check of the events that reach the threshold, so a view's numbers can
differ from the served score's by that re-check. ROC-AUC and AP per column; a view
whose evidence is zero for most events (a floor) ranks those as ties; a fine view with no
evidence for any event (none in the bundle, or none that reaches a recorded event, as in
the contaminated protocol) is shown as "–". A second table gives each column's worst
seed per row, next to the best plain reference (docs/results.md, "Each view on its own").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from cases import load_cases, uid_of_line
from evaluate_shared import MIN_CLASS_EVENTS, Harness, build_code_digest, ranking

from ocsf_detect.detector.bundle import embedding_of
from ocsf_detect.detector.index import knn_score
from ocsf_detect.detector.scorer import (
    Detector,
    Scored,
    covered_by,
    feature_rerank,
    fine_features,
    isolation_of,
    nearest_behaviours,
)
from ocsf_detect.detector.surprise import evidence, trees_judge
from ocsf_detect.ocsf.outcomes import Parsed
from ocsf_detect_tools.config import load_config

VIEWS = ("served", "knn", "trees", "fine")


def view_scores(detector: Detector, lines: Sequence[bytes]) -> dict[str, np.ndarray]:
    """Per event: the served score and each view's evidence (NaN: not scored), and
    ``bound``: the three with the trees counted for every event, what decides the served
    path's exact re-check (an event whose bound reaches its class's threshold)."""
    n = len(lines)
    out = {name: np.full(n, np.nan) for name in (*VIEWS, "bound")}
    served = detector.score_batch(lines)
    out["served"][:] = [o.score if isinstance(o, Scored) else np.nan for o in served]
    parsed = detector.parser.parse_many(lines)
    by_class: dict[int, list[int]] = {}
    for i, p in enumerate(parsed):
        if isinstance(p, Parsed):
            by_class.setdefault(p.class_uid, []).append(i)
    for class_uid, rows in by_class.items():
        loaded = detector._classes[class_uid]
        info = loaded.info
        matrix = detector.pipeline(class_uid).transform_parsed([parsed[i] for i in rows])
        emb = embedding_of(loaded.session, info, matrix.numeric, matrix.categorical)
        space = feature_rerank(loaded, detector.pipeline(class_uid), matrix)
        labels, dists = nearest_behaviours(loaded.index, emb, info.index.k, space)
        isolation = isolation_of(loaded.isolation, matrix.numeric, matrix.categorical)
        tails = None if info.tails is None else (info.tails.knn, info.tails.isolation)
        parts = evidence(knn_score(labels, dists, loaded.mass), isolation, tails)
        if parts is None:
            continue
        # the trees' evidence as the served sum counts it (``surprise.summed``)
        cover = None if info.isolation is None else info.isolation.cover()
        judged = trees_judge(parts, covered_by(dists, cover))
        trees = parts.trees
        if judged is not None:
            uncovered = parts.trees_uncovered
            trees = np.where(judged, trees, 0.0 if uncovered is None else uncovered)
        out["knn"][rows] = parts.knn
        out["trees"][rows] = trees
        fine = np.zeros(len(rows))
        if loaded.fine is not None:
            known = dists[:, 0] if space is None else None
            rows_of = fine_features(loaded, detector.pipeline(class_uid), matrix)
            near = labels if space is None else None
            nearest = loaded.fine.nearest(emb, known, rows_of, near)
            fine = out["fine"][rows] = loaded.fine.evidence(nearest)
        out["bound"][rows] = parts.knn + parts.trees + fine
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out-dir", type=Path, default=Path(".eval"))
    ap.add_argument("--only", help="comma-separated case names")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    # the config evaluate_shared.py builds its bundles with (the same cache keys)
    config = load_config(None).model_copy(update={"min_class_events": MIN_CLASS_EVENTS})
    harness = Harness(args.out_dir, build_code_digest())
    only = set(args.only.split(",")) if args.only else None
    refs_short = {"isolation_forest": "IF", "knn_5": "kNN5", "knn_20": "kNN20"}
    metrics = (("average_precision", "AP"), ("roc_auc", "ROC-AUC"))
    columns = ["served", "k-NN view", "trees", "fine view", *refs_short.values()]
    print("| case | protocol | seed | metric | " + " | ".join(columns) + " |")
    print("|---" * (4 + len(columns)) + "|")
    # (case, protocol) -> metric -> view -> one value per seed; and the best reference
    per_row: dict[tuple[str, str], dict[str, dict[str, list[float]]]] = {}
    best: dict[tuple[str, str], dict[str, float]] = {}
    for case in load_cases(only=only):
        if case.benign_only:
            continue
        y = np.array([case.labels[uid_of_line(x)] for x in case.test], dtype=np.int64)
        refs = harness.references(case)
        ref_metrics = {n: ranking(y, np.asarray(refs[n], dtype=float)) for n in refs_short}
        row = per_row.setdefault((case.name, case.protocol), {m: {} for m, _ in metrics})
        best[(case.name, case.protocol)] = {
            m: max(r[m] for r in ref_metrics.values()) for m, _ in metrics
        }
        for seed in seeds:
            bundle = harness.bundle(case, config, seed)
            views = view_scores(Detector.load(bundle), case.test)
            for metric, short in metrics:
                cells = []
                for name in VIEWS:
                    v = views[name]
                    if name == "fine" and not np.any(np.nan_to_num(v)):
                        cells.append("–")  # no fine view, or none that reaches an event
                        continue
                    value = ranking(y, v)[metric]
                    row[metric].setdefault(name, []).append(value)
                    cells.append(f"{value:.3f}")
                cells += [f"{ref_metrics[n][metric]:.3f}" for n in refs_short]
                head = f"| {case.name} | {case.protocol} | {seed} | {short} | "
                print(head + " | ".join(cells) + " |")
    # each column's worst seed (so one row's cells can come from different seeds)
    print()
    head = ["served", "k-NN view", "trees", "fine view", "best reference"]
    print(
        "| case | protocol | "
        + " | ".join(
            f"{short}: {h}" if i == 0 else h
            for short in ("AP", "ROC-AUC")
            for i, h in enumerate(head)
        )
        + " |"
    )
    print("|---" * (2 + 2 * len(head)) + "|")
    for key, row in per_row.items():
        cells = []
        for metric, _ in metrics:
            for name in VIEWS:
                values = row[metric].get(name)
                cells.append(f"{min(values):.3f}" if values else "–")
            cells.append(f"{best[key][metric]:.3f}")
        print(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
