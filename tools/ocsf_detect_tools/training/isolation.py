"""Grow the isolation view of a class (``ocsf_detect.detector.surprise.IsolationTrees``).

scikit-learn's IsolationForest is grown on the weighted features of the baseline's
distinct behaviours (numeric columns, novel-amount columns x ``novel_weight``, one-hot
categories x ``category_weight``: the space the embedding preserves), then flattened into
arrays that split on the pipeline's own numeric and categorical columns, so serving needs
neither scikit-learn nor a one-hot matrix. Needs the ``train`` extra.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ocsf_detect.detector.surprise import IsolationTrees, average_path
from ocsf_detect.features.pipeline import FeatureMatrix

FIT_ROWS = 20_000  # trees see sample_size rows each; more rows only cost memory


def grow_isolation(
    matrix: FeatureMatrix,
    cardinalities: Sequence[int],
    *,
    category_weight: float,
    novel: tuple[Sequence[int], float],
    trees: int,
    sample_size: int,
    seed: int,
    uncut: Sequence[int] = (),
    arc_columns: Sequence[int] = (),
) -> IsolationTrees:
    """An isolation forest over ``matrix`` (the distinct behaviours), as flat arrays.
    ``uncut``: numeric columns no tree cuts on (held constant while the trees grow: a
    constant column is never a split's candidate). ``arc_columns``: (sin, cos) pairs of
    hour features whose arc of the day the trees keep (``IsolationTrees.within_arcs``)."""
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(seed)
    rows = np.arange(len(matrix))
    if len(rows) > FIT_ROWS:
        rows = np.sort(rng.choice(len(rows), FIT_ROWS, replace=False))
    dense = matrix.take(rows).dense(cardinalities, category_weight, novel)
    dense[:, list(uncut)] = 0.0
    psi = max(2, min(sample_size, len(rows)))
    forest = IsolationForest(n_estimators=trees, max_samples=psi, random_state=seed)
    forest.fit(dense)
    grown = flatten(forest, matrix.numeric.shape[1], cardinalities, novel, psi)
    if len(arc_columns) == 0:
        return grown
    pairs = np.asarray(arc_columns, dtype=np.int32).reshape(-1, 2)
    arcs = np.array([day_arc(matrix.numeric[:, s], matrix.numeric[:, c]) for s, c in pairs])
    return dataclasses.replace(grown, arc_columns=pairs, arcs=arcs)


def day_arc(sin: np.ndarray, cos: np.ndarray) -> tuple[float, float]:
    """(start, width) in radians of the smallest arc of the circle holding every point:
    the circle less its largest gap between neighbouring hours."""
    angle = np.sort(np.mod(np.arctan2(sin, cos), 2 * np.pi))
    if len(angle) == 0:
        return 0.0, 2 * np.pi
    gaps = np.diff(np.r_[angle, angle[0] + 2 * np.pi])
    widest = int(np.argmax(gaps))
    start = angle[(widest + 1) % len(angle)]
    return float(start), float(2 * np.pi - gaps[widest])


def flatten(
    forest: object,
    n_numeric: int,
    cardinalities: Sequence[int],
    novel: tuple[Sequence[int], float],
    sample_size: int,
) -> IsolationTrees:
    """scikit-learn trees over the dense layout -> ``IsolationTrees`` over the pipeline's
    columns. A dense column is a numeric column (a novel-amount one scaled by its weight:
    the threshold is divided back) or the one-hot column of (categorical field, code)."""
    novel_columns, novel_weight = novel
    weight = np.ones(n_numeric)
    weight[list(novel_columns)] = novel_weight
    # first dense column of each categorical field (a sentinel when there is none)
    starts = np.cumsum([n_numeric, *cardinalities])[:-1] if len(cardinalities) else np.zeros(1)
    columns: list[np.ndarray] = []
    thresholds, codes, lefts, rights, paths, roots = [], [], [], [], [], []
    offset = 0
    for tree, features in zip(
        forest.estimators_,  # type: ignore[attr-defined]
        forest.estimators_features_,  # type: ignore[attr-defined]
        strict=True,
    ):
        t = tree.tree_
        n = t.node_count
        leaf = t.children_left < 0
        dense_col = np.where(leaf, 0, np.asarray(features)[np.maximum(t.feature, 0)])
        numeric = dense_col < n_numeric
        field = np.searchsorted(starts, dense_col, side="right") - 1
        code = np.where(numeric | leaf, 0, dense_col - starts[np.maximum(field, 0)].astype(int))
        column = np.where(leaf, 0, np.where(numeric, dense_col, -field - 1))
        threshold = np.where(
            numeric & ~leaf, t.threshold / weight[np.minimum(dense_col, n_numeric - 1)], 0.0
        )
        depth = np.zeros(n, dtype=np.float64)
        for i in range(n):  # parents come before their children in scikit-learn's order
            if not leaf[i]:
                depth[t.children_left[i]] = depth[i] + 1
                depth[t.children_right[i]] = depth[i] + 1
        path = np.where(leaf, depth + average_path(t.n_node_samples), 0.0)
        columns.append(column.astype(np.int32))
        thresholds.append(threshold)
        codes.append(code.astype(np.int64))
        lefts.append(np.where(leaf, -1, t.children_left + offset).astype(np.int32))
        rights.append(np.where(leaf, -1, t.children_right + offset).astype(np.int32))
        paths.append(path.astype(np.float32))
        roots.append(offset)
        offset += n
    trees = IsolationTrees(
        column=np.concatenate(columns),
        threshold=np.concatenate(thresholds).astype(np.float64),
        code=np.concatenate(codes),
        left=np.concatenate(lefts),
        right=np.concatenate(rights),
        path=np.concatenate(paths),
        roots=np.array(roots, dtype=np.int32),
        sample_size=sample_size,
    )
    trees.check(n_numeric, len(cardinalities))
    return trees
