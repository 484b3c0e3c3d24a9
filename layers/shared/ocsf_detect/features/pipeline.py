"""Turn parsed events of one class into model inputs, a whole batch at a time.

``FeaturePipeline(spec)`` compiles a field plan from the spec (what the parser
validates), then ``transform`` turns the batch's value tuples into two arrays in one
pass: ``numeric`` (float32, scaled, clipped, missing as 0 plus an indicator column per
feature) and ``categorical`` (int64 indices: 0 missing, 1 out-of-vocabulary/unseen).
Per-value Python work is limited to dictionary lookups and memoised derivations;
everything numeric is vectorised.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocsf_detect.features.derive import (
    ADDRESS_SCOPES,
    PORT_CLASSES,
    TEXT_STATS,
    address_scope,
    port_class,
    text_stats,
)
from ocsf_detect.features.plan import FieldPlan, ValueType, merge_paths
from ocsf_detect.features.spec import (
    AddressFeature,
    CategoricalFeature,
    ClassSpec,
    CountFeature,
    Feature,
    HashedFeature,
    HourFeature,
    NovelAmountFeature,
    NumericFeature,
    NumericStats,
    PortFeature,
    RatioFeature,
    TextFeature,
)
from ocsf_detect.gcpause import gc_paused
from ocsf_detect.ocsf.outcomes import Parsed

MISSING, UNSEEN = 0, 1
_TIME_PATH = "time"
_HASH_MEMO_LIMIT = 1 << 17


class FeatureError(Exception):
    """A spec that cannot be used (e.g. transform before fit)."""


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Model inputs for a batch: ``numeric`` float32 (n, d_num), ``categorical`` int64
    (n, d_cat)."""

    numeric: np.ndarray
    categorical: np.ndarray

    def __len__(self) -> int:
        return int(self.numeric.shape[0])

    def dense(
        self,
        cardinalities: Sequence[int],
        category_weight: float | Sequence[float] = 1.0,
        novel: tuple[Sequence[int], float] = ((), 1.0),
    ) -> np.ndarray:
        """Numeric columns plus one-hot categories scaled by ``category_weight`` (one
        weight, or one per categorical field): the raw-feature representation that
        reference detectors (IsolationForest, exact k-NN) use (weights 1) and that the
        isometry objective preserves (its weights). ``novel``: (novel-amount columns,
        their weight)."""
        n = len(self)
        blocks = [self.weighted_numeric(novel)]
        weights = np.broadcast_to(np.asarray(category_weight, dtype=np.float32), len(cardinalities))
        for j, card in enumerate(cardinalities):
            onehot = np.zeros((n, card), dtype=np.float32)
            onehot[np.arange(n), self.categorical[:, j]] = weights[j]
            blocks.append(onehot)
        return np.hstack(blocks)

    def weighted_numeric(self, novel: tuple[Sequence[int], float] = ((), 1.0)) -> np.ndarray:
        """The numeric columns with the novel-amount ones times their weight (``novel``:
        (columns, weight)), as the weighted space reads them; ``numeric`` itself when no
        column is weighted, else a copy."""
        columns, weight = novel
        if not len(columns) or weight == 1.0:
            return self.numeric
        numeric = self.numeric.copy()
        numeric[:, list(columns)] *= weight
        return numeric

    def take(self, rows: np.ndarray) -> FeatureMatrix:
        return FeatureMatrix(self.numeric[rows], self.categorical[rows])


def _feature_paths(feature: Feature) -> list[tuple[str, ValueType]]:
    match feature:
        case HourFeature() if feature.path == _TIME_PATH:
            return []  # the parser provides the event time itself
        case NumericFeature() if feature.lenient:
            return [(feature.path, ValueType.ANY)]
        case NumericFeature() | NovelAmountFeature() | HourFeature() | PortFeature():
            # Ports are numbers: "443" and 443 must be the same category.
            return [(feature.path, ValueType.NUMBER)]
        case RatioFeature():
            return [(feature.path, ValueType.NUMBER), (feature.other, ValueType.NUMBER)]
        case CountFeature():
            return [(feature.path, ValueType.LIST)]
        case HashedFeature() if feature.together_with:
            return [(feature.path, ValueType.SCALAR), (feature.together_with, ValueType.SCALAR)]
        case _:
            return [(feature.path, ValueType.SCALAR)]


