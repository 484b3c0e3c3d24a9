"""Request and response bodies of the prediction API (they are its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_BATCH_EVENTS = 1000
"""Events per batch request: 1,000 typical events stay well inside API Gateway's 10 MB."""

EXAMPLE_EVENT: dict[str, Any] = {
    "class_uid": 4001,
    "category_uid": 4,
    "activity_id": 6,
    "time": 1767225600000,
    "src_endpoint": {"ip": "10.0.1.17", "port": 51234},
    "dst_endpoint": {"ip": "10.0.2.8", "port": 443},
    "connection_info": {"protocol_name": "tcp", "direction_id": 2},
    "traffic": {"bytes_in": 5120, "bytes_out": 812, "packets_in": 9, "packets_out": 7},
}

OcsfEvent = Annotated[
    dict[str, Any],
    Field(
        description=(
            "One OCSF event (a JSON object). `class_uid` and `time` (epoch ms) are required "
            "by the detector; other fields are read as the class's features need them."
        ),
        json_schema_extra={"examples": [EXAMPLE_EVENT]},
    ),
]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Neighbor(_Out):
    """A baseline (normal) event near this one: why the score is what it is."""

    id: str = Field(description="id of the baseline event in the bundle's index")
    distance: float = Field(description="distance in the embedding space")


class Reason(_Out):
    """One reason an anomaly fired: a feature far from the class's normal baseline."""

    feature: str = Field(description="feature name, e.g. bytes_out or user_from_ip")
    path: str = Field(description="the OCSF attribute it reads, e.g. traffic.bytes_out")
    value: Any = Field(description="the event's value (a pair for a pair feature; null: absent)")
    typical: Any = Field(
        description="the baseline's typical value: its median, the most common category, "
        "or how often a value is typically seen"
    )
    deviation: float = Field(
        description="how far from typical, in robust standard deviations (a value never seen "
        "in the baseline counts 6, an absent one 3)"
    )
    text: str = Field(
        description="the reason in words, e.g. 'bytes_out 2.1 GB, typical 40.0 KB'",
        examples=["src_endpoint.ip 203.0.113.9 never seen in the baseline"],
    )


class ScoredResult(_Out):
    status: Literal["scored"]
    class_uid: int
    class_name: str
    score: float = Field(description="mean distance to the k nearest normal events")
    threshold: float = Field(description="the class's alert threshold; score >= it is anomalous")
    is_anomaly: bool
    severity_id: int = Field(description="OCSF severity_id from the bundle's severity bands")
    severity: str
    neighbors: list[Neighbor] = Field(description="nearest normal events, nearest first")
    explanation: list[Reason] = Field(
        default_factory=list,
        description="for an anomaly, the features that differ most from the baseline, most "
        "different first (empty when nothing stands out alone, and for normal events)",
    )


class UnsupportedResult(_Out):
    status: Literal["unsupported"]
    class_uid: int
    class_name: str
    reason: str | None = Field(
        None,
        description="why the class has no model, when the bundle's training says: "
        "too_few_baseline_events",
    )
    baseline_events: int | None = Field(
        None, description="the class's events in the baseline (with reason)"
    )


class RejectedResult(_Out):
    status: Literal["rejected"]
    reason: str = Field(description="stable reason code, e.g. missing_field, wrong_type, too_deep")
    field: str | None = Field(description="dotted path of the field at fault, when there is one")
    message: str


EventResult = Annotated[
    ScoredResult | UnsupportedResult | RejectedResult, Field(discriminator="status")
]


class Prediction(ScoredResult):
    """The answer to POST /v1/predict."""

    bundle_version: str
    latency_ms: float = Field(description="time spent scoring inside the function")


