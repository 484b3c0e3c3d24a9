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
   bounded retries, and compute the final per-event status. With ``AlertGrouping`` (the
   alert-state table), each anomaly is first checked against the suppression rules
   (suppressed: archived, never published) and then counted into its alert group
   (``ocsf_detect.grouping``): only the group's notifications are published, and groups
   whose window the batch's event time has passed are closed.

Failure semantics (Lambda's ReportBatchItemFailures): a record fails when one of its
events failed. Lambda restarts a shard from the LOWEST sequence number reported, so once a
record of a shard fails, it and every later record of that shard are reported, and every
event of those records is FAILED: they will all be processed again. Records before the
first failure are never reported. Re-processing republishes alerts with the same finding
uid (at-least-once delivery, deduplicated by uid downstream).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from ocsf_detect import names
from ocsf_detect.detector.scorer import Outcome, Scored
from ocsf_detect.findings import build_finding, fit_finding
from ocsf_detect.grouping import (
    GroupingPolicy,
    GroupState,
    GroupStore,
    Notice,
    anomaly_message,
    anomaly_of,
    closing_message,
    count_anomaly,
    entity_of,
    event_of,
    has_closing_news,
)
from ocsf_detect.ocsf.outcomes import Rejected, RejectReason, Unsupported
from ocsf_detect.records import RecordLimits, UnpackError, UnreadableEvent, unpack
from ocsf_detect.suppression import SuppressionRule, first_match


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
    ANOMALY = "anomaly"  # scored, anomalous, alert delivered (or counted into its group)
    SUPPRESSED = "suppressed"  # scored, anomalous, matched a suppression rule: archived
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
    channel: str | None = None
    """For an undeliverable alert: the channel that refused it (the payload is the finding)."""
    finding_uid: str | None = None

    @property
    def is_alert(self) -> bool:
        return self.channel is not None

    def describe(self) -> dict[str, Any]:
        """The quarantine message without the payload (the adapter places the payload)."""
        alert = {"channel": self.channel, "finding_uid": self.finding_uid} if self.is_alert else {}
        return {
            **alert,
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


@dataclass(frozen=True, slots=True)
class Refusal:
    """An entry a sink did not take: its position in the call, the service's code and
    message, and whether sending it again could help (``permanent``: it cannot)."""

    position: int
    code: str = "refused"
    message: str = ""
    permanent: bool = False


Refused = int | Refusal
"""What a sink returns for each entry it did not take; a bare position is transient."""


class AlertPublisher(Protocol):
    """Delivers alerts to one channel (SNS topic, EventBridge bus)."""

    @property
    def channel(self) -> str: ...

    def publish(self, alerts: Sequence[Alert]) -> Sequence[Refused]:
        """Publish ``alerts``; return those NOT accepted, each transient (to retry) or
        permanent (the service will never take it). Raising means none was accepted."""
        ...


class QuarantineSink(Protocol):
    def put(self, items: Sequence[QuarantineItem]) -> Sequence[Refused]:
        """Store ``items``; return those NOT stored. Raising: none was."""
        ...


class RuleSource(Protocol):
    """The suppression rules in force (an adapter may cache them briefly)."""

    def rules(self) -> Sequence[SuppressionRule]: ...


@dataclass(frozen=True, slots=True)
class ArchivedFinding:
    """An anomaly's finding that no channel receives, to archive: suppressed (``rule_id``
    and ``reason`` of the rule that matched it) or withheld (counted into the group
    ``group_uid`` without a message of its own)."""

    finding_uid: str
    body: bytes
    archived_ms: int
    rule_id: str | None = None
    reason: str | None = None
    group_uid: str | None = None


class FindingArchive(Protocol):
    def put(self, items: Sequence[ArchivedFinding]) -> Sequence[Refused]:
        """Store ``items``; return those NOT stored. Raising: none was."""
        ...


@dataclass(frozen=True)
class AlertGrouping:
    """What grouping and suppression need: the alert-state store, the rules, the policy
    and where the findings no channel receives (suppressed, withheld) are kept."""

    store: GroupStore
    rules: RuleSource
    archive: FindingArchive
    policy: GroupingPolicy = field(default_factory=GroupingPolicy)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries inside one invocation; past them, Lambda's own retries take over.

    ``reserve_s``: no request starts, and no back-off sleeps, when less than this is left
    before the invocation's deadline (one request's connect and read timeouts, and time to
    answer): what is not sent by then is reported failed, and Lambda sends it again,
    rather than the invocation timing out after sending part of it."""

    max_attempts: int = 3
    base_delay_s: float = 0.2
    max_delay_s: float = 2.0
    reserve_s: float = 13.0
    entries_per_call: int = 10

    def delay(self, attempt: int) -> float:
        """Exponential back-off with half of it jittered: the shards of a stream that a
        service throttled at once do not all come back at the same moment. With the
        defaults, 0.1-0.2 s and then 0.2-0.4 s: a throttle of a second or less is waited
        out; a longer one is Lambda's to retry."""
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return ceiling / 2 + random.random() * ceiling / 2


@dataclass
class Delivery:
    """What became of the entries handed to ``deliver_with_retries``."""

    unsent: set[int] = field(default_factory=set)
    """Never accepted: transient refusals past the attempts, or left when time ran out."""
    permanent: dict[int, Refusal] = field(default_factory=dict)
    """Refused for good: sending again cannot help."""
    error: str | None = None
    out_of_time: bool = False


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
    alerts_quarantined: int = 0
    """Findings a channel refused for good, kept in the quarantine (in this invocation)."""
    groups_opened: int = 0
    """Alert groups that spoke for the first time in this invocation (a retry does not
    count; a quiet group has not opened)."""
    groups_closed: int = 0
    """Groups this invocation closed (their window was over)."""
    suppressed_archived: int = 0
    """Suppressed findings the archive stored (in this invocation)."""
    withheld_archived: int = 0
    """Findings counted into a group without a message, that the archive stored."""
    deferred_records: int = 0
    """Records not read, left for the next invocation (the batch's events would have
    passed ``RecordLimits.max_batch_bytes``); reported in batchItemFailures."""

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
            "scored": self.count(EventStatus.SCORED, EventStatus.ANOMALY, EventStatus.SUPPRESSED),
            "anomalies": self.count(EventStatus.ANOMALY, EventStatus.SUPPRESSED),
            "suppressed": self.count(EventStatus.SUPPRESSED),
            "rejected": self.count(EventStatus.REJECTED),
            "unsupported": self.count(EventStatus.UNSUPPORTED),
            "failed": self.count(EventStatus.FAILED),
            "failed_records": len(self.failed_records),
            "quarantined": self.quarantined,
            "alerts_published": self.alerts_published,
            "control_messages": self.control_messages,
            "alerts_quarantined": self.alerts_quarantined,
            "groups_opened": self.groups_opened,
            "groups_closed": self.groups_closed,
            "withheld_archived": self.withheld_archived,
            "deferred_records": self.deferred_records,
        }