def _unmapped_features(spec: ClassSpec) -> list[Feature]:
    known = {f.path for f in spec.features}
    selected = spec.unmapped.selected or []
    extra = [p for p in selected if f"unmapped.{p}" not in known]
    return [NumericFeature(name=f"unmapped.{p}", path=f"unmapped.{p}", lenient=True) for p in extra]


class FeaturePipeline:
    """Feature extraction for one class. Unfitted pipelines can parse (validate) but not
    transform; ``fit_spec`` returns the fitted spec."""

    def __init__(self, spec: ClassSpec) -> None:
        self.spec = spec
        self.class_uid = spec.class_uid
        self.features: list[Feature] = [*spec.features, *_unmapped_features(spec)]
        self.plan = FieldPlan(
            merge_paths([item for f in self.features for item in _feature_paths(f)])
        )
        self._col = {path: i for i, path in enumerate(self.plan.paths)}
        self.numeric_names: list[str] = []
        self.hour_columns: list[int] = []  # the sin and cos columns of hour features
        self.categorical_names: list[str] = []
        self.cardinalities: list[int] = []
        self._indicator_names: list[str] = []
        self._vocab: dict[str, dict[Any, int]] = {}
        self._hash_counts: dict[str, dict[int, int]] = {}
        self._hash_memo: dict[str, dict[Any, tuple[int, float]]] = {}
        for f in self.features:
            self._layout(f)
        # (amount column, counterpart's rarity column) of each novel-amount feature
        self._novel = [
            (self.numeric_names.index(f.name), self.numeric_names.index(f"{f.of}.rarity"))
            for f in self.features
            if isinstance(f, NovelAmountFeature)
        ]
        self._stats = spec.numeric_stats
        if self._stats is not None and len(self._stats) != len(self.numeric_names):
            raise FeatureError(
                f"class {spec.class_uid}: spec has {len(self._stats)} fitted numeric columns "
                f"but its features produce {len(self.numeric_names)}"
            )

    # -- layout ---------------------------------------------------------------------------
    def _layout(self, f: Feature) -> None:
        name = f.name
        if isinstance(f, HourFeature):
            self.hour_columns += [len(self.numeric_names), len(self.numeric_names) + 1]
            self.numeric_names += [f"{name}.sin", f"{name}.cos"]
            return
        if isinstance(f, CategoricalFeature):
            vocab = f.vocab or []
            self._vocab[name] = {v: i + 2 for i, v in enumerate(vocab)}
            self.categorical_names.append(name)
            self.cardinalities.append(len(vocab) + 2)
            return
        if isinstance(f, AddressFeature | PortFeature):
            values = ADDRESS_SCOPES if isinstance(f, AddressFeature) else PORT_CLASSES
            self.categorical_names.append(name)
            self.cardinalities.append(len(values) + 1)
            return
        if isinstance(f, HashedFeature):
            self.categorical_names.append(name)
            self.cardinalities.append(f.buckets + 2)
            self._hash_counts[name] = dict(f.counts or {})
            self._hash_memo[name] = {}
            self.numeric_names.append(f"{name}.rarity")
        elif isinstance(f, TextFeature):
            self.numeric_names += [f"{name}.{s}" for s in TEXT_STATS]
        else:  # numeric, ratio, count
            self.numeric_names.append(name)
        self._indicator_names.append(f"{name}.missing")

    @property
    def novel_columns(self) -> tuple[int, ...]:
        """The novel-amount columns. In training every counterpart has been seen at least
        once (the event itself), so these never exceed half the scaled amount; serving
        gives a never-seen counterpart the whole of it. Training must show the model that
        range: their corrupted values are drawn over the whole clip range."""
        return tuple(amount for amount, _ in self._novel)

    @property
    def n_numeric(self) -> int:
        return len(self.numeric_names) + len(self._indicator_names)

    @property
    def input_names(self) -> list[str]:
        return [*self.numeric_names, *self._indicator_names]

    # -- raw columns ----------------------------------------------------------------------
    def raw(
        self, rows: Sequence[tuple[Any, ...]], times: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled numeric columns (NaN = missing) and categorical indices."""
        n = len(rows)
        columns: list[tuple[Any, ...]] = (
            list(zip(*rows, strict=True)) if n else [() for _ in self.plan.paths]
        )
        numeric = np.empty((n, len(self.numeric_names)), dtype=np.float64)
        categorical = np.empty((n, len(self.categorical_names)), dtype=np.int64)
        ni = ci = 0
        for f in self.features:
            if isinstance(f, HourFeature):
                t = (
                    times.astype(np.float64)
                    if f.path == _TIME_PATH
                    else _floats(columns[self._col[f.path]])
                )
                angle = (t / 3_600_000.0 % 24.0) * (2 * math.pi / 24.0)
                numeric[:, ni], numeric[:, ni + 1] = np.sin(angle), np.cos(angle)
                ni += 2
            elif isinstance(f, NumericFeature):
                col = columns[self._col[f.path]]
                values = _lenient_floats(col) if f.lenient else _floats(col)
                numeric[:, ni] = _signed_log1p(values) if f.transform == "log1p" else values
                ni += 1
            elif isinstance(f, NovelAmountFeature):
                numeric[:, ni] = _signed_log1p(_floats(columns[self._col[f.path]]))
                ni += 1
            elif isinstance(f, RatioFeature):
                a = _floats(columns[self._col[f.path]])
                b = _floats(columns[self._col[f.other]])
                numeric[:, ni] = _ratio(a, b, f.mode)
                ni += 1
            elif isinstance(f, CountFeature):
                col = columns[self._col[f.path]]
                numeric[:, ni] = np.log1p(
                    np.array([math.nan if v is None else len(v) for v in col], dtype=np.float64)
                )
                ni += 1
            elif isinstance(f, TextFeature):
                col = columns[self._col[f.path]]
                stats = [_NAN4 if v is None else text_stats(v) for v in col]
                numeric[:, ni : ni + 4] = np.array(stats, dtype=np.float64).reshape(n, 4)
                ni += 4
            elif isinstance(f, CategoricalFeature):
                vocab = self._vocab[f.name]
                col = columns[self._col[f.path]]
                categorical[:, ci] = [MISSING if v is None else vocab.get(v, UNSEEN) for v in col]
                ci += 1
            elif isinstance(f, AddressFeature):
                col = columns[self._col[f.path]]
                categorical[:, ci] = [MISSING if v is None else address_scope(v) + 1 for v in col]
                ci += 1
            elif isinstance(f, PortFeature):
                col = columns[self._col[f.path]]
                categorical[:, ci] = [MISSING if v is None else port_class(v) + 1 for v in col]
                ci += 1
            elif isinstance(f, HashedFeature):
                encoded = self._encode_hashed(f, self.hashed_values(f, columns))
                categorical[:, ci] = encoded[:, 0]
                numeric[:, ni] = encoded[:, 1]
                ci += 1
                ni += 1
        for amount, rarity in self._novel:
            numeric[np.isnan(numeric[:, rarity]), amount] = math.nan
        return numeric, categorical

    def hashed_values(self, f: HashedFeature, columns: Sequence[Sequence[Any]]) -> Sequence[Any]:
        """The values a hashed feature hashes: one path's, or the pair of two paths'
        (missing when either is)."""
        col = columns[self._col[f.path]]
        if not f.together_with:
            return col
        other = columns[self._col[f.together_with]]
        return [None if a is None or b is None else (a, b) for a, b in zip(col, other, strict=True)]

    def _encode_hashed(self, f: HashedFeature, values: Sequence[Any]) -> np.ndarray:
        """(n, 2) float64: the category (a hash bucket; unseen in training; missing) and
        the rarity (log1p of the training count; NaN when missing). One dictionary lookup
        per value: real traffic repeats the same addresses and names many times."""
        memo = self._hash_memo[f.name]
        if len(memo) > _HASH_MEMO_LIMIT:
            memo.clear()
        get = memo.get
        hits = [get(v if v.__class__ in _OWN_KEYS else memo_key(v)) for v in values]
        if None in hits:
            counts = self._hash_counts[f.name]
            mask = (1 << f.rarity_bits) - 1
            for i, v in enumerate(values):
                if hits[i] is None:
                    hits[i] = memo[memo_key(v)] = _hashed_code(v, counts, mask, f.buckets)
        return np.array(hits, dtype=np.float64).reshape(len(values), 2)

    # -- model inputs ---------------------------------------------------------------------
    def transform(self, rows: Sequence[tuple[Any, ...]], times: np.ndarray) -> FeatureMatrix:
        if self._stats is None:
            raise FeatureError(f"class {self.class_uid}: the feature spec is not fitted")
        # Building the columns allocates a tuple or float per value; with a batch of
        # decoded events alive, collections triggered by those would walk them all.
        with gc_paused():
            raw, categorical = self.raw(rows, times)
        return FeatureMatrix(self._scale(raw), categorical)

    def transform_parsed(self, parsed: Sequence[Parsed]) -> FeatureMatrix:
        times = np.fromiter((p.time_ms for p in parsed), dtype=np.int64, count=len(parsed))
        return self.transform([p.values for p in parsed], times)

    def _scale(self, raw: np.ndarray) -> np.ndarray:
        assert self._stats is not None
        center = np.array([s.center for s in self._stats], dtype=np.float64)
        scale = np.array([s.scale for s in self._stats], dtype=np.float64)
        missing = np.isnan(raw)
        clip = self.spec.clip
        scaled = np.clip((raw - center) / scale, -clip, clip)
        for amount, rarity in self._novel:  # rarity is log1p(count): weight 1 / (1 + count)
            scaled[:, amount] *= np.exp(-np.nan_to_num(raw[:, rarity]))
        scaled[missing] = 0.0
        indicators = missing[:, self._indicator_columns()].astype(np.float64)
        return np.hstack([scaled, indicators]).astype(np.float32)

    def _indicator_columns(self) -> list[int]:
        """The first raw numeric column of each feature that has an indicator."""
        cols, i = [], 0
        for f in self.features:
            width = {HourFeature: 2, TextFeature: 4}.get(type(f), 1)
            if isinstance(f, CategoricalFeature | AddressFeature | PortFeature):
                continue
            if not isinstance(f, HourFeature):
                cols.append(i)
            i += width
        return cols


_NAN4 = (math.nan, math.nan, math.nan, math.nan)


_OWN_KEYS = frozenset({str, tuple})


def value_hash(value: Any) -> int:
    """CRC-32 of a value's text (``str``), the hash bundles store their counts under."""
    return zlib.crc32(str(value).encode("utf-8", "surrogatepass"))


def memo_key(value: Any) -> Any:
    """A dictionary key that keeps apart values Python holds equal but that hash apart
    (1, 1.0 and True are "1", "1.0" and "True"), so memoised codes never depend on which
    of them came first. Text, the common case, is its own key; so is a pair, whose
    parts come from paths of one type each (a port is always a float once parsed), and
    which sits on the hot path (every flow's address x port)."""
    if value.__class__ in _OWN_KEYS:
        return value
    return (value.__class__, value)


def _hashed_code(value: Any, counts: dict[int, int], mask: int, buckets: int) -> tuple[int, float]:
    if value is None:
        return (MISSING, math.nan)
    h = value_hash(value)
    seen = counts.get(h & mask, 0)
    return (2 + h % buckets if seen > 0 else UNSEEN, math.log1p(seen))


def _floats(col: tuple[Any, ...]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in col], dtype=np.float64)


