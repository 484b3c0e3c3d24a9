"""k-NN index over baseline embeddings (hnswlib), with recall measured at build time."""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np

SPACE = "l2"  # hnswlib's l2 is squared Euclidean; scores use the square root


@dataclass(frozen=True)
class IndexParams:
    M: int = 32  # the defaults of ``config.IndexConfig``
    ef_construction: int = 400
    ef_search: int = 16
    k: int = 16


def build_index(vectors: np.ndarray, params: IndexParams, threads: int = 1) -> hnswlib.Index:
    index = hnswlib.Index(space=SPACE, dim=int(vectors.shape[1]))
    index.init_index(
        max_elements=max(1, len(vectors)),
        ef_construction=params.ef_construction,
        M=params.M,
        random_seed=100,
    )
    index.add_items(
        np.ascontiguousarray(vectors, dtype=np.float32),
        np.arange(len(vectors)),
        num_threads=threads,
    )
    index.set_ef(max(params.ef_search, params.k))
    index.set_num_threads(1)
    return index


def load_index(path: Path, dim: int, ef_search: int) -> hnswlib.Index:
    """The saved index at ``path``, of vectors of ``dim`` floats. hnswlib reads a file of
    another dimension without a word (each record then splits at the wrong place), so
    the record layout in the header is checked first (RuntimeError, as hnswlib's own)."""
    try:
        header = np.fromfile(path, dtype=_HEADER, count=1)
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"cannot read the index header: {exc}") from exc
    if len(header) == 1:
        stored = int(header[0]["label_offset"]) - int(header[0]["data_offset"])
        if stored != 4 * dim:
            raise RuntimeError(
                f"its vectors are {stored} bytes ({stored / 4:g} floats), not {dim} floats"
            )
    index = _index_from_file(path, dim)
    if index is None:  # a layout the reader below does not know: hnswlib's own loader
        index = hnswlib.Index(space=SPACE, dim=dim)
        index.load_index(str(path))
    index.set_ef(ef_search)
    index.set_num_threads(1)
    return index


def _index_from_file(path: Path, dim: int) -> hnswlib.Index | None:
    """The saved index at ``path``, read in one pass with numpy and handed to hnswlib as
    the state its pickling restores (the same graph, the same searches), or None when
    the file is not the layout this reader knows (``canonical_index_file``'s; the caller
    then uses hnswlib's own loader). hnswlib's loader reads the file record by record
    through a C++ stream, twice; on a bundle's 50,000 behaviours that is most of a
    bundle's load time, and this is about a quarter of it."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except (OSError, ValueError):
        return None
    if len(raw) < _HEADER.itemsize:
        return None
    h = raw[: _HEADER.itemsize].view(_HEADER)[0]
    count, record = int(h["count"]), int(h["record_size"])
    max_m, label_offset = int(h["max_m"]), int(h["label_offset"])
    block = 4 + 4 * max_m  # one upper-layer list: a count and max_m links
    level0_end = _HEADER.itemsize + record * count
    if (
        count == 0
        or int(h["max_elements"]) != count
        or int(h["offset_level0"]) != 0
        or record % 4
        or label_offset + 8 > record
        or level0_end + 4 * count > len(raw)
    ):
        return None
    # After the level-0 records and one float per element (``canonical_index_file``),
    # each element's upper-layer links: a 32-bit byte length, then that many bytes. Every
    # length is a multiple of 4 and everything before is too, so the part reads as words.
    words = raw[level0_end + 4 * count :]
    if len(words) % 4:
        return None
    words = words.view("<u4")
    upper = _upper_layers(words, count, block)
    if upper is None:
        return None
    levels, links = upper
    level0 = raw[_HEADER.itemsize : level0_end]
    labels = level0.reshape(count, record)[:, label_offset : label_offset + 8].copy()
    state = {
        "ser_version": 1,
        "space": SPACE,
        "dim": dim,
        "index_inited": True,
        "ep_added": True,
        "normalize": False,
        "num_threads": 1,
        "seed": 100,
        "offset_level0": 0,
        "max_elements": count,
        "cur_element_count": count,
        "size_data_per_element": record,
        "label_offset": label_offset,
        "offset_data": int(h["data_offset"]),
        "max_level": int(h["max_level"]),
        "enterpoint_node": int(h["entry_point"]),
        "max_M": max_m,
        "max_M0": int(h["max_m0"]),
        "M": int(h["m"]),
        "mult": float(h["mult"]),
        "ef_construction": int(h["ef_construction"]),
        "ef": 10,
        "has_deletions": False,
        "size_links_per_element": block,
        "allow_replace_deleted": False,
        "label_lookup_external": labels.view("<u8")[:, 0],
        "label_lookup_internal": np.arange(count, dtype=np.uint32),
        "element_levels": levels,
        "data_level0": level0.view(np.int8),
        "link_lists": links.view(np.int8),
    }
    index = hnswlib.Index.__new__(hnswlib.Index)
    try:
        index.__setstate__((state,))
    except (RuntimeError, ValueError, TypeError, KeyError):
        return None  # a state this hnswlib does not take: a version that pickles otherwise
    return index


def _upper_layers(
    words: np.ndarray, count: int, block: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(each element's level, int32 [count]; the upper-layer links, list after list)
    from the words after the level-0 records, or None when they do not parse as
    ``count`` length-prefixed lists of whole ``block``s ending at the last word. Most
    elements have no upper layer (a length of 0), so the walk steps from one non-zero
    length to the next: a run of zero words from a list's start are that many empty lists."""
    end = len(words)
    nonzero = np.flatnonzero(words).tolist()
    heads: list[int] = []  # word positions of the non-zero lengths
    at = 0
    while at < end:
        k = bisect.bisect_left(nonzero, at)
        if k == len(nonzero):
            break  # the rest are empty lists
        head = nonzero[k]
        heads.append(head)
        at = head + 1 + int(words[head]) // 4
    sizes = words[heads].astype(np.int64)
    lengths = sizes // 4
    if at > end or len(heads) > count or end - int(lengths.sum()) != count:
        return None
    if np.any(sizes % block):  # whole lists of whole links only
        return None
    starts = np.asarray(heads, dtype=np.int64)
    skipped = np.cumsum(lengths) - lengths  # link words before each non-zero list
    levels = np.zeros(count, dtype=np.int32)
    levels[starts - skipped] = lengths // (block // 4)  # element number = lists before it
    first = starts + 1 - skipped  # each list's first word, counted among link words only
    picks = np.repeat(first, lengths) + np.arange(int(lengths.sum()))
    return levels, words[picks]


