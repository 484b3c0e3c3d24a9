"""The prediction API answers within its function's time when AWS does not answer at all:
a bucket or a table that accepts the connection and never replies (a server on loopback)
gets the route's documented 503 before the context runs out, not the function timing out
(which reaches the caller as API Gateway's own 5xx)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from ocsf_detect import names
from ocsf_detect_tools.localapi import proxy_event
from ocsf_detect_tools.localcontext import LocalContext


@pytest.fixture
def api(detector, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch, stalled_endpoint: str):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import adapters, handler, service
    from prediction_api.settings import ApiSettings, get_settings

    monkeypatch.setenv(names.ENV_ALERT_TABLE_NAME, "alert-state")
    get_settings.cache_clear()
    monkeypatch.setattr(
        handler,
        "settings",
        ApiSettings(
            **{names.ENV_BUNDLE_PATH: str(bundle_dir), names.ENV_FEEDBACK_BUCKET: "feedback"}
        ),
    )
    adapters.reset()
    service.use_detector(detector)
    yield handler
    service.use_detector(None)
    adapters.reset()
    get_settings.cache_clear()


def timed_call(
    api: Any, method: str, path: str, body: Any, timeout_s: float
) -> tuple[int, Any, float]:
    raw = orjson.dumps(body) if body is not None else None
    headers = [("Content-Type", "application/json")] if raw else []
    context = LocalContext(function_name="prediction-api", timeout_s=timeout_s)
    start = time.monotonic()
    response = api.lambda_handler(proxy_event(method, path, headers, raw), context)
    return response["statusCode"], orjson.loads(response["body"]), time.monotonic() - start


def test_a_stalled_feedback_bucket_is_a_503_within_the_functions_time(api, live_traffic) -> None:
    from prediction_api import adapters

    event = next(e for e in live_traffic.events if e["class_uid"] == 4001)
    request = {"finding_uid": "f-stall", "verdict": "malicious", "event": event}
    # Writes get 2 + 5 s an attempt and three attempts: 15 s and more against a bucket
    # that never answers. With 11 s (8 s before the reserve), the first attempt is made
    # and times out after 5 s; a second would outlast the request, so it is not made.
    status, body, took = timed_call(api, "POST", "/v1/feedback", request, timeout_s=11.0)
    assert (status, body["error"]) == (503, "feedback_unavailable")
    assert "send the same request again" in body["message"]
    assert 4.5 < took < 11.0 - adapters.RESERVE_S


def test_a_stalled_rule_table_is_a_503_within_the_functions_time(api) -> None:
    from prediction_api import adapters

    # An attempt gets 1 + 3 s and three are allowed: 9 s and more unchecked. With 8 s (5 s
    # before the reserve), the first times out after 3 s and no second is made.
    status, body, took = timed_call(api, "GET", "/v1/suppressions", None, timeout_s=8.0)
    assert (status, body["error"]) == (503, "suppressions_unavailable")
    assert "sending the same request again is safe" in body["message"]
    assert 2.5 < took < 8.0 - adapters.RESERVE_S
    # With less time left than one attempt, none is made: the answer is at once
    status, body, took = timed_call(api, "GET", "/v1/suppressions", None, timeout_s=6.0)
    assert (status, body["error"]) == (503, "suppressions_unavailable")
    assert "OutOfTimeError" in body["message"]
    assert took < 1.0


def test_concurrent_requests_keep_their_own_deadlines() -> None:
    """The local server runs requests in threads: one request's end leaves another's
    deadline in place."""

    from prediction_api import adapters

    from ocsf_detect import deadline

    adapters.start_request(10_000)
    seen: list[object] = []

    def other_request() -> None:
        adapters.start_request(5_000)
        adapters.end_request()
        seen.append(deadline.current())

    thread = threading.Thread(target=other_request)
    thread.start()
    thread.join()
    assert seen == [None]
    mine = deadline.current()
    assert mine is not None
    assert mine - time.monotonic() > 10.0 - adapters.RESERVE_S - 1.0
    adapters.end_request()


@pytest.fixture
def cold_api(tmp_root: Path, monkeypatch: pytest.MonkeyPatch, stalled_endpoint: str):
    """A fresh container whose bundle is an S3 archive in the stalled bucket."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import adapters, handler, service
    from prediction_api.settings import ApiSettings

    uri = "s3://models/bundles/1.0.0/bundle.zip"
    monkeypatch.setattr(handler, "settings", ApiSettings(**{names.ENV_BUNDLE_S3_URI: uri}))
    adapters.reset()
    service.use_detector(None)
    yield handler
    service.use_detector(None)
    adapters.reset()


def test_a_stalled_bundle_download_is_a_503_within_the_functions_time(
    cold_api, tmp_root: Path
) -> None:
    from prediction_api import adapters

    # A GET of the bundle gets 2 + 5 s and three attempts. With 11 s (8 s before the
    # reserve), the first attempt times out after 5 s and no second is made.
    status, body, took = timed_call(cold_api, "GET", "/v1/model", None, timeout_s=11.0)
    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert 4.5 < took < 11.0 - adapters.RESERVE_S
    # nothing of the download is left on the small /tmp
    assert not [p for p in tmp_root.rglob("*") if p.is_file()]
    # With less time left than one attempt, none is made: the answer is at once
    status, body, took = timed_call(cold_api, "GET", "/v1/model", None, timeout_s=6.0)
    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert took < 1.0


def test_a_read_of_the_bundle_is_refused_only_when_the_request_could_not_wait_for_it() -> None:
    from prediction_api import adapters

    from ocsf_detect import deadline

    # With no request under way (init, SnapStart's snapshot), nothing is refused
    adapters.before_bundle_read()
    try:
        adapters.start_request(int((adapters.RESERVE_S + deadline.BUNDLE_READ_S + 2) * 1000))
        adapters.before_bundle_read()  # a read's wait still fits
        adapters.start_request(int((adapters.RESERVE_S + deadline.BUNDLE_READ_S - 1) * 1000))
        with pytest.raises(adapters.OutOfTimeError, match="bundle download not attempted"):
            adapters.before_bundle_read()
    finally:
        adapters.end_request()
    adapters.before_bundle_read()
