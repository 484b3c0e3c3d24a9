"""The stream function against moto over HTTP: routing, quarantine, faults, replay CLI."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
from contextlib import redirect_stdout
from pathlib import Path

import boto3
import orjson
import pytest

from ocsf_detect import names
from ocsf_detect.detector.scorer import Scored
from ocsf_detect_tools.replay import create_resources, drain_queue, put_events
from ocsf_detect_tools.runner import KinesisRunner, LocalContext, MappingConfig
from tests.conftest import EVENTS_DIR

SHARD = "shardId-000000000000"


@pytest.fixture
def resources(emulator_url, bundle_dir, monkeypatch):
    from stream_scoring import adapters

    res = create_resources()
    for key, value in res.handler_environment(bundle_dir).items():
        monkeypatch.setenv(key, value)
    adapters.reset()
    yield res
    adapters.reset()


@pytest.fixture(scope="module")
def labelled(detector, live_traffic):
    """(normal events, anomalous events) of live traffic, as this session's bundle sees them."""
    outcomes = detector.score_objects(live_traffic.events)
    normal = [o.event for o in outcomes if isinstance(o, Scored) and not o.is_anomaly]
    anomalous = [o.event for o in outcomes if isinstance(o, Scored) and o.is_anomaly]
    assert len(anomalous) >= 3
    return normal, anomalous


def kinesis_event(datas: list[str]) -> dict:
    base = 49590338271490256608559692538361571095921575989136500000
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": str(i),
                    "sequenceNumber": str(base + i),
                    "data": d,
                    "approximateArrivalTimestamp": 1730000000.0 + i,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{SHARD}:{base + i}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events",
            }
            for i, d in enumerate(datas)
        ]
    }


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def test_mixed_batch_every_record_accounted_for(resources, labelled):
    from stream_scoring import handler

    # Given normal events, anomalies and every kind of poison record
    normal, anomalous = labelled
    oversize = orjson.dumps({"class_uid": 4001, "time": 1, "pad": "x" * (1024 * 1024 + 10)})
    poison = [
        "%%% not base64 %%%",
        b64(b"this is not json"),
        b64(orjson.dumps({"time": 1_730_000_000_000})),  # schema: no class_uid
        b64(oversize),
    ]
    datas = [b64(orjson.dumps(e)) for e in normal[:20]] + poison
    datas += [b64(orjson.dumps(e)) for e in anomalous[:3]]
    seen = []
    remove = handler.add_result_observer(seen.append)
    # When the handler processes the batch
    try:
        response = handler.lambda_handler(kinesis_event(datas), LocalContext())
    finally:
        remove()
    # Then nothing failed, every record has an outcome, alerts and poison landed
    assert response == {"batchItemFailures": []}
    counts = seen[0].counts()
    assert (
        counts["events_in"]
        == len(datas)
        == (counts["scored"] + counts["rejected"] + counts["unsupported"] + counts["failed"])
    )
    assert counts["anomalies"] >= 3
    assert counts["rejected"] == 4
    uids = {p.alert.uid for p in seen[0].planned if p.alert}
    sns = drain_queue(resources.sns_queue_url)
    eb = drain_queue(resources.eventbridge_queue_url)
    assert {m["finding_info"]["uid"] for m in sns} == uids
    assert {m["detail"]["finding_info"]["uid"] for m in eb} == uids
    assert all(m["source"] == names.EVENTBRIDGE_SOURCE for m in eb)
    quarantined = drain_queue(resources.quarantine_queue_url)
    reasons = sorted(m["reason"] for m in quarantined)
    assert reasons == sorted(["invalid_encoding", "invalid_json", "missing_field", "too_large"])
    big = next(m for m in quarantined if m["reason"] == "too_large")
    bucket, key = big["payload_s3_uri"].removeprefix("s3://").split("/", 1)
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body == oversize


def test_sample_event_gives_the_expected_response(resources):
    from stream_scoring import handler

    event = json.loads((EVENTS_DIR / "kinesis" / "batch.json").read_text())
    expected = json.loads((EVENTS_DIR / "kinesis" / "batch.expected.json").read_text())
    seen = []
    remove = handler.add_result_observer(seen.append)
    try:
        assert handler.lambda_handler(event, LocalContext()) == expected
    finally:
        remove()
    assert [s.value for s in seen[0].statuses[3:]] == [
        "rejected",
        "rejected",
        "rejected",
        "unsupported",
    ]
    assert all(s.value in {"scored", "anomaly"} for s in seen[0].statuses[:3])
    assert len(drain_queue(resources.quarantine_queue_url)) == 3