def knn(index: hnswlib.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels int64 [n, k], Euclidean distances float32 [n, k]); k is capped at the
    index size."""
    k = min(k, index.get_current_count())
    labels, sq = index.knn_query(
        np.ascontiguousarray(queries, dtype=np.float32), k=k, num_threads=1
    )
    return labels.astype(np.int64), np.sqrt(np.maximum(sq, 0.0))


@dataclass(frozen=True)
class ExactBase:
    """Base vectors as exact search reads them: one float32 matrix of rows [b, |b|^2].
    One matrix product with query rows [-2 q, 1] then gives |b|^2 - 2 q.b, what the
    search ranks by, with no pass over the (queries x base) block to scale and shift it.
    Built once per index by callers that search the same vectors again and again."""

    augmented: np.ndarray  # (n, dim + 1) float32, C-contiguous

    @classmethod
    def of(cls, vectors: np.ndarray) -> ExactBase:
        vectors = np.asarray(vectors)
        augmented = np.empty((len(vectors), vectors.shape[1] + 1), dtype=np.float32)
        augmented[:, :-1] = vectors
        base32 = augmented[:, :-1]
        augmented[:, -1] = np.einsum("ij,ij->i", base32, base32)
        return cls(augmented)

    @property
    def vectors(self) -> np.ndarray:
        """The vectors, float32 (a view)."""
        return self.augmented[:, :-1]

    @property
    def squared_norms(self) -> np.ndarray:
        """|b|^2 per vector, float32 (a view)."""
        return self.augmented[:, -1]


def exact_knn(
    base: np.ndarray | ExactBase,
    queries: np.ndarray,
    k: int,
    bound: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force k-NN in blocks (reference for recall, the exact baseline, and the
    re-check of alerts). Candidates come from one float32 matrix product (the expansion
    |q|^2 + |b|^2 - 2 q.b); the distances of the best few are then recomputed directly
    from the differences, which the expansion gets wrong for near-identical vectors.
    ``base``: the vectors, or ``ExactBase.of`` them, if already built.

    ``bound``: per query, a distance that at least k base vectors are within (the k-th
    distance an approximate search found: its neighbours are real base vectors). The
    candidates are then every vector the expansion puts within the bound, with a margin
    far above float32's rounding, instead of a partial sort of the whole row: the same
    neighbours, found in a fraction of the time. A block where the bound leaves fewer
    than k candidates, or very many, takes the partial sort, whose float32 ranking is
    checked: a row where a vector it left out could be nearer than the k-th it kept (near-
    identical vectors, or vectors far from the origin) is searched again among every
    vector the expansion puts within that k-th distance."""
    prepared = base if isinstance(base, ExactBase) else ExactBase.of(base)
    base32, augmented = prepared.vectors, prepared.augmented
    n, dim = base32.shape
    k = min(k, n)
    extra = min(n, k + max(8, k))  # slack for the float32 ranking
    labels = np.empty((len(queries), k), dtype=np.int64)
    dists = np.empty((len(queries), k), dtype=np.float32)
    max_base_sq = float(prepared.squared_norms.max()) if n else 0.0
    # Small blocks: the (block x base) matrix stays in cache.
    q_aug = np.empty((min(64, len(queries)), dim + 1), dtype=np.float32)
    for start in range(0, len(queries), 64):
        q = np.ascontiguousarray(queries[start : start + 64], dtype=np.float32)
        rows_aug = q_aug[: len(q)]
        np.multiply(q, -2.0, out=rows_aug[:, :-1])  # exact: a power of two
        rows_aug[:, -1] = 1.0
        # |b|^2 - 2 q.b; |q|^2 is the same along a row: left out of the ranking
        d2 = rows_aug @ augmented.T
        block = slice(start, start + len(q))
        if bound is not None and _within_bound(
            base32, q, d2, bound[block], max_base_sq, k, labels[block], dists[block]
        ):
            continue
        floor = None
        if extra < n:
            ranked = np.argpartition(d2, extra - 1, axis=1)
            part = ranked[:, :extra]
            # every vector left out has at least the extra-th smallest |b|^2 - 2 q.b
            floor = np.take_along_axis(d2, ranked[:, extra - 1 : extra], axis=1)[:, 0]
        else:
            part = np.broadcast_to(np.arange(n), d2.shape)
        labels[block], dists[block], kth = _nearest_of(base32, q, part, k)
        if floor is not None:
            # A vector left out lies at least |q|^2 + floor (less float32's rounding)
            # away, squared; where the k-th candidate is not certainly nearer, the float32
            # ranking may have left a nearer one out. That row takes every vector the
            # expansion puts within the k-th candidate's distance (with the same margin),
            # which holds the k nearest, ranked in float64.
            q_sq = np.einsum("ij,ij->i", q, q).astype(np.float64)
            reach = q_sq + floor - _rounding(q_sq, np.abs(floor), max_base_sq)
            for row in np.flatnonzero(np.square(kth) > reach):
                b2 = float(kth[row]) ** 2
                limit = b2 - q_sq[row] + _rounding(q_sq[row], b2, max_base_sq)
                within = np.flatnonzero(d2[row] <= limit)[None, :]
                got_labels, got_dists, _ = _nearest_of(base32, q[row : row + 1], within, k)
                labels[start + row], dists[start + row] = got_labels[0], got_dists[0]
    return labels, dists


