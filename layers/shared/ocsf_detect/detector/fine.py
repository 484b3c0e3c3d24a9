"""The fine view: each event's distance to its nearest baseline event, every event kept.

The k-NN view searches the *distinct behaviours* of the baseline, one per neighbourhood
of the distinct radius, so that a flood of near-identical events counts once. That is
what keeps a flood or a small cluster of attack events inside the baseline from vouching
for itself, and it costs the density the baseline had: an event a little off the dense
core of normal traffic (a fuzzer's packet sizes beside ordinary sessions) lies as close
to a behaviour as an ordinary event does. The fine view gives that density back: the
distance to the nearest of *all* the baseline's events (up to a bound), turned into a
surprise against the held-out events' own distances to the training events and added
to the score, in nats like the other two views.

It is built only where density is evidence. When the k most common distinct behaviours
(k: the k-NN view's) hold half the baseline's events or more, the baseline is mostly one
flood's record (a scan, a botnet's heartbeat, one noisy device): there a fine match says
only that the flood went on, and the benign minority, which has few fine matches, would
rise above it. Such a class has no fine view (``FineInfo`` is absent), and scores as the
two views alone score it. In a spread baseline the view adds nothing for an event the
baseline recorded (its own copy lies at distance zero), so a small cluster of attack
events inside the baseline gains nothing from it either way; the trees' and the k-NN
view's evidence is what sets it apart (``detector.surprise``).

The distance is measured in the weighted feature space the embedding is trained to
preserve (bundle format 15, ``FineRows``): the view asks the embedding's HNSW index for
``candidates`` baseline events and keeps the nearest of them by their distance in that
space, so the network retrieves and the features measure; the k nearest behaviours the
k-NN view already found, each a baseline event, are candidates too, for nothing. At the
fine view's scale (an
event's nearest baseline event, often a near copy) the embedding's error is largest
against the distance itself. Bundles of formats 13 and 14 measure the embedding's
distance (k = 1).

The search is approximate: a stalled search, or a candidate set that misses the nearest
event, only finds a farther event, so the served score is never below the exact one, and
scores that reach the threshold are re-checked exactly (``serve_scores``); an event whose
embedding is one of the indexed vectors is at distance zero whatever the search finds
(``FineView.nearest``). Pure numpy and hnswlib; the build fits it
(``ocsf_detect_tools.build``), docs/model.md (section 8) has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ocsf_detect.detector.surprise import Tail

if TYPE_CHECKING:
    from ocsf_detect.detector.index import ExactBase
    from ocsf_detect.features.pipeline import FeatureMatrix


class FineInfo(BaseModel):
    """Where the fine view's index is and how it was fitted (manifest, format 13)."""

    model_config = ConfigDict(extra="forbid")

    file: str  # HNSW index over the embeddings of the baseline events
    n_items: int = Field(ge=1)
    sampled_from: int = Field(ge=1)  # baseline events it was drawn from (all, up to a bound)
    ef_search: int = Field(ge=1)
    # the surprise of a distance, fitted on the held-out events' nearest distances to the
    # training events (the held-out events are in the index after that)
    tail: Tail
    # the share of the baseline the k most common behaviours hold, and the share at or above
    # which the build leaves the view out (``[fine] flood_share``)
    top_share: float = Field(ge=0.0, le=1.0)
    flood_share: float = Field(gt=0.0, le=1.0)
    # format 15: the indexed events in the weighted feature space (``FineRows``), and how
    # many candidates the index retrieves for them; absent, distances are the embedding's
    numeric_file: str | None = None  # float32 (n_items, n_numeric), novel columns weighted
    codes_file: str | None = None  # int32 (n_items, n_categorical)
    category_weights: list[float] | None = None  # per categorical field
    novel_weight: float | None = None
    candidates: int = Field(1, ge=1)
    # int32 (the k-NN index's n_items,): each indexed behaviour's row here (-1: not held),
    # so the behaviours the k-NN view found are candidates too
    behaviours_file: str | None = None

    @property
    def in_features(self) -> bool:
        return self.numeric_file is not None


