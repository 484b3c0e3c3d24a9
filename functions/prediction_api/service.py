"""What the routes do: load the detector once, score, shape the answers.

No HTTP here (the handler maps errors to status codes) and no environment (settings come
in as arguments). The detector module pulls in onnxruntime and hnswlib, so it is imported
only inside ``get_detector``: /v1/health answers without it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ocsf_detect.bundlefetch import BundleSourceError, load_detector
from ocsf_detect.feedback import (
    OVERLAY_READ_CONCURRENCY,
    FeedbackError,
    OverlaySource,
    S3FeedbackStore,
    Verdict,
)
from ocsf_detect.gcpause import freeze_long_lived
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES
from prediction_api.models import (
    BatchPrediction,
    BatchTotals,
    EventResult,
    FeedbackRequest,
    FeedbackResult,
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
_overlay_source: OverlaySource | None = None


def get_detector(
    settings: ApiSettings,
    *,
    s3: Any | None = None,
    before_read: Callable[[], None] | None = None,
) -> Detector:
    """The container's detector, loaded on first use (thread-safe for the local server).

    A failed load raises ``BundleUnavailableError`` and is tried again by the next request;
    an S3 bundle is downloaded at most once per container (``ocsf_detect.bundlefetch``),
    by the client ``s3``, with ``before_read`` called before each read of its body.
    """
    global _detector  # noqa: PLW0603 - one detector per execution environment, by design
    if _detector is None:
        with _lock:
            if _detector is None:
                _detector = _load(settings, s3, before_read)
                freeze_long_lived()
    return _detector


def use_detector(detector: Detector | None) -> None:
    """Install an already loaded detector (tests, the local server), or forget it (and
    the feedback overlay read for the previous one)."""
    global _detector, _overlay_source  # noqa: PLW0603
    with _lock:
        _detector = detector
        _overlay_source = None


def loaded_detector() -> Detector | None:
    """The detector if it is loaded already; never loads (liveness must stay cheap)."""
    return _detector


def _load(
    settings: ApiSettings,
    s3: Any | None = None,
    before_read: Callable[[], None] | None = None,
) -> Detector:
    # S3, archive, disk and version failures arrive as BundleSourceError (bundlefetch);
    # a corrupt bundle as BundleError; an unreadable layer directory as OSError.
    from ocsf_detect.detector.bundle import BundleError

    try:
        return load_detector(
            path=settings.bundle_path,
            s3_uri=settings.bundle_s3_uri,
            expected_version=settings.expected_bundle_version,
            expected_manifest_sha256=settings.expected_manifest_sha256,
            s3=s3,
            before_read=before_read,
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


# --- feedback ------------------------------------------------------------------------------
class FeedbackUnavailableError(Exception):
    """No feedback bucket is configured (``names.ENV_FEEDBACK_BUCKET``)."""


class FeedbackStoreError(Exception):
    """The feedback bucket failed the request (a 503): ``message`` says what was kept."""

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause  # for the log, when there is no exception to chain


def overlay_source(
    detector: Detector, store: S3FeedbackStore | None, refresh_s: float
) -> OverlaySource | None:
    """The container's overlay reader for the loaded bundle (None without a store)."""
    global _overlay_source  # noqa: PLW0603 - one per execution environment, by design
    if store is None:
        return None
    source = _overlay_source
    if (
        source is None
        or source.store is not store
        or source.bundle_version != detector.bundle_version
    ):
        with _lock:
            source = _overlay_source = OverlaySource(
                store,
                detector.bundle_version,
                detector.dims,
                refresh_s,
                read_concurrency=OVERLAY_READ_CONCURRENCY,
                row_shapes=detector.row_shapes,
            )
    return source


def apply_feedback(detector: Detector, store: S3FeedbackStore | None, refresh_s: float) -> Detector:
    """The detector, searching the current overlay beside its index (read again once it
    is ``refresh_s`` old); unchanged when there is no feedback store."""
    source = overlay_source(detector, store, refresh_s)
    if source is not None:
        detector.use_overlay(source.current())
    return detector