def _rounding(
    q_sq: np.ndarray | float, b2: np.ndarray | float, max_base_sq: float
) -> np.ndarray | float:
    """A margin on |b|^2 - 2 q.b computed in float32 (1e-4 of the magnitudes involved):
    orders of magnitude above its rounding for vectors of this size."""
    return 1e-4 * (q_sq + max_base_sq + b2) + 1e-12


def _nearest_of(
    base32: np.ndarray, q: np.ndarray, part: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Among candidates ``part`` (per query row), the k nearest by distances computed in
    float64 from the differences (ties to the earlier candidate): labels, float32 distances
    and the k-th float64 distance."""
    diff = base32[part].astype(np.float64) - q[:, None, :].astype(np.float64)
    cand = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    order = np.argsort(cand, axis=1, kind="stable")[:, :k]
    nearest = np.take_along_axis(cand, order, axis=1)
    return np.take_along_axis(part, order, axis=1), nearest.astype(np.float32), nearest[:, -1]


MAX_BOUND_CANDIDATES = 512
"""Candidates per query (on average over a block) beyond which a bound is not worth it."""


def _within_bound(
    base32: np.ndarray,
    q: np.ndarray,
    d2: np.ndarray,
    bound: np.ndarray,
    max_base_sq: float,
    k: int,
    labels_out: np.ndarray,
    dists_out: np.ndarray,
) -> bool:
    """``exact_knn``'s bounded search for one block; False: take the partial sort.

    ``d2`` holds |b|^2 - 2 q.b (float32). A vector within ``bound`` of q has it at most
    bound^2 - |q|^2; the margin (1e-4 of the magnitudes involved) is orders of magnitude
    above the rounding of a float32 dot product of this size, so no vector within the
    bound is missed, and the k nearest candidates, by distances recomputed in float64
    from the differences, are the k nearest of all (ties go to the lower index)."""
    q_sq = np.einsum("ij,ij->i", q, q).astype(np.float64)
    b2 = np.square(np.asarray(bound, dtype=np.float64))
    limit = b2 - q_sq + _rounding(q_sq, b2, max_base_sq)
    flat = np.flatnonzero(d2 <= limit.astype(np.float32)[:, None])
    if len(flat) > MAX_BOUND_CANDIDATES * len(q):
        return False
    rows, cols = np.divmod(flat, d2.shape[1])
    counts = np.bincount(rows, minlength=len(q))
    if counts.min() < k:
        return False
    diff = base32[cols].astype(np.float64) - q[rows].astype(np.float64)
    dist = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    order = np.lexsort((cols, dist, rows))  # by query, then distance, then index
    starts = np.cumsum(counts) - counts
    take = order[(starts[:, None] + np.arange(k)).ravel()]
    labels_out[:] = cols[take].reshape(len(q), k)
    dists_out[:] = dist[take].reshape(len(q), k)
    return True


def knn_score(labels: np.ndarray, dists: np.ndarray, mass: np.ndarray | None) -> np.ndarray:
    """The k-NN score of each query: the mean distance to its k nearest baseline events,
    each indexed behaviour standing for ``mass[label]`` of them (at least 1; the build caps
    it), taken nearest first until k are counted. Without masses (older bundles): the mean
    distance to the k nearest indexed vectors.

    A behaviour seen again and again over time is worth more than one seen once, but only
    up to the cap: a flood, however long, can never stand for all k neighbours of its own
    events, and a burst (a scan, a handful of downloads within a minute) counts once."""
    if mass is None:
        return np.asarray(dists.mean(axis=1))
    k = dists.shape[1]
    copies = mass[labels].astype(np.float32)
    before = np.cumsum(copies, axis=1) - copies
    weights = np.clip(np.minimum(copies, k - before), 0.0, None)
    return np.asarray((weights * dists).sum(axis=1) / k)


RERANK_BLOCK = 256  # queries per block: bounds the (block x candidates x width) gather


def rerank(
    base: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of each query's ``candidates`` (labels into ``base``, as an
    approximate search in another space returned them) by exact Euclidean distance
    between ``queries`` and ``base`` rows: (labels int64 [n, k], distances float32
    [n, k]), nearest first. A candidate set that misses a true neighbour only ever
    inflates the distances, as a stalled search does, so the exact re-check of alerts
    (``recheck`` over ``base``) keeps its guarantee."""
    n, c = candidates.shape
    k = min(k, c)
    labels = np.empty((n, k), dtype=np.int64)
    dists = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, RERANK_BLOCK):
        block = slice(start, start + RERANK_BLOCK)
        found = candidates[block]
        diff = base[found] - queries[block, None, :]
        d = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        labels[block] = np.take_along_axis(found, order, axis=1)
        dists[block] = np.take_along_axis(d, order, axis=1)
    return labels, dists