# Queries per block of a gather over candidates or of an exact scan over every row.
_CANDIDATE_BLOCK = 1024
_EXACT_BLOCK = 64
# The exact search measures directly, in float32 as ``among`` does, every row whose
# float64 ranking lies within the two roundings of the nearest: float32's of a sum of
# squares, at most (terms + 4) x 2^-24 of the squared distance, twice; and float64's of
# the ranking's matrix product, well within 1e-12 of the squared norms' scale. Ties
# beyond ``_EXACT_NEAR`` rows (a baseline's copies) are measured ``_EXACT_NEAR`` at most.
_FLOAT32_ROUNDING = 2.0**-24
_EXACT_RANKING = 1e-12
_EXACT_NEAR = 64


@dataclass(frozen=True)
class FineRows:
    """The fine view's events in the weighted feature space, stored compactly: numeric
    columns (the novel-amount ones times their weight) and each categorical field's code.
    Two events' distance is that of their rows in the space the embedding preserves
    (``FeatureMatrix.dense``, one-hot times the field's weight): the square root of the
    numeric columns' squared difference plus 2 w^2 for each field whose codes differ."""

    numeric: np.ndarray  # float32 (n, n_numeric)
    codes: np.ndarray  # int32 (n, n_categorical)
    mismatch: np.ndarray  # float32 (n_categorical,): 2 w^2, a differing field's share

    @classmethod
    def of(cls, numeric: np.ndarray, codes: np.ndarray, weights: Sequence[float]) -> FineRows:
        w = np.asarray(weights, dtype=np.float64)
        if codes.ndim != 2 or len(w) != codes.shape[1] or len(numeric) != len(codes):
            raise ValueError(
                f"fine rows: {numeric.shape} numeric, {codes.shape} codes, {len(w)} weights"
            )
        return cls(numeric, codes, (2.0 * w * w).astype(np.float32))

    def among(self, numeric: np.ndarray, codes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Each query's distance to the nearest of its ``candidates`` (rows of this set,
        [n, c]; hnswlib's labels), float32."""
        out = np.empty(len(candidates), dtype=np.float32)
        for start in range(0, len(candidates), _CANDIDATE_BLOCK):
            block = slice(start, start + _CANDIDATE_BLOCK)
            found = candidates[block]
            diff = self.numeric[found] - numeric[block, None, :]
            d2 = np.einsum("ijk,ijk->ij", diff, diff)
            if len(self.mismatch):
                differ = self.codes[found] != codes[block, None, :]
                # one field at a time, in their order: a row's distance is then the same
                # however many candidates come with it (a matrix product's rounding can
                # depend on its shape), as the search and its exact re-check require
                for f, share in enumerate(self.mismatch):
                    np.add(d2, share, out=d2, where=differ[:, :, f])
            out[block] = np.sqrt(d2.min(axis=1))
        return out

    def squared(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Every query's squared distance to every row (float64 [q, n], never negative),
        in one matrix product and one pass per field: for a small set (the feedback
        overlay's judged rows), where the exact search's tuples would not pay."""
        base = np.asarray(self.numeric, dtype=np.float64)
        q = np.asarray(numeric, dtype=np.float64)
        d2 = np.einsum("ij,ij->i", q, q)[:, None] + np.einsum("ij,ij->i", base, base)[None, :]
        d2 -= 2.0 * (q @ base.T)
        np.maximum(d2, 0.0, out=d2)
        for f, share in enumerate(self.mismatch.tolist()):
            np.add(d2, share, out=d2, where=self.codes[None, :, f] != codes[:, None, f])
        return d2

    @cached_property
    def _exact_base(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """What the exact search reads, built on its first use (a frozen dataclass:
        ``cached_property`` keeps it in the instance): the numeric rows in float64 and
        their squared norms, and the distinct tuples of codes with each row's tuple (a
        baseline holds far fewer tuples than rows: 24 among UNSW-NB15's 18,500)."""
        base = np.asarray(self.numeric, dtype=np.float64)
        tuples, inverse = np.unique(self.codes, axis=0, return_inverse=True)
        return base, np.einsum("ij,ij->i", base, base), tuples, inverse.reshape(-1)

    def nearest_exact(self, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Each query's distance to the nearest row of the whole set, float32 (the
        re-check). Ranked in float64 by one matrix product per block of queries, the
        fields' mismatches counted once per distinct tuple of codes; every row within
        the ranking's rounding of the nearest is then measured directly (``among``)."""
        base, norms, tuples, inverse = self._exact_base
        out = np.empty(len(numeric), dtype=np.float32)
        scale = 1.0 + float(norms.max(initial=0.0)) + float(self.mismatch.sum())
        terms = 2.0 * (base.shape[1] + len(self.mismatch) + 4)
        for start in range(0, len(numeric), _EXACT_BLOCK):
            block = slice(start, start + _EXACT_BLOCK)
            q = np.asarray(numeric[block], dtype=np.float64)
            d2 = norms[None, :] - 2.0 * (q @ base.T)  # |q|^2 is the same along a row
            if len(self.mismatch):
                per_tuple = np.zeros((len(q), len(tuples)), dtype=np.float64)
                for f, share in enumerate(self.mismatch):
                    differ = tuples[None, :, f] != codes[block, None, f]
                    np.add(per_tuple, float(share), out=per_tuple, where=differ)
                d2 += np.take(per_tuple, inverse, axis=1)
            q_sq = np.einsum("ij,ij->i", q, q)
            best = d2.min(axis=1)
            slack = terms * _FLOAT32_ROUNDING * np.maximum(best + q_sq, 0.0)
            slack += _EXACT_RANKING * (scale + q_sq)
            for i in range(len(q)):
                near = np.flatnonzero(d2[i] <= best[i] + slack[i])
                if len(near) > _EXACT_NEAR:  # ties: any of them is the nearest
                    near = near[np.argpartition(d2[i, near], _EXACT_NEAR - 1)[:_EXACT_NEAR]]
                at = start + i
                out[at] = self.among(numeric[at : at + 1], codes[at : at + 1], near[None, :])[0]
        return out


def fine_queries(
    matrix: FeatureMatrix, novel_columns: Sequence[int], novel_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """A batch's rows as ``FineRows`` stores them: (numeric float32, the novel-amount
    columns times their weight; codes int32). Read only: the matrix's own numeric columns
    where none is weighted."""
    numeric = matrix.weighted_numeric((novel_columns, novel_weight))
    return np.asarray(numeric, dtype=np.float32), np.asarray(matrix.categorical, dtype=np.int32)


@dataclass(frozen=True)
class FineView:
    """A class's fine view, ready to serve: the index, its vectors as exact search reads
    them (built on first use), and the tail."""

    index: Any  # hnswlib.Index
    exact: Callable[[], ExactBase]
    tail: Tail
    # the indexed vectors' bytes (``copies_of``), built on first use: None, no lookup
    copies: Callable[[], frozenset[bytes]] | None = None
    # format 15: the indexed events in the feature space (built on first use) and the
    # candidates the index retrieves for them
    rows: Callable[[], FineRows] | None = None
    candidates: int = 1
    # each k-NN behaviour's row in ``rows`` (-1: not held), built on first use
    behaviours: Callable[[], np.ndarray] | None = None

    def nearest(
        self,
        queries: np.ndarray,
        known: np.ndarray | None = None,
        features: tuple[np.ndarray, np.ndarray] | None = None,
        near: np.ndarray | None = None,
    ) -> np.ndarray:
        """Each query's distance to its nearest baseline event (float32): by the index,
        and zero for a query whose embedding is one of the indexed vectors.

        ``features`` (format 15, required there): the queries' rows as ``fine_queries``
        gives them; the index's ``candidates`` nearest are measured in the feature space
        and the nearest of them kept. ``near``: the k-NN view's nearest behaviours (its
        index's labels, [n, k]), candidates too: a stalled search is bounded by them, as
        ``known`` bounds it in the embedding, which is then not used (its units are the
        embedding's).

        Format 13 and 14 (no rows): the index's nearest, by the embedding. HNSW misses an
        event's own copy now and then where the baseline holds many near-identical rows
        (at ef 32, 4 of 2,000 NSL-KDD rows scored against their own baseline), which gave
        an event the baseline recorded the evidence of a new one; the lookup costs one
        hash per event.

        ``known``: each query's distance to a baseline event found another way (the
        k-NN view's nearest behaviour, itself a baseline event's embedding); the smaller
        of the two is kept. A stalled search only finds a farther event, and at ef 32 it
        did so for 2.6% of UNSW-NB15's events scored against 18,500 baseline events, each
        by 0.05 on average; the behaviour the k-NN view found already bounds half of those
        misses, for nothing."""
        from ocsf_detect.detector.index import knn

        if self.rows is not None:
            if features is None:
                raise ValueError("this fine view measures the feature space: pass features")
            candidates = knn(self.index, queries, self.candidates)[0]
            if near is not None and self.behaviours is not None:
                held = self.behaviours()[near]
                # a behaviour the view does not hold (a sampled view) repeats the first
                candidates = np.hstack([candidates, np.where(held < 0, candidates[:, :1], held)])
            distance = self.rows().among(features[0], features[1], candidates)
        else:
            distance = knn(self.index, queries, 1)[1][:, 0]
            if known is not None:
                np.minimum(distance, np.asarray(known, dtype=np.float32), out=distance)
        if self.copies is not None:
            missed = np.flatnonzero(distance > 0.0)
            if len(missed):
                recorded = self.copies()
                rows = np.ascontiguousarray(queries[missed], dtype=np.float32)
                found = np.fromiter((r.tobytes() in recorded for r in rows), bool, len(rows))
                distance[missed[found]] = 0.0
        return distance

    def nearest_exact(
        self, queries: np.ndarray, features: tuple[np.ndarray, np.ndarray] | None = None
    ) -> np.ndarray:
        """The same by exact search (the re-check of scores that reach the threshold)."""
        from ocsf_detect.detector.index import exact_knn

        if self.rows is not None:
            if features is None:
                raise ValueError("this fine view measures the feature space: pass features")
            return self.rows().nearest_exact(*features)
        return exact_knn(self.exact(), queries, 1)[1][:, 0]

    def evidence(self, distance: np.ndarray) -> np.ndarray:
        """The view's evidence: the surprise of each distance (float64, never negative)."""
        return self.tail.surprise(distance)


def copies_of(vectors: np.ndarray) -> frozenset[bytes]:
    """The bytes of each vector (float32 rows), for ``FineView.nearest``'s lookup."""
    rows = np.ascontiguousarray(vectors, dtype=np.float32)
    return frozenset(r.tobytes() for r in rows)


def is_spread(top_share: float, flood_share: float) -> bool:
    """Whether a baseline whose k most common behaviours hold ``top_share`` of its events
    gets a fine view: below ``flood_share`` (the build's rule, one place for it)."""
    return top_share < flood_share


def fine_members(
    n_train: int, n_hold: int, max_events: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) the fine index holds: every baseline event up to
    ``max_events``, the training events first; beyond it a uniform sample, sorted."""
    rng = np.random.default_rng(seed)
    train = np.arange(n_train)
    if n_train > max_events:
        train = np.sort(rng.choice(n_train, max_events, replace=False))
    room = max_events - len(train)
    hold = np.arange(n_hold)
    if n_hold > room:
        hold = np.sort(rng.choice(n_hold, room, replace=False))
    return train, hold
