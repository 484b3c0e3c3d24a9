"""Detection quality against labels, next to two references on the same features:
IsolationForest and exact k-NN (mean distance to the k nearest baseline events on the
raw feature matrix). Needs scikit-learn (the ``train`` extra)."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocsf_detect.detector.index import exact_knn, knn_score
from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.ocsf.outcomes import Parsed, Rejected
from ocsf_detect_tools.eventio import event_uid

if TYPE_CHECKING:
    from ocsf_detect_tools.config import DetectorConfig


class EvaluationError(Exception):
    """Inputs that cannot be evaluated (no labels joined, one class only, ...)."""


class NothingScoredError(EvaluationError):
    """Not one event was scored: ``rejected`` of ``total`` were rejected, the rest were of
    classes without a model."""

    def __init__(self, message: str, rejected: int, total: int) -> None:
        super().__init__(message)
        self.rejected = rejected
        self.total = total


MAX_REFERENCE_EVENTS = 50_000


LABELS_EXPECTED = (
    "expected a CSV (or CSV.gz) with a header row naming uid and is_malicious (1/0) columns"
)


def read_label_table(path: Path) -> list[dict[str, str]]:
    """The rows of a labels CSV (plain, or gzip by name or magic bytes) as dicts, after
    checking the file is one. Raises ``EvaluationError`` with one line saying what the
    file is instead (missing, a directory, binary, not UTF-8, JSON, no header, ...)."""
    import gzip
    import io
    import zlib

    path = Path(path)
    name = f"labels file {path}"
    if path.is_dir():
        raise EvaluationError(f"{name} is a directory; {LABELS_EXPECTED}")
    if not path.is_file():
        raise EvaluationError(f"{name} does not exist")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EvaluationError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if path.suffix == ".gz" or data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise EvaluationError(f"{name} is not a complete gzip file: {exc}") from exc
    if not data.strip():
        raise EvaluationError(f"{name} is empty; {LABELS_EXPECTED}")
    if b"\x00" in data[:4096]:
        raise EvaluationError(f"{name} holds binary data; {LABELS_EXPECTED}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise EvaluationError(
            f"{name} is not UTF-8 text (byte {exc.start}); {LABELS_EXPECTED}"
        ) from exc
    if text.lstrip()[:1] in ("{", "["):
        raise EvaluationError(f"{name} holds JSON, not CSV; {LABELS_EXPECTED}")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = {"uid", "is_malicious"} - set(header)
    if missing:
        first = text.split("\n", 1)[0][:60]
        raise EvaluationError(
            f"{name}: missing column(s) {', '.join(sorted(missing))} in the header "
            f"{first!r}; {LABELS_EXPECTED}"
        )
    reader.fieldnames = header
    try:
        return [{**row, "_line": str(reader.line_num)} for row in reader]
    except csv.Error as exc:
        raise EvaluationError(f"{name}: not valid CSV at line {reader.line_num}: {exc}") from exc


def read_labels(path: Path) -> dict[str, int]:
    """uid -> is_malicious (1/0) from a CSV with ``uid`` and ``is_malicious`` columns."""
    out = {}
    for row in read_label_table(path):
        try:
            value = float(row["is_malicious"])
        except (TypeError, ValueError):
            value = math.nan
        if value not in (0.0, 1.0):
            raise EvaluationError(
                f"{path}: is_malicious must be 1 or 0, got {row['is_malicious']!r} "
                f"(line {row['_line']})"
            )
        out[row["uid"]] = int(value)
    return out


@dataclass
class Metrics:
    roc_auc: float
    average_precision: float
    precision_at_k: float
    k: int
    threshold_recall: float
    threshold_precision: float
    alerts: int

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> Metrics:
    from sklearn.metrics import average_precision_score, roc_auc_score

    k = int(y.sum())
    top = np.argsort(-scores, kind="stable")[:k]
    alerts = scores >= threshold
    tp = int((alerts & (y == 1)).sum())
    return Metrics(
        roc_auc=float(roc_auc_score(y, scores)),
        average_precision=float(average_precision_score(y, scores)),
        precision_at_k=float(y[top].mean()) if k else 0.0,
        k=k,
        threshold_recall=tp / k if k else 0.0,
        threshold_precision=tp / int(alerts.sum()) if alerts.any() else 0.0,
        alerts=int(alerts.sum()),
    )


@dataclass
class Evaluation:
    n_events: int
    n_scored: int
    n_labeled: int
    n_malicious: int
    ours: Metrics
    baselines: dict[str, Metrics]
    reference_fit: str
    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    n_rejected: int = 0
    # Scores of the references, per event of ``labels``, relative to their own threshold.
    reference_scores: dict[str, np.ndarray] = field(default_factory=dict)
    relative: bool = False  # ``scores`` are score / threshold (several classes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_scored": self.n_scored,
            "n_labeled": self.n_labeled,
            "n_malicious": self.n_malicious,
            "n_rejected": self.n_rejected,
            **self.ours.as_dict(),
            "reference_fit": self.reference_fit,
            "baselines": {name: m.as_dict() for name, m in self.baselines.items()},
        }


def evaluate(
    detector: Detector,
    lines: list[bytes],
    labels: dict[str, int],
    baseline_lines: list[bytes] | None = None,
    alert_rate: float | None = None,
) -> Evaluation:
    parsed = detector.parser.parse_many(lines)
    outcomes = detector.score_parsed(parsed)
    scored = [
        (o, labels.get(event_uid(o.event) or ""), p)
        for o, p in zip(outcomes, parsed, strict=True)
        if isinstance(o, Scored) and isinstance(p, Parsed)
    ]
    joined = [(o, y) for o, y, _ in scored if y is not None]
    joined_parsed = [p for _, y, p in scored if y is not None]
    if not scored:
        rejected = sum(isinstance(p, Rejected) for p in parsed)
        raise NothingScoredError(
            f"none of the {len(lines):,} events was scored ({rejected:,} rejected, "
            f"{len(lines) - rejected:,} of classes the bundle has no model for); "
            "run ocsf-detect score on them to see each one's reason",
            rejected,
            len(lines),
        )
    if not joined:
        raise EvaluationError(
            f"no scored event's metadata.uid matches a uid in the labels "
            f"({len(scored):,} scored, {len(labels):,} labels)"
        )
    y = np.array([lab for _, lab in joined], dtype=np.int64)
    if y.min() == y.max():
        raise EvaluationError("labels of the scored events are all one class; need both")
    scores = np.array([o.score for o, _ in joined])
    ratio = np.array([o.score / o.threshold if o.threshold > 0 else o.score for o, _ in joined])
    # Several classes: compare across class models by score relative to each threshold.
    multi = len({o.class_uid for o, _ in joined}) > 1
    ours_scores = ratio if multi else scores
    threshold = 1.0 if multi else joined[0][0].threshold
    ours = metrics(y, ours_scores, threshold)
    baselines, fit, reference_scores = _references(
        detector, joined, joined_parsed, y, baseline_lines, alert_rate
    )
    return Evaluation(
        n_events=len(lines),
        n_scored=len(scored),
        n_labeled=len(joined),
        n_malicious=int(y.sum()),
        ours=ours,
        baselines=baselines,
        reference_fit=fit,
        scores=ours_scores,
        labels=y,
        threshold=threshold,
        n_rejected=sum(isinstance(p, Rejected) for p in parsed),
        reference_scores=reference_scores,
        relative=multi,
    )


def _knn_scores(
    reference: np.ndarray, queries: np.ndarray, k: int, own_rows: np.ndarray | None
) -> np.ndarray:
    """Mean distance to the k nearest reference rows. ``own_rows[j]`` is the query row
    that reference row j is (when the references are drawn from the queries): a query
    never counts itself as its own neighbour."""
    labels, d = exact_knn(reference, queries, k + 1 if own_rows is not None else k)
    if own_rows is None:
        return np.asarray(d.mean(axis=1))
    member = np.full(len(queries), -1)
    member[own_rows] = np.arange(len(own_rows))
    return np.asarray(_without_self(labels, d, member)[1].mean(axis=1))


def _without_self(
    labels: np.ndarray, d: np.ndarray, member: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """k of the k + 1 neighbours of each query: the query itself dropped where it was
    found (``member[q]``: the reference row that query q is, -1 none), else the farthest."""
    is_self = labels == member[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), d.shape[1] - 1)
    keep = np.ones(d.shape, dtype=bool)
    keep[np.arange(len(d)), drop] = False
    rest = (len(d), d.shape[1] - 1)
    return labels[keep].reshape(rest), d[keep].reshape(rest)


def _dense(detector: Detector, class_uid: int, parsed: list[Parsed]) -> np.ndarray:
    pipeline = detector.pipeline(class_uid)
    return pipeline.transform_parsed(parsed).dense(pipeline.cardinalities)


def _references(
    detector: Detector,
    joined: list[tuple[Scored, int]],
    joined_parsed: list[Parsed],
    y: np.ndarray,
    baseline_lines: list[bytes] | None,
    alert_rate: float | None,
) -> tuple[dict[str, Metrics], str, dict[str, np.ndarray]]:
    from sklearn.ensemble import IsolationForest

    classes = sorted({o.class_uid for o, _ in joined})
    iso = np.zeros(len(joined))
    knn_s = np.zeros(len(joined))
    iso_thr = np.zeros(len(joined))
    knn_thr = np.zeros(len(joined))
    fit = "baseline events" if baseline_lines else "the evaluated events (transductive)"
    base_parsed: dict[int, list[Parsed]] = {}
    if baseline_lines:
        for p in detector.parser.parse_many(baseline_lines):
            if isinstance(p, Parsed):
                base_parsed.setdefault(p.class_uid, []).append(p)
    rng = np.random.default_rng(0)
    sampled = False
    without_baseline: list[int] = []
    for c in classes:
        rows = [i for i, (o, _) in enumerate(joined) if o.class_uid == c]
        test_p = [joined_parsed[i] for i in rows]
        x = _dense(detector, c, test_p)
        transductive = not base_parsed.get(c)
        if transductive and baseline_lines:
            without_baseline.append(c)
        train_x = x if transductive else _dense(detector, c, base_parsed[c])
        # Exact k-NN costs (reference events x evaluated events): a random sample of at
        # most MAX_REFERENCE_EVENTS keeps a million-event file to minutes, not hours.
        picked = np.arange(len(train_x))
        if len(train_x) > MAX_REFERENCE_EVENTS:
            picked = np.sort(rng.choice(len(train_x), MAX_REFERENCE_EVENTS, replace=False))
            train_x = train_x[picked]
            sampled = True
        k = min(detector.manifest.models[str(c)].index.k, max(1, len(train_x) - 1))
        rate = alert_rate or detector.manifest.models[str(c)].alert_rate
        forest = IsolationForest(n_estimators=200, random_state=0).fit(train_x)
        iso[rows] = -forest.score_samples(x)
        knn_s[rows] = _knn_scores(train_x, x, k, picked if transductive else None)
        # References get a threshold the same way: the (1 - rate) quantile on normal data.
        iso_base = -forest.score_samples(train_x)
        iso_thr[rows] = np.quantile(iso_base, 1 - rate)
        own = _knn_scores(train_x, train_x, k, np.arange(len(train_x)))
        knn_thr[rows] = np.quantile(own, 1 - rate)
    if without_baseline:
        fit += (
            "; for class(es) "
            + ", ".join(map(str, without_baseline))
            + ", absent from the baseline, the evaluated events (transductive)"
        )
    if sampled:
        fit += f" (a random {MAX_REFERENCE_EVENTS:,} per class)"
    relative = {
        "isolation_forest": iso / iso_thr,
        "exact_knn": knn_s / np.maximum(knn_thr, 1e-12),
    }
    return {name: metrics(y, r, 1.0) for name, r in relative.items()}, fit, relative


def write_plots(ev: Evaluation, out_dir: Path) -> list[Path]:
    """roc.png, pr.png and scores.png in ``out_dir``: ocsf-detect's curves with the
    references' (the ones the table compares against) and the chance level. The files
    are drawn in a temporary directory beside ``out_dir`` and moved in when all are
    complete: an interrupted run leaves no partial image."""
    import shutil
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(20, "--plots must be a directory, not a file", str(out_dir))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    names = {"isolation_forest": "IsolationForest", "exact_knn": "exact k-NN"}
    curves = [("ocsf-detect", ev.scores, ev.ours)] + [
        (names.get(n, n), ev.reference_scores[n], m)
        for n, m in ev.baselines.items()
        if n in ev.reference_scores
    ]
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        fig, ax = plt.subplots(figsize=(5, 5))
        for label, scores, m in curves:
            fpr, tpr, _ = roc_curve(ev.labels, scores)
            ax.plot(fpr, tpr, label=f"{label} (AUC {m.roc_auc:.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance (AUC 0.5)")
        ax.set(
            xlabel="false positive rate (share of benign events alerted)",
            ylabel="true positive rate (share of malicious events alerted)",
            title=f"ROC, {len(ev.labels):,} labeled events",
        )
        ax.legend(loc="lower right", fontsize="small")
        fig.savefig(staging / "roc.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(5, 5))
        for label, scores, m in curves:
            prec, rec, _ = precision_recall_curve(ev.labels, scores)
            ax.plot(rec, prec, label=f"{label} (AP {m.average_precision:.3f})")
        base_rate = float(ev.labels.mean())
        ax.axhline(base_rate, color="k", ls="--", lw=0.8, label=f"chance ({base_rate:.3f})")
        ax.set(
            xlabel="recall (share of malicious events alerted)",
            ylabel="precision (share of alerts that are malicious)",
            title="Precision-recall",
            ylim=(0, 1.02),
        )
        ax.legend(loc="upper right", fontsize="small")
        fig.savefig(staging / "pr.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(6, 4))
        bins = np.linspace(ev.scores.min(), ev.scores.max(), 60).tolist()
        ax.hist(ev.scores[ev.labels == 0], bins=bins, alpha=0.6, label="benign", log=True)
        ax.hist(ev.scores[ev.labels == 1], bins=bins, alpha=0.6, label="malicious", log=True)
        ax.axvline(ev.threshold, color="k", ls="--", lw=1, label="threshold")
        xlabel = (
            "score / its class's threshold (1 = the alert threshold)"
            if ev.relative
            else "score (distance to the nearest normal baseline behaviours)"
        )
        ax.set(xlabel=xlabel, ylabel="events (log scale)", title="Scores")
        ax.legend()
        fig.savefig(staging / "scores.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        out_dir.mkdir(exist_ok=True)
        paths = []
        for name in ("roc.png", "pr.png", "scores.png"):
            os.replace(staging / name, out_dir / name)
            paths.append(out_dir / name)
        return paths
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def weighted_knn_scores(
    train_lines: Sequence[bytes],
    test_lines: Sequence[bytes],
    config: DetectorConfig,
    exclude_self: bool = False,
) -> np.ndarray:
    """The model-free variant of the detector: exact k-NN on the weighted feature space
    the isometry objective preserves, with the build's own index treatment. One score
    per line of ``test_lines`` (NaN where the line is not scored: rejected, unsupported,
    or a class without a model); scores of different classes are not comparable.

    Mirrors ``build._build`` per class: the same held-out share is left out of the index
    (the same seeded permutation for the first class; the build draws more from the same
    generator between classes, so later classes hold out an equal share, not the same
    events), the spec is fitted on the rest, and the indexed rows
    are chosen by the build's own ``_indexed_rows`` (screening + distinct-behaviour net),
    here with the weighted features in place of the embedding (their distance ratio is 1,
    so the radius is in the same units). Scoring mirrors the scorer's rule
    (``detector/scorer.py: serve_scores``): the mean distance to the ``index.k`` nearest
    baseline events, each indexed row standing for its mass (``index.knn_score``),
    searched exactly, and, with ``config.isolation.enabled``, the same
    isolation trees grown on the same rows, both turned into surprises against the
    held-out share and summed (``detector/surprise.py``), and, for a class whose baseline
    is spread, the fine view's surprise added (``detector/fine.py``: the nearest of every
    baseline event, exactly). If the scorer's rule changes, change this with it.

    ``exclude_self``: an indexed event scored again (a contaminated baseline) is not its
    own neighbour (matched by ``metadata.uid``); the served path has no such rule, so
    False mirrors it."""
    from ocsf_detect.detector.fine import is_spread
    from ocsf_detect.detector.surprise import combined
    from ocsf_detect.features.pipeline import FeaturePipeline, fit_spec
    from ocsf_detect.ocsf.parser import EventParser
    from ocsf_detect_tools.build import (
        _grow_isolation,
        _indexed_rows,
        _reparse,
        fit_fine,
        fit_tails,
        parser_for,
    )
    from ocsf_detect_tools.training.weights import category_weights

    specs = config.class_specs()
    parser = EventParser({uid: FeaturePipeline(s).plan for uid, s in specs.items()})
    train_by: dict[int, list[Parsed]] = {}
    for p in parser.parse_many(list(train_lines)):
        if isinstance(p, Parsed):
            train_by.setdefault(p.class_uid, []).append(p)
    test_parsed = parser.parse_many(list(test_lines))
    scores = np.full(len(test_lines), np.nan)
    rng = np.random.default_rng(config.train.seed)  # as the build: one stream over classes
    for class_uid, parsed in sorted(train_by.items()):
        if len(parsed) < config.min_class_events:
            continue
        order = rng.permutation(len(parsed))
        n_hold = max(1, int(len(parsed) * config.holdout))
        train = [parsed[i] for i in order[n_hold:]]
        hold = [parsed[i] for i in order[:n_hold]]
        times = np.array([p.time_ms for p in train], dtype=np.int64)
        pipeline = FeaturePipeline(fit_spec(specs[class_uid], [p.event for p in train], times))
        train_p = _reparse(parser_for(pipeline), train)
        matrix = pipeline.transform_parsed(train_p)
        weights = tuple(
            float(w)
            for w in category_weights(
                matrix.categorical,
                config.train.category_weight,
                config.train.share_redundant_categories,
            )
        )
        space = _weighted(matrix, pipeline, config, weights)
        train_times = np.array([p.time_ms for p in train_p], dtype=np.int64)
        indexed = _indexed_rows(space, matrix, pipeline, config, train_times, weights)
        keep, mass = indexed.rows, indexed.mass
        rows = [
            i
            for i, p in enumerate(test_parsed)
            if isinstance(p, Parsed) and p.class_uid == class_uid
        ]
        if not rows:
            continue
        first = [p for p in (test_parsed[i] for i in rows) if isinstance(p, Parsed)]
        queries_p = _reparse(parser_for(pipeline), first)
        if len(queries_p) != len(rows):  # the fitted plan may reject what the first did not
            kept = {id(p.event) for p in queries_p}
            rows = [i for i in rows if id(test_parsed[i].event) in kept]  # type: ignore[union-attr]
        queries = _weighted(pipeline.transform_parsed(queries_p), pipeline, config, weights)
        own = None
        if exclude_self:
            position = {event_uid(p.event): j for j, p in enumerate(queries_p)}
            own = np.array(
                [position.get(event_uid(train_p[i].event), -1) for i in keep], dtype=np.int64
            )
        distance, nearest = _knn_rule(space[keep], queries, config.index.k, own, mass)
        if not config.isolation.enabled:
            scores[rows] = distance
            continue
        trees = _grow_isolation(matrix.take(keep), pipeline, config)
        hold_m = pipeline.transform_parsed(_reparse(parser_for(pipeline), hold))
        hold_w = _weighted(hold_m, pipeline, config, weights)
        hold_distance, _ = _knn_rule(space[keep], hold_w, config.index.k, None, mass)
        tails = fit_tails(hold_distance, trees.scores(hold_m.numeric, hold_m.categorical), config)
        query_m = pipeline.transform_parsed(queries_p)
        isolation = trees.scores(query_m.numeric, query_m.categorical)
        # the weighted space is the embedding's target, so the radius is in its units
        covered = (
            nearest <= config.index.distinct_radius if config.isolation.scope == "covered" else None
        )
        scores[rows] = combined(distance, isolation, tails, covered)
        if config.fine.enabled and is_spread(indexed.top_share, config.fine.flood_share):
            # the fine view as the build fits it (``build.fit_fine``), on these rows
            fine = fit_fine(space, hold_w, config)
            scores[rows] += fine.tail.surprise(exact_knn(fine.vectors, queries, 1)[1][:, 0])
    return scores


def _weighted(
    matrix: Any, pipeline: Any, config: DetectorConfig, weights: Sequence[float]
) -> np.ndarray:
    """The space the isometry objective preserves (as ``build._indexed_rows`` measures
    the distinct radius in); ``weights``: the class's per-field category weights."""
    from ocsf_detect.detector.scorer import space_rows

    return space_rows(pipeline, matrix, weights, config.train.novel_weight)


def _knn_rule(
    indexed: np.ndarray,
    queries: np.ndarray,
    k: int,
    own_rows: np.ndarray | None,
    mass: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's rule (``index.knn_score``), searched exactly: mean distance to the k
    nearest baseline events, each indexed row standing for its ``mass`` (k capped at the
    index size), and the distance to the nearest (what decides whether the baseline
    covers the query). ``own_rows[j]``: the query row that indexed row j is (-1: none),
    left out of that query's neighbours."""
    if own_rows is None:
        labels, d = exact_knn(indexed, queries, min(k, len(indexed)))
        return knn_score(labels, d, mass), d[:, 0]
    k = max(1, min(k, len(indexed) - 1))
    labels, d = exact_knn(indexed, queries, k + 1)
    member = np.full(len(queries), -1)
    mine = own_rows >= 0
    member[own_rows[mine]] = np.flatnonzero(mine)
    labels, d = _without_self(labels, d, member)
    return knn_score(labels, d, mass), d[:, 0]
