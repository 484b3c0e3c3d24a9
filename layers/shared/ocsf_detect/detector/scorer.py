"""Vectorised scoring: a batch of raw records in, one outcome per record out.

Pure: no AWS calls, no environment. Per class present in the batch: one feature
transform, one ONNX run, one k-NN query, vectorised thresholding and severity.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ocsf_detect.detector.bundle import LoadedClass, embedding_of, load_bundle
from ocsf_detect.detector.calibrate import SEVERITY_NAMES, severity_ids
from ocsf_detect.detector.explain import Explainer, ExplanationTable, Reason
from ocsf_detect.detector.fine import FineView, fine_queries
from ocsf_detect.detector.index import (
    RECHECK_MIN,
    RECHECK_SHARE,
    ExactBase,
    closest_rows,
    knn,
    knn_score,
    recheck,
    rerank,
)
from ocsf_detect.detector.manifest import Manifest
from ocsf_detect.detector.overlay import FeedbackOverlay, Judged, overlay_scores
from ocsf_detect.detector.surprise import IsolationTrees, Tail, combined, evidence, summed
from ocsf_detect.features.pipeline import FeatureMatrix, FeaturePipeline
from ocsf_detect.gcpause import gc_paused
from ocsf_detect.ocsf.classes import class_name
from ocsf_detect.ocsf.outcomes import Parsed, Rejected, Unsupported
from ocsf_detect.ocsf.parser import EventParser, check_object

EXPLAIN_NEIGHBORS = 3
STAGES = ("decode", "features", "onnx", "knn", "threshold", "explain")


class NeighborTable:
    """The k-NN result of one class batch, shared by its ``Scored`` outcomes: building
    per-event lists eagerly would cost more than the k-NN query itself."""

    __slots__ = ("_rows", "distances", "ids", "labels")

    def __init__(self, labels: np.ndarray, distances: np.ndarray, ids: list[str] | None) -> None:
        self.labels = labels[:, :EXPLAIN_NEIGHBORS]
        self.distances = distances[:, :EXPLAIN_NEIGHBORS]
        self.ids = ids
        self._rows: tuple[list[list[int]], list[list[float]]] | None = None

    def row(self, i: int) -> list[tuple[str, float]]:
        if self._rows is None:  # once per batch: per-row numpy indexing costs far more
            self._rows = (self.labels.tolist(), np.round(self.distances, 6).tolist())
        labels, distances = self._rows
        ids = self.ids
        return [
            (ids[j] if ids else str(j), d) for j, d in zip(labels[i], distances[i], strict=True)
        ]


@dataclass(slots=True)
class Scored:
    """A scored event. ``neighbors``: (baseline event id, distance) of the nearest normal
    events, nearest first, to explain the score; ``explanation``: for an anomaly, the
    features that differ most from the baseline (``detector.explain``), else empty."""

    class_uid: int
    time_ms: int
    score: float
    threshold: float
    is_anomaly: bool
    severity_id: int
    parsed: Parsed  # what the parser read: the event is decoded from it only if asked
    table: NeighborTable
    row: int
    status: Literal["scored"] = "scored"
    reasons: ExplanationTable | None = None

    @property
    def severity(self) -> str:
        return SEVERITY_NAMES[self.severity_id]

    @property
    def event(self) -> dict[str, Any]:
        """The event exactly as it came (decoded on first use: most events never alert)."""
        return self.parsed.event

    @property
    def neighbors(self) -> list[tuple[str, float]]:
        return self.table.row(self.row)

    @property
    def explanation(self) -> list[Reason]:
        """Why an anomaly fired (``detector.explain``); empty for a normal event."""
        return self.reasons.row(self.row) if self.reasons is not None else []

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "class_uid": self.class_uid,
            "class_name": class_name(self.class_uid),
            "score": self.score,
            "threshold": self.threshold,
            "is_anomaly": self.is_anomaly,
            "severity_id": self.severity_id,
            "severity": self.severity,
            "neighbors": [{"id": i, "distance": d} for i, d in self.neighbors],
            "explanation": [r.as_dict() for r in self.explanation],
        }


Outcome = Scored | Unsupported | Rejected


def outcome_dict(outcome: Outcome) -> dict[str, Any]:
    """JSON-ready form of any outcome (used by the CLI and the API)."""
    if isinstance(outcome, Scored):
        return outcome.as_dict()
    if isinstance(outcome, Unsupported):
        out: dict[str, Any] = {
            "status": outcome.status,
            "class_uid": outcome.class_uid,
            "class_name": class_name(outcome.class_uid),
        }
        if outcome.reason is not None:  # the bundle says why the class has no model
            out["reason"] = outcome.reason.value
            out["baseline_events"] = outcome.baseline_events
        return out
    return {"status": outcome.status, **outcome.as_dict()}


@dataclass
class RecheckCounts:
    """Scores that reached the threshold, accumulated over calls: re-checked by exact
    search, or left to HNSW alone because the batch's re-check limit was reached (a
    flood of anomalies, or a bundle that does not fit the traffic)."""

    rechecked: int = 0
    unchecked: int = 0


@dataclass
class StageTimes:
    """Milliseconds per stage, accumulated over calls (for benchmarks and metrics)."""

    ms: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))

    def add(self, stage: str, seconds: float) -> None:
        self.ms[stage] += seconds * 1000.0


@dataclass(frozen=True)
class ServedScores:
    """What the serving path computes for a class batch: scores, the k-NN result behind
    them, and how many reached the threshold with and without an exact re-check."""

    scores: np.ndarray  # float32
    labels: np.ndarray
    dists: np.ndarray
    rechecked: int
    unchecked: int
    silenced: int = 0  # at or above the threshold by the bundle, below it by the overlay


def isolation_of(
    trees: IsolationTrees | None, numeric: np.ndarray, categorical: np.ndarray
) -> np.ndarray | None:
    return trees.scores(numeric, categorical) if trees is not None else None


def covered_by(dists: np.ndarray, cover_radius: float | None) -> np.ndarray | None:
    """Whether each event's nearest indexed vector (``dists[:, 0]``, nearest first) lies
    within ``cover_radius``; None where every event counts as covered."""
    if cover_radius is None:
        return None
    return np.asarray(dists[:, 0] <= cover_radius)


@dataclass(frozen=True)
class FeatureRerank:
    """A batch's rows in the class's weighted feature space, with the indexed behaviours'
    (bundle format 12): the index retrieves ``candidates`` per event by embedding, and
    distances in this space decide the k nearest (``index.rerank``)."""

    base: np.ndarray
    exact: Callable[[], ExactBase]  # ``base`` as exact search reads it, for the re-check
    queries: np.ndarray
    candidates: int


def space_rows(
    pipeline: FeaturePipeline,
    matrix: FeatureMatrix,
    weights: Sequence[float],
    novel_weight: float,
) -> np.ndarray:
    """Rows in the weighted feature space the embedding preserves (float32): numeric
    columns, the novel-amount ones times ``novel_weight``, and each categorical field's
    one-hot times its weight (``FeatureMatrix.dense``)."""
    return np.asarray(
        matrix.dense(pipeline.cardinalities, weights, (pipeline.novel_columns, novel_weight)),
        dtype=np.float32,
    )


def feature_rerank(
    loaded: LoadedClass, pipeline: FeaturePipeline, matrix: FeatureMatrix
) -> FeatureRerank | None:
    """What a class batch re-ranks with in a format-12 bundle; None for a class whose
    index has no feature space."""
    ix = loaded.info.index
    if loaded.space is None or ix.space_weights is None:
        return None
    return FeatureRerank(
        loaded.space,
        lambda: loaded.space_exact,
        space_rows(pipeline, matrix, ix.space_weights, ix.space_novel_weight),
        ix.rerank_candidates,
    )


def fine_features(
    loaded: LoadedClass, pipeline: FeaturePipeline, matrix: FeatureMatrix
) -> tuple[np.ndarray, np.ndarray] | None:
    """A class batch's rows as its fine view measures them (format 15: ``FineRows``);
    None for a class whose fine view, if any, measures the embedding."""
    fine = loaded.info.fine
    if fine is None or not fine.in_features:
        return None
    return fine_queries(matrix, pipeline.novel_columns, fine.novel_weight or 1.0)


def nearest_behaviours(
    index: Any, emb: np.ndarray, k: int, space: FeatureRerank | None
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest indexed behaviours of each event: by the index alone, or (format
    12) its ``space.candidates`` nearest re-ranked in the feature space."""
    if space is None:
        return knn(index, emb, k)
    candidates, _ = knn(index, emb, max(k, space.candidates))
    return rerank(space.base, space.queries, candidates, k)


