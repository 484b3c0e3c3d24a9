"""The stream function's edges: SNS and EventBridge publishers, SQS/S3 quarantine, and the
bundle (from the model layer or an s3:// archive, see ``ocsf_detect.bundlefetch``).

Each adapter implements a Protocol of ``ocsf_detect.stream``; ``get_adapters`` and
``get_detector`` build them once per execution environment, ``reset`` forgets them (tests).
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, Final, TypeVar

from ocsf_detect import deadline, names
from ocsf_detect.alertstate import CachedRules, DynamoGroupStore, DynamoRuleTable
from ocsf_detect.bundlefetch import load_detector as open_detector
from ocsf_detect.deadline import before_bundle_read
from ocsf_detect.detector.scorer import Detector
from ocsf_detect.feedback import OVERLAY_READ_CONCURRENCY, OverlaySource, S3FeedbackStore
from ocsf_detect.findings import encoded
from ocsf_detect.gcpause import freeze_long_lived
from ocsf_detect.stream import (
    Alert,
    AlertGrouping,
    AlertPublisher,
    ArchivedFinding,
    QuarantineItem,
    QuarantineSink,
    Refusal,
)
from stream_scoring.settings import StreamSettings, get_settings

BATCH_ENTRIES = 10
"""SNS PublishBatch, EventBridge PutEvents and SQS SendMessageBatch take 10 entries..."""
BATCH_BYTES = 256 * 1024 - 4 * 1024
"""...and 256 KiB per request; 4 KiB stay free for attributes and envelope."""
SQS_INLINE_PAYLOAD_BYTES = 180_000
"""Payloads up to this size travel base64-encoded inside the quarantine message (256 KiB
SQS cap); larger ones go to the quarantine bucket, or are truncated when there is none."""

T = TypeVar("T")


def chunks(items: Sequence[T], size_of: Any) -> Iterator[list[int]]:
    """Positions of ``items`` grouped by at most BATCH_ENTRIES and BATCH_BYTES."""
    group: list[int] = []
    total = 0
    for i, item in enumerate(items):
        size = int(size_of(item))
        if group and (len(group) == BATCH_ENTRIES or total + size > BATCH_BYTES):
            yield group
            group, total = [], 0
        group.append(i)
        total += size
    if group:
        yield group


def send_in_batches(
    items: Sequence[T], size_of: Any, send: Callable[[list[int]], list[Refusal]]
) -> list[Refusal]:
    """Send ``items`` in service-sized groups; the entries the service refused come back.

    ``send(group)`` makes one request and returns the refusals, with positions *within
    the group*. A request that fails is refused whole (transiently), except the very first
    one: then nothing was sent, the service is unreachable, and the error goes to the
    caller.
    """
    refused: list[Refusal] = []
    for group in chunks(items, size_of):
        try:
            failed = send(group)
        except Exception:
            if group[0] == 0:
                raise
            refused.extend(Refusal(i, "RequestFailed") for i in group)
            continue
        refused.extend(replace(r, position=group[r.position]) for r in failed)
    return refused


THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "KMSThrottling",
        "KMSThrottlingException",
    }
)
"""Sender faults that pass: sending again later can succeed."""

EVENTBRIDGE_TRANSIENT_CODES: Final = frozenset(
    {"InternalFailure", "InternalException", "ServiceUnavailable", *THROTTLING_CODES}
)
"""PutEvents entry error codes worth retrying; any other (MalformedDetail,
InvalidArgument, AccessDeniedException, NotAuthorizedForSourceException, ...) will fail
again for the same entry."""


def sns_refusal(position: int, failure: dict[str, Any]) -> Refusal:
    """A PublishBatch ``Failed`` entry: permanent when SNS blames the sender (an invalid
    parameter, a message too long), unless it is throttling."""
    code = str(failure.get("Code", "Unknown"))
    permanent = bool(failure.get("SenderFault")) and code not in THROTTLING_CODES
    return Refusal(position, code, str(failure.get("Message", "")), permanent)


def eventbridge_refusal(position: int, entry: dict[str, Any]) -> Refusal:
    """A PutEvents result entry with an ErrorCode."""
    code = str(entry.get("ErrorCode"))
    permanent = code not in EVENTBRIDGE_TRANSIENT_CODES
    return Refusal(position, code, str(entry.get("ErrorMessage", "")), permanent)


class SnsAlertPublisher:
    """Publishes findings to an SNS topic, with filterable message attributes."""

    channel = "sns"

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic_arn = topic_arn

    def publish(self, alerts: Sequence[Alert]) -> list[Refusal]:
        def send(group: list[int]) -> list[Refusal]:
            entries = [
                {
                    "Id": str(j),
                    "Message": alerts[i].body.decode(),
                    "MessageAttributes": _sns_attributes(alerts[i]),
                }
                for j, i in enumerate(group)
            ]
            response = self._client.publish_batch(
                TopicArn=self._topic_arn, PublishBatchRequestEntries=entries
            )
            return [sns_refusal(int(f["Id"]), f) for f in response.get("Failed", [])]

        return send_in_batches(alerts, lambda a: len(a.body) + 512, send)


def _sns_attributes(alert: Alert) -> dict[str, dict[str, str]]:
    return {
        name: {
            "DataType": "Number" if isinstance(value, int) else "String",
            "StringValue": str(value),
        }
        for name, value in alert.attributes().items()
    }


class EventBridgeAlertPublisher:
    """Puts findings on an EventBridge bus (source/detail-type from ``names``)."""

    channel = "eventbridge"

    def __init__(self, client: Any, bus_name: str) -> None:
        self._client = client
        self._bus_name = bus_name

    def publish(self, alerts: Sequence[Alert]) -> list[Refusal]:
        def send(group: list[int]) -> list[Refusal]:
            entries = [
                {
                    "Source": names.EVENTBRIDGE_SOURCE,
                    "DetailType": names.EVENTBRIDGE_DETAIL_TYPE,
                    "Detail": alerts[i].body.decode(),
                    "EventBusName": self._bus_name,
                }
                for i in group
            ]
            response = self._client.put_events(Entries=entries)
            if not response.get("FailedEntryCount"):
                return []
            # Entries come back in request order; failed ones carry an ErrorCode.
            return [
                eventbridge_refusal(j, entry)
                for j, entry in enumerate(response.get("Entries", []))
                if entry.get("ErrorCode")
            ]

        return send_in_batches(alerts, lambda a: len(a.body) + 256, send)


class SqsQuarantine:
    """Quarantine messages on SQS; payloads too large for a message go to S3."""

    def __init__(self, sqs: Any, queue_url: str, s3: Any | None, bucket: str | None) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._s3 = s3
        self._bucket = bucket

    def put(self, items: Sequence[QuarantineItem]) -> list[Refusal]:
        bodies = [encoded(self._message(item)) for item in items]

        def send(group: list[int]) -> list[Refusal]:
            entries = [
                {"Id": str(j), "MessageBody": bodies[i].decode()} for j, i in enumerate(group)
            ]
            response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            return [sns_refusal(int(f["Id"]), f) for f in response.get("Failed", [])]

        return send_in_batches(bodies, lambda b: len(b) + 64, send)

    def _message(self, item: QuarantineItem) -> dict[str, Any]:
        message = item.describe()
        # An undeliverable finding always goes to the bucket, where it can be re-sent from.
        inline = len(item.payload) <= SQS_INLINE_PAYLOAD_BYTES and not (
            item.is_alert and self._bucket
        )
        if inline:
            message["data_b64"] = base64.b64encode(item.payload).decode()
        elif self._s3 is not None and self._bucket:
            key = quarantine_key(item)
            # Raises on failure: the record then fails and Lambda retries it.
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=item.payload)
            message["payload_s3_uri"] = f"s3://{self._bucket}/{key}"
        else:
            head = item.payload[:SQS_INLINE_PAYLOAD_BYTES]
            message["data_b64"] = base64.b64encode(head).decode()
            message["payload_truncated"] = True
        message["payload_sha256"] = hashlib.sha256(item.payload).hexdigest()
        return message


def quarantine_key(item: QuarantineItem) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(item.quarantined_ms / 1000))
    name = f"{item.sequence_number}-{item.sub_index}"
    if item.is_alert:  # one object per finding and channel: a retry overwrites it
        return f"{names.QUARANTINE_KEY_PREFIX}alerts/{day}/{item.channel}/{item.finding_uid}.json"
    return f"{names.QUARANTINE_KEY_PREFIX}{day}/{item.shard_id}/{name}.bin"


ARCHIVE_WORKERS: Final = 8
"""Concurrent PutObject calls of the findings archive (boto3 clients are thread-safe)."""


class S3FindingArchive:
    """Findings no channel receives, one object each, in the quarantine bucket (a retry
    overwrites): suppressed ones at ``suppressed/YYYY/MM/DD/<rule id>/<finding uid>.json``,
    withheld ones (counted into a group without a message of their own) at
    ``withheld/YYYY/MM/DD/<group uid>/<finding uid>.json``."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def put(self, items: Sequence[ArchivedFinding]) -> list[Refusal]:
        """One PutObject per finding, ``ARCHIVE_WORKERS`` at a time (a flood's batch holds
        as many withheld findings as anomalies). Raises when none was stored."""
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(ARCHIVE_WORKERS, len(items))) as pool:
            errors = list(pool.map(self._put_one, items))
        first = errors[0]
        if first is not None and all(errors):
            raise first
        return [Refusal(i, type(exc).__name__, str(exc)) for i, exc in enumerate(errors) if exc]

    def _put_one(self, item: ArchivedFinding) -> Exception | None:
        metadata = (
            {"rule-id": item.rule_id}
            if item.rule_id is not None
            else {"group-uid": item.group_uid or ""}
        )
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=archived_key(item),
                Body=item.body,
                ContentType="application/json",
                Metadata=metadata,
            )
        except Exception as exc:
            return exc
        return None