def _lenient_floats(col: tuple[Any, ...]) -> np.ndarray:
    """Numbers, booleans and numeric text as floats; anything else (text, objects,
    non-finite values) missing."""
    return np.array([_number_or_nan(v) for v in col], dtype=np.float64)


def _number_or_nan(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)  # as a strict numeric field reads it
    if not isinstance(value, int | float | str):
        return math.nan
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def _ratio(a: np.ndarray, b: np.ndarray, mode: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "share":
            both_missing = np.isnan(a) & np.isnan(b)
            a0, b0 = np.nan_to_num(a), np.nan_to_num(b)
            total = a0 + b0
            out = np.where(total > 0, a0 / np.where(total > 0, total, 1.0), np.nan)
            return np.where(both_missing, np.nan, out)
        out = np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)
        return _signed_log1p(out)


# -- fitting ------------------------------------------------------------------------------
def discover_unmapped(events: Sequence[dict[str, Any]], spec: ClassSpec) -> list[str]:
    """Numeric ``unmapped`` paths (dotted, relative to ``unmapped``) chosen for features."""
    cfg = spec.unmapped
    chosen: list[str] = []
    if cfg.auto and events:
        counts: Counter[str] = Counter()
        for event in events:
            counts.update(_numeric_paths(event.get("unmapped"), ""))
        threshold = cfg.min_coverage * len(events)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        chosen = [p for p, c in ranked if c >= threshold and c > 0]
    chosen = [p for p in chosen if p not in set(cfg.exclude)][: cfg.max_fields]
    chosen += [p for p in cfg.include if p not in chosen]
    return chosen


