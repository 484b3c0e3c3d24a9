"""The feedback overlay: events an analyst judged benign, searched beside the bundle's
index so that events like them stop alerting without retraining.

Pure numpy. The overlay is small (at most ``MAX_OVERLAY_VECTORS`` per class), so it is
searched exactly: one matrix product per class batch and space.

A judged event is kept as its embedding and, for a class whose fine view measures the
weighted feature space (bundle format 15), as its row there too (``fine.FineRows``): the
fine view's distance to it is then measured where that view measures, never converted
from the embedding's.

The rule (docs/model.md, "Feedback overlay"): a judged-benign event stands for a whole
neighbourhood of normal events. An event at distance ``d`` from the nearest one scores
what an event whose k nearest baseline neighbours were all at ``d`` would score, with the
same evidence for both views (the analyst vouched for the whole event, the features the
isolation trees read included): with tails, the k-NN view's surprise at ``d`` credited
to each view beyond its floor (``2 x surprise_knn(d)`` when neither has one), plus, for
a class with a fine view (format 13), that view's surprise at the distance to the
nearest judged event, which is then the nearest baseline event; without tails (bundle
format 4 or older), ``d`` itself. ``d`` is the embedding's distance, and the fine view's
is too, where that view measures the embedding (formats 13, 14). Where it measures the
feature space (format 15), the fine view's distance is the feature space's to the
nearest judged row, and ``d`` is, over the judged events, the nearest of the larger of
each one's two distances, the embedding's and the features' in the embedding's units: a
verdict vouches only as far as both spaces agree (``FeedbackOverlay.nearest_in_both``).
The served score is the smaller of that and the bundle's own score, so the overlay can
only silence alerts, never raise one, and an event far from every judged one scores
exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ocsf_detect.detector.fine import FineRows
from ocsf_detect.detector.surprise import Tail

MAX_OVERLAY_VECTORS = 10_000
"""Vectors kept per class (the most recent verdicts win): exact search over this many
costs less than the bundle's own k-NN query."""
_BLOCK = 256  # queries per block of the exact search (256 x 10,000 float64: 20 MB)
# ... and of the search in both spaces, which holds three such matrices at once
_BOTH_BLOCK = 64


Row = tuple[np.ndarray, np.ndarray]
"""A judged event's row in a fine view's feature space: (numeric float32 [n_numeric],
codes int32 [n_categorical]), as ``fine.fine_queries`` gives a batch's."""


@dataclass(frozen=True)
class Judged:
    """What a verdict keeps of its event: the class, the embedding, and the row in the
    class's fine feature space (None for a class whose fine view, if any, measures the
    embedding)."""

    class_uid: int
    vector: np.ndarray  # float32 [dim]
    row: Row | None = None


