"""One Kinesis batch, from decoded records to delivered alerts and a batch-item-failure list.

Pure apart from the adapters handed in (Protocol-typed): no boto3, no environment.

1. ``plan_batch``: records -> one detector call -> one ``PlannedRecord`` per record, routed
   to NORMAL (scored, not anomalous), ALERT (a Detection Finding), QUARANTINE (rejected:
   bad base64, not JSON, schema violation, too large) or UNSUPPORTED (a class the bundle
   does not score).
2. ``process_batch``: quarantine the rejected, publish the alerts to every publisher with
   bounded retries, and compute the final per-record status.

Failure semantics (Lambda's ReportBatchItemFailures): Lambda restarts a shard from the
LOWEST sequence number reported, so once a record of a shard fails, it and every later
record of that shard are reported (status FAILED): they will all be processed again.
Records before the first failure are never reported. Re-processing republishes alerts
with the same finding uid (at-least-once delivery, deduplicated by uid downstream).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ocsf_detect import names
from ocsf_detect.detector.scorer import Outcome, Scored
from ocsf_detect.findings import build_finding, fit_finding
from ocsf_detect.ocsf.outcomes import Rejected, RejectReason, Unsupported


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One Kinesis record: its identity and either its payload bytes or why it has none."""

    shard_id: str
    sequence_number: str
    data: bytes | None
    decode_error: str | None = None
    partition_key: str | None = None
    raw_data: str | None = None
    """The base64 text as received, kept when it could not be decoded (for quarantine)."""


class Route(StrEnum):
    NORMAL = "normal"
    ALERT = "alert"
    QUARANTINE = "quarantine"
    UNSUPPORTED = "unsupported"


class RecordStatus(StrEnum):
    """Final status of a record in one invocation."""

    SCORED = "scored"  # scored, not anomalous
    ANOMALY = "anomaly"  # scored, anomalous, alert delivered to every publisher
    REJECTED = "rejected"  # quarantined
    UNSUPPORTED = "unsupported"
    FAILED = "failed"  # reported in batchItemFailures: Lambda will send it again


@dataclass(frozen=True, slots=True)
class Alert:
    """A finding ready to publish: its JSON body (trimmed to fit) and filterable attributes."""

    uid: str
    body: bytes
    severity: str
    severity_id: int
    source_class_uid: int
    bundle_version: str

    def attributes(self) -> dict[str, str | int]:
        return {
            names.SNS_ATTR_SEVERITY: self.severity,
            names.SNS_ATTR_SEVERITY_ID: self.severity_id,
            names.SNS_ATTR_CLASS_UID: self.source_class_uid,
            names.SNS_ATTR_BUNDLE_VERSION: self.bundle_version,
        }


@dataclass(frozen=True, slots=True)
class QuarantineItem:
    """A rejected record: why, where it came from, and its original bytes."""

    shard_id: str
    sequence_number: str
    partition_key: str | None
    reason: str
    message: str
    field: str | None
    payload: bytes
    bundle_version: str
    quarantined_ms: int

    def describe(self) -> dict[str, Any]:
        """The quarantine message without the payload (the adapter places the payload)."""
        return {
            "kind": "ocsf-detect.quarantine",
            "version": 1,
            "reason": self.reason,
            "message": self.message,
            "field": self.field,
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "partition_key": self.partition_key,
            "payload_bytes": len(self.payload),
            "bundle_version": self.bundle_version,
            "quarantined_time": self.quarantined_ms,
        }


@dataclass(slots=True)
class PlannedRecord:
    record: StreamRecord
    route: Route
    outcome: Outcome
    alert: Alert | None = None
    quarantine: QuarantineItem | None = None


class BatchScorer(Protocol):
    """What the routine needs of ``Detector``."""

    @property
    def bundle_version(self) -> str: ...

    def score_batch(self, raws: Sequence[bytes]) -> list[Outcome]: ...


class AlertPublisher(Protocol):
    """Delivers alerts to one channel (SNS topic, EventBridge bus)."""

    @property
    def channel(self) -> str: ...

    def publish(self, alerts: Sequence[Alert]) -> Sequence[int]:
        """Publish ``alerts``; return the positions that were NOT accepted (may retry).
        Raising means none was accepted."""
        ...