def rescore_exact(
    vectors: np.ndarray | ExactBase,
    queries: np.ndarray,
    labels: np.ndarray,
    dists: np.ndarray,
    cutoff: float,
    limit: int | None = None,
    mass: np.ndarray | None = None,
) -> np.ndarray:
    """Redo, in place, the k-NN result of every query whose approximate score (mean
    distance) is at or above ``cutoff`` with exact search; returns those rows. With
    ``limit``, at most that many: the ones closest to the cutoff, whose decision the
    smallest inflation could have flipped.

    Approximate neighbours are never closer than the true ones, so an approximate score
    below the cutoff is below it exactly too. After this, ``score >= cutoff`` is decided
    as exact search decides it: a search that stalled in the wrong region of the graph
    cannot raise an alert, and every alert's score and neighbours are exact. The limit
    bounds the cost when most of a batch is anomalous (a flood, or a bundle that does
    not fit the traffic); there, stalls are a small part of the alerts. ``vectors``: as
    ``exact_knn``'s base; ``mass``: as ``knn_score``."""
    scores = knn_score(labels, dists, mass)
    rows = closest_rows(scores, scores >= cutoff, limit)
    recheck(vectors, queries, labels, dists, rows)
    return rows


def closest_rows(scores: np.ndarray, reached: np.ndarray, limit: int | None) -> np.ndarray:
    """The rows where ``reached`` holds; beyond ``limit`` of them, the ``limit`` with the
    lowest ``scores`` (closest to the threshold), ascending."""
    rows = np.flatnonzero(reached)
    if limit is not None and len(rows) > limit:
        rows = np.sort(rows[np.argsort(scores[rows], kind="stable")[:limit]])
    return rows


