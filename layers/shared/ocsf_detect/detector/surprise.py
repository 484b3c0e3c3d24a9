"""The second view of an event and how the two views make one score.

An event is scored by two detectors that fail in different places, both fitted on the
*distinct behaviours* of the baseline (one event per neighbourhood, so that a flood of
near-identical events counts once):

- the mean distance to the k nearest distinct behaviours in the embedding (``index``):
  unusual combinations, new kinds of traffic;
- an isolation forest over the weighted features (``IsolationTrees``): how few random
  axis-aligned cuts set the event apart. It reads a feature whose extreme matters on its
  own (an unusual volume for a known service), and, as each tree sees a small sample
  of the distinct behaviours, a small cluster of attack events that slipped into the
  baseline cannot vouch for itself: the k-NN view finds the cluster's own copies at
  distance zero, the trees cut it off in a few steps.

Each view's score is turned into its *surprise* against the held-out baseline, -log of
the share of held-out events that score at least as high (``Tail``), with an exponential
tail beyond the 90th percentile so that events beyond every held-out score keep their
order. ``n`` held-out events measure a surprise of at most about log(n + 1) (no share
below 1 / (n + 1) is observed); beyond that *measured range* the exponential tail is a
guess about distances no held-out event reached, and summed as it is, one view's guess
(tens of nats for an event far from everything in the embedding) would outweigh
everything the other view measured. So beyond it the surprise grows with the log of its
ratio to the range (``Tail.measured``: m (1 + log(s / m)) for a surprise s beyond m):
twice as far beyond still counts m log 2 more, so a view keeps its order and how many
times further than anything measured an event lies, but not a claim of e^-60.

A view's *evidence* is its surprise beyond the view's ``floor`` (zero below it): the
surprise at a held-out quantile (``[isolation] evidence_quantile``), so that a view
counts only where it finds the event unusual. The event's score is the sum of the two
views' evidence: in nats, comparable across classes and bundles, and calibrated like any
score. With both floors at zero this is Fisher's rule for independent evidence (without
the final chi-square step); with a floor on the isolation view it is the truncated form
of that rule (Zaykin et al. 2002, truncated product of p-values), written as a hinge so
the score stays continuous: an event that only the k-NN view finds unusual (a new
combination of ordinary values) keeps its score, instead of paying for the isolation
view's indifference.

The trees judge what the baseline holds (scope "covered", the default): an event
whose nearest indexed behaviour lies within the distinct radius is one whose own kind the
baseline recorded, so the k-NN view's nearest neighbours may be its own copies, and the
trees say whether that kind was itself an oddity. An event farther from every behaviour
is new, and the k-NN view's distance is the evidence that counts: there the trees'
opinion would only take a share of the alert budget from what the k-NN view alone sees.
The trees also judge an event the k-NN view puts beyond its measured range: farther
than the held-out events can rank, where the k-NN view's order is the tail's guess, so
the trees' measured evidence decides which comes first (a single attack event beside a
benign oddity the embedding happens to stretch further). Elsewhere (format 11) the trees
still speak where they alone would alert: beyond their surprise at the alert quantile
(``Tail.uncovered_floor``), a claim on the alert budget no larger than the budget a
detector of trees alone would take, and what an event extreme on a few columns needs
when the k-NN view ranks it among the benign oddities (a SYN flood's error rates).

Pure numpy; the build fits both (``ocsf_detect_tools.build``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, overload

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

TAIL_QUANTILE = 0.9  # the exponential tail starts here
TAIL_LEVELS = 64  # points of the empirical part kept in the manifest


class Tail(BaseModel):
    """Surprise of a score against held-out scores: -log P(held-out >= s), empirical up
    to the ``TAIL_QUANTILE`` quantile ``u``, exponential beyond it (the mean excess over
    ``u`` as its scale, peaks over threshold with a zero shape)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    values: list[float]  # held-out quantiles at ``levels``, non-decreasing, ending at u
    levels: list[float]  # their probabilities, from 0 to TAIL_QUANTILE
    scale: float  # mean excess of held-out scores over u (> 0)
    # format 8: the surprise below which this view adds no evidence (``evidence``)
    floor: float = Field(0.0, ge=0.0)
    # format 10: the largest surprise the held-out events measure, log(n + 1); beyond it
    # the surprise grows with the log of its ratio to it. None (bundles before format 10):
    # the exponential tail all the way.
    measured: float | None = Field(None, gt=0.0)
    # format 11, the isolation view's tail: the floor for an event the trees do not judge
    # (``trees_judge``: one the baseline does not hold, within the k-NN view's measured
    # range), the surprise at the alert quantile, so that the trees add evidence there
    # only where they alone would alert. None (bundles before format 11): they add none.
    uncovered_floor: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _uncovered_floor_not_below_floor(self) -> Tail:
        # the score with the trees counted for every event bounds the served score from
        # above (the exact re-check relies on it): true only while this floor is no lower
        if self.uncovered_floor is not None and self.uncovered_floor < self.floor - 1e-9:
            raise ValueError(
                f"uncovered_floor {self.uncovered_floor} lies below the floor {self.floor}"
            )
        return self

    @classmethod
    def fit(
        cls,
        scores: np.ndarray,
        floor_quantile: float = 0.0,
        measured: bool = True,
        uncovered_quantile: float | None = None,
    ) -> Tail:
        """``floor_quantile``: the held-out quantile whose surprise is the floor,
        -log(1 - q); 0 gives no floor. ``measured``: compress the surprise beyond the
        range the held-out events measure (False: the exponential tail throughout).
        ``uncovered_quantile``: the same for ``uncovered_floor`` (None: no such floor)."""
        if not 0.0 <= floor_quantile < 1.0:
            raise ValueError(f"floor_quantile must lie in [0, 1), not {floor_quantile}")
        if uncovered_quantile is not None and not floor_quantile <= uncovered_quantile < 1.0:
            raise ValueError(
                f"uncovered_quantile must lie in [floor_quantile, 1), not {uncovered_quantile}"
            )
        s = np.sort(np.asarray(scores, dtype=np.float64))
        if s.size == 0:
            raise ValueError("no held-out scores to fit a tail on")
        levels = np.linspace(0.0, TAIL_QUANTILE, TAIL_LEVELS)
        values = np.quantile(s, levels)
        excess = s[s > values[-1]] - values[-1]
        spread = float(s[-1] - s[0])
        scale = float(excess.mean()) if excess.size else 0.0
        # a floor for degenerate baselines (every held-out score equal)
        scale = max(scale, 1e-3 * spread, 1e-9)
        floor = -math.log1p(-floor_quantile)
        return cls(
            values=values.tolist(),
            levels=levels.tolist(),
            scale=scale,
            floor=floor,
            measured=math.log1p(s.size) if measured else None,
            uncovered_floor=(
                None if uncovered_quantile is None else -math.log1p(-uncovered_quantile)
            ),
        )

    def surprise(self, scores: np.ndarray) -> np.ndarray:
        """-log P(held-out >= s), vectorised, non-decreasing in ``s``; beyond the
        measured range m, m (1 + log(surprise / m)): continuous, with slope 1 at m."""
        s = np.asarray(scores, dtype=np.float64)
        values = np.asarray(self.values)
        levels = np.asarray(self.levels)
        u = values[-1]
        below = np.interp(s, values, levels, left=0.0)
        out = -np.log1p(-np.minimum(below, TAIL_QUANTILE))
        beyond = s > u
        out[beyond] = -math.log1p(-TAIL_QUANTILE) + (s[beyond] - u) / self.scale
        if self.measured is not None:
            over = out > self.measured
            out[over] = self.measured * (1.0 + np.log(out[over] / self.measured))
        return out

    def beyond_measure(self, surprise: np.ndarray) -> np.ndarray | None:
        """Where a surprise lies beyond the measured range; None for a tail without one."""
        if self.measured is None:
            return None
        return np.asarray(surprise) >= self.measured

    def credit(self, surprise: np.ndarray) -> np.ndarray:
        """Evidence from a surprise already computed: what lies beyond the floor."""
        return _beyond(surprise, self.floor)

    def evidence(self, scores: np.ndarray) -> np.ndarray:
        """The view's evidence for raw ``scores``: their surprise beyond the floor."""
        return self.credit(self.surprise(scores))

    def uncovered_credit(self, surprise: np.ndarray) -> np.ndarray | None:
        """Evidence beyond ``uncovered_floor``; None for a tail without one."""
        if self.uncovered_floor is None:
            return None
        return _beyond(surprise, self.uncovered_floor)