class QuarantineSink(Protocol):
    def put(self, items: Sequence[QuarantineItem]) -> Sequence[int]:
        """Store ``items``; return the positions that were NOT stored. Raising: none was."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries inside one invocation; past them, Lambda's own retries take over."""

    max_attempts: int = 3
    base_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def delay(self, attempt: int) -> float:
        return min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))


@dataclass
class BatchResult:
    """Per-record statuses of one batch, in order, and the response Lambda expects."""

    records: list[StreamRecord]
    statuses: list[RecordStatus]
    planned: list[PlannedRecord]
    errors: list[str] = field(default_factory=list)
    quarantined: int = 0
    """Rejected records the quarantine sink stored (in this invocation)."""
    alerts_published: int = 0
    """Alerts every publisher accepted (in this invocation)."""

    def count(self, *statuses: RecordStatus) -> int:
        return sum(1 for s in self.statuses if s in statuses)

    @property
    def failed_identifiers(self) -> list[str]:
        return [
            r.sequence_number
            for r, s in zip(self.records, self.statuses, strict=True)
            if s is RecordStatus.FAILED
        ]

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed_identifiers]}

    def counts(self) -> dict[str, int]:
        anomalies = self.count(RecordStatus.ANOMALY)
        rejected = self.count(RecordStatus.REJECTED)
        return {
            "events_in": len(self.records),
            "scored": self.count(RecordStatus.SCORED, RecordStatus.ANOMALY),
            "anomalies": anomalies,
            "rejected": rejected,
            "unsupported": self.count(RecordStatus.UNSUPPORTED),
            "failed": self.count(RecordStatus.FAILED),
            "quarantined": self.quarantined,
            "alerts_published": self.alerts_published,
        }


def plan_batch(
    records: Sequence[StreamRecord],
    scorer: BatchScorer,
    *,
    now_ms: int,
    max_event_bytes: int | None = None,
) -> list[PlannedRecord]:
    """Score the decodable records in one detector call and route every record."""
    bundle_version = scorer.bundle_version
    outcomes: list[Outcome | None] = [None] * len(records)
    to_score: list[int] = []
    for i, rec in enumerate(records):
        if rec.data is None:
            outcomes[i] = Rejected(
                RejectReason.INVALID_ENCODING,
                rec.decode_error or "the record's data is not valid base64",
                field="kinesis.data",
            )
        elif max_event_bytes is not None and len(rec.data) > max_event_bytes:
            outcomes[i] = Rejected(
                RejectReason.TOO_LARGE,
                f"event is {len(rec.data):,} bytes; the limit is {max_event_bytes:,}",
            )
        else:
            to_score.append(i)
    if to_score:
        scored = scorer.score_batch([records[i].data for i in to_score])  # type: ignore[misc]
        for i, outcome in zip(to_score, scored, strict=True):
            outcomes[i] = outcome
    planned: list[PlannedRecord] = []
    for rec, maybe in zip(records, outcomes, strict=True):
        if maybe is None:  # unreachable: every record got an outcome above
            raise AssertionError("a record was left without an outcome")
        planned.append(_route(rec, maybe, bundle_version, now_ms))
    return planned


def _route(rec: StreamRecord, outcome: Outcome, bundle_version: str, now_ms: int) -> PlannedRecord:
    if isinstance(outcome, Scored):
        if not outcome.is_anomaly:
            return PlannedRecord(rec, Route.NORMAL, outcome)
        try:
            finding = build_finding(
                outcome,
                bundle_version=bundle_version,
                created_ms=now_ms,
                shard_id=rec.shard_id,
                sequence_number=rec.sequence_number,
            )
            finding, body = fit_finding(finding)
        except Exception as exc:  # an event the finding cannot carry: keep it, do not stall
            unpublishable = Rejected(
                RejectReason.UNPUBLISHABLE,
                f"anomalous (score {outcome.score:.4g}, threshold {outcome.threshold:.4g}) "
                f"but no Detection Finding could be built: {type(exc).__name__}: {exc}",
            )
            return _quarantined(rec, outcome, unpublishable, bundle_version, now_ms)
        alert = Alert(
            uid=finding["finding_info"]["uid"],
            body=body,
            severity=outcome.severity,
            severity_id=outcome.severity_id,
            source_class_uid=outcome.class_uid,
            bundle_version=bundle_version,
        )
        return PlannedRecord(rec, Route.ALERT, outcome, alert=alert)
    if isinstance(outcome, Unsupported):
        return PlannedRecord(rec, Route.UNSUPPORTED, outcome)
    return _quarantined(rec, outcome, outcome, bundle_version, now_ms)