def serve_scores(
    index: Any,
    exact: Callable[[], ExactBase],
    emb: np.ndarray,
    k: int,
    isolation: np.ndarray | None,
    tails: tuple[Tail, Tail] | None,
    threshold: float,
    mass: np.ndarray | None = None,
    overlay_distance: np.ndarray | None = None,
    cover_radius: float | None = None,
    space: FeatureRerank | None = None,
    fine: FineView | None = None,
    fine_rows: tuple[np.ndarray, np.ndarray] | None = None,
    overlay_fine_distance: np.ndarray | None = None,
) -> ServedScores:
    """Scores of a class batch as served (the build scores golden events with this too).

    Alerts are decided by exact search: a stalled HNSW search only ever inflates the
    k-NN distance, and the score grows with it, so only scores at or above the threshold
    (with the isolation view counted for every event: an upper bound) are re-checked, a
    bounded number per batch so that a flood of anomalies cannot multiply the cost.
    Under that limit the lowest upper bounds go first; where a fine view adds evidence,
    lowest by the served score without it (cover as the search found it): a fine search
    whose candidates miss an event's nearest baseline event adds evidence far beyond the
    exact one, and ranked with that evidence such an event was among the last re-checked
    under a flood, so whether it alerted depended on the batch it came in; an event the
    other views alone put over the threshold alerts whatever the fine view adds (unless
    the feedback overlay silences it, which ``rank`` counts too).
    ``exact``: the indexed vectors (``index.ExactBase``), read only when a re-check is
    needed. ``mass``: what each indexed behaviour stands for
    (``index.knn_score``); None in bundles before format 6. ``overlay_distance``: each
    event's distance to its nearest judged-benign vector (``detector.overlay``); the
    score is then the smaller of the bundle's and the overlay's. ``cover_radius``: the
    isolation view counts only for an event whose nearest indexed vector lies within it
    (``IsolationInfo.cover``); None: for every event. ``space`` (format 12): distances
    are measured in the weighted feature space among the index's candidates, and
    re-checked there; ``cover_radius`` and ``overlay_distance`` are then in its units.
    ``fine`` (format 13): the fine view's evidence is added (``detector.fine``), its
    nearest distance re-checked with the rest; ``fine_rows`` (format 15): the batch's rows
    as that view measures them (``fine_features``), and ``overlay_fine_distance`` each
    event's distance to its nearest judged-benign row there (``FeedbackOverlay.nearest_in_both``;
    without it, the overlay's distance is the embedding's, as that view measures in
    formats 13 and 14)."""
    labels, dists = nearest_behaviours(index, emb, k, space)
    distance = knn_score(labels, dists, mass)
    parts = evidence(distance, isolation, tails)
    if parts is None:
        scores = np.asarray(distance, dtype=np.float32)
        bound = scores
    else:
        scores = summed(parts, covered_by(dists, cover_radius))
        # A stalled search can also hide an event's cover (its nearest vector found too
        # far), which drops the trees' evidence; so what decides the re-check is the score
        # with the trees counted for every event, which no stalled search puts below the
        # exact score.
        bound = scores if cover_radius is None else summed(parts)
    rank = bound  # what orders the re-checks under the limit, lowest first
    fine_evidence = None
    if fine is not None and parts is not None:
        # the events whose alert rests most on the fine view first (see the docstring);
        # the served score, not its bound: an event whose cover a stalled search hid
        # (its trees' evidence dropped) comes earlier, which costs nothing
        rank = scores
        # the nearest behaviour is a baseline event too (in the embedding; format 12's
        # distances are the feature space's)
        known = dists[:, 0] if space is None else None
        near = labels if space is None else None
        fine_evidence = fine.evidence(fine.nearest(emb, known, fine_rows, near))
        scores = (scores + fine_evidence).astype(np.float32)
        bound = (bound + fine_evidence).astype(np.float32)
    judged = None
    if overlay_distance is not None:
        if fine is not None and fine.rows is not None and overlay_fine_distance is None:
            raise ValueError("this fine view measures the feature space: pass the overlay's rows")
        judged = overlay_scores(
            overlay_distance,
            tails,
            None if fine is None else fine.tail,
            overlay_fine_distance,
        )
    bundle_reached = None
    if judged is not None:
        bundle_reached = scores >= threshold
        np.minimum(scores, judged, out=scores)
        np.minimum(bound, judged, out=bound)
        rank = np.minimum(rank, judged)
    reached = bound >= threshold
    above = int(reached.sum())
    rows = np.zeros(0, dtype=np.int64)
    if above:
        limit = max(RECHECK_MIN, math.ceil(RECHECK_SHARE * len(emb)))
        rows = closest_rows(rank, reached, limit)
        if space is None:
            recheck(exact(), emb, labels, dists, rows)
        else:
            recheck(space.exact(), space.queries, labels, dists, rows)
        distance[rows] = knn_score(labels[rows], dists[rows], mass)
        rescored = combined(
            distance[rows],
            None if isolation is None else isolation[rows],
            tails,
            covered_by(dists[rows], cover_radius),
        )
        if fine is not None and fine_evidence is not None:
            rows_of = None if fine_rows is None else (fine_rows[0][rows], fine_rows[1][rows])
            nearest = fine.nearest_exact(emb[rows], rows_of)
            rescored = (rescored + fine.evidence(nearest)).astype(np.float32)
        scores[rows] = rescored
        if judged is not None:
            scores[rows] = np.minimum(scores[rows], judged[rows])
    silenced = 0
    if bundle_reached is not None:
        silenced = int((bundle_reached & (scores < threshold)).sum())
    return ServedScores(scores, labels, dists, len(rows), above - len(rows), silenced)


