"""Why an event alerted, in an analyst's terms: the few features that differ most from the
class's normal baseline, each with the event's value and the typical one.

It reads what every fitted feature spec already holds, so bundles of every format explain
their findings:

- a numeric feature (volumes, counts, durations, ratios, text shape, ``unmapped.*``):
  its baseline median (``NumericStats.center``) is the typical value, and its distance
  from it in robust standard deviations (IQR / 1.349, the feature's own scaling, clipped
  at the spec's ``clip``) is how much it differs;
- a hashed feature (an address, a user, a pair such as user x source address): how often
  the baseline held the value; one it never held reads "never seen" (a new relationship);
- a categorical feature: a value outside the baseline's vocabulary reads "not seen in the
  baseline", with the most common baseline value as the typical one;
- a feature the event lacks but nearly every baseline event has reads "absent".

Deviations of different kinds are put on one scale (robust standard deviations): a value
never seen in the baseline counts as ``NEW_VALUE_DEVIATION``, an absent feature as
``ABSENT_DEVIATION``. Features within ``MIN_DEVIATION`` of typical are not listed: an
event can be unusual as a combination only, and then the explanation is empty and the
nearest baseline events are the evidence.

Cost: nothing for events that do not alert. For a batch's alerting rows the ranking is
one vectorised pass over model inputs the scorer already computed; the words are built
only when a row's explanation is read (a finding, an API answer), a few dictionary
lookups per reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ocsf_detect.features.derive import text_stats
from ocsf_detect.features.pipeline import UNSEEN, FeaturePipeline, value_hash
from ocsf_detect.features.spec import (
    CategoricalFeature,
    CountFeature,
    HashedFeature,
    NovelAmountFeature,
    NumericFeature,
    RatioFeature,
    TextFeature,
)
from ocsf_detect.ocsf.limits import bounded
from ocsf_detect.ocsf.outcomes import Parsed

EXPLAIN_FEATURES = 3
"""Reasons given per finding, most different first."""
MIN_DEVIATION = 2.0
"""Robust standard deviations from the median below which a feature is not a reason."""
NEW_VALUE_DEVIATION = 6.0
"""A value the baseline never held (a new address, user or pairing; an unknown category)."""
ABSENT_DEVIATION = 3.0
"""A feature the event lacks though at least 95% of the baseline has it."""
ABSENT_BELOW = 0.05

# How each text statistic of ``derive.text_stats`` reads: the length is log1p-compressed.
_TEXT_STATS = {"length": (0, "amount"), "labels": (1, "plain"), "entropy": (2, "plain")}
_TEXT_STATS["digits"] = (3, "share")


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason a finding fired. ``deviation``: robust standard deviations from typical
    (see the module docstring for the scale of new and absent values)."""

    feature: str
    path: str
    value: Any
    typical: Any
    deviation: float
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "path": self.path,
            "value": self.value,
            "typical": self.typical,
            "deviation": round(self.deviation, 2),
            "text": self.text,
        }


@dataclass(frozen=True)
class _Candidate:
    """A feature that can be a reason, and where the model inputs hold it."""

    feature: Any
    label: str  # the name analysts read
    kind: str  # amount | share | plain | rarity | category
    column: int  # numeric column (or categorical column for kind category)
    indicator: int | None  # the missing-indicator column, if the feature has one
    stat: int = -1  # which text statistic


