"""Feedback that changes the detector, end to end against moto over HTTP: a finding the
stream published is judged benign through POST /v1/feedback; its near-duplicates then stop
alerting in the API at once and in the stream function after the overlay's refresh, while
a different anomaly still alerts."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import orjson
import pytest

from ocsf_detect import names
from ocsf_detect.detector.overlay import Judged
from ocsf_detect.detector.scorer import Detector, Scored
from ocsf_detect.feedback import overlay_prefix, subject_uid, verdict_key
from ocsf_detect_tools.replay import create_resources, drain_queue
from ocsf_detect_tools.runner import LocalContext
from tests.conftest import EVENTS_DIR, api_context
from tests.integration.test_stream_function import b64, kinesis_event

REFRESH_S = 1.0


@pytest.fixture
def stack(emulator_url, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The stream function's resources and a feedback bucket, both functions pointed at
    them; the API with a detector of its own."""
    from prediction_api import adapters as api_adapters
    from prediction_api import handler as api
    from prediction_api import service
    from prediction_api.settings import ApiSettings
    from stream_scoring import adapters

    res = create_resources()
    bucket = f"ocsf-detect-feedback-{uuid.uuid4().hex[:12]}"  # the emulator outlives a test
    for key, value in res.handler_environment(bundle_dir).items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=bucket)
    monkeypatch.setenv(names.ENV_FEEDBACK_BUCKET, bucket)
    monkeypatch.setenv(names.ENV_FEEDBACK_REFRESH_S, str(REFRESH_S))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    adapters.reset()
    api_adapters.reset()
    monkeypatch.setattr(
        api,
        "settings",
        ApiSettings(
            **{
                names.ENV_BUNDLE_PATH: str(bundle_dir),
                names.ENV_FEEDBACK_BUCKET: bucket,
                names.ENV_FEEDBACK_REFRESH_S: str(REFRESH_S),
            }
        ),
    )
    service.use_detector(Detector.load(bundle_dir))
    yield res, api, bucket
    service.use_detector(None)
    adapters.reset()
    api_adapters.reset()


def api_call(api: Any, method: str, path: str, body: Any) -> tuple[int, Any]:
    event = json.loads((EVENTS_DIR / "api" / "predict.json").read_text())
    event.update(
        path=path, resource=path, httpMethod=method, body=json.dumps(body) if body else None
    )
    event["requestContext"].update(resourcePath=path, httpMethod=method, path=f"/prod{path}")
    response = api.lambda_handler(event, api_context())
    return response["statusCode"], json.loads(response["body"])


def stream_batch(events: list[dict[str, Any]]) -> dict[str, int]:
    from stream_scoring import handler

    seen: list[Any] = []
    remove = handler.add_result_observer(seen.append)
    try:
        response = handler.lambda_handler(
            kinesis_event([b64(orjson.dumps(e)) for e in events]), LocalContext()
        )
    finally:
        remove()
    assert response == {"batchItemFailures": []}
    return seen[0].counts()


def near_duplicates(event: dict[str, Any], n: int = 4) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        e = copy.deepcopy(event)
        e["metadata"]["uid"] = str(uuid.UUID(int=1000 + i))
        e["time"] = event["time"] + (i + 1) * 60_000
        if isinstance(e.get("src_endpoint"), dict) and "port" in e["src_endpoint"]:
            e["src_endpoint"]["port"] = 41_000 + 31 * i
        out.append(e)
    return out


def test_a_benign_verdict_silences_near_duplicates_in_the_api_and_the_stream(
    stack, detector: Detector, live_traffic
) -> None:
    res, api, bucket = stack
    # Given a false positive (labelled benign by the generator) and a port scan probe,
    # both alerting in the stream, with their findings on SNS
    outcomes = detector.score_objects(live_traffic.events)
    pairs = list(zip(outcomes, live_traffic.labels, strict=True))
    judged = next(
        o.event
        for o, label in pairs
        if isinstance(o, Scored) and o.is_anomaly and label.attack_type == "benign"
    )
    other = next(
        o.event
        for o, label in pairs
        if isinstance(o, Scored) and o.is_anomaly and label.attack_type == "port_scan"
    )
    counts = stream_batch([judged, other])
    assert counts["anomalies"] == 2
    findings = {m["metadata"]["correlation_uid"]: m for m in drain_queue(res.sns_queue_url)}
    finding = findings[judged["metadata"]["uid"]]
    reasons = [r["text"] for r in finding["unmapped"]["explanation"]]
    assert ("Why: " + "; ".join(reasons) if reasons else "No single feature") in finding[
        "finding_info"
    ]["desc"]

    # When an analyst posts the finding, as received, with a benign verdict
    uid = finding["finding_info"]["uid"]
    status, body = api_call(
        api,
        "POST",
        "/v1/feedback",
        {"finding_uid": uid, "verdict": "benign", "note": "known job", "finding": finding},
    )

    # Then the verdict and the overlay vector are in the bucket
    assert status == 200, body
    assert body["overlay_vectors"] == 1
    assert body["class_uid"] == judged["class_uid"]
    s3 = boto3.client("s3")
    key = verdict_key(subject_uid(judged))
    kept = orjson.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (kept["verdict"], kept["note"], kept["event"]) == ("benign", "known job", judged)
    # with who sent it, as API Gateway authenticated the caller
    assert kept["recorded_by"] == "arn:aws:iam::123456789012:user/analyst"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=overlay_prefix(body["bundle_version"]))
    assert listed["KeyCount"] == 1
    # ...the API stops alerting on its near-duplicates at once, not on the other anomaly
    copies = near_duplicates(judged)
    status, batch = api_call(api, "POST", "/v1/predict/batch", {"events": [*copies, other]})
    assert status == 200
    assert [r["is_anomaly"] for r in batch["results"]] == [False] * len(copies) + [True]
    assert all(r["explanation"] == [] for r in batch["results"][:-1])
    # ...and so does the stream function once its overlay is refreshed
    time.sleep(REFRESH_S + 0.1)
    counts = stream_batch([*copies, other])
    assert counts["anomalies"] == 1
    published = drain_queue(res.sns_queue_url)
    assert {m["metadata"]["correlation_uid"] for m in published} <= {other["metadata"]["uid"]}


