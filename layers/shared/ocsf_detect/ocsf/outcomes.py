"""The three explicit outcomes of reading one input: parsed, unsupported or rejected."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

import msgspec

# The parser's decoder for whole events (strict JSON, integers of any size exactly).
JSON_DECODE = msgspec.json.Decoder().decode
_FIRST_READ = threading.Lock()  # ``Parsed.event``'s decode of a kept text


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


class Parsed:
    """A supported event, validated for the fields its features use.

    ``values`` holds those fields in the order of the class's feature plan (see
    ``features.plan``); ``event`` is the event exactly as it came, for alerts.

    The parser's fast path has decoded and checked the whole text already, and most
    events never alert: it keeps the text (``text``), and ``event`` decodes it again, with
    the same decoder, the first time it is read. Keeping ten thousand decoded events
    alive costs about as much as decoding them. Not a frozen dataclass: that costs a
    microsecond per instance on the hot path.
    """

    __slots__ = ("_event", "_text", "class_uid", "time_ms", "values")
    status: Literal["parsed"] = "parsed"

    def __init__(
        self,
        class_uid: int,
        time_ms: int,
        values: tuple[Any, ...],
        event: dict[str, Any] | None = None,
        *,
        text: bytes | str | None = None,
    ) -> None:
        if (event is None) == (text is None):
            raise ValueError("a parsed event is given either decoded or as its text")
        self.class_uid = class_uid
        self.time_ms = time_ms
        self.values = values
        self._event = event
        self._text = text

    @property
    def event(self) -> dict[str, Any]:
        event = self._event
        if event is None:
            # One decode, whichever thread reads first (only alerts get here: the lock
            # costs nothing on the hot path), so every read returns the same object.
            with _FIRST_READ:
                event = self._event
                if event is None:
                    # The text decoded once already, by this decoder, to an object: it
                    # does again.
                    event = self._event = JSON_DECODE(self._text)  # type: ignore[arg-type]
                    self._text = None
        return event

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not Parsed:
            return NotImplemented
        o: Parsed = other
        return (self.class_uid, self.time_ms, self.values, self.event) == (
            o.class_uid,
            o.time_ms,
            o.values,
            o.event,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it was

    def __repr__(self) -> str:
        return (
            f"Parsed(class_uid={self.class_uid!r}, time_ms={self.time_ms!r}, "
            f"values={self.values!r}, event={self.event!r})"
        )


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
