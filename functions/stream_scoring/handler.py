"""Kinesis -> score -> alerts (SNS + EventBridge) and quarantine (SQS/S3).

Invoked by a Kinesis event source mapping with ReportBatchItemFailures; returns
``{"batchItemFailures": [...]}`` (see ``ocsf_detect.stream`` for the semantics). Invoked
directly with ``{"ocsf_detect_selftest": true}`` it returns ``detector.selftest()`` and
publishes nothing (the CodeDeploy pre-traffic hook); with ``{"ocsf_detect_close_groups":
true}`` (a schedule) it closes the alert groups whose window is over by the clock.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from ocsf_detect import deadline, names
from ocsf_detect.detector.scorer import Detector
from ocsf_detect.settings import BundleSettings
from ocsf_detect.snapstart import prepare_snapshot
from ocsf_detect.stream import (
    BatchResult,
    EventStatus,
    RetryPolicy,
    StreamRecord,
    Sweep,
    close_all_due_groups,
    process_batch,
)
from ocsf_detect.telemetry import service_metrics
from stream_scoring.adapters import (
    BUNDLE_RESERVE_S,
    StreamAdapters,
    get_adapters,
    get_detector,
    refresh_overlay,
)
from stream_scoring.settings import StreamSettings, get_settings

logger = Logger(service=names.SERVICE_NAME)
metrics = service_metrics()
tracer = Tracer(service=names.SERVICE_NAME)

_result_observers: list[Callable[[BatchResult], None]] = []


def add_result_observer(observer: Callable[[BatchResult], None]) -> Callable[[], None]:
    """Local tooling (replay, bench) sees each batch's per-record result; returns a remover."""
    _result_observers.append(observer)
    return lambda: _result_observers.remove(observer)


@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler(capture_response=False)
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    remaining_ms = context.get_remaining_time_in_millis
    if isinstance(event, Mapping) and event.get(names.SELFTEST_PAYLOAD_KEY) is True:
        return _loaded_detector(remaining_ms()).selftest()
    if isinstance(event, Mapping) and event.get(names.CLOSE_GROUPS_PAYLOAD_KEY) is True:
        bundle_version = _loaded_detector(remaining_ms()).bundle_version
        metrics.add_dimension(names.METRIC_DIMENSION_BUNDLE_VERSION, bundle_version)
        sweep = close_groups(
            settings=get_settings(),
            adapters=get_adapters(),
            bundle_version=bundle_version,
            time_left=lambda: context.get_remaining_time_in_millis() / 1000.0,
        )
        metrics.add_metric(
            name=names.METRIC_GROUPS_CLOSED, unit=MetricUnit.Count, value=sweep.closed
        )
        metrics.add_metric(
            name=names.METRIC_ALERTS_PUBLISHED, unit=MetricUnit.Count, value=sweep.published
        )
        return {"closed": sweep.closed, "published": sweep.published, "errors": sweep.errors}
    problem = not_a_kinesis_event(event)
    if problem is not None:  # a console test, a mis-wired trigger: say so, score nothing
        raise NotAKinesisEventError(problem)
    settings = get_settings()
    detector = _loaded_detector(remaining_ms())
    metrics.add_dimension(names.METRIC_DIMENSION_BUNDLE_VERSION, detector.bundle_version)
    _apply_feedback(detector)
    result = handle(
        event,
        settings=settings,
        detector=detector,
        adapters=get_adapters(),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000.0,
    )
    for observer in list(_result_observers):
        observer(result)
    return result.response()