def test_a_malicious_verdict_is_kept_as_a_label_and_silences_nothing(stack, live_traffic):
    _, api, bucket = stack
    event = next(e for e in live_traffic.events if e["class_uid"] == 4001)
    status, body = api_call(
        api,
        "POST",
        "/v1/feedback",
        {"finding_uid": "f-malicious-1", "verdict": "malicious", "event": event},
    )
    assert status == 200, body
    assert body["overlay_vectors"] == 0
    s3 = boto3.client("s3")
    key = verdict_key(subject_uid(event))
    kept = orjson.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert kept["verdict"] == "malicious"
    # A finding whose uid does not match, or neither finding nor event, is refused
    status, body = api_call(
        api,
        "POST",
        "/v1/feedback",
        {"finding_uid": "f-2", "verdict": "benign", "finding": {"finding_info": {"uid": "x"}}},
    )
    assert (status, body["error"], body["field"]) == (
        422,
        "invalid_feedback",
        "finding.finding_info.uid",
    )
    status, body = api_call(
        api, "POST", "/v1/feedback", {"finding_uid": "f-2", "verdict": "benign"}
    )
    assert (status, body["error"]) == (422, "invalid_feedback")


def _verdict(finding_uid: str, kind: str, event: dict[str, Any], bundle_version: str) -> Any:
    from ocsf_detect.feedback import Verdict

    return Verdict(
        finding_uid=finding_uid,
        verdict=kind,
        class_uid=4001,
        event=event,
        bundle_version=bundle_version,
        received_ms=0,
    )


def _racing_stores(bucket: str) -> tuple[Any, Any]:
    """Two analysts' stores on one bucket, each with a client of its own."""
    from ocsf_detect.feedback import S3FeedbackStore

    return (
        S3FeedbackStore(boto3.client("s3"), bucket),
        S3FeedbackStore(boto3.client("s3"), bucket),
    )


def _on_put(store: Any, key: str, action: Any) -> None:
    """Run ``action`` once, just before ``store`` puts the object ``key``."""
    done: list[bool] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        if params.get("Key") == key and not done:
            done.append(True)
            action()

    store._s3.meta.events.register("before-parameter-build.s3.PutObject", hook)


@pytest.mark.parametrize("interleaving", ["malicious inside benign", "benign inside malicious"])
def test_a_benign_and_a_malicious_verdict_sent_at_once_leave_no_vector(
    stack, live_traffic, interleaving: str
):
    """Two analysts judge one event at once, one benign, one malicious, and the malicious
    verdict is written last: its event must not stay silenced by the benign one's vector,
    however the two requests interleave."""
    from ocsf_detect.feedback import overlay_key

    _, _, bucket = stack
    event = next(e for e in live_traffic.events if e["class_uid"] == 4001)
    vector = Judged(4001, np.ones(8, dtype=np.float32))

    def verdict(kind: str) -> Any:
        return _verdict(f"f-race-{kind}", kind, event, "1.0.0+race")

    benign_store, malicious_store = _racing_stores(bucket)
    subject = subject_uid(event)
    vector_key = overlay_key("1.0.0+race", 4001, subject)
    if interleaving == "malicious inside benign":
        # benign keeps its verdict; the malicious request runs whole; then benign's vector
        def malicious() -> None:
            malicious_store.record(verdict("malicious"), vector)

        _on_put(benign_store, vector_key, malicious)
        benign_store.record(verdict("benign"), vector)
    else:
        # malicious takes the vector out; the benign request runs whole; then malicious
        # keeps its verdict
        def benign() -> None:
            benign_store.record(verdict("benign"), vector)

        _on_put(malicious_store, verdict_key(subject), benign)
        malicious_store.record(verdict("malicious"), vector)
    s3 = boto3.client("s3")
    kept = orjson.loads(s3.get_object(Bucket=bucket, Key=verdict_key(subject))["Body"].read())
    assert kept["verdict"] == "malicious"
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=vector_key)
    assert listed["KeyCount"] == 0


