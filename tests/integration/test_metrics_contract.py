"""The EMF metrics the handlers print are the ones the CloudWatch alarms select.

An alarm on a metric nobody emits never fires; it matches only the exact namespace, metric
name and dimension set. Both handlers run in-process with metrics enabled and the
environment the deployed functions get (``infra/constructs/function.py``); their stdout
is parsed as EMF and compared with ``infra.constructs.metrics.app_metric``, the builder
the release alarms use (the dashboards' SEARCH schema names the same dimensions).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from ocsf_detect import names
from ocsf_detect_tools.localcontext import LocalContext
from tests.conftest import EVENTS_DIR

STREAM_ALARM_METRICS = (names.METRIC_SCORED, names.METRIC_ANOMALIES, names.METRIC_FAILED)
STREAM_DASHBOARD_METRICS = (
    names.METRIC_RECORDS_IN,
    names.METRIC_REJECTED,
    names.METRIC_QUARANTINED,
    names.METRIC_ALERTS_RECHECKED,
    names.METRIC_ALERTS_UNCHECKED,
)
API_ALARM_METRICS = (names.METRIC_PREDICTIONS, names.METRIC_PREDICTED_ANOMALIES)


def emf_blobs(stdout: str) -> list[dict[str, Any]]:
    """Every EMF document among the printed lines (log lines are JSON too, without _aws)."""
    blobs = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" in document:
            blobs.append(document)
    return blobs


def emitted(blobs: list[dict[str, Any]]) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """metric name -> one (namespace, dimensions, summed value) per EMF dimension set."""
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for blob in blobs:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: blob[name] for name in dimension_set}
                for metric in directive["Metrics"]:
                    value = blob[metric["Name"]]
                    total = sum(value) if isinstance(value, list) else value
                    out.setdefault(metric["Name"], []).append(
                        (directive["Namespace"], dimensions, total)
                    )
    return out


def alarm_selection(name: str, bundle_version: str) -> tuple[str, dict[str, str]]:
    """(namespace, dimensions) of the CloudWatch metric a release alarm watches."""
    from infra.constructs.metrics import app_metric

    metric = app_metric(name, bundle_version)
    return metric.namespace, dict(metric.dimensions or {})


def assert_selected_by_alarms(
    metrics: dict[str, list[tuple[str, dict[str, str], float]]],
    metric_names: tuple[str, ...],
    bundle_version: str,
) -> None:
    for name in metric_names:
        namespace, dimensions = alarm_selection(name, bundle_version)
        assert namespace == names.METRICS_NAMESPACE
        assert set(dimensions) == {
            names.METRIC_DIMENSION_SERVICE,
            names.METRIC_DIMENSION_BUNDLE_VERSION,
        }
        assert name in metrics, f"{name} is not emitted; emitted: {sorted(metrics)}"
        # exactly one series, and it is the one the alarm selects
        assert [(ns, dims) for ns, dims, _ in metrics[name]] == [(namespace, dimensions)]


@pytest.fixture
def metrics_enabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Powertools metrics on, with the deployed functions' service and namespace."""
    from aws_lambda_powertools import Metrics

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    monkeypatch.delenv("POWERTOOLS_DEV", raising=False)  # dev mode disables metrics too
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", names.SERVICE_NAME)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", names.METRICS_NAMESPACE)
    # Powertools keeps metrics in class attributes shared by every Metrics instance:
    # start and end with an empty set.
    Metrics().clear_metrics()
    yield
    Metrics().clear_metrics()


@pytest.fixture
def metrics_disabled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from aws_lambda_powertools import Metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    Metrics().clear_metrics()
    yield
    Metrics().clear_metrics()


@pytest.fixture
def stream_function(emulator_url, bundle_dir, metrics_enabled, monkeypatch):
    from stream_scoring import adapters, handler

    from ocsf_detect_tools.replay import create_resources

    for key, value in create_resources().handler_environment(bundle_dir).items():
        monkeypatch.setenv(key, value)
    adapters.reset()
    yield handler
    adapters.reset()


