"""One Kinesis batch, from decoded records to delivered alerts and a batch-item-failure list.

Pure apart from the adapters handed in (Protocol-typed): no boto3, no environment.

1. ``expand_records``: each record's payload -> the events inside it (``ocsf_detect.records``:
   KPL aggregates, gzip/zlib, NDJSON, CloudWatch Logs envelopes, or one plain event). Each
   event is named by (shard, sequence number, sub_index); a record that cannot be unpacked
   is one rejected event standing for the whole record.
2. ``plan_batch``: events -> one detector call -> one ``PlannedEvent`` per event, routed
   to NORMAL (scored, not anomalous), ALERT (a Detection Finding), QUARANTINE (rejected:
   bad base64, not JSON, schema violation, too large) or UNSUPPORTED (a class the bundle
   does not score).
3. ``process_batch``: quarantine the rejected, publish the alerts to every publisher with
   bounded retries, and compute the final per-event status.

Failure semantics (Lambda's ReportBatchItemFailures): a record fails when one of its
events failed. Lambda restarts a shard from the LOWEST sequence number reported, so once a
record of a shard fails, it and every later record of that shard are reported, and every
event of those records is FAILED: they will all be processed again. Records before the
first failure are never reported. Re-processing republishes alerts with the same finding
uid (at-least-once delivery, deduplicated by uid downstream).
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
from ocsf_detect.records import RecordLimits, UnpackError, UnreadableEvent, unpack


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


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event of a record: its record's position in the batch, its own position in the
    record, and its bytes to score, or (``rejected``) why it cannot be read: then
    ``unread`` holds its own bytes when only this part of the record is unreadable."""

    record: int
    sub_index: int
    data: bytes | None
    rejected: Rejected | None = None
    unread: bytes | None = None


class EventStatus(StrEnum):
    """Final status of an event in one invocation."""

    SCORED = "scored"  # scored, not anomalous
    ANOMALY = "anomaly"  # scored, anomalous, alert delivered to every publisher
    REJECTED = "rejected"  # quarantined
    UNSUPPORTED = "unsupported"
    FAILED = "failed"  # its record is in batchItemFailures: Lambda will send it again


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
    sub_index: int
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
            "sub_index": self.sub_index,
            "partition_key": self.partition_key,
            "payload_bytes": len(self.payload),
            "bundle_version": self.bundle_version,
            "quarantined_time": self.quarantined_ms,
        }


@dataclass(slots=True)
class PlannedEvent:
    record: StreamRecord
    event: StreamEvent
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
    """Per-event statuses of one batch, in order, and the response Lambda expects."""

    records: list[StreamRecord]
    planned: list[PlannedEvent]
    statuses: list[EventStatus]
    failed_records: list[int] = field(default_factory=list)
    """Positions of the records reported in batchItemFailures."""
    errors: list[str] = field(default_factory=list)
    quarantined: int = 0
    """Rejected events the quarantine sink stored (in this invocation)."""
    alerts_published: int = 0
    """Alerts every publisher accepted (in this invocation)."""
    control_messages: int = 0
    """CloudWatch Logs CONTROL_MESSAGE envelopes: not events, counted and dropped."""

    def count(self, *statuses: EventStatus) -> int:
        return sum(1 for s in self.statuses if s in statuses)

    @property
    def failed_identifiers(self) -> list[str]:
        return [self.records[i].sequence_number for i in self.failed_records]

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": i} for i in self.failed_identifiers]}

    def event_keys(self) -> list[tuple[str, str, int]]:
        """(shard, sequence number, sub_index) of every event, in order."""
        return [
            (p.record.shard_id, p.record.sequence_number, p.event.sub_index) for p in self.planned
        ]

    def counts(self) -> dict[str, int]:
        return {
            "events_in": len(self.planned),
            "records_in": len(self.records),
            "scored": self.count(EventStatus.SCORED, EventStatus.ANOMALY),
            "anomalies": self.count(EventStatus.ANOMALY),
            "rejected": self.count(EventStatus.REJECTED),
            "unsupported": self.count(EventStatus.UNSUPPORTED),
            "failed": self.count(EventStatus.FAILED),
            "failed_records": len(self.failed_records),
            "quarantined": self.quarantined,
            "alerts_published": self.alerts_published,
            "control_messages": self.control_messages,
        }


def expand_records(
    records: Sequence[StreamRecord], limits: RecordLimits | None = None
) -> tuple[list[StreamEvent], int]:
    """Every event of every record, in order, and the CONTROL_MESSAGEs dropped."""
    events: list[StreamEvent] = []
    control = 0
    for i, rec in enumerate(records):
        if rec.data is None:
            why = Rejected(
                RejectReason.INVALID_ENCODING,
                rec.decode_error or "the record's data is not valid base64",
                field="kinesis.data",
            )
            events.append(StreamEvent(i, 0, None, why))
            continue
        try:
            unpacked = unpack(rec.data, limits)
        except UnpackError as exc:
            events.append(StreamEvent(i, 0, None, exc.rejected))
            continue
        control += unpacked.control_messages
        for j, part in enumerate(unpacked.events):
            if isinstance(part, UnreadableEvent):
                events.append(StreamEvent(i, j, None, part.rejected, unread=part.data))
            else:
                events.append(StreamEvent(i, j, part))
    return events, control


