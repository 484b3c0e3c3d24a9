"""The local Kinesis event source mapping (``KinesisRunner``) against in-memory fakes.

The fakes implement only what the runner calls: Kinesis DescribeStream, GetShardIterator
and GetRecords, and SQS SendMessage for the on-failure destination. The function is a
plain callable that records the sequence numbers of every batch it is invoked with.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from ocsf_detect_tools.runner import KinesisRunner, MappingConfig

STREAM = "ocsf-detect-test-events"
STREAM_ARN = f"arn:aws:kinesis:us-east-1:123456789012:stream/{STREAM}"
SHARD_0 = "shardId-000000000000"
SHARD_1 = "shardId-000000000001"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/ocsf-detect-test-on-failure"
FIRST_SEQUENCE_NUMBER = 49590338271490256608559692538361571095921575989136588898
ARRIVAL = datetime(2026, 1, 1, tzinfo=UTC)


class FakeKinesis:
    """One stream; each shard's records are served from TRIM_HORIZON, ``page`` per call."""

    def __init__(self, shards: dict[str, int], *, page: int = 10_000) -> None:
        self.page = page
        self.records: dict[str, list[dict[str, Any]]] = {}
        n = 0
        for shard_id, count in shards.items():
            self.records[shard_id] = []
            for _ in range(count):
                self.records[shard_id].append(
                    {
                        "SequenceNumber": str(FIRST_SEQUENCE_NUMBER + n),
                        "ApproximateArrivalTimestamp": ARRIVAL + timedelta(seconds=n),
                        "Data": orjson.dumps({"class_uid": 4001, "n": n}),
                        "PartitionKey": str(n),
                    }
                )
                n += 1

    def sequence_numbers(self, shard_id: str = SHARD_0) -> list[str]:
        return [r["SequenceNumber"] for r in self.records[shard_id]]

    def describe_stream(self, *, StreamName: str) -> dict[str, Any]:  # noqa: N803
        assert StreamName == STREAM
        shards = [{"ShardId": shard_id} for shard_id in self.records]
        return {"StreamDescription": {"StreamARN": STREAM_ARN, "Shards": shards}}

    def get_shard_iterator(
        self,
        *,
        StreamName: str,  # noqa: N803
        ShardId: str,  # noqa: N803
        ShardIteratorType: str,  # noqa: N803
    ) -> dict[str, Any]:
        assert (StreamName, ShardIteratorType) == (STREAM, "TRIM_HORIZON")
        return {"ShardIterator": f"{ShardId}|0"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        shard_id, position = ShardIterator.rsplit("|", 1)
        start = int(position)
        records = self.records[shard_id][start : start + min(Limit, self.page)]
        end = start + len(records)
        behind = 0 if end >= len(self.records[shard_id]) else 1_000
        return {
            "Records": records,
            "NextShardIterator": f"{shard_id}|{end}",  # an open shard always has one
            "MillisBehindLatest": behind,
        }


class FakeSqs:
    """Keeps every SendMessage as (queue url, decoded body)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, Any]:  # noqa: N803
        self.sent.append((QueueUrl, orjson.loads(MessageBody)))
        return {"MessageId": str(len(self.sent))}


Respond = Callable[[list[str]], Any]


class FakeFunction:
    """A handler that records each batch's sequence numbers and answers with ``respond``."""

    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.calls: list[list[str]] = []
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.events.append(event)
        batch = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.calls.append(batch)
        return self.respond(batch)

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.calls]


def succeed(batch: list[str]) -> dict[str, Any]:
    return {"batchItemFailures": []}


def report(*identifiers: Any) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": i} for i in identifiers]}


def fail_items(poison: set[str]) -> Respond:
    """Report every record of ``poison`` present in the batch as failed, on every try."""
    return lambda batch: report(*[s for s in batch if s in poison])


def raise_on(poison: set[str]) -> Respond:
    def respond(batch: list[str]) -> dict[str, Any]:
        if poison & set(batch):
            raise RuntimeError("poison record")
        return succeed(batch)

    return respond


def make_runner(
    kinesis: FakeKinesis,
    function: FakeFunction,
    sqs: FakeSqs | None = None,
    **config: Any,
) -> KinesisRunner:
    return KinesisRunner(kinesis, STREAM, function, MappingConfig(**config), sqs=sqs)


