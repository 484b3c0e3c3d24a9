"""Replay events through the whole stream path on an AWS emulator (or any endpoint).

``replay(...)`` creates the stream, the alert topic and bus, the quarantine queue and
bucket, the alert-state table (alert groups and suppression rules), and two subscriber
queues (SNS with raw delivery; an EventBridge rule on the
findings' source/detail-type), puts the events into Kinesis, drives the real stream
handler through ``KinesisRunner``, drains the queues and counts. The ``replay`` and
``demo`` commands are thin wrappers around it.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson

from ocsf_detect import names
from ocsf_detect.alertstate import DynamoGroupStore, DynamoRuleTable
from ocsf_detect.feedback import S3FeedbackStore, Verdict
from ocsf_detect.stream import UNDELIVERABLE
from ocsf_detect_tools.emulator import DEFAULT_REGION, Emulator, aws_environment, environment
from ocsf_detect_tools.producers import RecordFormatName, pack
from ocsf_detect_tools.queues import QueueDrain
from ocsf_detect_tools.runner import KinesisRunner, MappingConfig

PUT_RECORDS_MAX = 500  # Kinesis PutRecords takes at most 500 records per call
PUT_REQUEST_BYTES = 5 * 1024 * 1024  # ... and 5 MiB, data and partition keys together


@dataclass(frozen=True)
class ReplayResources:
    stream_name: str
    topic_arn: str
    bus_name: str
    quarantine_queue_url: str
    quarantine_bucket: str
    sns_queue_url: str
    eventbridge_queue_url: str
    on_failure_queue_url: str
    alert_table: str | None = None
    feedback_bucket: str | None = None

    def handler_environment(self, bundle_dir: Path) -> dict[str, str]:
        environment = {
            names.ENV_BUNDLE_PATH: str(bundle_dir),
            names.ENV_ALERT_TOPIC_ARN: self.topic_arn,
            names.ENV_EVENT_BUS_NAME: self.bus_name,
            names.ENV_QUARANTINE_QUEUE_URL: self.quarantine_queue_url,
            names.ENV_QUARANTINE_BUCKET: self.quarantine_bucket,
        }
        if self.alert_table:
            environment[names.ENV_ALERT_TABLE_NAME] = self.alert_table
        if self.feedback_bucket:
            environment[names.ENV_FEEDBACK_BUCKET] = self.feedback_bucket
        return environment


def client(service: str) -> Any:
    import boto3

    return boto3.session.Session().client(service)


def create_alert_table(name: str) -> str:
    """The alert-state table as the CDK app defines it (infra/constructs/alert_state.py):
    keys pk/sk, the sparse open-groups index, TTL on expires_at."""
    dynamodb = client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "open_pk", "AttributeType": "S"},
            {"AttributeName": "window_end", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": names.ALERT_TABLE_OPEN_INDEX,
                "KeySchema": [
                    {"AttributeName": "open_pk", "KeyType": "HASH"},
                    {"AttributeName": "window_end", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"},
    )
    return name


def create_resources(
    prefix: str | None = None, shards: int = 1, grouping: bool = False, feedback: bool = False
) -> ReplayResources:
    """Everything the stream function talks to, on the current AWS endpoint (with
    ``grouping``, the alert-state table too; with ``feedback``, a feedback bucket)."""
    prefix = prefix or f"ocsf-detect-{uuid.uuid4().hex[:8]}"
    kinesis, sns, sqs, events, s3 = (client(s) for s in ("kinesis", "sns", "sqs", "events", "s3"))
    stream = f"{prefix}-events"
    kinesis.create_stream(StreamName=stream, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(
        StreamName=stream, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
    )
    topic_arn = sns.create_topic(Name=f"{prefix}-alerts")["TopicArn"]
    bus = f"{prefix}-bus"
    events.create_event_bus(Name=bus)
    quarantine_url = sqs.create_queue(QueueName=f"{prefix}-quarantine")["QueueUrl"]
    on_failure_url = sqs.create_queue(QueueName=f"{prefix}-on-failure")["QueueUrl"]
    bucket = f"{prefix}-quarantine"
    s3.create_bucket(Bucket=bucket)
    sns_queue = sqs.create_queue(QueueName=f"{prefix}-sns-subscriber")["QueueUrl"]
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=_queue_arn(sqs, sns_queue),
        Attributes={"RawMessageDelivery": "true"},
    )
    eb_queue = sqs.create_queue(QueueName=f"{prefix}-eventbridge-subscriber")["QueueUrl"]
    rule = f"{prefix}-findings"
    events.put_rule(
        Name=rule,
        EventBusName=bus,
        EventPattern=json.dumps(
            {"source": [names.EVENTBRIDGE_SOURCE], "detail-type": [names.EVENTBRIDGE_DETAIL_TYPE]}
        ),
    )
    events.put_targets(
        Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": _queue_arn(sqs, eb_queue)}]
    )
    table = create_alert_table(f"{prefix}-alert-state") if grouping else None
    feedback_bucket = f"{prefix}-feedback" if feedback else None
    if feedback_bucket:
        s3.create_bucket(Bucket=feedback_bucket)
    return ReplayResources(
        stream,
        topic_arn,
        bus,
        quarantine_url,
        bucket,
        sns_queue,
        eb_queue,
        on_failure_url,
        table,
        feedback_bucket,
    )


def seed_feedback(bundle_dir: Path, bucket: str, verdicts: Sequence[Verdict]) -> int:
    """Put ``verdicts`` in the feedback bucket as the API would have for this bundle: each
    event embedded by this bundle's model (a verdict given under another bundle version is
    re-embedded), benign ones in the overlay the stream function searches. Returns the
    number of overlay vectors; an event this bundle cannot embed is skipped."""
    from ocsf_detect.detector.overlay import Judged
    from ocsf_detect.detector.scorer import Detector

    if not verdicts:
        return 0
    detector = Detector.load(bundle_dir)
    store = S3FeedbackStore(client("s3"), bucket)
    vectors = 0
    judged = detector.judge_objects([v.event for v in verdicts])
    for verdict, item in zip(verdicts, judged, strict=True):
        if not isinstance(item, Judged):
            continue
        store.record(
            verdict.model_copy(
                update={"class_uid": item.class_uid, "bundle_version": detector.bundle_version}
            ),
            item,
        )
        vectors += verdict.verdict == "benign"
    return vectors


def _queue_arn(sqs: Any, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def put_events(
    lines: Sequence[bytes], stream_name: str, advance: Callable[[int], None] | None = None
) -> list[str]:
    """PutRecords in requests of at most 500 records and 5 MiB, re-putting throttled
    entries; the sequence numbers, in order."""
    kinesis = client("kinesis")
    sequence_numbers: list[str] = []
    for start, stop in put_requests(lines):
        chunk = [{"Data": lines[i], "PartitionKey": str(i)} for i in range(start, stop)]
        for _ in range(10):
            out = kinesis.put_records(StreamName=stream_name, Records=chunk)
            ok = [r for r in out["Records"] if "SequenceNumber" in r]
            sequence_numbers.extend(r["SequenceNumber"] for r in ok)
            chunk = [c for c, r in zip(chunk, out["Records"], strict=True) if "ErrorCode" in r]
            if not chunk:
                break
            time.sleep(0.1)
        if advance:
            advance(stop - start)
    return sequence_numbers


def put_requests(lines: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    """[start, stop) of each PutRecords request: 500 records and 5 MiB (data and
    partition keys) at most, Kinesis' limits on one request."""
    start, size = 0, 0
    for i, line in enumerate(lines):
        record = len(line) + len(str(i))
        if i > start and (i - start == PUT_RECORDS_MAX or size + record > PUT_REQUEST_BYTES):
            yield start, i
            start, size = i, 0
        size += record
    if start < len(lines):
        yield start, len(lines)