def _numeric_paths(node: Any, prefix: str) -> list[str]:
    if not isinstance(node, dict):
        return []
    out: list[str] = []
    for key, value in node.items():
        if not isinstance(key, str) or "." in key or not key:
            continue
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _numeric_paths(value, path + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if math.isfinite(value):
                out.append(path)
        elif isinstance(value, str) and _is_number(value):
            out.append(path)
    return out


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def fit_spec(spec: ClassSpec, events: Sequence[dict[str, Any]], times: np.ndarray) -> ClassSpec:
    """Fit vocabularies, hashed frequencies, unmapped fields and scaling on training events
    (decoded dicts with their event times). Events whose used fields do not validate are
    left out. Returns a new, fitted spec; ``spec`` is unchanged."""
    unmapped = spec.unmapped.model_copy(update={"selected": discover_unmapped(events, spec)})
    base = spec.model_copy(update={"unmapped": unmapped, "numeric_stats": None}, deep=True)
    pipeline = FeaturePipeline(base)
    rows, keep = [], []
    for i, event in enumerate(events):
        values = pipeline.plan.extract(event)
        if isinstance(values, tuple):
            rows.append(values)
            keep.append(i)
    if not rows:
        raise FeatureError(f"class {spec.class_uid}: no training event has usable fields")
    times = np.asarray(times)[keep]
    columns = list(zip(*rows, strict=True))
    fitted: list[Feature] = []
    for f in base.features:
        if isinstance(f, CategoricalFeature):
            counter = Counter(v for v in columns[pipeline._col[f.path]] if v is not None)
            vocab = [v for v, c in _ranked(counter) if c >= f.min_count][: f.max_vocab]
            fitted.append(f.model_copy(update={"vocab": vocab}))
        elif isinstance(f, HashedFeature):
            mask = (1 << f.rarity_bits) - 1
            hashes = [
                value_hash(v) & mask for v in pipeline.hashed_values(f, columns) if v is not None
            ]
            counts = dict(sorted(Counter(hashes).items()))
            fitted.append(f.model_copy(update={"counts": counts, "total": len(hashes)}))
        else:
            fitted.append(f)
    with_vocab = base.model_copy(update={"features": fitted})
    fitted_pipeline = FeaturePipeline(with_vocab)
    raw, _ = fitted_pipeline.raw(rows, times)
    stats = [_column_stats(raw[:, j]) for j in range(raw.shape[1])]
    # The hour of day is a point on the unit circle whatever hours the baseline covered:
    # centre 0, scale 1, which is what robust scaling gives for a baseline spread over the
    # day. Fitted on a baseline of a few hours, the scale would shrink to that span and
    # every later hour would become an outlier of up to the clip (time itself as drift).
    for j in fitted_pipeline.hour_columns:
        stats[j] = NumericStats(center=0.0, scale=1.0, missing=stats[j].missing)
    return with_vocab.model_copy(update={"numeric_stats": stats})


def _ranked(counter: Counter[Any]) -> list[tuple[Any, int]]:
    # Deterministic order: by count, then by the value's text (mixed types sort safely).
    return sorted(counter.items(), key=lambda kv: (-kv[1], type(kv[0]).__name__, str(kv[0])))


def _column_stats(col: np.ndarray) -> NumericStats:
    present = col[~np.isnan(col)]
    missing = 1.0 - present.size / col.size if col.size else 1.0
    if present.size == 0:
        return NumericStats(center=0.0, scale=1.0, missing=missing)
    center = float(np.median(present))
    q75, q25 = np.percentile(present, [75, 25])
    scale = float((q75 - q25) / 1.349)
    if scale < 1e-6:
        scale = float(np.std(present))
    return NumericStats(center=center, scale=max(scale, 1e-2), missing=round(missing, 6))