def handle(
    event: Mapping[str, Any],
    *,
    settings: StreamSettings,
    detector: Detector,
    adapters: StreamAdapters,
    time_left: Callable[[], float] | None = None,
) -> BatchResult:
    """Decode the Kinesis event, process the batch, log and count what happened.
    ``time_left``: seconds before the invocation's deadline (delivery stops short of it)."""
    records = decode_records(event)
    if records:
        logger.append_keys(
            shard_id=records[0].shard_id,
            first_sequence_number=records[0].sequence_number,
            last_sequence_number=records[-1].sequence_number,
        )
    before = (detector.rechecks.rechecked, detector.rechecks.unchecked, detector.silenced)
    with tracer.provider.in_subsegment("process_batch"):
        result = process_batch(
            records,
            detector,
            publishers=adapters.publishers,
            quarantine=adapters.quarantine,
            policy=RetryPolicy(
                max_attempts=settings.publish_max_attempts,
                reserve_s=settings.deadline_reserve_ms / 1000.0,
            ),
            time_left=time_left,
            now_ms=int(time.time() * 1000),
            max_event_bytes=settings.max_event_bytes,
            limits=settings.record_limits,
            grouping=adapters.grouping,
        )
    _record_metrics(result)
    for name, value in (
        (names.METRIC_ALERTS_RECHECKED, detector.rechecks.rechecked - before[0]),
        (names.METRIC_ALERTS_UNCHECKED, detector.rechecks.unchecked - before[1]),
        (names.METRIC_FEEDBACK_SILENCED, detector.silenced - before[2]),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    _log_result(result)
    return result


def close_groups(
    *,
    settings: StreamSettings,
    adapters: StreamAdapters,
    bundle_version: str,
    time_left: Callable[[], float] | None = None,
    clock_ms: int | None = None,
) -> Sweep:
    """Close the groups whose window ended (by the wall clock less the grace period, or
    ``clock_ms``), publishing the closing updates (``stream.close_all_due_groups``)."""
    grouping = adapters.grouping
    if grouping is None:
        return Sweep()
    policy = RetryPolicy(
        max_attempts=settings.publish_max_attempts,
        reserve_s=settings.deadline_reserve_ms / 1000.0,
    )
    now_ms = int(time.time() * 1000)
    clock = now_ms - grouping.policy.close_grace_s * 1000 if clock_ms is None else clock_ms
    total = close_all_due_groups(
        grouping,
        adapters.publishers,
        policy,
        clock_ms=clock,
        now_ms=now_ms,
        bundle_version=bundle_version,
        time_left=time_left,
    )
    summary = {"closed": total.closed, "published": total.published, "errors": total.errors}
    if total.errors:
        logger.warning("alert groups closed with errors", extra=summary)
    else:
        logger.info("alert groups closed", extra=summary)
    return total


class NotAKinesisEventError(ValueError):
    """The function was invoked with something other than a Kinesis batch or one of its
    own payloads."""


def not_a_kinesis_event(event: Any) -> str | None:
    """Why ``event`` is not a Kinesis batch this function reads, or None."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        keys = sorted(map(str, event))[:5] if isinstance(event, Mapping) else type(event).__name__
        return (
            f"not a Kinesis event (no Records list; got {keys}); this function reads a "
            f"Kinesis stream, or takes {{{names.CLOSE_GROUPS_PAYLOAD_KEY!r}: true}} or "
            f"{{{names.SELFTEST_PAYLOAD_KEY!r}: true}} (JSON booleans)"
        )
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or record.get("eventSource") != "aws:kinesis":
            source = record.get("eventSource") if isinstance(record, Mapping) else None
            return f"Records[{i}] is not a Kinesis record (eventSource {source!r})"
        if not isinstance(record.get("kinesis"), Mapping):
            return f"Records[{i}] has no kinesis object"
    return None


def decode_records(event: Mapping[str, Any]) -> list[StreamRecord]:
    """Kinesis records -> ``StreamRecord``s; a bad base64 is that record's outcome only."""
    parsed = KinesisStreamEvent(dict(event))
    records: list[StreamRecord] = []
    for record in parsed.records:
        kinesis = record.kinesis
        shard_id = record.event_id.split(":", 1)[0]
        raw = kinesis.data
        try:
            data: bytes | None = base64.b64decode(raw, validate=True)
            error = None
        except (binascii.Error, ValueError) as exc:
            data, error = None, f"the record's data is not valid base64: {exc}"
        records.append(
            StreamRecord(
                shard_id=shard_id,
                sequence_number=kinesis.sequence_number,
                data=data,
                decode_error=error,
                partition_key=kinesis.partition_key,
                raw_data=raw if data is None else None,
            )
        )
    return records


def _apply_feedback(detector: Detector) -> None:
    """Search the feedback overlay beside the index; a failed read keeps the last one."""
    source = refresh_overlay(detector)
    if source is None:
        return
    if source.last_error:
        logger.warning("feedback overlay not refreshed", extra={"error": source.last_error})
    overlay = detector.overlay
    vectors = overlay.total if overlay is not None else 0
    metrics.add_metric(name=names.METRIC_OVERLAY_VECTORS, unit=MetricUnit.Count, value=vectors)


def _loaded_detector(remaining_ms: int | None = None) -> Detector:
    """The execution environment's detector, loaded on first use. ``remaining_ms``: the
    invocation's time left, which an S3 bundle's download keeps to (``adapters``,
    ``BUNDLE_RESERVE_S``); None (init): Lambda's init phase bounds it."""
    cold = get_detector.cache_info().currsize == 0
    if cold and remaining_ms is not None:
        deadline.start(remaining_ms, BUNDLE_RESERVE_S)
    try:
        detector = get_detector()
    finally:
        deadline.end()
    if cold:
        logger.info(
            "bundle loaded",
            extra={"bundle_version": detector.bundle_version, "load_ms": detector.load_ms},
        )
        metrics.add_metric(
            name="BundleLoadMs", unit=MetricUnit.Milliseconds, value=detector.load_ms
        )
    return detector


def _record_metrics(result: BatchResult) -> None:
    counts = result.counts()
    for name, key in (
        (names.METRIC_RECORDS_IN, "events_in"),
        (names.METRIC_KINESIS_RECORDS, "records_in"),
        (names.METRIC_CONTROL_MESSAGES, "control_messages"),
        (names.METRIC_SCORED, "scored"),
        (names.METRIC_ANOMALIES, "anomalies"),
        (names.METRIC_REJECTED, "rejected"),
        (names.METRIC_UNSUPPORTED, "unsupported"),
        (names.METRIC_FAILED, "failed"),
        (names.METRIC_RECORDS_DEFERRED, "deferred_records"),
        (names.METRIC_QUARANTINED, "quarantined"),
        (names.METRIC_ALERTS_PUBLISHED, "alerts_published"),
        (names.METRIC_ALERTS_QUARANTINED, "alerts_quarantined"),
        (names.METRIC_SUPPRESSED, "suppressed"),
        (names.METRIC_GROUPS_OPENED, "groups_opened"),
        (names.METRIC_GROUPS_CLOSED, "groups_closed"),
        (names.METRIC_FINDINGS_WITHHELD, "withheld_archived"),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=counts[key])


def _log_result(result: BatchResult) -> None:
    for planned, status in zip(result.planned, result.statuses, strict=True):
        if planned.quarantine is not None and status is EventStatus.REJECTED:
            logger.warning(
                "event quarantined",
                extra={
                    "sequence_number": planned.record.sequence_number,
                    "sub_index": planned.event.sub_index,
                    "reason": planned.quarantine.reason,
                    "field": planned.quarantine.field,
                },
            )
    if result.alerts_quarantined:
        logger.warning(
            "findings a channel refused for good were quarantined to the bucket",
            extra={"alerts_quarantined": result.alerts_quarantined, "errors": result.errors},
        )
    failures = result.failed_identifiers
    if failures:
        logger.error(
            "batch partially failed; Lambda will retry from the first failure",
            extra={
                "first_failed_sequence_number": failures[0],
                "failed_records": len(failures),
                "errors": result.errors,
            },
        )
    elif result.errors:  # nothing failed, but something did not go as it should
        logger.warning("batch processed with errors", extra={"errors": result.errors})
    logger.info("batch processed", extra=result.counts())


# SnapStart (a stage setting): the bundle loads during init, so the snapshot holds it.
# Only the bundle settings are read here; the rest are read, as before, on first use.
if BundleSettings().load_at_init:
    prepare_snapshot(_loaded_detector)