def batch_info(message: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = message["KinesisBatchInfo"]
    return info


# --- the event the function receives ----------------------------------------------------
def test_invocation_event_is_real_shaped():
    kinesis = FakeKinesis({SHARD_0: 2})
    function = FakeFunction(succeed)
    make_runner(kinesis, function).run_until_idle()
    (event,) = function.events
    first = event["Records"][0]
    assert first["eventSource"] == "aws:kinesis"
    assert first["eventSourceARN"] == STREAM_ARN
    assert first["eventID"] == f"{SHARD_0}:{kinesis.sequence_numbers()[0]}"
    assert base64.b64decode(first["kinesis"]["data"]) == kinesis.records[SHARD_0][0]["Data"]
    assert first["kinesis"]["approximateArrivalTimestamp"] == ARRIVAL.timestamp()


def test_records_are_delivered_in_batches_of_batch_size_across_pages():
    kinesis = FakeKinesis({SHARD_0: 7, SHARD_1: 3}, page=2)
    function = FakeFunction(succeed)
    stats = make_runner(kinesis, function, batch_size=3).run_until_idle()
    assert function.sizes == [3, 3, 1, 3]
    delivered = [sequence_number for batch in function.calls for sequence_number in batch]
    assert delivered == kinesis.sequence_numbers() + kinesis.sequence_numbers(SHARD_1)
    assert (stats.invocations, stats.records_delivered, stats.retries) == (4, 10, 0)


# --- ReportBatchItemFailures ------------------------------------------------------------
def test_item_failure_exhausts_retries_then_goes_to_on_failure_and_shard_moves_on():
    # Given a shard whose 4th record is reported as failed on every try
    kinesis = FakeKinesis({SHARD_0: 2, SHARD_1: 10})
    seq = kinesis.sequence_numbers(SHARD_1)
    function = FakeFunction(fail_items({seq[3]}))
    sqs = FakeSqs()
    runner = make_runner(
        kinesis,
        function,
        sqs,
        batch_size=5,
        maximum_retry_attempts=2,
        on_failure_queue_url=QUEUE_URL,
    )
    # When the runner drains the stream
    stats = runner.run_until_idle()
    # Then the batch is retried from the failure, 1 + 2 times, and the shard moves on
    assert function.calls[1:] == [seq[0:5], seq[3:5], seq[3:5], seq[5:10]]
    assert stats.invocations == 1 + 4
    assert stats.retries == 2
    assert stats.handler_errors == 0
    assert stats.records_delivered == 2 + 3 + 5
    assert (stats.records_to_on_failure, stats.on_failure_messages) == (2, 1)
    # And the on-failure destination describes the failed range like Lambda's message
    ((queue_url, message),) = sqs.sent
    assert queue_url == QUEUE_URL
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"] == (
        "arn:aws:lambda:us-east-1:123456789012:function:ocsf-detect-stream-scoring"
    )
    assert batch_info(message) == {
        "shardId": SHARD_1,
        "startSequenceNumber": seq[3],
        "endSequenceNumber": seq[4],
        "approximateArrivalOfFirstRecord": (ARRIVAL + timedelta(seconds=2 + 3)).isoformat(),
        "approximateArrivalOfLastRecord": (ARRIVAL + timedelta(seconds=2 + 4)).isoformat(),
        "batchSize": 2,
        "streamArn": STREAM_ARN,
    }


@pytest.mark.parametrize(
    "failure_of",
    [
        pytest.param(lambda seq: {"itemIdentifier": seq[5]}, id="record-of-the-next-batch"),
        pytest.param(lambda seq: {"itemIdentifier": seq[0] + "0"}, id="unknown-sequence-number"),
        pytest.param(lambda seq: {"itemIdentifier": ""}, id="empty-string"),
        pytest.param(lambda seq: {"itemIdentifier": None}, id="null"),
        pytest.param(lambda seq: {"item_identifier": seq[1]}, id="bad-key-name"),
    ],
)
def test_item_identifier_not_in_batch_fails_the_whole_batch(failure_of):
    # Given a function that once reports an identifier that names no record of the batch
    kinesis = FakeKinesis({SHARD_0: 6})
    seq = kinesis.sequence_numbers()
    answers = [{"batchItemFailures": [failure_of(seq)]}]
    function = FakeFunction(lambda batch: answers.pop() if answers else succeed(batch))
    # When the runner drains the stream
    stats = make_runner(kinesis, function, batch_size=4).run_until_idle()
    # Then the whole batch is retried from its first record
    assert function.calls == [seq[0:4], seq[0:4], seq[4:6]]
    assert stats.retries == 1
    assert stats.records_delivered == 6
    assert stats.records_to_on_failure == 0


def test_batch_is_retried_from_the_lowest_reported_sequence_number():
    # Given a function that once reports two failures, the later one first
    kinesis = FakeKinesis({SHARD_0: 6})
    seq = kinesis.sequence_numbers()
    answers = [report(seq[4], seq[2])]
    function = FakeFunction(lambda batch: answers.pop() if answers else succeed(batch))
    # When the runner drains the stream
    stats = make_runner(kinesis, function, batch_size=6).run_until_idle()
    # Then the retry starts at the lower one; the records before it are not re-invoked
    assert function.calls == [seq, seq[2:]]
    assert sum(call.count(seq[0]) + call.count(seq[1]) for call in function.calls) == 2
    assert (stats.retries, stats.records_delivered) == (1, 6)


def test_item_failures_are_ignored_without_report_batch_item_failures():
    # Given a mapping without ReportBatchItemFailures and a function that reports failures
    kinesis = FakeKinesis({SHARD_0: 6})
    seq = kinesis.sequence_numbers()
    function = FakeFunction(lambda batch: report(batch[0]))
    sqs = FakeSqs()
    # When the runner drains the stream
    stats = make_runner(
        kinesis,
        function,
        sqs,
        batch_size=3,
        report_batch_item_failures=False,
        on_failure_queue_url=QUEUE_URL,
    ).run_until_idle()
    # Then every batch counts as a success
    assert function.calls == [seq[0:3], seq[3:6]]
    assert (stats.retries, stats.records_delivered, stats.records_to_on_failure) == (0, 6, 0)
    assert sqs.sent == []


