"""The prediction API handler, in-process, with the real-shaped events in events/api/."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocsf_detect import names
from tests.conftest import api_context

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events" / "api"
CASES = sorted(p.name.removesuffix(".expected.json") for p in EVENTS.glob("*.expected.json"))


@pytest.fixture(scope="module")
def api(detector, bundle_dir):
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    handler.settings = ApiSettings(**{names.ENV_BUNDLE_PATH: str(bundle_dir)})
    service.use_detector(detector)
    yield handler
    service.use_detector(None)


def invoke(api, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    response = api.lambda_handler(copy.deepcopy(event), api_context())
    body = response.get("body")
    return response, json.loads(body) if body else None


def headers_of(response: dict[str, Any]) -> dict[str, str]:
    """The headers API Gateway sends: both maps merged (multi-value ones joined)."""
    merged = dict(response.get("headers") or {})
    for name, values in (response.get("multiValueHeaders") or {}).items():
        merged[name] = ", ".join(values)
    return merged


def is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and is_subset(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(is_subset(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def sample(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / f"{name}.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_sample_event_gets_its_expected_response(api, case):
    expected = json.loads((EVENTS / f"{case}.expected.json").read_text())
    response, body = invoke(api, sample(case))
    assert response["statusCode"] == expected["statusCode"], body
    for name, value in expected.get("headers", {}).items():
        assert headers_of(response).get(name) == value
    assert is_subset(expected.get("body", {}), body), body


def test_predict_answers_every_documented_field(api, detector):
    response, body = invoke(api, sample("predict"))
    assert response["statusCode"] == 200
    assert set(body) == {
        "status",
        "class_uid",
        "class_name",
        "score",
        "threshold",
        "is_anomaly",
        "severity_id",
        "severity",
        "neighbors",
        "explanation",
        "bundle_version",
        "latency_ms",
    }
    assert (body["status"], body["class_uid"]) == ("scored", 4001)
    assert body["class_name"] == "Network Activity"
    assert body["bundle_version"] == detector.bundle_version
    assert body["score"] > 0
    assert body["threshold"] == detector.manifest.models["4001"].threshold
    assert isinstance(body["latency_ms"], float | int)
    names = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}
    assert body["severity"] == names[body["severity_id"]]
    assert body["is_anomaly"] == (body["score"] >= body["threshold"])
    assert len(body["neighbors"]) == 3


def test_predict_matches_the_detector_directly(api, detector):
    from ocsf_detect.detector.scorer import outcome_dict

    event = json.loads(sample("predict")["body"])
    _, body = invoke(api, sample("predict"))
    direct = outcome_dict(detector.score_objects([event])[0])
    assert body["score"] == direct["score"]
    assert body["severity"] == direct["severity"]


def test_batch_of_live_traffic_keeps_order_and_counts(api, live_traffic):
    events = live_traffic.events[:300]
    event = sample("predict_batch")
    event["body"] = json.dumps({"events": events})
    response, body = invoke(api, event)
    assert response["statusCode"] == 200
    assert len(body["results"]) == 300
    assert [r.get("class_uid") for r in body["results"]] == [e["class_uid"] for e in events]
    totals = body["totals"]
    assert totals["scored"] + totals["unsupported"] + totals["rejected"] == totals["events"] == 300


def test_batch_over_the_limit_is_413(api):
    event = sample("predict_batch")
    event["body"] = json.dumps({"events": [{"class_uid": 4001}] * 1001})
    response, body = invoke(api, event)
    assert response["statusCode"] == 413
    assert body["error"] == "payload_too_large"


def test_rejected_single_event_is_422_with_reason_and_field(api):
    event = sample("predict")
    event["body"] = json.dumps({"class_uid": 4001})
    response, body = invoke(api, event)
    assert response["statusCode"] == 422
    assert body == {**body, "error": "rejected_event", "reason": "missing_field", "field": "time"}


def test_selftest_payload_returns_the_detector_selftest(api, detector):
    answer = api.lambda_handler({names.SELFTEST_PAYLOAD_KEY: True}, api_context())
    assert answer == detector.selftest()


def test_internal_error_is_500_with_request_id_and_no_trace(api, monkeypatch):
    from prediction_api import service

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(service, "predict_one", broken)
    response, body = invoke(api, sample("predict"))
    assert response["statusCode"] == 500
    assert body["request_id"] == "req-predict"
    assert "secret" not in response["body"]
    assert "Traceback" not in response["body"]


def test_no_cors_headers_unless_configured(api):
    response, _ = invoke(api, sample("health"))
    assert not any(h.lower().startswith("access-control") for h in headers_of(response))


def test_cors_headers_when_configured(bundle_dir):
    # Given a container started with a CORS origin (settings are read at import)
    script = (
        "import json,sys; from prediction_api import handler;"
        "ev=json.load(open(sys.argv[1]));"
        "ev['headers']['Origin']='https://console.example.com';"
        "ev['multiValueHeaders']['Origin']=['https://console.example.com'];"
        "from ocsf_detect_tools.localapi import LocalContext;"
        "r=handler.lambda_handler(ev, LocalContext('c'));"
        "m=r.get('multiValueHeaders') or {};"
        "h={**(r.get('headers') or {}), **{k: v[0] for k, v in m.items()}};"
        "print(json.dumps(h))"
    )
    env = {
        **os.environ,
        names.ENV_CORS_ALLOW_ORIGIN: "https://console.example.com",
        names.ENV_BUNDLE_PATH: str(bundle_dir),
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    # When it answers a browser's health check
    out = subprocess.run(
        [sys.executable, "-c", script, str(EVENTS / "health.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    # Then the CORS headers name that origin
    headers = json.loads(out.stdout.strip().splitlines()[-1])
    assert headers["Access-Control-Allow-Origin"] == "https://console.example.com"


def test_health_does_not_import_the_detector(bundle_dir):
    script = (
        "import json,sys; from prediction_api import handler;"
        "ev=json.load(open(sys.argv[1]));"
        "from ocsf_detect_tools.localapi import LocalContext;"
        "r=handler.lambda_handler(ev, LocalContext('c'));"
        "mods=('onnxruntime','hnswlib','ocsf_detect.detector.scorer');"
        "heavy=[m for m in mods if m in sys.modules];"
        "out={'status': r['statusCode'], 'body': json.loads(r['body']), 'heavy': heavy};"
        "print(json.dumps(out))"
    )
    env = {
        **os.environ,
        names.ENV_BUNDLE_PATH: str(bundle_dir),
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", script, str(EVENTS / "health.json")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer == {"status": 200, "body": {**answer["body"], "ready": False}, "heavy": []}


def test_committed_openapi_document_is_current():
    from prediction_api.openapi import render

    committed = (REPO / "docs" / "openapi.json").read_text()
    assert committed == render(), "regenerate: python -m prediction_api.openapi > docs/openapi.json"


HOSTILE_EVENTS = {
    "class_uid of a non-ASCII digit": {"class_uid": "\u00b2", "time": 1741939200000},
    "time in year 1": {"class_uid": 4001, "time": "0001-01-01T00:00:00"},
    "integer beyond 64 bits": {
        "class_uid": 4001,
        "time": 1741939200000,
        "metadata": {"uid": "big-1"},
        "unmapped": {"trace": 2**80},
    },
    "class_uid beyond 64 bits": {"class_uid": 2**64, "time": 1741939200000},
    "class_uid 1e300": {"class_uid": 1e300, "time": 1741939200000},
    "class_uid a 23-digit string": {"class_uid": "9" * 23, "time": 1741939200000},
    "unpaired surrogate in the uid": {
        "class_uid": 4001,
        "time": 1741939200000,
        "metadata": {"uid": "\ud800"},
    },
}


@pytest.mark.parametrize("name", sorted(HOSTILE_EVENTS))
def test_hostile_events_are_answered_never_500(api, name):
    # Given an event a careless or hostile client may send, alone and inside a batch
    event = HOSTILE_EVENTS[name]
    single, batch = sample("predict"), sample("predict_batch")
    single["body"] = json.dumps(event)
    batch["body"] = json.dumps({"events": [event, {"class_uid": 4001}]})
    for request in (single, batch):
        # When it is scored, Then the answer is an outcome or a client error, never a 500
        response, body = invoke(api, request)
        assert response["statusCode"] in (200, 400, 422), (name, response["statusCode"], body)
