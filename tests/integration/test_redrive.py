"""Redrive against moto: the on-failure queue's pointers back through the stream function."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import boto3
import orjson
import pytest

from ocsf_detect.detector.scorer import Scored
from ocsf_detect_tools.redrive import redrive
from ocsf_detect_tools.replay import create_resources, drain_queue, put_events
from ocsf_detect_tools.runner import KinesisRunner, MappingConfig


@pytest.fixture
def resources(emulator_url, bundle_dir, monkeypatch):
    from stream_scoring import adapters

    res = create_resources()
    for key, value in res.handler_environment(bundle_dir).items():
        monkeypatch.setenv(key, value)
    adapters.reset()
    yield res
    adapters.reset()


def test_redrive_scores_what_the_on_failure_queue_points_to(resources, detector, live_traffic):
    from stream_scoring import handler

    # Given 60 events the function never scored: every invocation crashed, and the mapping
    # sent the batch's pointer to the on-failure queue
    events = live_traffic.events[:60]
    outcomes = detector.score_objects(events)
    anomalies = sum(1 for o in outcomes if isinstance(o, Scored) and o.is_anomaly)
    put_events([orjson.dumps(e) for e in events], resources.stream_name)
    sqs, kinesis = boto3.client("sqs"), boto3.client("kinesis")

    def down(event, context):
        raise RuntimeError("the function was broken")

    broken = MappingConfig(
        batch_size=100,
        maximum_retry_attempts=0,
        bisect_batch_on_function_error=False,
        on_failure_queue_url=resources.on_failure_queue_url,
    )
    stats = KinesisRunner(kinesis, resources.stream_name, down, broken, sqs=sqs).run_until_idle()
    assert stats.records_to_on_failure == 60
    # ... and two pointers that cannot be recovered: malformed, and to a deleted stream
    sqs.send_message(QueueUrl=resources.on_failure_queue_url, MessageBody="{not a pointer")
    gone = {
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": "1",
            "endSequenceNumber": "2",
            "batchSize": 2,
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/deleted-stream",
        }
    }
    sqs.send_message(QueueUrl=resources.on_failure_queue_url, MessageBody=json.dumps(gone))
    seen = []
    remove = handler.add_result_observer(seen.append)
    # When the pointers are redriven through the (repaired) function
    try:
        report = redrive(
            resources.on_failure_queue_url, handler.lambda_handler, kinesis=kinesis, sqs=sqs
        )
    finally:
        remove()
    # Then every pointed-to event is scored, its alerts published, and the rest reported
    assert (report.pointers, report.batches_redriven) == (3, 1)
    assert report.records_redriven == report.records_delivered == 60
    assert report.records_failed_again == 0
    assert sorted(u.reason for u in report.unrecovered) == ["malformed", "stream_gone"]
    counts = [r.counts() for r in seen]
    assert sum(c["events_in"] for c in counts) == 60
    assert sum(c["scored"] + c["unsupported"] + c["rejected"] for c in counts) == 60
    assert len(drain_queue(resources.sns_queue_url)) == anomalies
    # ... the redriven pointer is gone, the unrecovered ones stay for a person to look at
    left = sqs.receive_message(
        QueueUrl=resources.on_failure_queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )["Messages"]
    assert sorted(m["Body"][:14] for m in left) == ['{"KinesisBatch', "{not a pointer"]


def test_redrive_cli_reports_what_it_could_not_recover(resources, bundle_dir):
    from ocsf_detect_tools.cli import main

    # Given only a pointer to records that are not in the stream
    sqs = boto3.client("sqs")
    description = boto3.client("kinesis").describe_stream(StreamName=resources.stream_name)
    pointer = {
        "KinesisBatchInfo": {
            "shardId": description["StreamDescription"]["Shards"][0]["ShardId"],
            "startSequenceNumber": "49590338271490256608559692538361571095921575989136588898",
            "endSequenceNumber": "49590338271490256608559692538361571095921575989136588899",
            "batchSize": 2,
            "streamArn": description["StreamDescription"]["StreamARN"],
        }
    }
    sqs.send_message(QueueUrl=resources.on_failure_queue_url, MessageBody=json.dumps(pointer))
    out = io.StringIO()
    # When redrive runs from the command line
    with redirect_stdout(out):
        code = main(
            [
                "redrive", "--queue-url", resources.on_failure_queue_url,
                "--bundle", str(bundle_dir), "--json",
            ]
        )  # fmt: skip
    # Then it says so, and why, and exits 1
    report = json.loads(out.getvalue())
    assert code == 1
    assert report["pointers"] == 1
    assert report["batches_redriven"] == 0
    (unrecovered,) = report["unrecovered"]
    assert unrecovered["reason"] in {"expired", "unreadable"}
    assert unrecovered["pointer"]["batch_size"] == 2
