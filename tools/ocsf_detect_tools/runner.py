"""A local Kinesis event source mapping: what Lambda does between a stream and a function.

moto stores event source mappings but does not run them, so ``KinesisRunner`` reads the
(emulated) stream with GetShardIterator/GetRecords and invokes the handler in-process with
real-shaped Kinesis events and a Lambda-like context, reproducing:

- batch size and batching window;
- ReportBatchItemFailures: the batch is retried from the LOWEST reported sequence number
  (an unknown identifier fails the whole batch, as in Lambda);
- bisect-on-error: a handler exception splits the batch in two, each half retried;
- bounded retries (``max_retry_attempts``), then the on-failure destination: an SQS
  message describing the failed records (``KinesisBatchInfo``), and the shard moves on.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from ocsf_detect_tools.localcontext import LocalContext

Invoke = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True)
class MappingConfig:
    """The event source mapping's settings (names follow the Lambda API)."""

    batch_size: int = 100
    maximum_batching_window_s: float = 0.0
    report_batch_item_failures: bool = True
    bisect_batch_on_function_error: bool = True
    maximum_retry_attempts: int = 2  # -1: retry until it succeeds (Lambda: until expiry)
    on_failure_queue_url: str | None = None
    function_name: str = "ocsf-detect-stream-scoring"
    region: str = "us-east-1"
    account_id: str = "123456789012"


@dataclass
class RunnerStats:
    invocations: int = 0
    records_delivered: int = 0
    retries: int = 0
    bisections: int = 0
    handler_errors: int = 0
    records_to_on_failure: int = 0
    on_failure_messages: int = 0