def recheck(
    vectors: np.ndarray | ExactBase,
    queries: np.ndarray,
    labels: np.ndarray,
    dists: np.ndarray,
    rows: np.ndarray,
) -> None:
    """Replace, in place, the k-NN result of ``rows`` by exact search (bounded by the
    approximate k-th distance: the approximate neighbours are real base vectors)."""
    if len(rows):
        bound = dists[rows].max(axis=1)
        exact_labels, exact_dists = exact_knn(vectors, queries[rows], dists.shape[1], bound=bound)
        labels[rows] = exact_labels
        dists[rows] = exact_dists


# hnswlib's saved index: a header of 96 bytes (offsetLevel0, max_elements,
# cur_element_count, size_data_per_element, label_offset, offsetData as size_t; maxlevel,
# enterpoint_node as 32-bit; maxM, maxM0, M as size_t; mult as double; ef_construction as
# size_t), then max_elements level-0 records of size_data_per_element bytes, each holding
# its links, then the vector at offsetData, then its label.
_HEADER = np.dtype(
    [
        ("offset_level0", "<u8"),
        ("max_elements", "<u8"),
        ("count", "<u8"),
        ("record_size", "<u8"),
        ("label_offset", "<u8"),
        ("data_offset", "<u8"),
        ("max_level", "<i4"),
        ("entry_point", "<u4"),
        ("max_m", "<u8"),
        ("max_m0", "<u8"),
        ("m", "<u8"),
        ("mult", "<f8"),
        ("ef_construction", "<u8"),
    ]
)


def index_file_vectors(path: Path, count: int, dim: int) -> np.ndarray | None:
    """The indexed vectors (float32 [count, dim], in insertion order), memory-mapped from
    a saved hnswlib index: the bundle stores them once, in the index. None when the file
    does not have the layout this reader knows (the caller then asks the index)."""
    try:
        header = np.fromfile(path, dtype=_HEADER, count=1)
    except (OSError, ValueError):
        return None
    if len(header) != 1:
        return None
    h = header[0]
    record = int(h["record_size"])
    if (
        int(h["count"]) != count
        or int(h["offset_level0"]) != 0
        or int(h["data_offset"]) + 4 * dim > int(h["label_offset"])
        or int(h["label_offset"]) + 8 > record
        or Path(path).stat().st_size < _HEADER.itemsize + record * int(h["max_elements"])
    ):
        return None
    if count == 0:
        return np.zeros((0, dim), dtype=np.float32)
    block = np.memmap(path, dtype=np.uint8, mode="r", offset=_HEADER.itemsize)
    records = block[: record * count].reshape(count, record)
    labels = records[:, int(h["label_offset"]) : int(h["label_offset"]) + 8].view("<u8")[:, 0]
    if not np.array_equal(labels, np.arange(count, dtype=np.uint64)):
        return None  # built with other labels: rows would not be labels
    return records[:, int(h["data_offset"]) : int(h["data_offset"]) + 4 * dim].view("<f4")