class BatchRequest(BaseModel):
    """The body of POST /v1/predict/batch."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"events": [EXAMPLE_EVENT]}]},
    )

    # Items are deliberately untyped: one malformed event is rejected on its own line of
    # the answer instead of failing the whole request. The count limit is a 413, checked
    # by the route, so maxItems is documentation here.
    events: list[Any] = Field(
        min_length=1,
        description="OCSF events (JSON objects); each gets its own result",
        json_schema_extra={"maxItems": MAX_BATCH_EVENTS},
    )


class BatchTotals(_Out):
    events: int
    scored: int
    anomalies: int
    unsupported: int
    rejected: int


class BatchPrediction(_Out):
    """The answer to POST /v1/predict/batch: one result per event, in request order."""

    results: list[EventResult]
    totals: BatchTotals
    bundle_version: str
    latency_ms: float


class FeedbackRequest(BaseModel):
    """The body of POST /v1/feedback: an analyst's verdict on a finding, with the finding
    as it was received (its evidence holds the source event) or the source event itself."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "finding_uid": "0b8e6c52-3f1d-5a8e-9c1b-2f4d6e8a0c13",
                    "verdict": "benign",
                    "note": "nightly backup to the new NAS",
                    "event": EXAMPLE_EVENT,
                }
            ]
        },
    )

    finding_uid: str = Field(
        pattern=r"^[0-9A-Za-z._:-]{1,128}$",
        description="finding_info.uid of the Detection Finding judged",
    )
    verdict: Literal["benign", "malicious"] = Field(
        description="benign: events like this one stop alerting (the feedback overlay); "
        "malicious: kept as a label for `ocsf-detect evaluate`"
    )
    note: str | None = Field(default=None, max_length=2000, description="the analyst's note")
    finding: dict[str, Any] | None = Field(
        default=None,
        description="the Detection Finding as published (SNS message or EventBridge detail); "
        "its finding_info.uid must be finding_uid and its evidence must not be trimmed",
    )
    event: dict[str, Any] | None = Field(
        default=None, description="the source event, instead of the finding"
    )


class FeedbackResult(_Out):
    """The answer to POST /v1/feedback: what was recorded."""

    finding_uid: str
    verdict: Literal["benign", "malicious"]
    class_uid: int
    bundle_version: str = Field(description="the bundle whose embedding the overlay holds")
    overlay_vectors: int = Field(
        description="judged-benign vectors of this class in the overlay, this one included"
    )


class Health(_Out):
    """Liveness is the 200 itself; readiness is `ready` (the bundle is loaded)."""

    status: Literal["ok"]
    ready: bool
    bundle_version: str | None
    load_ms: float | None


class SeverityBand(BaseModel):
    model_config = ConfigDict(extra="allow")


class ClassSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    class_uid: int
    class_name: str
    threshold: float
    alert_rate: float | None = None


class ModelSummary(BaseModel):
    """The bundle's public summary (no file names, no internals)."""

    model_config = ConfigDict(extra="allow")

    bundle_version: str
    created_at: str | None = None
    classes: list[ClassSummary]


class FieldError(_Out):
    field: str = Field(description="dotted path in the request, e.g. body.events")
    message: str
    type: str


ErrorCode = Literal[
    "invalid_json",
    "empty_body",
    "validation_error",
    "unsupported_class",
    "rejected_event",
    "payload_too_large",
    "too_large",
    "unsupported_media_type",
    "not_found",
    "method_not_allowed",
    "internal_error",
    "bundle_unavailable",
    "invalid_feedback",
    "feedback_unavailable",
    "suppressions_unavailable",
    "rule_unreadable",
    "rule_conflict",
]
"""Every `error` code the API answers with; docs/api.md says when each is sent."""


class ErrorBody(_Out):
    """Every non-2xx answer. `error` is a stable code; `message` says what to do."""

    error: ErrorCode = Field(
        description=(
            "stable error code: 400 invalid_json, empty_body; 404 not_found; "
            "405 method_not_allowed; 409 rule_unreadable, rule_conflict; "
            "413 payload_too_large, too_large (an event over "
            "OCSF_DETECT_MAX_EVENT_BYTES); 415 unsupported_media_type; "
            "422 validation_error, unsupported_class, rejected_event, invalid_feedback; "
            "500 internal_error; 503 bundle_unavailable, feedback_unavailable, "
            "suppressions_unavailable"
        )
    )
    message: str
    request_id: str | None
    reason: str | None = Field(
        default=None, description="detector reason code (422 and 413 too_large on predict)"
    )
    field: str | None = Field(default=None, description="the field at fault, when known")
    errors: list[FieldError] | None = None