def drain_queue(queue_url: str, idle_polls: int = 2) -> list[dict[str, Any]]:
    """Receive (and delete) every message until the queue stays empty."""
    drain = QueueDrain(client("sqs"), queue_url)
    drain.poll(idle_polls=idle_polls)
    return drain.bodies


@contextmanager
def aws_endpoint(endpoint_url: str | None) -> Iterator[str]:
    """Use ``endpoint_url`` (or AWS_ENDPOINT_URL), else start the embedded emulator."""
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    with ExitStack() as stack:
        if not endpoint:
            endpoint = stack.enter_context(Emulator()).endpoint_url
        region = os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        if endpoint_url or not os.environ.get("AWS_ENDPOINT_URL"):
            stack.enter_context(aws_environment(endpoint, region))
        yield endpoint


def replay(
    bundle_dir: Path,
    lines: Sequence[bytes],
    *,
    batch_size: int = 100,
    endpoint_url: str | None = None,
    progress: Callable[[str, int], Any] | None = None,
    function_output: TextIO | None = None,
    record_format: RecordFormatName = "json",
    findings: list[dict[str, Any]] | None = None,
    grouping: bool = True,
    suppressions: Sequence[Any] = (),
    verdicts: Sequence[Verdict] = (),
) -> dict[str, Any]:
    """Replay ``lines`` (JSON events), packed into Kinesis records as ``record_format``'s
    producers pack them, and return the summary counts.

    With ``grouping`` the function runs against an alert-state table (holding
    ``suppressions``, ``SuppressionRule``s, from the start): anomalies are grouped, only
    the groups' notifications are published, and once the stream is drained the groups
    are closed as the schedule would close them. ``alert_groups`` counts the groups in
    the table, ``quiet_groups`` those that never published, ``grouped_anomalies`` the
    anomalies they counted (with ``suppressed``, every anomaly once),
    ``notifications_sns``/``notifications_eventbridge`` the messages.
    The function's log lines and EMF metrics go to ``function_output`` (default: stderr).

    ``events_in`` counts the lines, ``records_in`` the Kinesis records put. A line that
    fits no record is rejected before the put (``rejected_before_put``, within
    ``rejected``), so that ``scored + rejected + unsupported + failed == events_in``.
    ``findings``, when given, receives the Detection Findings read from the SNS queue.

    ``verdicts`` (analysts' verdicts, ``ocsf_detect.feedback.Verdict``) go into a feedback
    bucket first, embedded by this bundle (``seed_feedback``): the function searches the
    benign ones beside the index, as it would after ``POST /v1/feedback``.
    ``feedback_vectors`` counts them, ``silenced_by_feedback`` the events the bundle alone
    would have alerted on that the overlay silenced.

    The alert and quarantine queues are read after each invocation that put something in
    them (``queues.QueueDrain``): on the emulator a receive costs time for every message
    a queue holds, so a queue left to fill made the drain quadratic."""
    from stream_scoring import adapters, handler

    packing = pack(lines, record_format)
    datas = [record.data for record in packing.records]
    with aws_endpoint(endpoint_url):
        started = time.perf_counter()
        resources = create_resources(grouping=grouping, feedback=bool(verdicts))
        feedback_vectors = (
            seed_feedback(Path(bundle_dir), resources.feedback_bucket, verdicts)
            if resources.feedback_bucket
            else 0
        )
        silenced = 0
        if resources.alert_table:
            rule_table = DynamoRuleTable(client("dynamodb"), resources.alert_table)
            for rule in suppressions:
                rule_table.put(rule)
        sqs = client("sqs")
        drains = {
            "sns": QueueDrain(sqs, resources.sns_queue_url),
            "eventbridge": QueueDrain(sqs, resources.eventbridge_queue_url),
            "quarantine": QueueDrain(sqs, resources.quarantine_queue_url),
            "on_failure": QueueDrain(sqs, resources.on_failure_queue_url),
        }
        with environment(resources.handler_environment(Path(bundle_dir))):
            adapters.reset()
            try:
                sequence_numbers = _put(datas, resources, progress)
                # The last status of each event (shard, sequence number, sub_index): a
                # retried record's events are seen again and end where the retry put them.
                final: dict[tuple[str, str, int], str] = {}
                sent: set[str] = set()  # the queues the last invocation put messages in

                def observe(result: Any) -> None:
                    for key, status in zip(result.event_keys(), result.statuses, strict=True):
                        final[key] = status.value
                        if status.value == "anomaly":
                            sent.update(("sns", "eventbridge"))
                        elif status.value == "rejected":
                            sent.add("quarantine")

                def read_queues() -> None:
                    for name in sent:
                        drains[name].poll()
                    sent.clear()

                remove = handler.add_result_observer(observe)
                try:
                    with _function_output_to(handler, function_output):
                        stats = _drive(
                            resources,
                            batch_size,
                            handler.lambda_handler,
                            progress,
                            len(datas),
                            read_queues,
                        )
                        groups = _close_groups(handler, adapters, resources)
                        sent.update(("sns", "eventbridge"))
                        read_queues()
                        silenced = adapters.get_detector().silenced
                finally:
                    remove()
            finally:
                adapters.reset()
        _finish(list(drains.values()), progress)
        sns_alerts = drains["sns"].bodies
        eb_alerts = drains["eventbridge"].bodies
        quarantine = drains["quarantine"].bodies
        on_failure = drains["on_failure"].bodies
        if findings is not None:
            findings.extend(sns_alerts)
        seconds = time.perf_counter() - started
    statuses = list(final.values())
    events_put = sum(len(record.events) for record in packing.records)
    # Events the function never reported on (a record sent to the on-failure destination
    # after a crash) are failed too: nothing is left uncounted.
    never_seen = max(0, events_put - len(final))
    sns_uids = {m["finding_info"]["uid"] for m in sns_alerts}
    suppressed = statuses.count("suppressed")
    eb_uids = {m["detail"]["finding_info"]["uid"] for m in eb_alerts}
    rejected_before_put = len(packing.too_large)
    return {
        "events_in": len(lines),
        "records_in": len(sequence_numbers),
        "record_format": record_format,
        "scored": statuses.count("scored") + statuses.count("anomaly") + suppressed,
        "anomalies": statuses.count("anomaly") + suppressed,
        "rejected": statuses.count("rejected") + rejected_before_put,
        "rejected_before_put": rejected_before_put,
        "unsupported": statuses.count("unsupported"),
        "failed": statuses.count("failed") + never_seen,
        "alerts_sns": len(sns_uids),
        "alerts_eventbridge": len(eb_uids),
        "alert_messages_sns": len(sns_alerts),
        "alert_messages_eventbridge": len(eb_alerts),
        "quarantined": len(
            {
                (m["shard_id"], m["sequence_number"], m.get("sub_index", 0))
                for m in quarantine
                if m.get("reason") != UNDELIVERABLE
            }
        ),
        # findings a channel refused for good, kept in the quarantine bucket
        "alerts_quarantined": len(
            {
                (m["channel"], m["finding_uid"])
                for m in quarantine
                if m.get("reason") == UNDELIVERABLE
            }
        ),
        "alert_groups": len(groups) if resources.alert_table else None,
        "grouped_anomalies": sum(g.count for g in groups) if resources.alert_table else None,
        # groups that never published (below the count or severity a group speaks at)
        "quiet_groups": sum(g.notifications == 0 for g in groups)
        if resources.alert_table
        else None,
        "notifications_sns": len({m["metadata"]["uid"] for m in sns_alerts}),
        "notifications_eventbridge": len({m["detail"]["metadata"]["uid"] for m in eb_alerts}),
        "suppressed": suppressed,
        "feedback_vectors": feedback_vectors,
        "silenced_by_feedback": silenced,
        "on_failure_batches": len(on_failure),
        "invocations": stats.invocations,
        "seconds": round(seconds, 3),
        "events_per_s": round(len(lines) / seconds, 1) if seconds > 0 else 0.0,
    }