class Explainer:
    """Ranks and words the reasons of one class's alerting events (one per class)."""

    def __init__(self, pipeline: FeaturePipeline) -> None:
        self.pipeline = pipeline
        stats = pipeline.spec.numeric_stats or []
        self._center = [s.center for s in stats]
        self._missing = [s.missing for s in stats]
        names, inputs = pipeline.numeric_names, pipeline.input_names
        cat_names = pipeline.categorical_names

        def indicator(name: str) -> int | None:
            label = f"{name}.missing"
            return inputs.index(label) if label in inputs else None

        found: list[_Candidate] = []
        for f in pipeline.features:
            if isinstance(f, NumericFeature):
                kind = "amount" if f.transform == "log1p" else "plain"
                found.append(_Candidate(f, f.name, kind, names.index(f.name), indicator(f.name)))
            elif isinstance(f, NovelAmountFeature | CountFeature):
                found.append(
                    _Candidate(f, f.name, "amount", names.index(f.name), indicator(f.name))
                )
            elif isinstance(f, RatioFeature):
                kind = "share" if f.mode == "share" else "amount"
                found.append(_Candidate(f, f.name, kind, names.index(f.name), indicator(f.name)))
            elif isinstance(f, TextFeature):
                for stat, (k, kind) in _TEXT_STATS.items():
                    label = f"{f.name}.{stat}"
                    if label in names:
                        found.append(
                            _Candidate(f, label, kind, names.index(label), indicator(f.name), k)
                        )
            elif isinstance(f, HashedFeature):
                found.append(
                    _Candidate(
                        f, f.name, "rarity", names.index(f"{f.name}.rarity"), indicator(f.name)
                    )
                )
            elif isinstance(f, CategoricalFeature):
                found.append(_Candidate(f, f.name, "category", cat_names.index(f.name), None))
        self._candidates = found
        numeric = [c for c in found if c.kind != "category"]
        self._numeric = numeric
        self._categorical = [c for c in found if c.kind == "category"]
        self._num_cols = np.array([c.column for c in numeric], dtype=np.int64)
        self._ind_cols = np.array(
            [-1 if c.indicator is None else c.indicator for c in numeric], dtype=np.int64
        )
        self._absent_dev = np.array(
            [
                ABSENT_DEVIATION
                if c.indicator is not None and self._missing[c.column] < ABSENT_BELOW
                else 0.0
                for c in numeric
            ]
        )
        self._rarity = np.array([c.kind == "rarity" for c in numeric], dtype=bool)
        hashed_cols = [
            cat_names.index(c.feature.name) if c.kind == "rarity" else 0 for c in numeric
        ]
        self._hashed_cols = np.array(hashed_cols, dtype=np.int64)
        self._cat_cols = np.array([c.column for c in self._categorical], dtype=np.int64)

    def rank(self, numeric: np.ndarray, categorical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate positions [n, EXPLAIN_FEATURES], their deviations) of the alerting
        rows' model inputs, most different first; one vectorised pass."""
        n = len(numeric)
        parts = []
        if len(self._num_cols):
            dev = np.abs(numeric[:, self._num_cols].astype(np.float64))
            has_ind = self._ind_cols >= 0
            missing = np.zeros_like(dev, dtype=bool)
            missing[:, has_ind] = numeric[:, self._ind_cols[has_ind]] > 0.5
            dev = np.where(missing, self._absent_dev, dev)
            if self._rarity.any():
                unseen = categorical[:, self._hashed_cols] == UNSEEN
                never = self._rarity & unseen
                dev = np.where(never, np.maximum(dev, NEW_VALUE_DEVIATION), dev)
                # A rarer value than usual matters; a more common one (a busy server) not.
                common = self._rarity & (numeric[:, self._num_cols] > 0) & ~unseen
                dev = np.where(common, 0.0, dev)
            parts.append(dev)
        if len(self._cat_cols):
            unseen_cat = categorical[:, self._cat_cols] == UNSEEN
            parts.append(np.where(unseen_cat, NEW_VALUE_DEVIATION, 0.0))
        if not parts:
            return np.zeros((n, 0), dtype=np.int64), np.zeros((n, 0))
        every = np.hstack(parts)
        order = np.argsort(-every, axis=1, kind="stable")[:, :EXPLAIN_FEATURES]
        return order, np.take_along_axis(every, order, axis=1)

    def words(self, item: Parsed, order: Sequence[int], devs: Sequence[float]) -> list[Reason]:
        """The reasons of one event, from its row of ``rank``."""
        reasons: list[Reason] = []
        n_numeric = len(self._numeric)
        for c, d in zip(order, devs, strict=True):
            if d < MIN_DEVIATION:
                break
            if c < n_numeric:
                reasons.append(self._numeric_reason(item, self._numeric[c], float(d)))
            else:
                reasons.append(self._category_reason(item, self._categorical[c - n_numeric], d))
        return reasons

    # -- wording ---------------------------------------------------------------------------
    def _value(self, item: Parsed, path: str) -> Any:
        return item.values[self.pipeline.plan.index(path)]

    def _numeric_reason(self, item: Parsed, c: _Candidate, dev: float) -> Reason:
        f = c.feature
        if c.kind == "rarity":
            return self._rarity_reason(item, f, dev)
        value = self._natural_value(item, c)
        center = self._center[c.column]
        if value is None:
            present = 1.0 - self._missing[c.column]
            text = f"{c.label} absent (present in {present:.0%} of baseline events)"
            return Reason(c.label, f.path, None, None, dev, text)
        typical = _natural(center, c.kind)
        unit = "bytes" if "bytes" in c.label else None
        text = f"{c.label} {_fmt(value, unit, c.kind)}, typical {_fmt(typical, unit, c.kind)}"
        if isinstance(f, NovelAmountFeature) and self._count(item, f.of) == 0:
            text += f", to a {f.of} never seen in the baseline"
        return Reason(c.label, f.path, _round(value), _round(typical), dev, text)

    def _natural_value(self, item: Parsed, c: _Candidate) -> float | None:
        """The event's value of a numeric candidate, in its own unit (None: absent)."""
        f = c.feature
        raw = self._value(item, f.path)
        if raw is None:
            return None
        if isinstance(f, TextFeature):
            stat = text_stats(raw)[c.stat]
            return math.expm1(stat) if c.kind == "amount" else stat
        if isinstance(f, CountFeature):
            return float(len(raw)) if isinstance(raw, list | tuple) else None
        number = _number(raw)
        if number is None:
            return None
        if isinstance(f, RatioFeature):
            other = _number(self._value(item, f.other)) or 0.0
            if f.mode == "share":
                total = number + other
                return number / total if total > 0 else None
            return number / other if other > 0 else None
        return number

    def _count(self, item: Parsed, hashed_name: str) -> int | None:
        """How often the baseline held the event's value of a hashed feature."""
        f = next((x for x in self.pipeline.features if x.name == hashed_name), None)
        if not isinstance(f, HashedFeature):
            return None
        value = self._value(item, f.path)
        if f.together_with:
            other = self._value(item, f.together_with)
            value = None if value is None or other is None else (value, other)
        if value is None:
            return None
        mask = (1 << f.rarity_bits) - 1
        return int((f.counts or {}).get(value_hash(value) & mask, 0))

    def _rarity_reason(self, item: Parsed, f: HashedFeature, dev: float) -> Reason:
        count = self._count(item, f.name) or 0
        center = self._center[self.pipeline.numeric_names.index(f"{f.name}.rarity")]
        typical = round(math.expm1(center))
        first = self._value(item, f.path)
        if f.together_with:
            other = self._value(item, f.together_with)
            subject = f"{f.path} {_show(first)} with {f.together_with} {_show(other)}"
            shown: Any = [_quoted(first), _quoted(other)]
        else:
            subject = f"{f.path} {_show(first)}"
            shown = _quoted(first)
        if count == 0:
            text = f"{subject} never seen in the baseline"
        else:
            times = "once" if count == 1 else f"{count:,} times"
            text = f"{subject} seen {times} in the baseline, typical {typical:,}"
        return Reason(f.name, f.path, shown, typical, dev, text)

    def _category_reason(self, item: Parsed, c: _Candidate, dev: float) -> Reason:
        f = c.feature
        value = self._value(item, f.path)
        vocab = f.vocab or []
        typical = vocab[0] if vocab else None
        text = f"{f.path} {_show(value)} not seen in the baseline"
        if typical is not None:
            text += f" (most common: {_show(typical)})"
        return Reason(f.name, f.path, _quoted(value), _quoted(typical), float(dev), text)