@dataclass
class Expanded:
    """The events of a batch's records, in order, the CONTROL_MESSAGEs dropped, and
    ``deferred``: the first record left for the next invocation (None: every record was
    read)."""

    events: list[StreamEvent]
    control: int = 0
    deferred: int | None = None


def expand_records(records: Sequence[StreamRecord], limits: RecordLimits | None = None) -> Expanded:
    """Every event of every record, in order, and the CONTROL_MESSAGEs dropped; records
    whose events would take the batch past ``limits.max_batch_bytes`` are left, with every
    later one, for the next invocation (the first record is always read: alone, it is
    bounded by the per-record limit)."""
    limits = limits or RecordLimits()
    events: list[StreamEvent] = []
    control = 0
    kept = 0
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
        size = sum(len(p.data if isinstance(p, UnreadableEvent) else p) for p in unpacked.events)
        if i > 0 and kept + size > limits.max_batch_bytes:
            return Expanded(events, control, deferred=i)
        kept += size
        control += unpacked.control_messages
        for j, part in enumerate(unpacked.events):
            if isinstance(part, UnreadableEvent):
                events.append(StreamEvent(i, j, None, part.rejected, unread=part.data))
            else:
                events.append(StreamEvent(i, j, part))
    return Expanded(events, control)


def plan_batch(
    records: Sequence[StreamRecord],
    scorer: BatchScorer,
    *,
    now_ms: int,
    max_event_bytes: int | None = None,
    limits: RecordLimits | None = None,
) -> tuple[list[PlannedEvent], Expanded]:
    """Unpack the records, score every readable event in one detector call and route each
    event; also what ``expand_records`` found (CONTROL_MESSAGEs, deferred records)."""
    expanded = expand_records(records, limits)
    events = expanded.events
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
    return planned, expanded


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