def archived_key(item: ArchivedFinding) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(item.archived_ms / 1000))
    if item.rule_id is not None:
        return f"{names.SUPPRESSED_KEY_PREFIX}{day}/{item.rule_id}/{item.finding_uid}.json"
    return f"{names.WITHHELD_KEY_PREFIX}{day}/{item.group_uid}/{item.finding_uid}.json"


@dataclass(frozen=True)
class StreamAdapters:
    publishers: tuple[AlertPublisher, ...]
    quarantine: QuarantineSink
    grouping: AlertGrouping | None = None


def _client(service: str, *, connect_s: float = 2, read_s: float = 10, attempts: int = 1) -> Any:
    """A client of ``service``. One attempt per call by default: the stream routine
    retries deliveries with its own bounded policy, and a failure past it is Lambda's to
    retry, so botocore must not multiply the waits."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_s,
        read_timeout=read_s,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )
    return boto3.session.Session().client(service, config=config)


def build_adapters(settings: StreamSettings) -> StreamAdapters:
    """The boto3-backed adapters for ``settings``."""
    s3 = _client("s3") if settings.quarantine_bucket else None
    return StreamAdapters(
        publishers=(
            SnsAlertPublisher(_client("sns"), settings.alert_topic_arn),
            EventBridgeAlertPublisher(_client("events"), settings.event_bus_name),
        ),
        quarantine=SqsQuarantine(
            _client("sqs"), settings.quarantine_queue_url, s3, settings.quarantine_bucket
        ),
        grouping=build_grouping(settings, s3),
    )


def build_grouping(settings: StreamSettings, s3: Any | None) -> AlertGrouping | None:
    """Grouping and suppression on the alert-state table, when one is configured."""
    table = settings.alert_table_name
    if table is None or s3 is None or settings.quarantine_bucket is None:
        return None
    # The alert-state table is read and written per anomaly, outside the routine's
    # retried deliveries: a throttled hot group item (a burst of one entity's anomalies
    # over several shards) is botocore's to retry once, and the two attempts together
    # (at most 2 x (1 + 2) s) stay inside the deadline reserve of one request.
    dynamodb = _client("dynamodb", connect_s=1, read_s=2, attempts=2)
    policy = settings.grouping_policy
    return AlertGrouping(
        store=DynamoGroupStore(dynamodb, table, policy),
        rules=CachedRules(DynamoRuleTable(dynamodb, table), ttl_s=settings.suppression_cache_s),
        archive=S3FindingArchive(s3, settings.quarantine_bucket),
        policy=policy,
    )


def load_detector(
    settings: StreamSettings,
    *,
    s3: Any | None = None,
    before_read: Callable[[], None] | None = None,
) -> Detector:
    """The bundle from ``s3://`` (downloaded and unpacked once per execution environment,
    again if that copy stops loading) or from the layer path.

    Raises ``ocsf_detect.bundlefetch.BundleSourceError`` when it cannot be fetched or is
    not ``settings.expected_bundle_version``, and the loader's ``BundleError`` when it is
    corrupt: the invocation fails and the message says why. ``before_read``: called
    before each read of the archive's body (``before_bundle_read``).
    """
    return open_detector(
        path=settings.bundle_path,
        s3_uri=settings.bundle_s3_uri,
        expected_version=settings.expected_bundle_version,
        s3=s3,
        expected_manifest_sha256=settings.expected_manifest_sha256,
        before_read=before_read,
    )


# An S3 bundle loaded by a batch (not at init) keeps to the invocation
# (``ocsf_detect.deadline``: its GET 2 + 5 s an attempt, three attempts, each made only
# while the invocation could wait for it, and each read of the body only with
# BUNDLE_READ_S left). A stalled download then fails the invocation with
# BundleSourceError, saying so, well before Lambda would stop it, and the batch is retried
# as after any failure; its partial file is deleted. (A body that trickles in can still
# take longer, and unpacking and loading are not checked: docs/releases.md.)
# BUNDLE_RESERVE_S is kept after the last wait: a retry's back-off (standard mode: at most
# 2 s) comes before the check of that retry.
BUNDLE_RESERVE_S = 3.0


@lru_cache(maxsize=1)
def get_bundle_client() -> Any:
    """The S3 client that downloads an ``s3://`` bundle (``deadline.bundle_client``),
    built once; its attempts keep to the invocation's deadline (none at init)."""
    return deadline.bundle_client()