# Messages and field paths quote the sender's own keys: bounded, so that the quarantine
# message's size is the payload's plus a little, never a multiple of it.
MAX_REASON_CHARS = 1024


def _quarantined(
    rec: StreamRecord, outcome: Outcome, why: Rejected, bundle_version: str, now_ms: int
) -> PlannedRecord:
    payload = rec.data if rec.data is not None else (rec.raw_data or "").encode()
    item = QuarantineItem(
        shard_id=rec.shard_id,
        sequence_number=rec.sequence_number,
        partition_key=rec.partition_key,
        reason=why.reason.value,
        message=_bounded(why.message),
        field=None if why.field is None else _bounded(why.field),
        payload=payload,
        bundle_version=bundle_version,
        quarantined_ms=now_ms,
    )
    return PlannedRecord(rec, Route.QUARANTINE, outcome, quarantine=item)


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def deliver_with_retries(
    items: Sequence[Any],
    send: Callable[[Sequence[Any]], Sequence[int]],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[set[int], str | None]:
    """Send ``items``, re-sending the rejected ones up to ``policy.max_attempts`` times.
    Returns the positions never accepted and the last error seen."""
    pending = list(range(len(items)))
    last_error: str | None = None
    for attempt in range(1, policy.max_attempts + 1):
        if not pending:
            break
        if attempt > 1:
            sleep(policy.delay(attempt - 1))
        try:
            refused = set(send([items[i] for i in pending]))
            if refused:
                last_error = f"{len(refused)} of {len(pending)} entries refused"
        except Exception as exc:  # an adapter's transport or service error
            refused = set(range(len(pending)))
            last_error = f"{type(exc).__name__}: {exc}"
        pending = [p for j, p in enumerate(pending) if j in refused]
    return set(pending), last_error


def process_batch(
    records: Sequence[StreamRecord],
    scorer: BatchScorer,
    *,
    publishers: Sequence[AlertPublisher],
    quarantine: QuarantineSink,
    policy: RetryPolicy,
    now_ms: int,
    max_event_bytes: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Plan, deliver, and decide each record's final status (see the module docstring)."""
    planned = plan_batch(records, scorer, now_ms=now_ms, max_event_bytes=max_event_bytes)
    failed: set[int] = set()
    errors: list[str] = []

    to_quarantine = [i for i, p in enumerate(planned) if p.quarantine is not None]
    stored = 0
    if to_quarantine:
        refused, error = deliver_with_retries(
            [planned[i].quarantine for i in to_quarantine], quarantine.put, policy, sleep
        )
        failed.update(to_quarantine[j] for j in refused)
        stored = len(to_quarantine) - len(refused)
        if error and refused:
            errors.append(f"quarantine: {error}")

    to_alert = [i for i, p in enumerate(planned) if p.alert is not None]
    undelivered: set[int] = set()
    if to_alert:
        alerts = [planned[i].alert for i in to_alert]
        for publisher in publishers:
            refused, error = deliver_with_retries(alerts, publisher.publish, policy, sleep)
            undelivered |= refused
            if error and refused:
                errors.append(f"{publisher.channel}: {error}")
        failed.update(to_alert[j] for j in undelivered)

    statuses = [_status(p) for p in planned]
    first_failure: dict[str, int] = {}
    for i in sorted(failed):
        first_failure.setdefault(records[i].shard_id, i)
    for i, rec in enumerate(records):
        start = first_failure.get(rec.shard_id)
        if start is not None and i >= start:
            statuses[i] = RecordStatus.FAILED
    return BatchResult(
        list(records),
        statuses,
        planned,
        errors,
        quarantined=stored,
        alerts_published=len(to_alert) - len(undelivered),
    )


def _status(p: PlannedRecord) -> RecordStatus:
    return {
        Route.NORMAL: RecordStatus.SCORED,
        Route.ALERT: RecordStatus.ANOMALY,
        Route.QUARANTINE: RecordStatus.REJECTED,
        Route.UNSUPPORTED: RecordStatus.UNSUPPORTED,
    }[p.route]