def _beyond(surprise: np.ndarray, floor: float) -> np.ndarray:
    """What of each surprise lies beyond ``floor`` (float64, never negative)."""
    return np.maximum(np.asarray(surprise, dtype=np.float64) - floor, 0.0)


def combined(
    knn_distance: np.ndarray,
    isolation: np.ndarray | None,
    tails: tuple[Tail, Tail] | None,
    covered: np.ndarray | None = None,
) -> np.ndarray:
    """The served score, float32: the sum of the two views' evidence (their surprises
    beyond each view's floor); without tails (a bundle of format 4 or older) the mean
    k-NN distance itself. ``covered`` (bool per event, or None for every event): where
    False, the isolation view adds nothing (``IsolationInfo.scope``), unless the k-NN
    view puts the event beyond its measured range."""
    parts = evidence(knn_distance, isolation, tails)
    if parts is None:
        return np.asarray(knn_distance, dtype=np.float32)
    return summed(parts, covered)


@dataclass(frozen=True)
class Evidence:
    """Each view's evidence for a batch, and where the k-NN view's surprise lies beyond
    its measured range (None: a tail without one, bundles before format 10).
    ``trees_uncovered``: the trees' evidence beyond their ``uncovered_floor``, what they
    add for an event they do not judge (None: nothing, bundles before format 11)."""

    knn: np.ndarray
    trees: np.ndarray
    beyond: np.ndarray | None
    trees_uncovered: np.ndarray | None = None