@lru_cache(maxsize=1)
def get_adapters() -> StreamAdapters:
    """The adapters of this execution environment, built on first use."""
    return build_adapters(get_settings())


@lru_cache(maxsize=1)
def get_detector() -> Detector:
    """The detector of this execution environment, loaded on first use."""
    settings = get_settings()
    s3 = get_bundle_client() if settings.bundle_s3_uri else None
    detector = load_detector(settings, s3=s3, before_read=before_bundle_read)
    freeze_long_lived()
    return detector


@lru_cache(maxsize=1)
def get_overlay_source() -> OverlaySource | None:
    """The feedback overlay of the loaded bundle, read from the feedback bucket at most
    once per ``feedback_refresh_s``; None when no feedback bucket is configured."""
    settings = get_settings()
    if not settings.feedback_bucket:
        return None
    detector = get_detector()
    store = S3FeedbackStore(_feedback_client(), settings.feedback_bucket)
    return OverlaySource(
        store,
        detector.bundle_version,
        detector.dims,
        settings.feedback_refresh_s,
        read_concurrency=OVERLAY_READ_CONCURRENCY,
        row_shapes=detector.row_shapes,
    )


def _feedback_client() -> Any:
    # Reads only, off the delivery path: a failure keeps the last overlay (OverlaySource).
    return _client("s3", read_s=5, attempts=2)


def refresh_overlay(detector: Detector) -> OverlaySource | None:
    """Point ``detector`` at the current feedback overlay (refreshed when it is due)."""
    source = get_overlay_source()
    if source is not None and source.bundle_version == detector.bundle_version:
        detector.use_overlay(source.current())
    return source


def reset() -> None:
    """Forget the cached settings, adapters and detector (tests change the environment)."""
    get_settings.cache_clear()
    get_adapters.cache_clear()
    get_detector.cache_clear()
    get_bundle_client.cache_clear()
    get_overlay_source.cache_clear()
    deadline.end()
