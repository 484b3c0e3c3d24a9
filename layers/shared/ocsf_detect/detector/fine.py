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

The search is approximate (HNSW, k = 1): a stalled search only finds a farther event, so
the served score is never below the exact one, and scores that reach the threshold are
re-checked exactly (``serve_scores``); an event whose embedding is one of the indexed
vectors is at distance zero whatever the search finds, and the k-NN view's nearest
behaviour, a baseline event too, bounds what it finds (``FineView.nearest``). Pure numpy
and hnswlib; the build fits it (``ocsf_detect_tools.build``), docs/model.md (section 8)
has the measurements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ocsf_detect.detector.surprise import Tail

if TYPE_CHECKING:
    from ocsf_detect.detector.index import ExactBase


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


@dataclass(frozen=True)
class FineView:
    """A class's fine view, ready to serve: the index, its vectors as exact search reads
    them (built on first use), and the tail."""

    index: Any  # hnswlib.Index
    exact: Callable[[], ExactBase]
    tail: Tail
    # the indexed vectors' bytes (``copies_of``), built on first use: None, no lookup
    copies: Callable[[], frozenset[bytes]] | None = None

    def nearest(self, queries: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
        """Each query's distance to its nearest baseline event (float32): by the index,
        and zero for a query whose embedding is one of the indexed vectors. HNSW misses an
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

    def nearest_exact(self, queries: np.ndarray) -> np.ndarray:
        """The same by exact search (the re-check of scores that reach the threshold)."""
        from ocsf_detect.detector.index import exact_knn

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