def test_producers_sample_every_event_of_every_format_has_one_outcome(resources):
    from stream_scoring import handler

    # Given the committed batch of producers' records: plain, KPL, gzip NDJSON, zlib,
    # NDJSON with a bad line, CloudWatch Logs data and control, a gzip bomb, a bad KPL MD5
    event = json.loads((EVENTS_DIR / "kinesis" / "producers.json").read_text())
    expected = json.loads((EVENTS_DIR / "kinesis" / "producers.expected.json").read_text())
    seen = []
    remove = handler.add_result_observer(seen.append)
    # When the handler processes it
    try:
        assert handler.lambda_handler(event, LocalContext()) == expected
    finally:
        remove()
    # Then every event inside every record has its own outcome
    (result,) = seen
    per_record: dict[int, list[str]] = {}
    for planned, status in zip(result.planned, result.statuses, strict=True):
        per_record.setdefault(planned.event.record, []).append(status.value)
    scored = {"scored", "anomaly"}
    assert [len(per_record.get(i, [])) for i in range(9)] == [1, 3, 2, 1, 3, 2, 0, 1, 1]
    assert all(s in scored for i in (0, 1, 2, 5) for s in per_record[i])
    assert per_record[3] == ["unsupported"]  # API Activity: no model in this bundle
    assert per_record[4][0] in scored
    assert per_record[4][1:] == ["rejected", "unsupported"]
    assert per_record[7] == per_record[8] == ["rejected"]
    counts = result.counts()
    assert (counts["records_in"], counts["events_in"], counts["control_messages"]) == (9, 14, 1)
    assert counts["events_in"] == sum(
        counts[k] for k in ("scored", "rejected", "unsupported", "failed")
    )
    # ... the rejected are quarantined with their reason and place in the record
    quarantined = drain_queue(resources.quarantine_queue_url)
    assert sorted((m["reason"], m["sub_index"]) for m in quarantined) == [
        ("invalid_aggregation", 0),
        ("invalid_json", 1),
        ("too_large", 0),
    ]
    # ... and alerts, if any, went to both channels with the same uids
    uids = {p.alert.uid for p in result.planned if p.alert}
    assert {m["finding_info"]["uid"] for m in drain_queue(resources.sns_queue_url)} == uids


def test_selftest_payload_publishes_nothing(resources, detector):
    from stream_scoring import handler

    answer = handler.lambda_handler({names.SELFTEST_PAYLOAD_KEY: True}, LocalContext())
    assert answer == detector.selftest()
    for queue_url in (
        resources.sns_queue_url,
        resources.eventbridge_queue_url,
        resources.quarantine_queue_url,
    ):
        assert drain_queue(queue_url, idle_polls=1) == []


