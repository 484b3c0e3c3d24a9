"""What the routes do: load the detector once, score, shape the answers.

No HTTP here (the handler maps errors to status codes) and no environment (settings come
in as arguments). The detector module pulls in onnxruntime and hnswlib, so it is imported
only inside ``get_detector``: /v1/health answers without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ocsf_detect.bundlefetch import BundleSourceError, load_detector
from ocsf_detect.gcpause import freeze_long_lived
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES
from prediction_api.models import (
    BatchPrediction,
    BatchTotals,
    EventResult,
    Health,
    ModelSummary,
    Prediction,
    RejectedResult,
    ScoredResult,
    UnsupportedResult,
)
from prediction_api.settings import ApiSettings

if TYPE_CHECKING:
    from ocsf_detect.detector.scorer import Detector


class BundleUnavailableError(Exception):
    """The bundle could not be loaded (missing, corrupt, unreachable, another version)."""

    def __init__(self, message: str, field: str = "bundle") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class EventNotScoredError(Exception):
    """A single event was unsupported or rejected; ``result`` says why."""

    def __init__(self, result: UnsupportedResult | RejectedResult) -> None:
        if isinstance(result, UnsupportedResult):
            message = (
                f"class_uid {result.class_uid} ({result.class_name}) is not scored by this "
                "bundle; GET /v1/model lists the classes it scores"
            )
            if result.reason is not None:
                message += (
                    f" ({result.reason}: the baseline held {result.baseline_events} of its "
                    "events, fewer than train's minimum for a model)"
                )
            field: str | None = "class_uid"
        else:
            message, field = result.message, result.field
        super().__init__(message)
        self.result = result
        self.message = message
        self.field = field


class EventTooLargeError(Exception):
    """One event over the size cap (``EventSettings.max_event_bytes``): a 413 ``too_large``."""

    def __init__(self, result: RejectedResult) -> None:
        super().__init__(result.message)
        self.result = result
        self.message = result.message
        self.field = result.field


class BatchTooLargeError(Exception):
    def __init__(self, count: int, limit: int) -> None:
        self.message = f"{count} events in one request; send at most {limit} per batch"
        self.field = "events"
        super().__init__(self.message)


_lock = threading.Lock()
_detector: Detector | None = None


def get_detector(settings: ApiSettings) -> Detector:
    """The container's detector, loaded on first use (thread-safe for the local server).

    A failed load raises ``BundleUnavailableError`` and is tried again by the next request;
    an S3 bundle is downloaded at most once per container (``ocsf_detect.bundlefetch``).
    """
    global _detector  # noqa: PLW0603 - one detector per execution environment, by design
    if _detector is None:
        with _lock:
            if _detector is None:
                _detector = _load(settings)
                freeze_long_lived()
    return _detector


def use_detector(detector: Detector | None) -> None:
    """Install an already loaded detector (tests, the local server), or forget it."""
    global _detector  # noqa: PLW0603
    with _lock:
        _detector = detector


def loaded_detector() -> Detector | None:
    """The detector if it is loaded already; never loads (liveness must stay cheap)."""
    return _detector


def _load(settings: ApiSettings) -> Detector:
    # S3, archive, disk and version failures arrive as BundleSourceError (bundlefetch);
    # a corrupt bundle as BundleError; an unreadable layer directory as OSError.
    from ocsf_detect.detector.bundle import BundleError

    try:
        return load_detector(
            path=settings.bundle_path,
            s3_uri=settings.bundle_s3_uri,
            expected_version=settings.expected_bundle_version,
            expected_manifest_sha256=settings.expected_manifest_sha256,
        )
    except BundleSourceError as exc:
        raise BundleUnavailableError(exc.message, field=exc.field) from exc
    except (BundleError, OSError) as exc:
        raise BundleUnavailableError(f"cannot load the bundle: {exc}") from exc


# --- answers -------------------------------------------------------------------------------
def _result(outcome: dict[str, Any]) -> EventResult:
    status = outcome["status"]
    if status == "scored":
        return ScoredResult.model_validate(outcome)
    if status == "unsupported":
        return UnsupportedResult.model_validate(outcome)
    return RejectedResult.model_validate(outcome)


def oversized(event: Any, max_event_bytes: int) -> RejectedResult | None:
    """The ``too_large`` result of an event whose JSON is over ``max_event_bytes`` (the
    cap the stream and ``ocsf-detect score`` apply to a record's bytes), else None."""
    try:
        size = len(orjson.dumps(event))
    except (TypeError, orjson.JSONEncodeError):  # e.g. an integer beyond 64 bits: not ours
        return None  # to judge here; the parser rejects it with its own reason
    if size <= max_event_bytes:
        return None
    return RejectedResult(
        status="rejected",
        reason="too_large",
        field=None,
        message=f"event is {size:,} bytes; the limit is {max_event_bytes:,}",
    )


def predict_one(
    detector: Detector, event: dict[str, Any], max_event_bytes: int = MAX_EVENT_BYTES
) -> Prediction:
    """Score one event; an event over the size cap raises ``EventTooLargeError``, an
    unsupported or rejected one ``EventNotScoredError``."""
    from ocsf_detect.detector.scorer import outcome_dict

    start = time.perf_counter()
    too_large = oversized(event, max_event_bytes)
    if too_large is not None:
        raise EventTooLargeError(too_large)
    outcome = outcome_dict(detector.score_objects([event])[0])
    if outcome["status"] != "scored":
        raise EventNotScoredError(_result(outcome))  # type: ignore[arg-type]
    latency_ms = (time.perf_counter() - start) * 1000.0
    return Prediction.model_validate(
        {**outcome, "bundle_version": detector.bundle_version, "latency_ms": round(latency_ms, 3)}
    )


def predict_batch(
    detector: Detector,
    events: Sequence[Any],
    limit: int,
    max_event_bytes: int = MAX_EVENT_BYTES,
) -> BatchPrediction:
    """Score a batch as one call to the detector; one result per event, in order (an
    event over the size cap is rejected ``too_large`` and not scored)."""
    from ocsf_detect.detector.scorer import outcome_dict

    if len(events) > limit:
        raise BatchTooLargeError(len(events), limit)
    start = time.perf_counter()
    too_large = [oversized(e, max_event_bytes) for e in events]
    kept = [e for e, big in zip(events, too_large, strict=True) if big is None]
    scored_outcomes = iter(detector.score_objects(kept))
    results: list[EventResult] = [
        big if big is not None else _result(outcome_dict(next(scored_outcomes)))
        for big in too_large
    ]
    scored = [r for r in results if isinstance(r, ScoredResult)]
    unsupported = sum(isinstance(r, UnsupportedResult) for r in results)
    totals = BatchTotals(
        events=len(results),
        scored=len(scored),
        anomalies=sum(r.is_anomaly for r in scored),
        unsupported=unsupported,
        rejected=len(results) - len(scored) - unsupported,
    )
    latency_ms = (time.perf_counter() - start) * 1000.0
    return BatchPrediction(
        results=results,
        totals=totals,
        bundle_version=detector.bundle_version,
        latency_ms=round(latency_ms, 3),
    )


def health() -> Health:
    detector = loaded_detector()
    if detector is None:
        return Health(status="ok", ready=False, bundle_version=None, load_ms=None)
    return Health(
        status="ok",
        ready=True,
        bundle_version=detector.bundle_version,
        load_ms=round(detector.load_ms, 3),
    )


def model_summary(detector: Detector) -> ModelSummary:
    return ModelSummary.model_validate(detector.manifest.public_summary())
