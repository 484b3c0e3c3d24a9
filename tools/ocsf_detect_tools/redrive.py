"""Redrive: read the on-failure queue's pointers, re-read those records from the stream while
its retention holds, and put them through the stream function again.

Lambda's on-failure destination keeps only a pointer to a batch it gave up on (shard,
first and last sequence numbers, ``KinesisBatchInfo``); the records stay in the stream
until its retention passes. ``redrive`` reads each pointer, fetches exactly those records
(``AT_SEQUENCE_NUMBER`` up to the last one) and hands them to the function the way the
event source mapping does (``runner.KinesisRunner.process``: batch-item failures retried,
bisected, and a batch that still fails pointed to again on the queue). A pointer is
deleted once its records went through; one that cannot be recovered stays on the queue
and is reported with the reason (malformed, stream gone, records past retention).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ocsf_detect_tools.runner import Invoke, KinesisRunner, MappingConfig

GET_RECORDS_LIMIT = 10_000
VISIBILITY_TIMEOUT_S = 900
"""How long the pointers of a run stay hidden from another run (and from consumers)."""


class PointerError(Exception):
    """A pointer whose records cannot be redriven; the message says why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class BatchPointer:
    """What Lambda's on-failure destination says about a batch it gave up on."""

    stream_arn: str
    shard_id: str
    start_sequence_number: str
    end_sequence_number: str
    batch_size: int

    @property
    def stream_name(self) -> str:
        return self.stream_arn.rsplit("/", 1)[-1]


@dataclass
class Unrecovered:
    message_id: str
    reason: str
    detail: str
    pointer: dict[str, Any] | None = None


@dataclass
class RedriveReport:
    pointers: int = 0
    batches_redriven: int = 0
    records_redriven: int = 0
    records_delivered: int = 0
    records_failed_again: int = 0
    unrecovered: list[Unrecovered] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "unrecovered": [asdict(u) for u in self.unrecovered]}


def parse_pointer(body: str) -> BatchPointer:
    """The ``KinesisBatchInfo`` of an on-failure message."""
    try:
        message = orjson.loads(body)
        info = message["KinesisBatchInfo"]
        return BatchPointer(
            stream_arn=str(info["streamArn"]),
            shard_id=str(info["shardId"]),
            start_sequence_number=str(info["startSequenceNumber"]),
            end_sequence_number=str(info["endSequenceNumber"]),
            batch_size=int(info["batchSize"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PointerError(
            "malformed", f"not an on-failure message with KinesisBatchInfo: {exc!r}"
        ) from exc


def read_pointed_records(kinesis: Any, pointer: BatchPointer) -> list[dict[str, Any]]:
    """The records from the pointer's first to its last sequence number, as GetRecords
    returns them. Raises ``PointerError`` when the stream or the records are gone."""
    from botocore.exceptions import ClientError

    start, end = int(pointer.start_sequence_number), int(pointer.end_sequence_number)
    try:
        iterator = kinesis.get_shard_iterator(
            StreamName=pointer.stream_name,
            ShardId=pointer.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=pointer.start_sequence_number,
        )["ShardIterator"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = "stream_gone" if code == "ResourceNotFoundException" else "unreadable"
        raise PointerError(reason, f"{code}: {exc}") from exc
    records: list[dict[str, Any]] = []
    while iterator:
        page = kinesis.get_records(ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        batch = page.get("Records", [])
        records.extend(r for r in batch if start <= int(r["SequenceNumber"]) <= end)
        if not batch or int(batch[-1]["SequenceNumber"]) >= end:
            break
        iterator = page.get("NextShardIterator")
    if not records or int(records[0]["SequenceNumber"]) != start:
        raise PointerError(
            "expired",
            f"the stream no longer holds sequence number {pointer.start_sequence_number} of "
            f"{pointer.shard_id}: its retention passed (or the pointer is wrong)",
        )
    if len(records) < pointer.batch_size:
        raise PointerError(
            "incomplete",
            f"{len(records)} of the {pointer.batch_size} records pointed to are in the stream",
        )
    return records


def redrive(
    queue_url: str,
    invoke: Invoke,
    *,
    kinesis: Any,
    sqs: Any,
    config: MappingConfig | None = None,
    max_pointers: int | None = None,
) -> RedriveReport:
    """Redrive every pointer on ``queue_url`` (at most ``max_pointers``) through ``invoke``.

    A batch that fails again is pointed to afresh on the same queue (the mapping's
    on-failure behaviour), and its old pointer is deleted: running redrive again retries
    it, and nothing is counted twice."""
    config = config or MappingConfig(on_failure_queue_url=queue_url)
    report = RedriveReport()
    runners: dict[str, KinesisRunner] = {}
    # The pointers there now, hidden while this run works on them; those a failing batch
    # adds meanwhile are left for the next run.
    for message in _pointers_on(sqs, queue_url, max_pointers):
        report.pointers += 1
        if _redrive_one(message, invoke, kinesis, sqs, config, runners, report):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        else:  # back in sight at once, for a person (or the next run) to look at
            sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    return report


def _pointers_on(sqs: Any, queue_url: str, limit: int | None) -> list[dict[str, Any]]:
    taken: dict[str, dict[str, Any]] = {}
    while limit is None or len(taken) < limit:
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10 if limit is None else min(10, limit - len(taken)),
            WaitTimeSeconds=0,
            VisibilityTimeout=VISIBILITY_TIMEOUT_S,
        ).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in taken]
        if not fresh:
            break
        taken.update((m["MessageId"], m) for m in fresh)
    return list(taken.values())


def _redrive_one(
    message: dict[str, Any],
    invoke: Invoke,
    kinesis: Any,
    sqs: Any,
    config: MappingConfig,
    runners: dict[str, KinesisRunner],
    report: RedriveReport,
) -> bool:
    """True when the pointer's records went through (the pointer can go)."""
    pointer: BatchPointer | None = None
    try:
        pointer = parse_pointer(message["Body"])
        records = read_pointed_records(kinesis, pointer)
    except PointerError as exc:
        report.unrecovered.append(
            Unrecovered(
                message["MessageId"], exc.reason, str(exc), asdict(pointer) if pointer else None
            )
        )
        return False
    runner = runners.get(pointer.stream_name)
    if runner is None:
        runner = runners[pointer.stream_name] = KinesisRunner(
            kinesis, pointer.stream_name, invoke, config, sqs=sqs
        )
    before = (runner.stats.records_delivered, runner.stats.records_to_on_failure)
    runner.process(pointer.shard_id, records)
    report.batches_redriven += 1
    report.records_redriven += len(records)
    report.records_delivered += runner.stats.records_delivered - before[0]
    report.records_failed_again += runner.stats.records_to_on_failure - before[1]
    return True


def summary_lines(report: RedriveReport) -> Sequence[str]:
    lines = [
        f"{report.pointers} pointer(s): {report.batches_redriven} batch(es), "
        f"{report.records_redriven} record(s) redriven, {report.records_delivered} delivered, "
        f"{report.records_failed_again} failed again (pointed to afresh on the queue)"
    ]
    lines += [f"not recovered ({u.reason}): {u.detail}" for u in report.unrecovered]
    return lines
