"""The three explicit outcomes of reading one input: parsed, unsupported or rejected."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


class RejectReason(StrEnum):
    """Stable reason codes. Clients, metrics and quarantine consumers key on these values,
    so they never change meaning; new reasons may be added."""

    INVALID_INPUT = "invalid_input"  # not bytes/str (a programming error upstream)
    INVALID_ENCODING = "invalid_encoding"  # bytes that are not UTF-8 (or bad base64 upstream)
    TOO_LARGE = "too_large"  # beyond MAX_EVENT_BYTES
    INVALID_JSON = "invalid_json"  # not parseable as JSON
    NON_FINITE_NUMBER = "non_finite_number"  # NaN or Infinity literals
    NUMBER_OUT_OF_RANGE = "number_out_of_range"  # integers beyond 64 bits
    NOT_AN_OBJECT = "not_an_object"  # JSON, but not an object at the top level
    TOO_DEEP = "too_deep"  # nesting beyond MAX_NESTING_DEPTH
    MISSING_FIELD = "missing_field"  # a required field (class_uid, time) is absent
    WRONG_TYPE = "wrong_type"  # a used field has a type or value it cannot have
    UNPUBLISHABLE = "unpublishable"  # scored anomalous, but no finding can carry it
    # A Kinesis record that cannot be unpacked into events (``ocsf_detect.records``):
    INVALID_COMPRESSION = "invalid_compression"  # a corrupt or truncated gzip/zlib stream
    INVALID_AGGREGATION = "invalid_aggregation"  # a KPL aggregate: bad MD5 or protobuf
    TOO_MANY_EVENTS = "too_many_events"  # more events in one record than its limit


@dataclass(slots=True)
class Parsed:
    """A supported event, validated for the fields its features use.

    Not frozen: a frozen dataclass costs a microsecond per instance on the hot path.
    ``values`` holds those fields in the order of the class's feature plan (see
    ``features.plan``); ``event`` is the event exactly as it came, for alerts.
    """

    class_uid: int
    time_ms: int
    values: tuple[Any, ...]
    event: dict[str, Any]
    status: Literal["parsed"] = "parsed"


class UnsupportedReason(StrEnum):
    """Why a class has no model, where the bundle knows (stable codes, like reasons)."""

    # The class was in the baseline, with fewer events than train's minimum for a model.
    TOO_FEW_BASELINE_EVENTS = "too_few_baseline_events"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A well-formed OCSF event of a class the detector does not score. ``reason`` and
    ``baseline_events`` say why, when the bundle's training recorded it (a class seen in
    the baseline below the minimum); None for a class the baseline never held."""

    class_uid: int
    reason: UnsupportedReason | None = None
    baseline_events: int | None = None
    status: Literal["unsupported"] = "unsupported"


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that cannot be an OCSF event we can read, with a stable reason code and
    the field at fault (dotted path) when there is one."""

    reason: RejectReason
    message: str
    field: str | None = None
    status: Literal["rejected"] = "rejected"

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "field": self.field, "message": self.message}


ParseOutcome = Parsed | Unsupported | Rejected