def _close_groups(handler: Any, adapters: Any, resources: ReplayResources) -> list[Any]:
    """Close every group whose window is over by the wall clock (the schedule's sweep;
    replayed events are older than their windows), then every group in the table."""
    if not resources.alert_table:
        return []
    handler.close_groups(
        settings=adapters.get_settings(),
        adapters=adapters.get_adapters(),
        bundle_version=adapters.get_detector().bundle_version,
    )
    policy = adapters.get_settings().grouping_policy
    return list(DynamoGroupStore(client("dynamodb"), resources.alert_table, policy).groups())


def _put(
    lines: Sequence[bytes], resources: ReplayResources, progress: Callable[[str, int], Any] | None
) -> list[str]:
    if progress is None:
        return put_events(lines, resources.stream_name)
    with progress("putting", len(lines)) as bar:
        return put_events(lines, resources.stream_name, bar.advance)


def _finish(drains: list[QueueDrain], progress: Callable[[str, int], Any] | None) -> None:
    """Read what is left in the queues, showing the count when there is much to read."""
    left = sum(d.waiting() for d in drains) if progress is not None else 0
    if progress is None or left < 100:
        for drain in drains:
            drain.finish()
        return
    with progress("reading queues", left) as bar:
        for drain in drains:
            drain.finish(bar.advance)


