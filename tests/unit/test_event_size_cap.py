"""One event size cap (OCSF_DETECT_MAX_EVENT_BYTES, at most 1 MiB) for the stream, the
API and ``ocsf-detect score``: a larger event is rejected ``too_large`` by all three."""

from __future__ import annotations

import json
import os

import orjson
import pytest

from ocsf_detect import names
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES
from tests.unit.test_api_handler import invoke, sample


def padded(event: dict, size: int) -> dict:
    """``event`` with an unmapped field making its JSON ``size`` bytes or more."""
    return {**event, "unmapped": {"note": "x" * size}}


@pytest.fixture
def api(detector, bundle_dir):
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    previous = handler.settings
    handler.settings = ApiSettings(**{names.ENV_BUNDLE_PATH: str(bundle_dir)})
    service.use_detector(detector)
    yield handler
    service.use_detector(None)
    handler.settings = previous


def test_the_api_answers_413_too_large_for_an_event_the_stream_would_reject(api):
    event = padded(json.loads(sample("predict")["body"]), 2 * 1024 * 1024)
    response, body = invoke(api, {**sample("predict"), "body": json.dumps(event)})
    assert response["statusCode"] == 413
    assert body["error"] == "too_large"
    assert body["reason"] == "too_large"
    assert f"the limit is {MAX_EVENT_BYTES:,}" in body["message"]


def test_a_batch_rejects_only_its_event_over_the_cap(api):
    event = json.loads(sample("predict")["body"])
    request = {
        **sample("predict_batch"),
        "body": json.dumps({"events": [event, padded(event, MAX_EVENT_BYTES)]}),
    }
    response, body = invoke(api, request)
    assert response["statusCode"] == 200
    first, second = body["results"]
    assert first["status"] == "scored"
    assert (second["status"], second["reason"]) == ("rejected", "too_large")
    assert body["totals"]["rejected"] == 1


def test_the_stream_and_the_api_read_one_setting(monkeypatch):
    from prediction_api.settings import ApiSettings
    from stream_scoring.settings import StreamSettings

    from ocsf_detect.settings import EventSettings

    assert issubclass(StreamSettings, EventSettings)
    assert issubclass(ApiSettings, EventSettings)
    monkeypatch.setenv(names.ENV_MAX_EVENT_BYTES, "4096")
    assert ApiSettings().max_event_bytes == 4096
    monkeypatch.setenv(names.ENV_MAX_EVENT_BYTES, str(MAX_EVENT_BYTES + 1))
    with pytest.raises(ValueError, match="less than or equal to 1048576"):
        EventSettings()


def test_score_applies_the_same_cap(tmp_path, bundle_dir, live_traffic, monkeypatch, capsys):
    from ocsf_detect_tools.cli import main

    small = orjson.dumps(live_traffic.events[0])
    big = orjson.dumps(padded(live_traffic.events[0], 3000))
    events = tmp_path / "e.jsonl"
    events.write_bytes(small + b"\n" + big + b"\n" + small + b"\n")
    monkeypatch.setenv(names.ENV_MAX_EVENT_BYTES, "2000")
    argv = ["score", "--bundle", str(bundle_dir), "--events", str(events)]
    assert main(argv) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["status"] for r in rows] == ["scored", "rejected", "scored"]
    assert rows[1]["reason"] == "too_large"
    assert rows[1]["message"] == f"event is {len(big):,} bytes; the limit is 2,000"
    assert rows[0]["score"] == rows[2]["score"]
