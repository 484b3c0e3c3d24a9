"""Feature specs derived from a class's baseline and the OCSF schema (build side only).

A class without a curated spec (``specs.py``) still gets a model when the baseline holds
enough of its events: ``derive_spec`` reads which attributes the events carry and how
often, types each from the OCSF schema (``schema.OcsfSchema``) or, where the schema does
not know the path (a producer's extension, a class it lacks, the schema package not
installed), from the values themselves, and lists features with the kinds the runtime
already knows:

- numbers: numeric (log-compressed), or categorical when they take a handful of values;
- enums (``*_id`` attributes, enumerated strings) and booleans: categorical;
- strings of few distinct values: categorical;
- identifiers of many values (users, hosts, IPs, paths, command lines, URLs): hashed,
  with rarity; an IP also by address scope, a port by port class;
- text-shaped values (command lines, paths, URLs, user agents, host names): their shape
  (length, labels, entropy, digit share);
- a few pairs that mean a relationship: actor x target, process x parent, user x source;
- the event time as hour of day.

The spec is then fitted like a curated one and travels in the manifest: the runtime
never sees the schema.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ocsf_detect.features.spec import (
    AddressFeature,
    CategoricalFeature,
    ClassSpec,
    CountFeature,
    Feature,
    HashedFeature,
    HourFeature,
    NumericFeature,
    PortFeature,
    TextFeature,
)
from ocsf_detect_tools.schema import NUMBER_TYPES, Attribute, OcsfSchema, SchemaUnavailableError

# Top-level attributes that say nothing about behaviour: the event's own identity and
# classification (constant within a class), its raw form, and producer metadata.
# ``unmapped`` is the spec's own business (numeric fields found at fit time).
_SKIP_TOP: Final = frozenset(
    {
        "metadata", "unmapped", "observables", "raw_data", "raw_data_size", "raw_data_hash",
        "enrichments", "class_uid", "class_name", "category_uid", "category_name",
        "type_uid", "type_name", "message", "time_dt", "count", "timezone_offset",
    }
)  # fmt: skip
# Leaves that identify one event or one process instance: unique, never seen again.
_SKIP_LEAF: Final = frozenset({"uid", "pid", "tid", "ptid", "uuid", "created_time_dt"})
_TEXT_TYPES: Final = frozenset({"url_t", "file_path_t", "hostname_t"})
# Identifiers: hashed with rarity whatever their count in the baseline (a new user, host
# or image is the point, and a vocabulary would fold every new one into one bucket).
_IDENTITY_TYPES: Final = frozenset(
    {"username_t", "hostname_t", "file_path_t", "url_t", "file_name_t", "process_name_t",
     "email_t", "mac_t", "ip_t"}
)  # fmt: skip
_IDENTITY_SUFFIXES: Final = (
    "user.name", "process.name", "file.name", "group.name", "cmd_line", "user_agent",
    "url_string", "path", "hostname", "email_addr",
)  # fmt: skip
_TEXT_LEAVES: Final = frozenset(
    {"cmd_line", "path", "url_string", "query_string", "user_agent", "hostname", "command"}
)
# (name, first paths present of the one side, of the other side)
_PAIRS: Final = (
    (
        "actor_target",
        ("actor.user.name", "actor.user.uid", "actor.process.name", "actor.process.file.name"),
        ("user.name", "user.uid", "process.name", "process.file.name", "file.path",
         "dst_endpoint.hostname", "dst_endpoint.ip", "group.name"),
    ),
    (
        "process_parent",
        ("process.name", "process.file.name", "process.file.path"),
        ("process.parent_process.name", "process.parent_process.file.name",
         "actor.process.name", "actor.process.file.name"),
    ),
    (
        "user_source",
        ("actor.user.name", "user.name"),
        ("src_endpoint.ip", "device.hostname", "device.ip", "src_endpoint.hostname"),
    ),
)  # fmt: skip


@dataclass(frozen=True)
class DeriveSettings:
    """How a spec is derived. ``min_coverage``: share of events an attribute must be in;
    ``low_cardinality``: a string with at most this many distinct values is a category;
    ``max_features``: the most features one class gets (most common attributes first)."""

    min_coverage: float = 0.05
    low_cardinality: int = 24
    max_features: int = 48
    schema_version: str | None = "1.7.0"


@dataclass
class _Path:
    count: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    values: set[Any] = field(default_factory=set)
    integral: bool = True

    def add(self, value: Any, cap: int) -> None:
        self.count += 1
        kind = _kind(value)
        self.kinds[kind] += 1
        if kind in ("number", "text", "bool") and len(self.values) <= cap:
            self.values.add((kind, value if kind != "number" else float(value)))
        if kind == "number" and not float(value).is_integer():
            self.integral = False


@dataclass(frozen=True)
class DerivedSpec:
    """A derived spec with what decided it: the schema release used (None: the values
    alone typed the attributes) and, per feature, why it was chosen."""

    spec: ClassSpec
    schema_version: str | None
    reasons: dict[str, str]


def derive_spec(
    class_uid: int,
    events: Sequence[dict[str, Any]],
    settings: DeriveSettings | None = None,
    schema: OcsfSchema | None = None,
) -> DerivedSpec:
    """An unfitted spec for ``class_uid`` from its baseline ``events`` (decoded dicts).

    ``schema``: the OCSF schema to type attributes with; by default the release in
    ``settings`` from pydantic-ocsf, or none (values alone) when it is not installed.
    """
    settings = settings or DeriveSettings()
    if schema is None and settings.schema_version:
        try:
            schema = OcsfSchema.load(settings.schema_version)
        except SchemaUnavailableError:
            schema = None
    if schema is not None and not schema.has_class(class_uid):
        schema = None  # an extension's class: the values decide
    n = max(1, len(events))
    cap = 4 * settings.low_cardinality + 64
    stats: dict[str, _Path] = {}
    for event in events:
        for path, value in _leaves(event):
            entry = stats.get(path)
            if entry is None:
                entry = stats[path] = _Path()
            entry.add(value, cap)
    present = {p for p, s in stats.items() if s.count >= settings.min_coverage * n}
    # A path that is a leaf in some events and an object in others cannot be planned as
    # both: the object's leaves are kept.
    present = {p for p in present if not any(q.startswith(p + ".") for q in stats)}
    # ``status`` beside ``status_id``: the caption of the enum, the same information.
    present = {p for p in present if not _caption_of_enum(p, present)}
    ranked = sorted(present, key=lambda p: (-stats[p].count, p))

    features: list[Feature] = [HourFeature(name="hour")]
    reasons: dict[str, str] = {"hour": "event time as hour of day"}
    chosen: set[str] = set()
    for path in ranked:
        if len(features) >= settings.max_features:
            break
        attr = schema.attribute(class_uid, path) if schema is not None else None
        made = _features_for(path, stats[path], attr, settings)
        if not made:
            continue
        for f, why in made:
            features.append(f)
            reasons[f.name] = why
        chosen.add(path)
    for name, left, right in _PAIRS:
        a = next((p for p in left if p in chosen and _identity(stats[p])), None)
        b = next((p for p in right if p in chosen and p != a and _identity(stats[p])), None)
        if a and b:
            features.append(HashedFeature(name=name, path=a, together_with=b))
            reasons[name] = f"pair {a} x {b}"
    return DerivedSpec(
        ClassSpec(class_uid=class_uid, features=features),
        schema.version if schema is not None else None,
        reasons,
    )


def _features_for(
    path: str, stats: _Path, attr: Attribute | None, settings: DeriveSettings
) -> list[tuple[Feature, str]]:
    kind, _ = stats.kinds.most_common(1)[0]
    if len(stats.kinds) > 1 and not set(stats.kinds) <= {"number", "text", "bool"}:
        return []  # objects or lists in some events, scalars in others
    source = f"schema {attr.type}" if attr is not None else "values"
    if kind == "list":
        return [(CountFeature(name=f"{path}:count", path=path), f"list ({source}): its length")]
    if path == "time" or (attr is not None and attr.type in ("timestamp_t", "datetime_t")):
        return []  # the event time is the hour feature; other absolute times are drift
    distinct = len(stats.values)
    low = distinct <= settings.low_cardinality
    if attr is not None and attr.enum is not None:
        return [(CategoricalFeature(name=path, path=path), f"enum ({source})")]
    if kind == "bool" or (attr is not None and attr.type == "boolean_t"):
        return [(CategoricalFeature(name=path, path=path), f"boolean ({source})")]
    is_port = (attr is not None and attr.type == "port_t") or path.endswith(".port")
    if is_port and set(stats.kinds) == {"number"}:
        return [
            (CategoricalFeature(name=path, path=path, max_vocab=128), f"port ({source})"),
            (PortFeature(name=f"{path}:class", path=path), "port class"),
        ]
    numeric_type = attr is not None and attr.type in NUMBER_TYPES
    if (numeric_type or attr is None) and set(stats.kinds) == {"number"}:
        if low and stats.integral:
            return [(CategoricalFeature(name=path, path=path), f"number of {distinct} values")]
        return [(NumericFeature(name=path, path=path), f"number ({source})")]
    if attr is not None and attr.type == "ip_t":
        return [
            (HashedFeature(name=path, path=path), f"address ({source}): hashed, rarity"),
            (AddressFeature(name=f"{path}:scope", path=path), "address scope"),
        ]
    identifier = (attr is not None and attr.type in _IDENTITY_TYPES) or path.endswith(
        _IDENTITY_SUFFIXES
    )
    if low and not identifier:
        return [(CategoricalFeature(name=path, path=path), f"{distinct} distinct values")]
    out: list[tuple[Feature, str]] = []
    if _identity(stats):
        out.append((HashedFeature(name=path, path=path), f"identifier ({source}): hashed"))
    leaf = path.rsplit(".", 1)[-1]
    if (attr is not None and attr.type in _TEXT_TYPES) or leaf in _TEXT_LEAVES:
        out.append((TextFeature(name=f"{path}:shape", path=path), "text shape"))
    return out


def _identity(stats: _Path) -> bool:
    """Values that recur (users, hosts, images): worth a rarity. A value new in nearly
    every event (a request id, a timestamp in text) would only ever say 'unseen'."""
    return stats.count < 20 or len(stats.values) < 0.8 * stats.count


def _caption_of_enum(path: str, present: set[str]) -> bool:
    """``status`` beside ``status_id``, ``activity_name`` beside ``activity_id``."""
    stem = path.removesuffix("_name")
    return f"{path}_id" in present or f"{stem}_id" in present


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number" if math.isfinite(value) else "other"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    return "other"


def _leaves(event: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    stack: list[tuple[str, dict[str, Any], int]] = [("", event, 0)]
    while stack:
        prefix, node, depth = stack.pop()
        for key, value in node.items():
            if not isinstance(key, str) or not key or "." in key:
                continue
            if depth == 0 and key in _SKIP_TOP:
                continue
            if key in _SKIP_LEAF or key.endswith("_uid") or key.endswith("_dt"):
                continue
            path = prefix + key
            if isinstance(value, dict):
                if depth < 5:
                    stack.append((path + ".", value, depth + 1))
            elif value is not None:
                out.append((path, value))
    return out