@pytest.mark.parametrize(
    ("event", "says"),
    [
        ({"key1": "value1"}, "no Records list"),
        ({names.CLOSE_GROUPS_PAYLOAD_KEY: "true"}, "JSON booleans"),
        ({"Records": [{"eventSource": "aws:sqs", "body": "{}"}]}, "eventSource 'aws:sqs'"),
        ({"Records": [{"eventSource": "aws:kinesis"}]}, "has no kinesis object"),
    ],
)
def test_an_event_that_is_not_a_kinesis_batch_is_refused_plainly(resources, event, says):
    from stream_scoring import handler

    with pytest.raises(handler.NotAKinesisEventError, match=re.escape(says)):
        handler.lambda_handler(event, LocalContext())
    # an empty batch is a batch
    assert handler.lambda_handler({"Records": []}, LocalContext()) == {"batchItemFailures": []}


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_eventbridge_outage_is_retried_without_loss(resources, labelled, emulator_url):
    from stream_scoring import adapters, handler
    from stream_scoring.settings import get_settings

    # Given a stream with normal events and anomalies, and EventBridge down at first
    normal, anomalous = labelled
    events = normal[:10] + anomalous[:2] + normal[10:15] + anomalous[2:3]
    sequence_numbers = put_events([orjson.dumps(e) for e in events], resources.stream_name)
    real = adapters.get_adapters()
    broken = adapters.StreamAdapters(
        publishers=(
            real.publishers[0],
            adapters.EventBridgeAlertPublisher(
                boto3.client("events", endpoint_url=closed_port_url()), resources.bus_name
            ),
        ),
        quarantine=real.quarantine,
    )
    responses, seen = [], []

    def invoke(event, context):
        if not responses:  # the outage: first invocation only
            result = handler.handle(
                event, settings=get_settings(), detector=adapters.get_detector(), adapters=broken
            )
            seen.append(result)
            response = result.response()
        else:
            remove = handler.add_result_observer(seen.append)
            try:
                response = handler.lambda_handler(event, context)
            finally:
                remove()
        responses.append(response)
        return response

    # When the runner drives the function
    runner = KinesisRunner(
        boto3.client("kinesis"), resources.stream_name, invoke, MappingConfig(batch_size=100)
    )
    stats = runner.run_until_idle()
    # Then the first response reports from the first anomaly onward, and only that
    first_anomaly = sequence_numbers[10]
    failed = [f["itemIdentifier"] for f in responses[0]["batchItemFailures"]]
    assert failed == sequence_numbers[10:]
    assert failed[0] == first_anomaly
    assert responses[1] == {"batchItemFailures": []}
    assert stats.retries == 1
    assert stats.records_delivered == len(events)
    # ... the retry delivered every alert, duplicates carry identical uids, nothing lost
    final = {}
    for result in seen:
        for (_shard, sequence_number, _sub), s in zip(
            result.event_keys(), result.statuses, strict=True
        ):
            final[sequence_number] = s.value
    assert set(final) == set(sequence_numbers)
    assert "failed" not in final.values()
    expected_uids = {p.alert.uid for p in seen[0].planned if p.alert}
    sns = drain_queue(resources.sns_queue_url)
    eb = drain_queue(resources.eventbridge_queue_url)
    assert {m["detail"]["finding_info"]["uid"] for m in eb} == expected_uids
    assert {m["finding_info"]["uid"] for m in sns} == expected_uids
    assert len(sns) == 2 * len(expected_uids)  # published before and after the outage


