"""The weight of each categorical field in the distance the embedding preserves.

A categorical mismatch weighs ``category_weight`` (x8) times a one-sigma numeric
deviation. Fields are not independent, though: a flow's protocol and protocol number, its
port, service and application name change together, and counted field by field one
change of service would weigh as five or six mismatches and outweigh any numeric
extreme (the clip bounds a numeric column at 8 sigma). So fields whose mismatches go
together in the baseline share their weight: over pairs of baseline events, the
mismatch of field j is a 0/1 variable, and field j's weight is divided by the square
root of the sum of its positive correlations with every field (itself included). A
group of g fields that always change together then weighs as one field, an independent
field keeps the full weight, and a field constant in the baseline (no mismatch to
correlate) keeps it too, so a value never seen there still counts in full.

Computed exactly from value counts (the pairs are every ordered pair of events, drawn
with replacement), on at most ``MAX_ROWS`` events.
"""

from __future__ import annotations

import numpy as np

MAX_ROWS = 50_000


def _match_probability(codes: np.ndarray) -> float:
    """P(two events drawn at random have the same code)."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts / len(codes)
    return float(np.dot(p, p))


def category_weights(categorical: np.ndarray, base: float, shared: bool = True) -> np.ndarray:
    """One weight per categorical field of ``categorical`` (int codes, events x fields):
    ``base`` divided by the square root of the field's effective group size (the sum of
    its positive mismatch correlations), or ``base`` for every field if not ``shared``."""
    categorical = np.asarray(categorical)
    n, fields = categorical.shape if categorical.ndim == 2 else (0, 0)
    weights = np.full(fields, float(base))
    if not shared or n < 2 or fields == 0:
        return weights
    if n > MAX_ROWS:  # a fixed draw: the weights do not depend on the training seed
        rows = np.random.default_rng(0).choice(n, MAX_ROWS, replace=False)
        categorical = categorical[rows]
    match = np.array([_match_probability(categorical[:, j]) for j in range(fields)])
    mismatch = 1.0 - match
    variance = mismatch * (1.0 - mismatch)
    live = np.flatnonzero(variance > 1e-12)
    group = np.ones(fields)
    for j in live:
        for k in live:
            if k <= j:
                continue
            joint = categorical[:, j].astype(np.int64) * (int(categorical[:, k].max()) + 1)
            both_match = _match_probability(joint + categorical[:, k])
            both_mismatch = 1.0 - match[j] - match[k] + both_match
            corr = (both_mismatch - mismatch[j] * mismatch[k]) / np.sqrt(variance[j] * variance[k])
            if corr > 0:
                group[j] += corr
                group[k] += corr
    return weights / np.sqrt(group)


def shared_fields(names: list[str], weights: list[float] | tuple[float, ...], base: float) -> str:
    """The fields whose weight the sharing lowered by more than 1%, as ``name xW`` (lowest
    first), or "none" (the build log and ``ocsf-detect inspect`` print this)."""
    if len(names) != len(weights):
        raise ValueError(f"{len(weights)} category weights for {len(names)} categorical fields")
    lowered = sorted((w, n) for n, w in zip(names, weights, strict=True) if w < base * 0.99)
    return ", ".join(f"{n} x{w:.1f}" for w, n in lowered) or "none"