def plan_batch(
    records: Sequence[StreamRecord],
    scorer: BatchScorer,
    *,
    now_ms: int,
    max_event_bytes: int | None = None,
    limits: RecordLimits | None = None,
) -> tuple[list[PlannedEvent], int]:
    """Unpack the records, score every readable event in one detector call and route each
    event; also the number of CONTROL_MESSAGEs dropped."""
    events, control = expand_records(records, limits)
    bundle_version = scorer.bundle_version
    outcomes: list[Outcome | None] = [None] * len(events)
    to_score: list[int] = []
    raws: list[bytes] = []
    for i, event in enumerate(events):
        if event.data is None:
            outcomes[i] = event.rejected or Rejected(
                RejectReason.INVALID_INPUT, "an event without data", field="kinesis.data"
            )
        elif max_event_bytes is not None and len(event.data) > max_event_bytes:
            outcomes[i] = Rejected(
                RejectReason.TOO_LARGE,
                f"event is {len(event.data):,} bytes; the limit is {max_event_bytes:,}",
            )
        else:
            to_score.append(i)
            raws.append(event.data)
    if to_score:
        for i, outcome in zip(to_score, scorer.score_batch(raws), strict=True):
            outcomes[i] = outcome
    planned: list[PlannedEvent] = []
    for event, maybe in zip(events, outcomes, strict=True):
        if maybe is None:  # unreachable: every event got an outcome above
            raise AssertionError("an event was left without an outcome")
        planned.append(_route(records[event.record], event, maybe, bundle_version, now_ms))
    return planned, control


def _route(
    rec: StreamRecord, event: StreamEvent, outcome: Outcome, bundle_version: str, now_ms: int
) -> PlannedEvent:
    if isinstance(outcome, Scored):
        if not outcome.is_anomaly:
            return PlannedEvent(rec, event, Route.NORMAL, outcome)
        try:
            finding = build_finding(
                outcome,
                bundle_version=bundle_version,
                created_ms=now_ms,
                shard_id=rec.shard_id,
                sequence_number=rec.sequence_number,
                sub_index=event.sub_index,
            )
            finding, body = fit_finding(finding)
        except Exception as exc:  # an event the finding cannot carry: keep it, do not stall
            unpublishable = Rejected(
                RejectReason.UNPUBLISHABLE,
                f"anomalous (score {outcome.score:.4g}, threshold {outcome.threshold:.4g}) "
                f"but no Detection Finding could be built: {type(exc).__name__}: {exc}",
            )
            return _quarantined(rec, event, outcome, unpublishable, bundle_version, now_ms)
        alert = Alert(
            uid=finding["finding_info"]["uid"],
            body=body,
            severity=outcome.severity,
            severity_id=outcome.severity_id,
            source_class_uid=outcome.class_uid,
            bundle_version=bundle_version,
        )
        return PlannedEvent(rec, event, Route.ALERT, outcome, alert=alert)
    if isinstance(outcome, Unsupported):
        return PlannedEvent(rec, event, Route.UNSUPPORTED, outcome)
    return _quarantined(rec, event, outcome, outcome, bundle_version, now_ms)


# Messages and field paths quote the sender's own keys: bounded, so that the quarantine
# message's size is the payload's plus a little, never a multiple of it.
MAX_REASON_CHARS = 1024


def _quarantined(
    rec: StreamRecord,
    event: StreamEvent,
    outcome: Outcome,
    why: Rejected,
    bundle_version: str,
    now_ms: int,
) -> PlannedEvent:
    # The event's own bytes; a record that could not be unpacked keeps all of its bytes.
    if event.data is not None:
        payload = event.data
    elif event.unread is not None:
        payload = event.unread
    else:
        payload = rec.data if rec.data is not None else (rec.raw_data or "").encode()
    item = QuarantineItem(
        shard_id=rec.shard_id,
        sequence_number=rec.sequence_number,
        sub_index=event.sub_index,
        partition_key=rec.partition_key,
        reason=why.reason.value,
        message=_bounded(why.message),
        field=None if why.field is None else _bounded(why.field),
        payload=payload,
        bundle_version=bundle_version,
        quarantined_ms=now_ms,
    )
    return PlannedEvent(rec, event, Route.QUARANTINE, outcome, quarantine=item)


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
    limits: RecordLimits | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchResult:
    """Plan, deliver, and decide each event's final status (see the module docstring)."""
    planned, control = plan_batch(
        records, scorer, now_ms=now_ms, max_event_bytes=max_event_bytes, limits=limits
    )
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

    failed_records = _reported_records(records, {planned[i].event.record for i in failed})
    reported = set(failed_records)
    statuses = [EventStatus.FAILED if p.event.record in reported else _status(p) for p in planned]
    return BatchResult(
        list(records),
        planned,
        statuses,
        failed_records,
        errors,
        quarantined=stored,
        alerts_published=len(to_alert) - len(undelivered),
        control_messages=control,
    )


def _reported_records(records: Sequence[StreamRecord], failed: set[int]) -> list[int]:
    """The records to report: per shard, the first failed record and every later one."""
    first_failure: dict[str, int] = {}
    for i in sorted(failed):
        first_failure.setdefault(records[i].shard_id, i)
    return [
        i
        for i, rec in enumerate(records)
        if (start := first_failure.get(rec.shard_id)) is not None and i >= start
    ]


def _status(p: PlannedEvent) -> EventStatus:
    return {
        Route.NORMAL: EventStatus.SCORED,
        Route.ALERT: EventStatus.ANOMALY,
        Route.QUARANTINE: EventStatus.REJECTED,
        Route.UNSUPPORTED: EventStatus.UNSUPPORTED,
    }[p.route]