def feedback_event(request: FeedbackRequest) -> dict[str, Any]:
    """The source event a verdict is about: ``event``, or the evidence of ``finding``."""
    if (request.finding is None) == (request.event is None):
        raise FeedbackError(
            "send the finding as received (`finding`) or its source event (`event`), "
            "exactly one of them",
            "finding",
        )
    if request.event is not None:
        return request.event
    finding = request.finding or {}
    info = finding.get("finding_info")
    uid = info.get("uid") if isinstance(info, dict) else None
    if uid != request.finding_uid:
        raise FeedbackError(
            f"finding.finding_info.uid is {uid!r}, not the finding_uid {request.finding_uid!r}",
            "finding.finding_info.uid",
        )
    unmapped = finding.get("unmapped")
    if isinstance(unmapped, dict) and unmapped.get("ocsf_detect_trimmed"):
        raise FeedbackError(
            "the finding's evidence was trimmed to fit a message, so it is not the whole "
            "event; send the source event as `event` instead",
            "finding.evidences",
        )
    evidences = finding.get("evidences")
    first = evidences[0] if isinstance(evidences, list) and evidences else None
    data = first.get("data") if isinstance(first, dict) else None
    if not isinstance(data, dict):
        raise FeedbackError(
            "the finding has no evidences[0].data holding its source event", "finding.evidences"
        )
    return data


def record_feedback(
    detector: Detector,
    store: S3FeedbackStore | None,
    request: FeedbackRequest,
    *,
    refresh_s: float,
    now_ms: int,
    max_event_bytes: int = MAX_EVENT_BYTES,
    recorded_by: str | None = None,
) -> FeedbackResult:
    """Keep the verdict; a benign one adds the event as the bundle reads it (its embedding,
    and its row where the fine view measures the feature space) to the overlay, which
    this container then searches at once (others within ``refresh_s``). ``recorded_by``:
    the caller, kept with the verdict."""
    from ocsf_detect.detector.overlay import Judged
    from ocsf_detect.detector.scorer import outcome_dict

    if store is None:
        raise FeedbackUnavailableError
    event = feedback_event(request)
    too_large = oversized(event, max_event_bytes)  # as /v1/predict: a verdict keeps its event
    if too_large is not None:
        raise EventTooLargeError(too_large)
    judged = detector.judge_objects([event])[0]
    if not isinstance(judged, Judged):
        outcome = outcome_dict(judged)
        why = outcome.get("message") or f"class_uid {outcome.get('class_uid')} is not scored"
        raise FeedbackError(f"the event cannot be embedded by this bundle: {why}", "event")
    verdict = Verdict(
        finding_uid=request.finding_uid,
        verdict=request.verdict,
        note=request.note,
        class_uid=judged.class_uid,
        event=event,
        bundle_version=detector.bundle_version,
        received_ms=now_ms,
        recorded_by=recorded_by,
    )
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        store.record(verdict, judged)
    except (BotoCoreError, ClientError) as exc:  # S3 refused or did not answer
        raise FeedbackStoreError(
            f"the feedback bucket failed ({type(exc).__name__}); the verdict may be kept "
            "in part; send the same request again (it is safe to repeat)"
        ) from exc
    source = overlay_source(detector, store, refresh_s)
    assert source is not None
    source.apply(verdict, judged)  # this container's overlay has it at once
    source.invalidate()
    overlay = source.current()
    if source.last_error is not None:
        raise FeedbackStoreError(
            "the verdict was kept, but the overlay could not be read back "
            f"({source.last_error.split(':', 1)[0]}); every container reads it within "
            "the refresh interval, and sending the same request again is safe",
            cause=source.last_error,
        )
    detector.use_overlay(overlay)
    return FeedbackResult(
        finding_uid=verdict.finding_uid,
        verdict=verdict.verdict,
        class_uid=verdict.class_uid,
        bundle_version=detector.bundle_version,
        overlay_vectors=overlay.count(verdict.class_uid),
    )