def test_runner_bisects_and_sends_exhausted_records_to_on_failure(emulator_url):
    # Given a handler that crashes on one poison record
    res = create_resources()
    put_events([b'{"n": %d}' % i for i in range(8)], res.stream_name)
    seen_sizes = []

    def invoke(event, context):
        seen_sizes.append(len(event["Records"]))
        assert context.get_remaining_time_in_millis() > 0
        datas = [base64.b64decode(r["kinesis"]["data"]) for r in event["Records"]]
        if b'{"n": 5}' in datas:
            raise RuntimeError("boom")
        return {"batchItemFailures": []}

    runner = KinesisRunner(
        boto3.client("kinesis"),
        res.stream_name,
        invoke,
        MappingConfig(
            batch_size=8, maximum_retry_attempts=1, on_failure_queue_url=res.on_failure_queue_url
        ),
        sqs=boto3.client("sqs"),
    )
    # When the runner drives it
    stats = runner.run_until_idle()
    # Then the batch was bisected down to the poison record, which went to the destination
    assert seen_sizes[:3] == [8, 4, 4]
    assert stats.bisections >= 3
    assert stats.records_delivered == 7
    assert stats.records_to_on_failure == 1
    (message,) = drain_queue(res.on_failure_queue_url)
    info = message["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"


def test_replay_cli_invariants(emulator_url, bundle_dir, live_traffic, tmp_path: Path, monkeypatch):
    from ocsf_detect_tools.cli import main

    monkeypatch.setenv(names.ENV_GROUP_NOTIFY_MIN_COUNT, "1")  # every group speaks

    events = tmp_path / "events.jsonl"
    lines = [orjson.dumps(e) for e in live_traffic.events[:400]] + [b"not json", b'{"time": 1}']
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(
            [
                "replay",
                "--bundle",
                str(bundle_dir),
                "--events",
                str(events),
                "--batch-size",
                "100",
                "--json",
            ]
        )
    assert code == 0
    summary = json.loads(out.getvalue())
    assert summary["events_in"] == 402
    assert summary["events_in"] == (
        summary["scored"] + summary["rejected"] + summary["unsupported"] + summary["failed"]
    )
    assert summary["failed"] == 0
    assert summary["rejected"] == 2
    # every anomaly is in one alert group or suppressed; each group spoke on both channels
    assert summary["grouped_anomalies"] + summary["suppressed"] == summary["anomalies"]
    assert summary["alerts_sns"] == summary["alerts_eventbridge"] == summary["alert_groups"] > 0
    assert summary["quiet_groups"] == 0
    assert summary["notifications_sns"] == summary["notifications_eventbridge"]
    assert summary["quarantined"] == summary["rejected"]


def test_services_refusals_are_told_permanent_or_transient(resources):
    from stream_scoring.adapters import EventBridgeAlertPublisher, SnsAlertPublisher

    from ocsf_detect.stream import Alert

    def alert(uid: str, body: bytes) -> Alert:
        return Alert(uid, body, "High", 4, 4001, "v1")

    ok = alert("ok", b'{"class_uid": 2004}')
    # Given a message SNS refuses for its size and a detail EventBridge cannot read
    sns = SnsAlertPublisher(boto3.client("sns"), resources.topic_arn)
    events = EventBridgeAlertPublisher(boto3.client("events"), resources.bus_name)
    # When they are published beside a good one
    (too_long,) = sns.publish([ok, alert("big", b'"' + b"x" * 262_144 + b'"')])
    (malformed,) = events.publish([ok, alert("bad", b"{not json")])
    # Then each service's refusal is permanent, at its position, with the service's code
    assert (too_long.position, too_long.code, too_long.permanent) == (1, "InvalidParameter", True)
    assert (malformed.position, malformed.code, malformed.permanent) == (1, "MalformedDetail", True)


def test_an_alert_a_channel_refuses_for_good_is_kept_in_the_bucket(resources, labelled):
    from stream_scoring import adapters, handler
    from stream_scoring.settings import get_settings

    from ocsf_detect.stream import Alert

    # Given EventBridge that will never take one finding (its detail arrives unreadable)
    _normal, anomalous = labelled
    real = adapters.get_adapters()

    class Unreadable:
        channel = "eventbridge"

        def __init__(self, inner) -> None:
            self.inner = inner

        def publish(self, alerts):
            first, *rest = alerts
            bad = Alert(first.uid, b"{not json", first.severity, first.severity_id,
                        first.source_class_uid, first.bundle_version)  # fmt: skip
            return self.inner.publish([bad, *rest])

    broken = adapters.StreamAdapters(
        publishers=(real.publishers[0], Unreadable(real.publishers[1])),
        quarantine=real.quarantine,
    )
    event = kinesis_event([b64(orjson.dumps(e)) for e in anomalous[:2]])
    # When the batch is processed
    result = handler.handle(
        event, settings=get_settings(), detector=adapters.get_detector(), adapters=broken
    )
    # Then nothing fails: both alerts reached SNS, one reached EventBridge, and the
    # refused one is in the quarantine bucket with the reason
    assert result.response() == {"batchItemFailures": []}
    uids = [p.alert.uid for p in result.planned if p.alert]
    assert len(drain_queue(resources.sns_queue_url)) == 2
    assert [
        m["detail"]["finding_info"]["uid"] for m in drain_queue(resources.eventbridge_queue_url)
    ] == uids[1:]
    (message,) = drain_queue(resources.quarantine_queue_url)
    assert (message["reason"], message["channel"], message["finding_uid"]) == (
        "undeliverable", "eventbridge", uids[0],
    )  # fmt: skip
    assert "MalformedDetail" in message["message"]
    bucket, key = message["payload_s3_uri"].removeprefix("s3://").split("/", 1)
    assert key.startswith("quarantine/alerts/")
    stored = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    assert json.loads(stored)["finding_info"]["uid"] == uids[0]
    assert result.counts()["alerts_quarantined"] == 1


def test_a_batch_near_its_deadline_sends_nothing_and_fails_what_it_did_not_send(
    resources, labelled
):
    from stream_scoring import handler

    # Given a batch with anomalies and poison, and an invocation with 5 s left (under the
    # 13 s reserve: one request could outlast it)
    normal, anomalous = labelled
    datas = [b64(orjson.dumps(e)) for e in normal[:3]] + [b64(b"not json")]
    datas += [b64(orjson.dumps(e)) for e in anomalous[:2]]
    # When the handler runs
    response = handler.lambda_handler(kinesis_event(datas), LocalContext(timeout_s=5.0))
    # Then from the first record needing a delivery on, the records are reported, and
    # nothing was half-sent
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert len(failed) == 3
    first_poison = kinesis_event(datas)["Records"][3]["kinesis"]["sequenceNumber"]
    assert failed[0] == first_poison
    for queue_url in (resources.sns_queue_url, resources.quarantine_queue_url):
        assert drain_queue(queue_url, idle_polls=1) == []