def _drive(
    resources: ReplayResources,
    batch_size: int,
    invoke: Callable[[dict[str, Any], Any], Any],
    progress: Callable[[str, int], Any] | None,
    total: int,
    after_batch: Callable[[], None] = lambda: None,
) -> Any:
    runner = KinesisRunner(
        client("kinesis"),
        resources.stream_name,
        invoke,
        MappingConfig(batch_size=batch_size, on_failure_queue_url=resources.on_failure_queue_url),
        sqs=client("sqs"),
    )
    if progress is None:
        return runner.run_until_idle(lambda _: after_batch())
    with progress("scoring", total) as bar:

        def on_batch(n: int) -> None:
            bar.advance(n)
            after_batch()

        return runner.run_until_idle(on_batch)


@contextmanager
def _function_output_to(handler_module: Any, stream: TextIO | None) -> Iterator[None]:
    """The function's logs and EMF metrics go to ``stream`` (stderr by default): stdout
    is the command's answer."""
    stream = stream or sys.stderr
    log_handler = getattr(handler_module.logger, "registered_handler", None)
    previous = _swap_stream(log_handler, stream) if log_handler is not None else None
    try:
        with redirect_stdout(stream):
            yield
    finally:
        if log_handler is not None and previous is not None:
            _swap_stream(log_handler, previous)


def _swap_stream(log_handler: Any, stream: TextIO) -> TextIO:
    """``StreamHandler.setStream`` without its flush of the old stream, which may be
    closed by now (an earlier run's file, or a test's captured stderr)."""
    log_handler.acquire()
    try:
        previous: TextIO = log_handler.stream
        log_handler.stream = stream
    finally:
        log_handler.release()
    return previous


def dumps(summary: dict[str, Any]) -> str:
    return orjson.dumps(summary).decode()
