"""Contract tests: the real handler behind the local API Gateway adapter, over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import threading
from typing import Any

import pytest

from ocsf_detect import names


@pytest.fixture(scope="module")
def server(detector, bundle_dir):
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    from ocsf_detect_tools.localapi import make_server

    handler.settings = ApiSettings(**{names.ENV_BUNDLE_PATH: str(bundle_dir)})
    service.use_detector(detector)
    srv = make_server(handler.lambda_handler, "127.0.0.1", 0)
    srv.quiet = True  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()
    service.use_detector(None)


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | str | None = None,
    content_type: str | None = "application/json",
) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": content_type} if content_type and body is not None else {}
    payload = body.encode() if isinstance(body, str) else body
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return (
        resp.status,
        {k.lower(): v for k, v in resp.getheaders()},
        json.loads(raw) if raw else None,
    )


@pytest.fixture(scope="module")
def normal_event(live_traffic) -> dict[str, Any]:
    return next(e for e in live_traffic.events if e["class_uid"] == 4001)


def test_health_reports_ready_bundle(server, detector):
    status, headers, body = call(server, "GET", "/v1/health")
    assert status == 200
    assert body == {
        "status": "ok",
        "ready": True,
        "bundle_version": detector.bundle_version,
        "load_ms": pytest.approx(detector.load_ms, abs=1e-3),
    }
    assert headers["x-request-id"]
    assert "access-control-allow-origin" not in headers


def test_model_is_the_public_summary(server, detector):
    status, _, body = call(server, "GET", "/v1/model")
    assert status == 200
    assert body["bundle_version"] == detector.bundle_version
    assert sorted(c["class_uid"] for c in body["classes"]) == detector.classes


def test_openapi_is_served(server):
    status, _, body = call(server, "GET", "/v1/openapi.json")
    assert status == 200
    assert {"/v1/predict", "/v1/predict/batch", "/v1/health", "/v1/model"} <= set(body["paths"])


def test_predict_scores_one_event(server, normal_event, detector):
    status, headers, body = call(server, "POST", "/v1/predict", json.dumps(normal_event))
    assert status == 200
    assert body["status"] == "scored"
    assert body["class_uid"] == 4001
    assert body["bundle_version"] == detector.bundle_version
    assert headers["content-type"].startswith("application/json")


def test_batch_scores_each_event_in_order(server, live_traffic):
    events = [*live_traffic.events[:50], 7, {"class_uid": 4001}]
    status, _, body = call(server, "POST", "/v1/predict/batch", json.dumps({"events": events}))
    assert status == 200
    assert len(body["results"]) == 52
    assert body["results"][-2]["reason"] == "not_an_object"
    assert body["results"][-1] == {
        **body["results"][-1],
        "reason": "missing_field",
        "field": "time",
    }
    assert body["totals"]["events"] == 52


def test_unsupported_class_is_422_with_reason(server):
    status, _, body = call(server, "POST", "/v1/predict", '{"class_uid": 1001, "time": 1}')
    assert status == 422
    assert (body["reason"], body["field"]) == ("unsupported_class", "class_uid")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error"),
    [
        ("", "application/json", 400, "empty_body"),
        ("{", "application/json", 400, "invalid_json"),
        ('{"class_uid": NaN}', "application/json", 400, "invalid_json"),
        ('{"class_uid": 4001, "time": 1e999}', "application/json", 400, "invalid_json"),
        ("[" * 5000 + "]" * 5000, "application/json", 400, "invalid_json"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
        ('{"class_uid": 4001}', "text/plain", 415, "unsupported_media_type"),
        ("class_uid=4001", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ("[1, 2]", "application/json", 422, "validation_error"),
        ('"just a string"', "application/json", 422, "validation_error"),
    ],
)
def test_bad_single_requests_get_clean_4xx(server, body, content_type, status, error):
    got, headers, answer = call(server, "POST", "/v1/predict", body, content_type)
    assert (got, answer["error"]) == (status, error), answer
    assert answer["request_id"] == headers["x-request-id"]


@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.api+json", "Application/JSON; charset=utf-8", "application/json;q=1"],
)
def test_every_json_media_type_the_docs_accept_is_scored(server, normal_event, content_type):
    status, _, body = call(server, "POST", "/v1/predict", json.dumps(normal_event), content_type)
    assert (status, body["status"]) == (200, "scored"), body


def test_deep_event_within_json_limits_is_rejected_too_deep(server):
    deep: Any = 1
    for _ in range(200):
        deep = {"x": deep}
    event = {"class_uid": 4001, "time": 1767225600000, "unmapped": deep}
    status, _, body = call(server, "POST", "/v1/predict", json.dumps(event))
    assert (status, body["reason"]) == (422, "too_deep")


def test_huge_integers_and_unicode_are_read(server, normal_event):
    # Given an event with a 100-digit number in an unused field and non-ASCII text
    event = {**normal_event, "unmapped": {"n": 10**100}, "message": "connexion refusée ✓ 𝄞"}
    # When it is scored
    status, _, body = call(server, "POST", "/v1/predict", json.dumps(event, ensure_ascii=False))
    # Then it is scored like any other
    assert status == 200
    assert body["status"] == "scored"


def test_huge_number_in_a_used_field_is_not_a_5xx(server, normal_event):
    event = {**normal_event, "time": 10**40}
    status, _, body = call(server, "POST", "/v1/predict", json.dumps(event))
    assert status == 422, body
    assert (body["reason"], body["field"]) == ("number_out_of_range", "time")


def test_batch_schema_violation_names_the_field(server):
    status, _, body = call(server, "POST", "/v1/predict/batch", '{"events": "nope"}')
    assert status == 422
    assert body["field"] == "body.events"


def test_batch_of_1001_events_is_413(server):
    events = [{"class_uid": 4001, "time": 1767225600000}] * 1001
    status, _, body = call(server, "POST", "/v1/predict/batch", json.dumps({"events": events}))
    assert (status, body["error"]) == (413, "payload_too_large")


def test_body_over_10_mb_is_413_before_the_function(server):
    body = b'{"events": ["' + b"x" * (10 * 1024 * 1024) + b'"]}'
    status, _, answer = call(server, "POST", "/v1/predict/batch", body)
    assert (status, answer["error"]) == (413, "payload_too_large")


def test_unknown_route_is_404(server):
    status, _, body = call(server, "GET", "/v1/nothing")
    assert (status, body["error"]) == (404, "not_found")


def test_wrong_method_is_405_with_allow(server):
    status, headers, body = call(server, "PUT", "/v1/health", "{}")
    assert (status, body["error"]) == (405, "method_not_allowed")
    assert headers["allow"] == "GET"