def canonical_index_file(path: Path) -> bool:
    """Make a saved index's bytes a function of its graph alone, in place, so that the
    same data always gives the same file (and the bundle the same version). After the
    level-0 records, the file holds one float per element, the vector lengths that only
    an index built to normalise its vectors sets (this library's l2 index never does);
    otherwise they are whatever the allocator left there. They are zeroed. After them
    come, per element, a 32-bit byte length and that many bytes of upper-layer links,
    which hnswlib zeroes itself. False, file untouched: not the layout this reader knows."""
    data = bytearray(Path(path).read_bytes())
    if len(data) < _HEADER.itemsize:
        return False
    h = np.frombuffer(bytes(data[: _HEADER.itemsize]), dtype=_HEADER)[0]
    count, record = int(h["count"]), int(h["record_size"])
    block = 4 + 4 * int(h["max_m"])  # one upper-layer list: a count and max_m links
    lengths = _HEADER.itemsize + record * count
    links = lengths + 4 * count
    if int(h["offset_level0"]) != 0 or links > len(data) or (len(data) - links) % 4:
        return False
    # the layout check hnswlib's own loader makes, as the bundle's reader makes it
    if _upper_layers(np.frombuffer(bytes(data[links:]), dtype="<u4"), count, block) is None:
        return False
    data[lengths:links] = bytes(4 * count)
    Path(path).write_bytes(bytes(data))
    return True


def distinct(vectors: np.ndarray, radius: float, seed: int = 0) -> np.ndarray:
    """Indices (ascending) of ``distinct_net``'s kept vectors."""
    return distinct_net(vectors, radius, seed)[0]


def distinct_net(
    vectors: np.ndarray, radius: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, owner). ``kept``: indices (ascending) of a subset in which every dropped
    vector lies within ``radius`` of a kept one and (up to the approximate search that
    finds the nearest kept vector) no two kept vectors are closer than ``radius``: a greedy
    radius net, in random order. ``owner[i]``: the position in ``kept`` of the kept vector
    that vector ``i`` was merged into (its own, for a kept one).

    The baseline index should hold the *distinct* behaviours of normal traffic, not their
    raw frequencies: a flood of near-identical events (a scan, a C2 heartbeat, one noisy
    device) then stands for few, and its own events cannot find k close neighbours in it.
    How much each kept behaviour stands for is the build's ``mass`` (``knn_score``)."""
    n = len(vectors)
    if radius <= 0 or n < 2:
        return np.arange(n), np.arange(n)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    net = hnswlib.Index(space=SPACE, dim=int(data.shape[1]))
    net.init_index(max_elements=n, ef_construction=64, M=12, random_seed=seed)
    net.set_ef(32)
    limit = radius * radius  # hnswlib's l2 is squared
    kept: list[int] = []
    owner_of = np.empty(n, dtype=np.int64)  # insertion position of the owner
    for i in np.random.default_rng(seed).permutation(n).tolist():
        if kept:
            label, sq = net.knn_query(data[i : i + 1], k=1, num_threads=1)
            if sq[0, 0] < limit:
                owner_of[i] = int(label[0, 0])
                continue
        net.add_items(data[i : i + 1], [len(kept)], num_threads=1)
        owner_of[i] = len(kept)
        kept.append(i)
    inserted = np.array(kept, dtype=np.int64)
    order = np.argsort(inserted, kind="stable")
    position = np.empty(len(inserted), dtype=np.int64)
    position[order] = np.arange(len(inserted))  # insertion position -> ascending position
    return inserted[order], position[owner_of]


def distance_ratio(
    embedded: np.ndarray, features: np.ndarray, pairs: int = 4000, seed: int = 0
) -> float:
    """Median ratio of embedding to feature-space distance over random pairs: converts a
    radius given in (standardised) feature units into embedding units."""
    n = len(embedded)
    if n < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    d_feat = np.linalg.norm(features[a].astype(np.float64) - features[b], axis=1)
    d_emb = np.linalg.norm(embedded[a].astype(np.float64) - embedded[b], axis=1)
    ok = (d_feat > 1e-9) & np.isfinite(d_emb) & np.isfinite(d_feat)
    ratio = float(np.median(d_emb[ok] / d_feat[ok])) if ok.any() else 1.0
    return ratio if math.isfinite(ratio) and ratio > 0 else 1.0