class ExplanationTable:
    """The reasons of a class batch's alerting rows, shared by their ``Scored`` outcomes:
    ranked for all of them at once, worded for each one when it is read."""

    __slots__ = ("_devs", "_explainer", "_items", "_order", "_rows")

    def __init__(
        self,
        explainer: Explainer,
        items: Sequence[Parsed],
        rows: np.ndarray,
        numeric: np.ndarray,
        categorical: np.ndarray,
    ) -> None:
        self._explainer = explainer
        self._items = items
        order, devs = explainer.rank(numeric[rows], categorical[rows])
        self._rows = {r: i for i, r in enumerate(rows.tolist())}
        self._order = order.tolist()
        self._devs = devs.tolist()

    def row(self, row: int) -> list[Reason]:
        i = self._rows.get(row)
        if i is None:
            return []
        return self._explainer.words(self._items[row], self._order[i], self._devs[i])


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _natural(transformed: float, kind: str) -> float:
    """A fitted statistic in the feature's own unit (log1p undone)."""
    if kind == "amount":
        return math.copysign(math.expm1(abs(transformed)), transformed)
    return transformed


def _round(value: float) -> float:
    return float(f"{value:.4g}")


_SIZES = ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "KB"))


def _fmt(value: float, unit: str | None, kind: str) -> str:
    if kind == "share":
        return f"{value:.0%}"
    if unit == "bytes":
        for size, name in _SIZES:
            if abs(value) >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _quoted(value: Any) -> Any:
    """A field value as a reason quotes it: long text bounded (``limits.bounded``), so
    that a finding, its alert group's item and the group's closing update stay within
    their size caps whatever the sender put in the field; numbers as they are."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, list | tuple):
        return [_quoted(v) for v in value]
    return bounded(str(value))


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # ports and ids arrive as floats once parsed
    text = str(value)
    return text if len(text) <= 64 else text[:61] + "..."