def evidence(
    knn_distance: np.ndarray, isolation: np.ndarray | None, tails: tuple[Tail, Tail] | None
) -> Evidence | None:
    """Each view's evidence, or None for a score of the k-NN distance alone."""
    if tails is None or isolation is None:
        return None
    knn_tail, isolation_tail = tails
    surprise = knn_tail.surprise(knn_distance)
    isolated = isolation_tail.surprise(isolation)
    return Evidence(
        knn_tail.credit(surprise),
        isolation_tail.credit(isolated),
        knn_tail.beyond_measure(surprise),
        isolation_tail.uncovered_credit(isolated),
    )


@overload
def trees_judge(parts: Evidence, covered: np.ndarray) -> np.ndarray: ...
@overload
def trees_judge(parts: Evidence, covered: None) -> None: ...
def trees_judge(parts: Evidence, covered: np.ndarray | None) -> np.ndarray | None:
    """Where the trees' evidence counts: the ``covered`` events and those beyond the k-NN
    view's measured range; None (``covered`` None): every event."""
    if covered is None or parts.beyond is None:
        return covered
    return np.asarray(covered) | parts.beyond


def summed(parts: Evidence, covered: np.ndarray | None = None) -> np.ndarray:
    """The score from the views' evidence (float32), the trees' where they judge
    (``trees_judge``) and, elsewhere, what they have beyond their uncovered floor (format
    11; none before); ``covered`` None: the trees' everywhere."""
    judged = trees_judge(parts, covered)
    if judged is None:
        trees = parts.trees
    else:
        elsewhere = 0.0 if parts.trees_uncovered is None else parts.trees_uncovered
        trees = np.where(judged, parts.trees, elsewhere)
    return (parts.knn + trees).astype(np.float32)


