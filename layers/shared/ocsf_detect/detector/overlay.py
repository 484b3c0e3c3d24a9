"""The feedback overlay: embeddings of events an analyst judged benign, searched beside the
bundle's index so that events like them stop alerting without retraining.

Pure numpy. The overlay is small (at most ``MAX_OVERLAY_VECTORS`` per class), so it is
searched exactly: one matrix product per class batch.

The rule (docs/model.md, "Feedback overlay"): a judged-benign vector stands for a whole
neighbourhood of normal events. An event at distance ``d`` from the nearest one scores
what an event whose k nearest baseline neighbours were all at ``d`` would score, with
the same evidence for both views (the analyst vouched for the whole event, the features
the isolation trees read included): with tails, the k-NN view's surprise at ``d``
credited to each view beyond its floor (``2 x surprise_knn(d)`` when neither has one),
plus, for a class with a fine view (format 13), that view's surprise at ``d`` (the judged
event is then the nearest baseline event at ``d``; format 15, whose view measures the
feature space, reads ``d`` in its units at the view's own scale, ``fine.fine_scale``,
since a verdict keeps the judged event's embedding alone); without tails (bundle format 4 or
older), ``d`` itself. The served score is the smaller of
that and the bundle's own score, so the overlay can only silence alerts, never raise
one, and an event far from every judged one scores exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ocsf_detect.detector.surprise import Tail

MAX_OVERLAY_VECTORS = 10_000
"""Vectors kept per class (the most recent verdicts win): exact search over this many
costs less than the bundle's own k-NN query."""
_BLOCK = 256  # queries per block of the exact search (256 x 10,000 float64: 20 MB)


@dataclass(frozen=True)
class FeedbackOverlay:
    """Judged-benign embeddings per class, for one bundle version (embeddings depend on
    the model, so an overlay never crosses bundle versions)."""

    bundle_version: str
    vectors: Mapping[int, np.ndarray] = field(default_factory=dict)  # class -> float32 [m, dim]

    def __post_init__(self) -> None:
        cleaned = {
            int(uid): np.ascontiguousarray(v[-MAX_OVERLAY_VECTORS:], dtype=np.float32)
            for uid, v in self.vectors.items()
            if len(v)
        }
        object.__setattr__(self, "vectors", cleaned)

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
        b = base.astype(np.float64)
        b_sq = (b * b).sum(axis=1)
        out = np.empty(len(emb), dtype=np.float64)
        # Blocks of queries: a (block x overlay) matrix stays small however large both are.
        for start in range(0, len(emb), _BLOCK):
            q = emb[start : start + _BLOCK].astype(np.float64)
            d2 = (q * q).sum(axis=1)[:, None] + b_sq[None, :] - 2.0 * (q @ b.T)
            out[start : start + len(q)] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
        return out


def overlay_scores(
    distance: np.ndarray,
    tails: tuple[Tail, Tail] | None,
    fine: Tail | None = None,
    fine_distance: np.ndarray | None = None,
) -> np.ndarray:
    """The score an event at ``distance`` from its nearest judged-benign vector gets
    (float32; see the module docstring for the rule). ``fine``: the fine view's tail, for
    a class that has one (format 13): the judged event is then the nearest baseline event
    at ``distance`` too, or at ``fine_distance``, the same distance in the units that
    view measures (format 15: the feature space's)."""
    if tails is None:
        return np.asarray(distance, dtype=np.float32)
    surprise = tails[0].surprise(distance)  # the k-NN view's, counted for both views
    judged = tails[0].credit(surprise) + tails[1].credit(surprise)
    if fine is not None:
        judged = judged + fine.surprise(distance if fine_distance is None else fine_distance)
    return judged.astype(np.float32)
