"""The stream function's S3 bundle, downloaded by a batch (not at init), keeps to the
invocation: against a bucket that accepts the connection and never answers (a server on
loopback), the invocation fails saying why before its time is up, instead of Lambda
stopping it. The batch is then retried as after any failure. (That a download stopped
between reads leaves no partial file is test_bundle_loading.py's.)"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from ocsf_detect import names
from ocsf_detect.bundlefetch import BundleSourceError
from ocsf_detect_tools.localcontext import LocalContext

BUNDLE_URI = "s3://models/bundles/1.0.0/bundle.zip"


def one_record_batch() -> dict:
    sequence = "49590338271490256608559692538361571095921575989136500000"
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "0",
                    "sequenceNumber": sequence,
                    "data": base64.b64encode(b'{"class_uid": 4001}').decode(),
                    "approximateArrivalTimestamp": 1730000000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/stream-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/events",
            }
        ]
    }


@pytest.fixture
def cold_stream(tmp_root: Path, monkeypatch: pytest.MonkeyPatch, stalled_endpoint: str):
    """A fresh execution environment whose bundle is an S3 archive in the stalled bucket."""
    for key, value in {
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        names.ENV_BUNDLE_S3_URI: BUNDLE_URI,
        names.ENV_ALERT_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:findings",
        names.ENV_EVENT_BUS_NAME: "findings",
        names.ENV_QUARANTINE_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/1/quarantine",
    }.items():
        monkeypatch.setenv(key, value)
    from stream_scoring import adapters, handler

    adapters.reset()
    yield handler
    adapters.reset()


def invoke(handler, timeout_s: float) -> tuple[BundleSourceError, float]:
    context = LocalContext(function_name="stream-scoring", timeout_s=timeout_s)
    start = time.monotonic()
    with pytest.raises(BundleSourceError) as caught:
        handler.lambda_handler(one_record_batch(), context)
    return caught.value, time.monotonic() - start


def test_a_stalled_bundle_download_fails_the_invocation_within_its_time(cold_stream) -> None:
    from stream_scoring import adapters

    # A GET of the bundle gets 2 + 5 s an attempt and three attempts. With 11 s (8 s
    # before the reserve) the first attempt times out after 5 s and no second is made:
    # the invocation fails, naming the bundle, about 6 s before Lambda would stop it
    error, took = invoke(cold_stream, timeout_s=11.0)
    assert BUNDLE_URI in error.message
    assert 4.5 < took < 11.0 - adapters.BUNDLE_RESERVE_S
    # With less time left than one attempt, none is made, and it says so
    error, took = invoke(cold_stream, timeout_s=6.0)
    assert "not attempted" in error.message
    assert took < 1.0


def test_a_read_of_the_bundle_is_refused_only_within_an_invocation_that_could_not_wait() -> None:
    from stream_scoring import adapters

    from ocsf_detect import deadline
    from ocsf_detect.deadline import OutOfTimeError

    # At init (SnapStart's snapshot, or a load before the first batch) nothing is refused
    adapters.before_bundle_read()
    try:
        reserve, read = adapters.BUNDLE_RESERVE_S, deadline.BUNDLE_READ_S
        deadline.start(int((reserve + read + 2) * 1000), reserve)
        adapters.before_bundle_read()  # a read's wait still fits
        deadline.start(int((reserve + read - 1) * 1000), reserve)
        with pytest.raises(OutOfTimeError, match="bundle download not attempted"):
            adapters.before_bundle_read()
    finally:
        deadline.end()
    adapters.before_bundle_read()


def test_the_stream_functions_bundle_download_checks_the_invocation_before_each_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The handler's loader passes the check and the bounded client to the download."""
    from stream_scoring import adapters

    from ocsf_detect.detector.scorer import Detector

    monkeypatch.setenv(names.ENV_BUNDLE_S3_URI, BUNDLE_URI)
    monkeypatch.setenv(names.ENV_ALERT_TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:f")
    monkeypatch.setenv(names.ENV_EVENT_BUS_NAME, "findings")
    monkeypatch.setenv(names.ENV_QUARANTINE_QUEUE_URL, "https://sqs.us-east-1.amazonaws.com/1/q")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    seen: dict[str, object] = {}

    def fake_open_detector(**kwargs: object) -> Detector:
        seen.update(kwargs)
        raise BundleSourceError("stop here")

    monkeypatch.setattr(adapters, "open_detector", fake_open_detector)
    adapters.reset()
    try:
        with pytest.raises(BundleSourceError):
            adapters.get_detector()
        assert seen["before_read"] is adapters.before_bundle_read
        assert seen["s3"] is adapters.get_bundle_client()
    finally:
        adapters.reset()


def test_a_deadline_holds_only_while_a_cold_detector_loads_in_an_invocation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from functools import lru_cache

    from stream_scoring import handler

    from ocsf_detect import deadline

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    seen: list[float | None] = []

    class Loaded:
        bundle_version = "1.0.0"
        load_ms = 1.0

    @lru_cache(maxsize=1)
    def get_detector() -> Loaded:
        seen.append(deadline.current())
        return Loaded()

    monkeypatch.setattr(handler, "get_detector", get_detector)
    # At init (SnapStart's snapshot, OCSF_DETECT_LOAD_BUNDLE_AT_INIT): no deadline
    handler._loaded_detector()
    assert seen == [None]
    # Cold in an invocation: the load keeps to its time, and the deadline ends with it
    get_detector.cache_clear()
    before = time.monotonic()
    handler._loaded_detector(10_000)
    assert len(seen) == 2
    assert seen[1] is not None
    assert 10.0 - 3.0 <= seen[1] - before < 10.0 - 3.0 + 1.0
    assert deadline.current() is None
    # Warm: nothing loads
    handler._loaded_detector(10_000)
    assert len(seen) == 2
    assert deadline.current() is None