@pytest.fixture
def api_function(bundle_dir, detector, monkeypatch):
    """The API handler with the test bundle; metrics as the test's other fixtures set them."""
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    monkeypatch.setattr(
        handler, "settings", ApiSettings(**{names.ENV_BUNDLE_PATH: str(bundle_dir)})
    )
    previous = service.loaded_detector()
    service.use_detector(detector)
    yield handler
    service.use_detector(previous)


def test_stream_function_emits_what_its_alarms_select(stream_function, detector, capsys):
    # Given the committed sample Kinesis event (scored, rejected and unsupported records)
    event = json.loads((EVENTS_DIR / "kinesis" / "batch.json").read_text())
    seen = []
    remove = stream_function.add_result_observer(seen.append)
    capsys.readouterr()
    # When the handler processes it with metrics enabled
    try:
        response = stream_function.lambda_handler(
            event, LocalContext(function_name="ocsf-detect-stream-scoring")
        )
    finally:
        remove()
    metrics = emitted(emf_blobs(capsys.readouterr().out))
    # Then the alarms' and dashboards' metrics are there, in the series they select
    assert response == {"batchItemFailures": []}
    assert_selected_by_alarms(
        metrics, STREAM_ALARM_METRICS + STREAM_DASHBOARD_METRICS, detector.bundle_version
    )
    # And they count what the batch did; the API's metrics are not the stream's
    counts = seen[0].counts()
    value = {name: series[0][2] for name, series in metrics.items()}
    assert value[names.METRIC_RECORDS_IN] == counts["events_in"] == 7
    assert value[names.METRIC_SCORED] == counts["scored"] == 3
    assert value[names.METRIC_ANOMALIES] == counts["anomalies"]
    assert value[names.METRIC_FAILED] == counts["failed"] == 0
    assert value[names.METRIC_REJECTED] == counts["rejected"] == 3
    assert not set(API_ALARM_METRICS) & set(metrics)


@pytest.mark.parametrize("case", ["predict", "predict_batch"])
def test_prediction_api_emits_what_its_alarms_select(
    metrics_enabled, api_function, detector, capsys, case
):
    # Given a committed API Gateway event that scores one or several events
    event = json.loads((EVENTS_DIR / "api" / f"{case}.json").read_text())
    capsys.readouterr()
    # When the handler answers it with metrics enabled
    response = api_function.lambda_handler(
        copy.deepcopy(event), LocalContext(function_name="ocsf-detect-prediction-api")
    )
    metrics = emitted(emf_blobs(capsys.readouterr().out))
    # Then Predictions and PredictedAnomalies are in the series the API's alarm selects
    assert response["statusCode"] == 200, response.get("body")
    assert_selected_by_alarms(metrics, API_ALARM_METRICS, detector.bundle_version)
    # And they count the answer; the stream function's Scored/Anomalies are left alone
    body = json.loads(response["body"])
    if case == "predict":
        scored, anomalies = 1, int(body["is_anomaly"])
    else:
        scored, anomalies = body["totals"]["scored"], body["totals"]["anomalies"]
    value = {name: series[0][2] for name, series in metrics.items()}
    assert value[names.METRIC_PREDICTIONS] == scored
    assert value[names.METRIC_PREDICTED_ANOMALIES] == anomalies
    assert not {names.METRIC_SCORED, names.METRIC_ANOMALIES} & set(metrics)


def test_disabled_metrics_print_nothing_and_keep_nothing(metrics_disabled, api_function, capsys):
    from aws_lambda_powertools import Metrics

    # Given metrics disabled (a local server, tests): more invocations than the 100 values
    # after which Powertools' add_metric prints a document of its own
    event = json.loads((EVENTS_DIR / "api" / "predict.json").read_text())
    context = LocalContext(function_name="ocsf-detect-prediction-api")
    capsys.readouterr()
    for _ in range(120):
        response = api_function.lambda_handler(copy.deepcopy(event), context)
        assert response["statusCode"] == 200
    # Then no EMF document is printed and no metric value is held between invocations
    assert emf_blobs(capsys.readouterr().out) == []
    assert Metrics().metric_set == {}