# Exact re-checks per class batch in the scorer: at most this share of it (and at least
# RECHECK_MIN). Normal traffic alerts at the calibrated rate (0.5%) plus stalled searches;
# ef is tuned so that these stay within RECHECK_TUNED, leaving headroom for drift.
RECHECK_SHARE = 0.05
RECHECK_TUNED = 0.03
RECHECK_MIN = 32
MAX_EF = 128  # beyond this, re-checking the few stalled alerts exactly is cheaper
SCORE_TOLERANCE = 0.01  # an approximate score more than 1% above the exact one is an error
# One exact distance (a row of the blocked float32 product in ``exact_knn``) costs about
# this share of one candidate visited by an HNSW search (x86-64, one thread: 0.46 ms for
# 81,000 vectors against about 0.33 us per unit of ef).
EXACT_COST_PER_VECTOR = 0.017


@dataclass(frozen=True)
class SearchQuality:
    """How HNSW compares with exact search on a sample of queries."""

    recall: float  # share of returned neighbours that are among the true k nearest
    score_errors: float  # share of queries whose score exceeds the exact score by > 1%
    rechecked: float = 0.0  # share whose score reaches the threshold: re-checked exactly


def search_quality(
    index: hnswlib.Index,
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    exact: np.ndarray | None = None,
    threshold: float = math.inf,
) -> SearchQuality:
    """Recall@k, the score-error share and the re-checked share (scores at or above
    ``threshold``) of HNSW against exact search (``exact``: the exact distances of
    ``queries``, if already known).

    Ties count for recall: a returned neighbour as close as the exact k-th is a correct
    answer (baselines hold many identical events, whose ids are arbitrary). Mean recall
    alone hides what matters for alerting: a greedy search that stalls in the wrong
    region returns neighbours that are all too far, and such queries are the ones whose
    inflated scores cross the threshold."""
    k = min(k, len(base))
    if exact is None:
        _, exact = exact_knn(base, queries, k)
    _, approx = knn(index, queries, k)
    kth = exact[:, -1:] * (1 + 1e-4) + 1e-4
    scores = approx.mean(axis=1)
    inflated = scores > exact.mean(axis=1) * (1 + SCORE_TOLERANCE) + 1e-6
    return SearchQuality(
        float((approx <= kth).mean()), float(inflated.mean()), float((scores >= threshold).mean())
    )


def search_work(ef: int, quality: SearchQuality, n_vectors: int) -> float:
    """Expected work per query, in candidates an HNSW search visits: ``ef``, plus an
    exact re-check (``n_vectors`` distances) for the share whose score reaches the
    threshold, stalled searches included."""
    return ef + quality.rechecked * n_vectors * EXACT_COST_PER_VECTOR


def tune_ef(
    index: hnswlib.Index,
    base: np.ndarray,
    queries: np.ndarray,
    k: int,
    *,
    recall_target: float,
    alert_rate: float,
    start: int,
    max_rechecked: float = RECHECK_TUNED,
) -> tuple[int, SearchQuality]:
    """The ef (``start``, doubled up to ``MAX_EF``) with the least ``search_work`` among
    those whose recall@k on ``queries`` meets the target and whose re-checked share stays
    within ``max_rechecked`` (below the scorer's per-batch limit, so normal traffic is
    re-checked in full); else the one with the fewest re-checks. The threshold
    that triggers re-checks is estimated as the (1 - ``alert_rate``) quantile of the
    queries' exact scores. A larger ef costs every event; a stalled search costs only
    the events it pushes over the threshold, so the cheapest ef is the one where the two
    balance. The index is left at that ef."""
    k = min(k, len(base))
    _, exact = exact_knn(base, queries, k)
    threshold = float(np.quantile(exact.mean(axis=1), 1 - alert_rate))
    tried: list[tuple[int, SearchQuality, float]] = []
    ef = max(start, k)
    while True:
        index.set_ef(ef)
        quality = search_quality(index, base, queries, k, exact, threshold)
        tried.append((ef, quality, search_work(ef, quality, len(base))))
        good = [
            t for t in tried if t[1].recall >= recall_target and t[1].rechecked <= max_rechecked
        ]
        if ef >= MAX_EF or (good and min(t[2] for t in good) <= ef):
            break  # a larger ef alone costs more than the best found
        ef = min(ef * 2, MAX_EF)
    if good:
        best_ef, best, _ = min(good, key=lambda t: t[2])
    else:
        best_ef, best, _ = min(tried, key=lambda t: (t[1].rechecked, -t[1].recall))
    index.set_ef(best_ef)
    return best_ef, best