class KinesisRunner:
    """Polls every shard of ``stream_name`` from TRIM_HORIZON and drives ``invoke``."""

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        invoke: Invoke,
        config: MappingConfig | None = None,
        *,
        sqs: Any = None,
    ) -> None:
        if config is not None and config.on_failure_queue_url and sqs is None:
            raise ValueError(
                "on_failure_queue_url is set but no SQS client was given: failed records "
                "would be dropped instead of sent there"
            )
        self._kinesis = kinesis
        self._sqs = sqs
        self.stream_name = stream_name
        self.invoke = invoke
        self.config = config or MappingConfig()
        self.stats = RunnerStats()
        self._iterators: dict[str, str | None] = {}
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        self.stream_arn: str = description["StreamARN"]
        self.shards = [s["ShardId"] for s in description["Shards"]]

    # -- polling -----------------------------------------------------------------------
    def run_until_idle(self, on_batch: Callable[[int], None] | None = None) -> RunnerStats:
        """Deliver every record currently in the stream; return the counters."""
        for shard_id in self.shards:
            while True:
                batch = self._next_batch(shard_id)
                if not batch:
                    break
                self.process(shard_id, batch)
                if on_batch:
                    on_batch(len(batch))
        return self.stats

    def _next_batch(self, shard_id: str) -> list[dict[str, Any]]:
        if shard_id not in self._iterators:
            self._iterators[shard_id] = self._kinesis.get_shard_iterator(
                StreamName=self.stream_name, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        buffer = self._buffers.setdefault(shard_id, [])
        window_ends = time.monotonic() + self.config.maximum_batching_window_s
        while len(buffer) < self.config.batch_size and self._iterators[shard_id]:
            response = self._kinesis.get_records(
                ShardIterator=self._iterators[shard_id], Limit=10_000
            )
            self._iterators[shard_id] = response.get("NextShardIterator")
            buffer.extend(response["Records"])
            caught_up = not response["Records"] or response.get("MillisBehindLatest", 0) == 0
            if caught_up and (not buffer or time.monotonic() >= window_ends):
                break
            if caught_up:
                time.sleep(min(0.05, max(0.0, window_ends - time.monotonic())))
        batch, self._buffers[shard_id] = (
            buffer[: self.config.batch_size],
            buffer[self.config.batch_size :],
        )
        return batch

    # -- one batch, with Lambda's retry rules ---------------------------------------------
    def process(self, shard_id: str, batch: Sequence[dict[str, Any]]) -> None:
        """Invoke until the batch succeeds or its retries are exhausted."""
        pending = list(batch)
        attempts = 0
        while pending:
            attempts += 1
            try:
                response = self._invoke(shard_id, pending)
            except Exception as exc:
                self.stats.handler_errors += 1
                if self.config.bisect_batch_on_function_error and len(pending) > 1:
                    self.stats.bisections += 1
                    half = len(pending) // 2
                    self.process(shard_id, pending[:half])
                    self.process(shard_id, pending[half:])
                    return
                if self._exhausted(attempts):
                    self._on_failure(shard_id, pending, attempts, f"{type(exc).__name__}: {exc}")
                    return
                self.stats.retries += 1
                continue
            start = self._first_failure(pending, response)
            if start is None:
                self.stats.records_delivered += len(pending)
                return
            self.stats.records_delivered += start
            pending = pending[start:]
            if self._exhausted(attempts):
                self._on_failure(shard_id, pending, attempts, "batch item failures")
                return
            self.stats.retries += 1

    def _exhausted(self, attempts: int) -> bool:
        """Retries used up: ``attempts`` invocations, one more than the retries allowed.
        Lambda's -1 retries until the records expire; here (no expiry), until success."""
        limit = self.config.maximum_retry_attempts
        return limit >= 0 and attempts > limit

    def _first_failure(self, pending: Sequence[dict[str, Any]], response: Any) -> int | None:
        if not self.config.report_batch_item_failures:
            return None
        failures = (response or {}).get("batchItemFailures") if isinstance(response, dict) else None
        if not failures:
            return None
        positions = {r["SequenceNumber"]: i for i, r in enumerate(pending)}
        found = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in positions:
                return 0  # an invalid identifier fails the whole batch, as in Lambda
            found.append(positions[identifier])
        return min(found)

    def _invoke(self, shard_id: str, records: Sequence[dict[str, Any]]) -> Any:
        self.stats.invocations += 1
        context = LocalContext(
            function_name=self.config.function_name,
            region=self.config.region,
            account_id=self.config.account_id,
        )
        return self.invoke(self.kinesis_event(shard_id, records), context)

    def kinesis_event(self, shard_id: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The event Lambda would pass for ``records`` (GetRecords entries) of ``shard_id``."""
        cfg = self.config
        role = f"arn:aws:iam::{cfg.account_id}:role/{cfg.function_name}-role"
        return {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"],
                        "data": base64.b64encode(r["Data"]).decode(),
                        "approximateArrivalTimestamp": _epoch_s(
                            r.get("ApproximateArrivalTimestamp")
                        ),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard_id}:{r['SequenceNumber']}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": role,
                    "awsRegion": cfg.region,
                    "eventSourceARN": self.stream_arn,
                }
                for r in records
            ]
        }

    def _on_failure(
        self, shard_id: str, records: Sequence[dict[str, Any]], attempts: int, why: str
    ) -> None:
        self.stats.records_to_on_failure += len(records)
        if not (self._sqs and self.config.on_failure_queue_url):
            return  # no destination: the records are dropped, as Lambda does
        arrivals = [_epoch_s(r.get("ApproximateArrivalTimestamp")) for r in records]
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": LocalContext(
                    function_name=self.config.function_name,
                    region=self.config.region,
                    account_id=self.config.account_id,
                ).invoked_function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": why,
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": records[0]["SequenceNumber"],
                "endSequenceNumber": records[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(arrivals[0]),
                "approximateArrivalOfLastRecord": _iso(arrivals[-1]),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self._sqs.send_message(
            QueueUrl=self.config.on_failure_queue_url, MessageBody=orjson.dumps(message).decode()
        )
        self.stats.on_failure_messages += 1


def _epoch_s(value: Any) -> float:
    if isinstance(value, datetime):
        return round(value.timestamp(), 3)
    if isinstance(value, int | float):
        return float(value)
    return round(time.time(), 3)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()