UNDELIVERABLE = "undeliverable"
"""Quarantine reason of a finding a channel refused for good (not a ``RejectReason``:
the event was read and scored; its alert could not be delivered)."""


def _undeliverable(
    p: PlannedEvent, alert: Alert, channel: str, refusal: Refusal, now_ms: int
) -> QuarantineItem:
    return QuarantineItem(
        shard_id=p.record.shard_id,
        sequence_number=p.record.sequence_number,
        sub_index=p.event.sub_index,
        partition_key=p.record.partition_key,
        reason=UNDELIVERABLE,
        message=_bounded(
            f"{channel} refused the finding for good: {refusal.code}: {refusal.message}"
        ),
        field=None,
        payload=alert.body,
        bundle_version=alert.bundle_version,
        quarantined_ms=now_ms,
        channel=channel,
        finding_uid=alert.uid,
    )


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def deliver_with_retries(
    items: Sequence[Any],
    send: Callable[[Sequence[Any]], Sequence[Refused]],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    time_left: Callable[[], float] | None = None,
) -> Delivery:
    """Send ``items`` in calls of ``policy.entries_per_call``, re-sending the transiently
    refused up to ``policy.max_attempts`` times; never start a call or a back-off when
    ``time_left()`` (seconds) is below ``policy.reserve_s``."""
    out = Delivery()

    def in_time(extra: float = 0.0) -> bool:
        if time_left is None or time_left() - extra >= policy.reserve_s:
            return True
        if not out.out_of_time:
            earlier = f" (after: {out.error})" if out.error else ""
            out.error = f"stopped before the invocation's deadline{earlier}"
        out.out_of_time = True
        return False

    pending = list(range(len(items)))
    for attempt in range(1, policy.max_attempts + 1):
        if not pending:
            break
        if attempt > 1:
            delay = policy.delay(attempt - 1)
            if not in_time(delay):
                break
            sleep(delay)
        retry: list[int] = []
        for start in range(0, len(pending), policy.entries_per_call):
            group = pending[start : start + policy.entries_per_call]
            if not in_time():
                retry.extend(pending[start:])
                break
            retry.extend(_send_group(items, group, send, out))
        pending = retry
        if out.out_of_time:
            break
    out.unsent = set(pending)
    return out