# --- function errors --------------------------------------------------------------------
def test_function_error_bisects_the_batch_until_the_poison_record_is_alone():
    # Given a function that raises on any batch holding the 6th record
    kinesis = FakeKinesis({SHARD_0: 8})
    seq = kinesis.sequence_numbers()
    function = FakeFunction(raise_on({seq[5]}))
    sqs = FakeSqs()
    runner = make_runner(
        kinesis,
        function,
        sqs,
        batch_size=8,
        bisect_batch_on_function_error=True,
        maximum_retry_attempts=1,
        on_failure_queue_url=QUEUE_URL,
    )
    # When the runner drains the stream
    stats = runner.run_until_idle()
    # Then the batch is halved 8 -> 4 + 4 -> 2 + 2 -> 1 + 1, the record alone is retried
    assert function.sizes == [8, 4, 4, 2, 1, 1, 1, 2]
    assert function.calls == [
        seq,
        seq[0:4],
        seq[4:8],
        seq[4:6],
        [seq[4]],
        [seq[5]],
        [seq[5]],
        seq[6:8],
    ]
    assert stats.bisections == 3
    assert stats.handler_errors == 5
    assert stats.retries == 1
    assert stats.records_delivered == 7
    # And only the poison record goes to the on-failure destination
    ((_, message),) = sqs.sent
    info = batch_info(message)
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (seq[5], seq[5])
    assert info["batchSize"] == 1
    assert message["requestContext"]["approximateInvokeCount"] == 2
    assert "poison record" in message["responseContext"]["functionError"]


def test_function_error_without_bisect_retries_the_whole_batch():
    kinesis = FakeKinesis({SHARD_0: 6})
    seq = kinesis.sequence_numbers()
    function = FakeFunction(raise_on({seq[1]}))
    sqs = FakeSqs()
    stats = make_runner(
        kinesis,
        function,
        sqs,
        batch_size=3,
        bisect_batch_on_function_error=False,
        maximum_retry_attempts=2,
        on_failure_queue_url=QUEUE_URL,
    ).run_until_idle()
    assert function.calls == [seq[0:3]] * 3 + [seq[3:6]]
    assert (stats.bisections, stats.handler_errors, stats.retries) == (0, 3, 2)
    assert stats.records_delivered == 3
    ((_, message),) = sqs.sent
    assert batch_info(message)["batchSize"] == 3
    assert batch_info(message)["startSequenceNumber"] == seq[0]
    assert batch_info(message)["endSequenceNumber"] == seq[2]


# --- no destination ---------------------------------------------------------------------
def test_a_destination_without_a_client_is_refused():
    with pytest.raises(ValueError, match="no SQS client"):
        make_runner(
            FakeKinesis({SHARD_0: 1}), FakeFunction(succeed), None, on_failure_queue_url=QUEUE_URL
        )


@pytest.mark.parametrize(
    "sqs", [pytest.param(FakeSqs, id="client-without-url"), pytest.param(None, id="no-client")]
)
def test_without_on_failure_destination_records_are_dropped_and_processing_continues(sqs):
    # Given a record that always fails and no on-failure queue
    kinesis = FakeKinesis({SHARD_0: 6})
    seq = kinesis.sequence_numbers()
    function = FakeFunction(fail_items({seq[1]}))
    client = sqs() if sqs else None
    # When the runner drains the stream
    stats = make_runner(
        kinesis, function, client, batch_size=3, maximum_retry_attempts=1
    ).run_until_idle()
    # Then the failed range is dropped after its retry, nothing is sent, the shard moves on
    assert function.calls == [seq[0:3], seq[1:3], seq[3:6]]
    assert stats.records_delivered == 1 + 3
    assert stats.records_to_on_failure == 2  # counted although nothing received them
    assert stats.on_failure_messages == 0
    if client is not None:
        assert client.sent == []


def test_maximum_retry_attempts_minus_one_retries_until_success():
    # Given a function that fails its first two invocations, then recovers
    kinesis = FakeKinesis({SHARD_0: 1})
    failures = [RuntimeError("transient"), RuntimeError("transient")]

    def respond(batch: Sequence[str]) -> dict[str, Any]:
        if failures:
            raise failures.pop()
        return succeed(list(batch))

    function = FakeFunction(respond)
    sqs = FakeSqs()
    # When the mapping retries without limit (MaximumRetryAttempts=-1)
    stats = make_runner(
        kinesis, function, sqs, maximum_retry_attempts=-1, on_failure_queue_url=QUEUE_URL
    ).run_until_idle()
    # Then the record is delivered on the third invocation and nothing is discarded
    assert stats.invocations == 3
    assert stats.records_delivered == 1
    assert sqs.sent == []