class Detector:
    """A loaded bundle, ready to score. Build once per process with ``Detector.load``."""

    def __init__(self, manifest: Manifest, loaded: dict[int, LoadedClass], load_ms: float) -> None:
        self.manifest = manifest
        self.load_ms = load_ms
        self._classes = loaded
        self._pipelines = {uid: FeaturePipeline(c.info.features) for uid, c in loaded.items()}
        self.parser = EventParser(
            {uid: p.plan for uid, p in self._pipelines.items()},
            unsupported={
                int(uid): Unsupported(int(uid), u.reason, u.baseline_events)
                for uid, u in manifest.training.unmodelled.items()
            },
        )
        self.times = StageTimes()
        self.rechecks = RecheckCounts()
        self._explainers: dict[int, Explainer] = {}
        self.overlay: FeedbackOverlay | None = None
        self.silenced = 0  # anomalies by the bundle that the overlay silenced, accumulated

    @classmethod
    def load(cls, bundle_dir: Path | str, *, threads: int = 1) -> Detector:
        manifest, loaded, load_ms = load_bundle(Path(bundle_dir), threads=threads)
        return cls(manifest, loaded, load_ms)

    @property
    def bundle_version(self) -> str:
        return self.manifest.bundle_version

    @property
    def classes(self) -> list[int]:
        return sorted(self._classes)

    @property
    def dims(self) -> dict[int, int]:
        """The embedding dimension of each class's model."""
        return {uid: c.info.model.dim for uid, c in self._classes.items()}

    def use_overlay(self, overlay: FeedbackOverlay | None) -> None:
        """Search ``overlay`` (judged-benign embeddings of this bundle) beside the index
        from the next batch on; None: the bundle alone."""
        if overlay is not None and overlay.bundle_version != self.bundle_version:
            raise ValueError(
                f"the overlay is for bundle {overlay.bundle_version}, "
                f"this detector runs {self.bundle_version}"
            )
        self.overlay = overlay

    @property
    def row_shapes(self) -> dict[int, tuple[int, tuple[int, ...]]]:
        """(numeric columns, each categorical field's cardinality) of each class whose fine
        view measures the feature space (format 15): a verdict on its events keeps their
        row there (``feedback.OverlaySource``)."""
        return {
            uid: (c.fine_rows.numeric.shape[1], tuple(self._pipelines[uid].cardinalities))
            for uid, c in self._classes.items()
            if c.fine_rows is not None
        }

    def judge_objects(self, events: Sequence[Any]) -> list[Judged | Outcome]:
        """What a verdict keeps of each decoded event (``overlay.Judged``), or the event's
        outcome when it is not scored (unsupported, rejected)."""
        parsed = [self._parse_object(e) for e in events]
        out: list[Judged | Outcome] = []
        for p in parsed:
            if not isinstance(p, Parsed):
                out.append(p)
                continue
            loaded = self._classes[p.class_uid]
            pipeline = self._pipelines[p.class_uid]
            matrix = pipeline.transform_parsed([p])
            emb = embedding_of(loaded.session, loaded.info, matrix.numeric, matrix.categorical)
            rows = fine_features(loaded, pipeline, matrix)
            row = None if rows is None else (rows[0][0].copy(), rows[1][0].copy())
            out.append(Judged(p.class_uid, emb[0], row))
        return out

    # -- batch scoring --------------------------------------------------------------------
    def score_batch(self, raws: Sequence[object]) -> list[Outcome]:
        """Raw JSON records (bytes or str) -> one outcome per record, in order."""
        start = time.perf_counter()
        parsed = self.parser.parse_many(raws)
        self.times.add("decode", time.perf_counter() - start)
        return self.score_parsed(parsed)

    def score_objects(self, events: Sequence[Any]) -> list[Outcome]:
        """Already decoded events (e.g. from an API body) -> one outcome per event."""
        start = time.perf_counter()
        with gc_paused():
            parsed = [self._parse_object(e) for e in events]
        self.times.add("decode", time.perf_counter() - start)
        return self.score_parsed(parsed)

    def _parse_object(self, event: Any) -> Parsed | Unsupported | Rejected:
        problem = check_object(event)
        return problem if problem is not None else self.parser.parse_object(event)

    def score_parsed(
        self, parsed: Sequence[Parsed | Unsupported | Rejected], *, feedback: bool = True
    ) -> list[Outcome]:
        """Score what the parser produced (one outcome per input, in order); without
        ``feedback``, as the bundle alone scores (the release self-test)."""
        out: list[Outcome] = list(parsed)  # type: ignore[arg-type]  # Parsed replaced below
        by_class: dict[int, tuple[list[int], list[Parsed]]] = {}
        for i, p in enumerate(parsed):
            if isinstance(p, Parsed):
                positions, items = by_class.setdefault(p.class_uid, ([], []))
                positions.append(i)
                items.append(p)
        with gc_paused():  # one outcome object per event: no cycles to collect
            for class_uid, (positions, items) in by_class.items():
                scored_items = self._score_class(class_uid, items, feedback)
                for pos, scored in zip(positions, scored_items, strict=True):
                    out[pos] = scored
        return out

    def _score_class(self, class_uid: int, items: list[Parsed], feedback: bool) -> list[Scored]:
        loaded = self._classes[class_uid]
        info = loaded.info
        t0 = time.perf_counter()
        matrix = self._pipelines[class_uid].transform_parsed(items)
        t1 = time.perf_counter()
        emb = embedding_of(loaded.session, info, matrix.numeric, matrix.categorical)
        t2 = time.perf_counter()
        tails = (info.tails.knn, info.tails.isolation) if info.tails else None
        overlay = self.overlay if feedback else None
        space = feature_rerank(loaded, self._pipelines[class_uid], matrix)
        fine_rows = fine_features(loaded, self._pipelines[class_uid], matrix)
        overlay_distance = overlay_fine = None
        if overlay is not None and fine_rows is not None and loaded.fine_rows is not None:
            # format 15: a judged event is measured in both spaces (``overlay``)
            both = overlay.nearest_in_both(
                class_uid, emb, fine_rows, loaded.fine_rows.mismatch, info.index.distance_ratio
            )
            overlay_distance, overlay_fine = (None, None) if both is None else both
        elif overlay is not None:
            overlay_distance = overlay.nearest(class_uid, emb)
        if space is not None and overlay_distance is not None:
            # format 12 measures the k-NN view in the feature space: the overlay's
            # distance (the embedding's) in its units
            overlay_distance = overlay_distance / info.index.distance_ratio
        served = serve_scores(
            loaded.index,
            lambda: loaded.exact,
            emb,
            info.index.k,
            isolation_of(loaded.isolation, matrix.numeric, matrix.categorical),
            tails,
            info.threshold,
            loaded.mass,
            overlay_distance,
            None if info.isolation is None else info.isolation.cover(),
            space,
            loaded.fine,
            fine_rows,
            overlay_fine,
        )
        labels, dists, scores = served.labels, served.dists, served.scores
        self.rechecks.rechecked += served.rechecked
        self.rechecks.unchecked += served.unchecked
        self.silenced += served.silenced
        t3 = time.perf_counter()
        anomalous = scores >= info.threshold
        sev = severity_ids(scores, info.severity_bands)
        table = NeighborTable(labels, dists, loaded.ids)
        threshold = info.threshold
        result = [
            Scored(class_uid, p.time_ms, s, threshold, a, v, p, table, row)
            for row, (p, s, a, v) in enumerate(
                zip(
                    items,
                    np.round(scores.astype(np.float64), 6).tolist(),
                    anomalous.tolist(),
                    sev.tolist(),
                    strict=True,
                )
            )
        ]
        t4 = time.perf_counter()
        alerting = np.flatnonzero(anomalous)
        if len(alerting):
            explainer = self._explainers.get(class_uid)
            if explainer is None:
                explainer = self._explainers[class_uid] = Explainer(self._pipelines[class_uid])
            reasons = ExplanationTable(
                explainer, items, alerting, matrix.numeric, matrix.categorical
            )
            for r in alerting.tolist():
                result[r].reasons = reasons
        t5 = time.perf_counter()
        self.times.add("features", t1 - t0)
        self.times.add("onnx", t2 - t1)
        self.times.add("knn", t3 - t2)
        self.times.add("threshold", t4 - t3)
        self.times.add("explain", t5 - t4)
        return result

    def pipeline(self, class_uid: int) -> FeaturePipeline:
        return self._pipelines[class_uid]

    # -- self-test (release hooks) --------------------------------------------------------
    def selftest(self) -> dict[str, Any]:
        """Re-score the manifest's golden events: what a pre-traffic hook compares."""
        events = [g.event for g in self.manifest.golden_events]
        with gc_paused():
            parsed = [self._parse_object(e) for e in events]
        outcomes = self.score_parsed(parsed, feedback=False)
        scores = [o.score if isinstance(o, Scored) else None for o in outcomes]
        return {"bundle_version": self.bundle_version, "scores": scores}