class IsolationInfo(BaseModel):
    """Where the trees are and how they were grown (manifest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    trees: int
    sample_size: int  # events each tree was grown on (psi)
    fitted_on: int  # distinct behaviours the sample was drawn from
    category_weight: float
    novel_weight: float
    # format 9: which events the trees judge. "all": every event. "covered": only an event
    # whose nearest indexed behaviour lies within ``cover_radius`` (embedding units: the
    # distinct radius), one the baseline holds, where its own copies let the k-NN view
    # vouch for it; an event the baseline does not hold is the k-NN view's to judge
    # (format 10: unless that view puts it beyond its measured range, ``Tail.measured``).
    scope: Literal["all", "covered"] = "all"
    cover_radius: float | None = Field(None, ge=0.0)

    @model_validator(mode="after")
    def _radius_for_covered(self) -> IsolationInfo:
        if self.scope == "covered" and self.cover_radius is None:
            raise ValueError('scope "covered" needs a cover_radius')
        return self

    def cover(self) -> float | None:
        """The radius within which an event counts as covered; None: every event."""
        return self.cover_radius if self.scope == "covered" else None


@dataclass(frozen=True)
class IsolationTrees:
    """An isolation forest as flat arrays, evaluated on the feature pipeline's own
    matrices (no one-hot matrix is built). Node ``i`` of any tree:

    - ``column[i] >= 0``: numeric split, left when ``numeric[:, column] <= threshold``;
    - ``column[i] < 0``: categorical split on field ``-column - 1``, left when the code
      differs from ``code[i]`` (a one-hot column is 0 there);
    - ``left[i] < 0``: a leaf, whose path length (depth plus the expected depth of the
      events it still held) is ``path[i]``.
    """

    column: np.ndarray  # int32
    threshold: np.ndarray  # float64
    code: np.ndarray  # int64
    left: np.ndarray  # int32
    right: np.ndarray  # int32
    path: np.ndarray  # float32
    roots: np.ndarray  # int32, one per tree
    sample_size: int
    # ``[isolation] hour = "arc"``: per hour feature, its (sin, cos) numeric columns and the
    # arc of the day the baseline covered (start, width in radians); None: every hour as is
    arc_columns: np.ndarray | None = None  # int32 [k, 2]
    arcs: np.ndarray | None = None  # float64 [k, 2]

    _FIELDS = ("column", "threshold", "code", "left", "right", "path", "roots")
    _ARC_FIELDS = ("arc_columns", "arcs")

    def save(self, path: Path) -> None:
        arcs = {f: getattr(self, f) for f in self._ARC_FIELDS if getattr(self, f) is not None}
        with Path(path).open("wb") as fh:
            np.savez(
                fh,
                sample_size=np.array(self.sample_size),
                **{f: getattr(self, f) for f in self._FIELDS},
                **arcs,
            )

    @classmethod
    def load(cls, path: Path) -> IsolationTrees:
        with np.load(path, allow_pickle=False) as data:
            arrays = {f: np.ascontiguousarray(data[f]) for f in cls._FIELDS}
            arcs = {f: np.ascontiguousarray(data[f]) for f in cls._ARC_FIELDS if f in data}
            trees = cls(sample_size=int(data["sample_size"]), **arrays, **arcs)
        trees.check()
        return trees

    def within_arcs(self, numeric: np.ndarray) -> np.ndarray:
        """``numeric`` as the trees read it: an event whose hour lies outside the arc of
        the day the baseline covered is read at the arc's middle hour (its hour says
        nothing the trees could have learnt; inside the arc it is read as it is). The
        rows unchanged when the trees have no arcs."""
        if self.arc_columns is None or self.arcs is None or len(numeric) == 0:
            return numeric
        out = np.array(numeric, dtype=np.float64)
        for (sin_col, cos_col), (start, width) in zip(self.arc_columns, self.arcs, strict=True):
            angle = np.arctan2(out[:, sin_col], out[:, cos_col])
            # the arc's own ends inside it, whatever the rounding of the stored (float32) hours
            outside = np.mod(angle - start + _ARC_SLACK, 2 * np.pi) > width + 2 * _ARC_SLACK
            middle = start + width / 2
            out[outside, sin_col] = np.sin(middle)
            out[outside, cos_col] = np.cos(middle)
        return out

    def check(self, n_numeric: int | None = None, n_categorical: int | None = None) -> None:
        """Raises ValueError when the arrays do not form trees the inputs can reach."""
        n = len(self.column)
        if not all(len(getattr(self, f)) == n for f in self._FIELDS[:-1]):
            raise ValueError("isolation arrays differ in length")
        inner = self.left >= 0
        children = np.concatenate([self.left[inner], self.right[inner]])
        if len(self.roots) == 0 or (children.size and (children.min() < 0 or children.max() >= n)):
            raise ValueError("isolation tree links point outside the arrays")
        if ((self.roots < 0) | (self.roots >= n)).any():
            raise ValueError("isolation tree roots point outside the arrays")
        # every node at most one parent and no root a child: what the roots reach is a
        # forest (no cycle for the descent to run around)
        linked = np.concatenate([children, self.roots])
        if len(np.unique(linked)) != len(linked):
            raise ValueError("isolation tree links do not form trees")
        if n_numeric is not None and (self.column[inner] >= n_numeric).any():
            raise ValueError(f"isolation trees split on numeric columns beyond {n_numeric}")
        if n_categorical is not None and (-self.column[inner] - 1 >= n_categorical).any():
            raise ValueError(f"isolation trees split on categorical fields beyond {n_categorical}")
        if (self.arc_columns is None) != (self.arcs is None):
            raise ValueError("isolation arcs without their columns, or columns without arcs")
        if self.arc_columns is not None and self.arcs is not None:
            k = len(self.arcs)
            if self.arc_columns.shape != (k, 2) or self.arcs.shape != (k, 2):
                raise ValueError(
                    "isolation arcs are not (sin, cos) column pairs with (start, width)"
                )
            if (self.arc_columns < 0).any() or (
                n_numeric is not None and (self.arc_columns >= n_numeric).any()
            ):
                raise ValueError("isolation arcs read numeric columns that do not exist")

    def scores(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        """Anomaly score 2^(-E[path] / c(psi)) per row, in (0, 1]; higher is more isolated.

        Every tree descends at once, one level per step, over one float matrix (numeric
        columns, then the category codes). Each node goes right when its value lies in
        (low, high): (threshold, inf) for a numeric split, (code - 0.5, code + 0.5) for a
        categorical one; a leaf sends both ways to itself, so a fixed number of steps
        (the deepest leaf) finishes every row. Rows go in blocks of about 32,768 (row,
        tree) pairs, so that a step's arrays stay in the processor's cache."""
        n = len(numeric)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        numeric = self.within_arcs(numeric)
        plan = self._plan()
        values = np.hstack(
            [np.asarray(numeric, dtype=np.float64), np.asarray(categorical, dtype=np.float64)]
        )
        if values.shape[1] == 0:
            values = np.zeros((n, 1))
        columns = plan.columns(np.asarray(numeric).shape[1])
        block = max(1, _BLOCK_PAIRS // len(self.roots))
        mean_path = np.empty(n, dtype=np.float64)
        for start in range(0, n, block):
            rows = values[start : start + block]
            state = plan.descend(rows, columns)
            mean_path[start : start + len(rows)] = plan.path[state].mean(axis=1, dtype=np.float64)
        return np.exp2(-mean_path / average_path(self.sample_size))

    def _plan(self) -> _Plan:
        plan = self.__dict__.get("_plan_cache")
        if plan is None:
            plan = _Plan.of(self)
            object.__setattr__(self, "_plan_cache", plan)
        return plan


# radians (about 0.02 s of the day): the rounding an hour's angle may carry between the
# float32 features the arcs were measured on and the float64 reading of them
_ARC_SLACK = 1e-6

# (row, tree) pairs descended together: a step's few arrays of this length (about 256 KB
# each) stay in cache (blocks and the state layout together: 45-56 ms for 10,000 rows and
# 100 trees, against 73-91 ms for all rows at once)
_BLOCK_PAIRS = 32_768


@dataclass(frozen=True)
class _Plan:
    """``IsolationTrees`` arranged for level-by-level descent (see ``scores``).

    A row's place in a tree is a state ``2 * node``; every per-node array is stored twice
    over (positions ``2 * node`` and ``2 * node + 1``), so a step reads the node at the
    state and moves to ``child[state + went_right]``, already a state: no index
    arithmetic between the reads."""

    base: np.ndarray  # int64: the numeric column, or the categorical field, a node reads
    categorical: np.ndarray  # bool
    low: np.ndarray  # float64
    high: np.ndarray  # float64
    child: np.ndarray  # int64: the state of the left, right child (a leaf: itself)
    path: np.ndarray  # float32: the leaf's path length
    roots: np.ndarray  # int64: the state of each tree's root
    depth: int

    def columns(self, n_numeric: int) -> np.ndarray:
        """Column of the value matrix (numeric columns, then the codes) each state reads."""
        return np.where(self.categorical, n_numeric + self.base, self.base)

    def descend(self, values: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(rows, trees) leaf states of ``values`` (numeric columns, then the codes)."""
        flat = values.ravel()
        offset = (np.arange(len(values), dtype=np.int64) * values.shape[1])[:, None]
        state = np.broadcast_to(self.roots, (len(values), len(self.roots))).copy()
        for _ in range(self.depth):
            x = flat[offset + columns[state]]
            right = (x > self.low[state]) & (x < self.high[state])
            state = self.child[state + right]
        return state

    @classmethod
    def of(cls, trees: IsolationTrees) -> _Plan:
        leaf = trees.left < 0
        categorical = (trees.column < 0) & ~leaf
        base = np.where(categorical, -trees.column - 1, trees.column)
        base = np.where(leaf, 0, base).astype(np.int64)
        code = trees.code.astype(np.float64)
        low = np.where(categorical, code - 0.5, trees.threshold).astype(np.float64)
        low[leaf] = np.inf  # never right
        high = np.where(categorical, code + 0.5, np.inf)
        index = np.arange(len(leaf))
        child = np.empty(2 * len(leaf), dtype=np.int64)
        child[0::2] = 2 * np.where(leaf, index, trees.left)
        child[1::2] = 2 * np.where(leaf, index, trees.right)
        twice = partial(np.repeat, repeats=2)
        return cls(
            base=twice(base),
            categorical=twice(categorical),
            low=twice(low),
            high=twice(high),
            child=child,
            path=twice(trees.path),
            roots=2 * trees.roots.astype(np.int64),
            depth=_deepest(trees, leaf),
        )


def _deepest(trees: IsolationTrees, leaf: np.ndarray) -> int:
    """Edges from a root to the deepest leaf, over all trees."""
    depth = np.full(len(leaf), -1, dtype=np.int64)
    depth[trees.roots] = 0
    frontier = trees.roots.astype(np.int64)
    deepest = 0
    while frontier.size:
        inner = frontier[~leaf[frontier]]
        children = np.concatenate([trees.left[inner], trees.right[inner]]).astype(np.int64)
        if children.size:
            deepest += 1
            depth[children] = deepest
        frontier = children
    return deepest


def average_path(n: int | np.ndarray) -> np.ndarray | float:
    """c(n): the average path length of an unsuccessful search in a binary search tree of
    n points, the depth an isolation tree still owes for a leaf holding n events."""
    arr = np.asarray(n, dtype=np.float64)
    out = np.where(
        arr > 2,
        2.0 * (np.log(np.maximum(arr - 1.0, 1.0)) + np.euler_gamma)
        - 2.0 * (arr - 1.0) / np.maximum(arr, 1.0),
        np.where(arr == 2, 1.0, 0.0),
    )
    return float(out) if np.ndim(out) == 0 else out