def _send_group(
    items: Sequence[Any],
    group: list[int],
    send: Callable[[Sequence[Any]], Sequence[Refused]],
    out: Delivery,
) -> list[int]:
    """One call; the positions (in ``items``) to send again."""
    try:
        refusals = [
            r if isinstance(r, Refusal) else Refusal(r) for r in send([items[i] for i in group])
        ]
    except Exception as exc:  # an adapter's transport or service error: none was taken
        out.error = f"{type(exc).__name__}: {exc}"
        return group
    again: list[int] = []
    for refusal in refusals:
        position = group[refusal.position]
        if refusal.permanent:
            out.permanent[position] = refusal
        else:
            again.append(position)
    if refusals:
        first = refusals[0]
        out.error = (
            f"{len(refusals)} of {len(group)} entries refused ({first.code}: {first.message})"
        )
    return again


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
    time_left: Callable[[], float] | None = None,
    grouping: AlertGrouping | None = None,
) -> BatchResult:
    """Plan, deliver, and decide each event's final status (see the module docstring).

    ``time_left``: seconds left before the invocation's deadline (Lambda's context);
    delivery stops ``policy.reserve_s`` before it and what was not sent is failed.
    ``grouping``: suppress and group the anomalies; None publishes one finding each."""
    planned, expanded = plan_batch(
        records, scorer, now_ms=now_ms, max_event_bytes=max_event_bytes, limits=limits
    )
    control = expanded.control
    failed: set[int] = set()
    errors: list[str] = []

    def deliver(
        items: Sequence[Any], send: Callable[[Sequence[Any]], Sequence[Refused]]
    ) -> Delivery:
        return deliver_with_retries(items, send, policy, sleep, time_left)

    to_quarantine = [i for i, p in enumerate(planned) if p.quarantine is not None]
    stored = 0
    if to_quarantine:
        done = deliver([planned[i].quarantine for i in to_quarantine], quarantine.put)
        lost = done.unsent | set(done.permanent)
        failed.update(to_quarantine[j] for j in lost)
        stored = len(to_quarantine) - len(lost)
        if lost:
            errors.append(f"quarantine: {done.error}")

    to_alert = [i for i, p in enumerate(planned) if p.alert is not None]
    grouped = _GroupedAlerts()
    if grouping is not None and to_alert:
        grouped = _group_alerts(planned, to_alert, grouping, now_ms, policy, time_left)
        failed |= grouped.failed
        errors.extend(grouped.errors)
        archiving = [*grouped.suppressed, *grouped.withheld]
        if archiving:
            # A finding not archived fails its record: the retry archives it again (the
            # same key) and republishes nothing it published.
            done = deliver([item for _, item in archiving], grouping.archive.put)
            lost = done.unsent | set(done.permanent)
            failed.update(archiving[j][0] for j in lost)
            kept = [item for j, (_, item) in enumerate(archiving) if j not in lost]
            grouped.archived = sum(item.rule_id is not None for item in kept)
            grouped.withheld_archived = len(kept) - grouped.archived
            if lost:
                errors.append(f"findings archive: {done.error}")
        alerts, owners = grouped.alerts, grouped.owners
    else:
        alerts = [a for i in to_alert if (a := planned[i].alert) is not None]
        owners = to_alert
    unsent: set[int] = set()  # by some channel, transiently: the event fails
    refused: set[int] = set()  # by some channel, for good: the alert is quarantined
    undeliverable: list[QuarantineItem] = []
    undeliverable_owners: list[int] = []
    if alerts:
        for publisher in publishers:
            done = deliver(alerts, publisher.publish)
            unsent |= done.unsent
            refused |= set(done.permanent)
            if done.unsent or done.permanent:
                errors.append(f"{publisher.channel}: {done.error}")
            for j, refusal in sorted(done.permanent.items()):
                item = _undeliverable(
                    planned[owners[j]], alerts[j], publisher.channel, refusal, now_ms
                )
                undeliverable.append(item)
                undeliverable_owners.append(owners[j])
        failed.update(owners[j] for j in unsent)
    alerts_quarantined = 0
    if undeliverable:
        # A finding a channel will never take is kept, with the reason, instead of
        # stalling the shard: the quarantine puts it in the bucket.
        done = deliver(undeliverable, quarantine.put)
        lost = done.unsent | set(done.permanent)
        failed.update(undeliverable_owners[j] for j in lost)
        alerts_quarantined = len(undeliverable) - len(lost)
        if lost:
            errors.append(f"quarantine of undeliverable alerts: {done.error}")

    closed = closings = 0
    if grouping is not None:
        times = [p.outcome.time_ms for p in planned if isinstance(p.outcome, Scored)]
        if times:
            clock = min(now_ms, max(times)) - grouping.policy.close_grace_s * 1000
            sweep = close_due_groups(
                grouping,
                publishers,
                clock_ms=clock,
                now_ms=now_ms,
                bundle_version=scorer.bundle_version,
                deliver=deliver,
            )
            closed, closings = sweep.closed, sweep.published
            errors.extend(sweep.errors)

    failed_at = {planned[i].event.record for i in failed}
    if expanded.deferred is not None:  # not read: Lambda sends them again, from the first
        failed_at.add(expanded.deferred)
        errors.append(
            f"{len(records) - expanded.deferred} records left for the next invocation: "
            f"the batch's events would exceed {(limits or RecordLimits()).max_batch_bytes:,} bytes"
        )
    failed_records = _reported_records(records, failed_at)
    reported = set(failed_records)
    statuses = [
        EventStatus.FAILED
        if p.event.record in reported
        else EventStatus.SUPPRESSED
        if i in grouped.suppressed_positions
        else _status(p)
        for i, p in enumerate(planned)
    ]
    return BatchResult(
        list(records),
        planned,
        statuses,
        failed_records,
        errors,
        quarantined=stored,
        alerts_published=len(alerts) - len(unsent | refused) + closings,
        control_messages=control,
        alerts_quarantined=alerts_quarantined,
        groups_opened=grouped.opened,
        groups_closed=closed,
        suppressed_archived=grouped.archived,
        withheld_archived=grouped.withheld_archived,
        deferred_records=0 if expanded.deferred is None else len(records) - expanded.deferred,
    )