def test_a_malicious_verdict_reaches_no_other_events_vector_through_its_uid(stack, live_traffic):
    from ocsf_detect.feedback import S3FeedbackStore, overlay_key

    _, _, bucket = stack
    first, second = [e for e in live_traffic.events if e["class_uid"] == 4001][:2]
    store = S3FeedbackStore(boto3.client("s3"), bucket)
    vector = Judged(4001, np.ones(8, dtype=np.float32))
    store.record(_verdict("f-1", "benign", first, "1.0.0+uid"), vector)
    # a malicious verdict on another event, sent with the first event's subject as its
    # finding uid, takes out only its own event's vector
    store.record(_verdict(subject_uid(first), "malicious", second, "1.0.0+uid"), vector)
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=overlay_prefix("1.0.0+uid"))
    assert [o["Key"] for o in listed["Contents"]] == [
        overlay_key("1.0.0+uid", 4001, subject_uid(first))
    ]


def test_verdicts_on_two_events_of_one_alert_group_are_kept_apart(stack, live_traffic):
    _, api, bucket = stack
    # Given two events of one alert group: their messages share the group's uid
    first, second = [e for e in live_traffic.events if e["class_uid"] == 4001][:2]
    group = "0f7ad2c5-4d8e-5d63-9a55-2a64b0a1c1e2"

    def judge(event: dict[str, Any], verdict: str) -> dict[str, Any]:
        status, body = api_call(
            api, "POST", "/v1/feedback", {"finding_uid": group, "verdict": verdict, "event": event}
        )
        assert status == 200, body
        return body

    # When both are judged benign, each keeps its verdict and its overlay vector
    judge(first, "benign")
    assert judge(second, "benign")["overlay_vectors"] == 2
    s3 = boto3.client("s3")
    for event in (first, second):
        key = verdict_key(subject_uid(event))
        assert orjson.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["event"] == event
    # and judging the first again replaces its own objects, adding none
    assert judge(first, "benign")["overlay_vectors"] == 2
    # Then a malicious verdict on the second takes out its vector only, and a vector an
    # earlier version stored under the finding uid
    from ocsf_detect.feedback import overlay_key

    legacy = overlay_key(judge(first, "benign")["bundle_version"], 4001, group)
    s3.put_object(Bucket=bucket, Key=legacy, Body=b'{"vector": [0.0]}')
    body = judge(second, "malicious")
    assert body["overlay_vectors"] == 1
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=overlay_prefix(body["bundle_version"]))
    assert [o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]] == [
        f"{subject_uid(first)}.json"
    ]


def test_feedback_the_caller_got_wrong_is_4xx_and_a_failing_bucket_is_503(
    stack, live_traffic, monkeypatch
):
    from prediction_api import adapters as api_adapters

    from ocsf_detect.feedback import S3FeedbackStore

    _, api, _ = stack
    event = next(e for e in live_traffic.events if e["class_uid"] == 4001)
    # A finding whose evidence is not an object: the caller's mistake, a 422
    for evidence in (None, "text"):
        finding = {"finding_info": {"uid": "f-9"}, "evidences": [evidence]}
        status, body = api_call(
            api,
            "POST",
            "/v1/feedback",
            {"finding_uid": "f-9", "verdict": "benign", "finding": finding},
        )
        assert (status, body["error"], body["field"]) == (
            422,
            "invalid_feedback",
            "finding.evidences",
        )
    # An event over the size cap, as /v1/predict answers it: a 413, and nothing is kept
    huge = {**event, "unmapped": {"blob": "x" * (2 * 1024 * 1024)}}
    status, body = api_call(
        api, "POST", "/v1/feedback", {"finding_uid": "f-10", "verdict": "benign", "event": huge}
    )
    assert (status, body["error"]) == (413, "too_large")
    # A bucket that fails the write (here: it does not exist): a 503 that says a retry is
    # safe, not a 500
    broken = S3FeedbackStore(boto3.client("s3"), f"no-such-bucket-{uuid.uuid4().hex[:8]}")

    def failing_store(bucket: str | None) -> S3FeedbackStore:
        return broken

    failing_store.cache_clear = lambda: None  # type: ignore[attr-defined]  # as the real one
    monkeypatch.setattr(api_adapters, "get_feedback_store", failing_store)
    status, body = api_call(
        api, "POST", "/v1/feedback", {"finding_uid": "f-11", "verdict": "benign", "event": event}
    )
    assert (status, body["error"]) == (503, "feedback_unavailable")
    assert "send the same request again" in body["message"]