@dataclass(frozen=True)
class FeedbackOverlay:
    """Judged-benign events per class, for one bundle version (embeddings depend on the
    model, so an overlay never crosses bundle versions): their embeddings, and for a class
    whose fine view measures the feature space their rows there, in the same order."""

    bundle_version: str
    vectors: Mapping[int, np.ndarray] = field(default_factory=dict)  # class -> float32 [m, dim]
    # class -> (numeric float32 [m, n_numeric], codes int32 [m, n_categorical])
    rows: Mapping[int, Row] = field(default_factory=dict)

    def __post_init__(self) -> None:
        cleaned = {
            int(uid): np.ascontiguousarray(v[-MAX_OVERLAY_VECTORS:], dtype=np.float32)
            for uid, v in self.vectors.items()
            if len(v)
        }
        given = {int(uid): len(v) for uid, v in self.vectors.items()}
        rows: dict[int, Row] = {}
        for uid, (numeric, codes) in self.rows.items():
            if not len(numeric) == len(codes) == given.get(int(uid), 0):
                raise ValueError(
                    f"overlay rows of class {uid}: {len(numeric)} numeric and {len(codes)} "
                    f"codes for {given.get(int(uid), 0)} vectors"
                )
            n = len(cleaned.get(int(uid), ()))
            if n:
                rows[int(uid)] = (
                    np.ascontiguousarray(numeric[len(numeric) - n :], dtype=np.float32),
                    np.ascontiguousarray(codes[len(codes) - n :], dtype=np.int32),
                )
        object.__setattr__(self, "vectors", cleaned)
        object.__setattr__(self, "rows", rows)

    @classmethod
    def of(cls, bundle_version: str, judged: Sequence[Judged]) -> FeedbackOverlay:
        """The overlay of ``judged`` events, oldest first (each class keeps its newest
        ``MAX_OVERLAY_VECTORS``). A class whose events carry rows keeps only those that
        do (one without its row cannot be measured where the fine view measures, so it
        silences nothing); a class whose events carry none keeps their vectors."""
        by_class: dict[int, list[Judged]] = {}
        for item in judged:
            by_class.setdefault(item.class_uid, []).append(item)
        vectors: dict[int, np.ndarray] = {}
        rows: dict[int, Row] = {}
        for uid, items in by_class.items():
            with_rows = [(j, j.row) for j in items if j.row is not None]
            if with_rows:
                rows[uid] = (
                    np.stack([row[0] for _, row in with_rows]),
                    np.stack([row[1] for _, row in with_rows]),
                )
                items = [j for j, _ in with_rows]
            vectors[uid] = np.stack([j.vector for j in items])
        return cls(bundle_version, vectors, rows)

    def count(self, class_uid: int) -> int:
        v = self.vectors.get(class_uid)
        return 0 if v is None else len(v)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.vectors.values())

    def nearest(self, class_uid: int, emb: np.ndarray) -> np.ndarray | None:
        """Euclidean distance (float64 [n]) from each row of ``emb`` to its nearest
        judged-benign vector of the class; None when the class has none."""
        base = self.vectors.get(class_uid)
        if base is None or not len(emb):
            return None
        if base.shape[1] != emb.shape[1]:
            raise ValueError(
                f"overlay vectors of class {class_uid} have dimension {base.shape[1]}, "
                f"the model's embeddings {emb.shape[1]}"
            )
        b, b_sq = _with_norms(base)
        out = np.empty(len(emb), dtype=np.float64)
        # Blocks of queries: a (block x overlay) matrix stays small however large both are.
        for start in range(0, len(emb), _BLOCK):
            block = slice(start, start + _BLOCK)
            out[block] = np.sqrt(_squared(emb[block], b, b_sq).min(axis=1))
        return out

    def nearest_in_both(
        self, class_uid: int, emb: np.ndarray, queries: Row, mismatch: np.ndarray, ratio: float
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """For a class whose fine view measures the feature space (``mismatch``: its
        ``FineRows.mismatch``): each event's distance to the judged events as the k-NN
        view reads it, and as the fine view does (float64 [n] each); None when the class
        has no judged event with its row (one without cannot be measured where the fine
        view measures: it silences nothing).

        The fine view's is the feature space's distance to the nearest judged row. The
        k-NN view's is, over the judged events, the nearest of the larger of two readings
        of one judged event: its embedding's distance, and its row's distance in the
        embedding's units (``ratio``: the build's ``IndexInfo.distance_ratio``). The
        network is trained to preserve the feature space's distances; where it maps a
        pair nearer than the features place them, the nearer reading would let a verdict
        silence what only the network confuses with its event, so the farther one counts
        (the overlay only silences: the error errs towards alerting)."""
        base = self.vectors.get(class_uid)
        kept = self.rows.get(class_uid)
        if base is None or kept is None or not len(emb):
            return None
        numeric, codes = queries
        if (
            base.shape[1] != emb.shape[1]
            or kept[0].shape[1] != numeric.shape[1]
            or kept[1].shape[1] != codes.shape[1]
        ):
            raise ValueError(
                f"the overlay of class {class_uid} holds {base.shape[1]}-dimensional vectors "
                f"and rows of {kept[0].shape[1]} numeric columns and {kept[1].shape[1]} "
                f"fields; the batch has {emb.shape[1]}, {numeric.shape[1]} and {codes.shape[1]}"
            )
        b, b_sq = _with_norms(base)
        judged = FineRows(kept[0], kept[1], mismatch)  # the fine view's own distance
        knn_out = np.empty(len(emb), dtype=np.float64)
        fine_out = np.empty(len(emb), dtype=np.float64)
        for start in range(0, len(emb), _BOTH_BLOCK):
            block = slice(start, start + _BOTH_BLOCK)
            f = judged.squared(numeric[block], codes[block])
            np.sqrt(f, out=f)
            fine_out[block] = f.min(axis=1)
            f *= ratio
            np.maximum(f, np.sqrt(_squared(emb[block], b, b_sq)), out=f)
            knn_out[block] = f.min(axis=1)
        return knn_out, fine_out


def _with_norms(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows64 = np.asarray(rows, dtype=np.float64)
    return rows64, np.einsum("ij,ij->i", rows64, rows64)


def _squared(queries: np.ndarray, base: np.ndarray, base_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (float64 [q, m], never negative) from each query row
    to each row of ``base`` (float64, ``base_sq`` its squared norms)."""
    q = np.asarray(queries, dtype=np.float64)
    d2 = np.einsum("ij,ij->i", q, q)[:, None] + base_sq[None, :] - 2.0 * (q @ base.T)
    return np.maximum(d2, 0.0)


def overlay_scores(
    distance: np.ndarray,
    tails: tuple[Tail, Tail] | None,
    fine: Tail | None = None,
    fine_distance: np.ndarray | None = None,
) -> np.ndarray:
    """The score an event at ``distance`` from its nearest judged-benign vector gets
    (float32; see the module docstring for the rule). ``fine``: the fine view's tail, for
    a class that has one (format 13): the nearest judged event is then the nearest
    baseline event too, at ``fine_distance`` (format 15: the feature space's distance to
    the nearest judged row) or, where that is not given, at ``distance``."""
    if tails is None:
        return np.asarray(distance, dtype=np.float32)
    surprise = tails[0].surprise(distance)  # the k-NN view's, counted for both views
    judged = tails[0].credit(surprise) + tails[1].credit(surprise)
    if fine is not None:
        judged = judged + fine.surprise(distance if fine_distance is None else fine_distance)
    return judged.astype(np.float32)