@dataclass
class _GroupedAlerts:
    """Grouping's verdict on a batch's anomalies: the notifications to publish, each with
    the planned event it belongs to, the suppressed, and the anomalies that failed."""

    alerts: list[Alert] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    suppressed: list[tuple[int, ArchivedFinding]] = field(default_factory=list)
    withheld: list[tuple[int, ArchivedFinding]] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    opened: int = 0
    archived: int = 0
    withheld_archived: int = 0

    @property
    def suppressed_positions(self) -> set[int]:
        return {i for i, _ in self.suppressed}


def _with_source_event(finding: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    """``finding`` (a copy) with ``evidences[0].data`` the scored event exactly as it came:
    what grouping and suppression rules read, whether or not the finding was trimmed to
    fit (``findings.fit_finding``). Unchanged for an outcome that carries no event."""
    if not isinstance(outcome, Scored):
        return finding
    evidences = finding.get("evidences")
    listed = evidences if isinstance(evidences, list) else []
    first = listed[0] if listed and isinstance(listed[0], dict) else {}
    return {**finding, "evidences": [{**first, "data": outcome.event}, *listed[1:]]}


def _group_alerts(
    planned: Sequence[PlannedEvent],
    to_alert: Sequence[int],
    grouping: AlertGrouping,
    now_ms: int,
    retry: RetryPolicy,
    time_left: Callable[[], float] | None,
) -> _GroupedAlerts:
    out = _GroupedAlerts()
    try:
        rules = list(grouping.rules.rules())
    except Exception as exc:  # no rules could be read: every anomaly waits for a retry
        out.failed.update(to_alert)
        out.errors.append(f"suppression rules: {type(exc).__name__}: {exc}")
        return out
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    policy = grouping.policy
    known: dict[str, GroupState] = {}  # the groups this batch wrote: no read before a write
    for n, i in enumerate(to_alert):
        alert = planned[i].alert
        if alert is None:  # unreachable: to_alert holds planned alerts only
            continue
        if time_left is not None and time_left() < retry.reserve_s:
            # Not counted yet: failed, and counted when Lambda sends the record again.
            out.failed.update(to_alert[n:])
            out.errors.append("alert groups: stopped before the invocation's deadline")
            break
        finding = json.loads(alert.body)  # not orjson: integers beyond 64 bits stay exact
        # Rules and the entity read the event as it came, not the finding's copy of it:
        # a finding trimmed to fit a message drops the event's largest fields first, so a
        # sender who pads one field could otherwise take its event out of its entity's
        # group (into the shared no-entity group) or past a rule on a field it dropped.
        judged = _with_source_event(finding, planned[i].outcome)
        rule = first_match(rules, judged, now)
        if rule is not None:
            out.suppressed.append(
                (i, ArchivedFinding(alert.uid, alert.body, now_ms, rule.id, rule.reason))
            )
            continue
        anomaly = anomaly_of(finding)
        entity = entity_of(event_of(judged), anomaly.class_uid, policy)
        try:
            counted = count_anomaly(anomaly, grouping.store, policy, entity, known)
        except Exception as exc:  # the store failed: this record is retried
            out.failed.add(i)
            out.errors.append(f"alert groups: {type(exc).__name__}: {exc}")
            continue
        # a group opens when it first speaks (a quiet one-off's group has not opened)
        out.opened += int(counted.notice is Notice.OPEN and not counted.retried)
        if counted.notice is Notice.NONE:  # counted, no message: the finding is archived
            withheld = ArchivedFinding(alert.uid, alert.body, now_ms, group_uid=counted.group.uid)
            out.withheld.append((i, withheld))
            continue
        try:
            _, body = anomaly_message(anomaly, counted.group, counted.notice, counted.number)
        except Exception as exc:  # counted already, so a retry would fail the same way:
            # the anomaly's own finding goes out instead of the group's message
            out.errors.append(f"alert group message: {type(exc).__name__}: {exc}")
            body = alert.body
        out.alerts.append(
            replace(
                alert,
                body=body,
                severity_id=counted.group.severity_id,
                severity=counted.group.severity,
            )
        )
        out.owners.append(i)
    return out


@dataclass
class Sweep:
    """What closing the due groups did."""

    closed: int = 0
    published: int = 0
    errors: list[str] = field(default_factory=list)


def close_all_due_groups(
    grouping: AlertGrouping,
    publishers: Sequence[AlertPublisher],
    policy: RetryPolicy,
    *,
    clock_ms: int,
    now_ms: int,
    bundle_version: str,
    time_left: Callable[[], float] | None = None,
) -> Sweep:
    """``close_due_groups`` repeated, each sweep at most ``sweep_limit`` groups, until none
    is due, a sweep reports errors, or the invocation's time runs short."""
    total = Sweep()
    while time_left is None or time_left() > policy.reserve_s:
        sweep = close_due_groups(
            grouping,
            publishers,
            clock_ms=clock_ms,
            now_ms=now_ms,
            bundle_version=bundle_version,
            deliver=lambda items, send: deliver_with_retries(
                items, send, policy, time_left=time_left
            ),
        )
        total.closed += sweep.closed
        total.published += sweep.published
        total.errors.extend(sweep.errors)
        if sweep.errors or sweep.closed < grouping.policy.sweep_limit:
            break
    return total


def close_due_groups(
    grouping: AlertGrouping,
    publishers: Sequence[AlertPublisher],
    *,
    clock_ms: int,
    now_ms: int,
    bundle_version: str,
    deliver: Callable[[Sequence[Any], Callable[[Sequence[Any]], Sequence[Refused]]], Delivery],
) -> Sweep:
    """Close the groups whose window ended at or before ``clock_ms`` (at most
    ``policy.sweep_limit``). A group that counted anomalies since its last notification
    publishes a closing update first; one whose closing update a channel did not take
    stays open, and the next sweep sends it again (same message uid)."""
    out = Sweep()
    try:
        due = grouping.store.due_groups(clock_ms, grouping.policy.sweep_limit)
    except Exception as exc:
        out.errors.append(f"alert groups sweep: {type(exc).__name__}: {exc}")
        return out
    closing: list[GroupState] = []
    alerts: list[Alert] = []
    quiet: list[GroupState] = []
    for g in due:
        if has_closing_news(g):
            number = g.notifications + 1
            try:
                finding, body = closing_message(
                    g, bundle_version=bundle_version, now_ms=now_ms, number=number
                )
            except Exception as exc:  # never sendable: closed without it, not retried forever
                out.errors.append(f"closing update of {g.uid}: {type(exc).__name__}: {exc}")
                quiet.append(replace(g, dirty=False, closed=True))
                continue
            closing.append(replace(g, notifications=number, dirty=False, closed=True))
            alerts.append(
                Alert(
                    uid=finding["metadata"]["uid"],
                    body=body,
                    severity=g.severity,
                    severity_id=g.severity_id,
                    source_class_uid=g.class_uid,
                    bundle_version=bundle_version,
                )
            )
        else:
            quiet.append(replace(g, dirty=False, closed=True))
    undelivered: set[int] = set()
    refused: set[int] = set()  # refused for good by a channel: it can never be sent there
    for publisher in publishers if alerts else ():
        done = deliver(alerts, publisher.publish)
        undelivered |= done.unsent
        refused |= set(done.permanent)
        if done.unsent or done.permanent:
            out.errors.append(f"closing updates, {publisher.channel}: {done.error}")
    # a closing update some channel refused for good is not counted as published; its
    # group closes all the same (sending it again cannot help), and the error says so
    out.published = len(alerts) - len(undelivered | refused)
    for j, g in [*enumerate(closing), *((-1, q) for q in quiet)]:
        if j in undelivered:
            continue
        try:
            out.closed += int(grouping.store.close(g))
        except Exception as exc:
            out.errors.append(f"closing group {g.uid}: {type(exc).__name__}: {exc}")
    return out


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
