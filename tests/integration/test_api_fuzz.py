"""Property-based fuzzing of the local API from its own OpenAPI document (schemathesis):
no 5xx, documented status codes and content types, bodies that match their schemas."""

from __future__ import annotations

import os
import threading

import pytest
from hypothesis import HealthCheck, given, settings

from ocsf_detect import names

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import checks as st_checks  # noqa: E402
from schemathesis.specs.openapi import checks as oas_checks  # noqa: E402

CHECKS = [
    st_checks.not_a_server_error,
    oas_checks.status_code_conformance,
    oas_checks.content_type_conformance,
    oas_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def alert_table(emulator_url):
    """The alert-state table on the emulator, so the suppression routes have their store."""
    from prediction_api.settings import get_settings

    from ocsf_detect_tools.replay import create_alert_table

    os.environ[names.ENV_ALERT_TABLE_NAME] = create_alert_table("fuzz-alert-state")
    get_settings.cache_clear()
    yield os.environ[names.ENV_ALERT_TABLE_NAME]
    os.environ.pop(names.ENV_ALERT_TABLE_NAME, None)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def base_url(detector, bundle_dir, alert_table):
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    import boto3
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    from ocsf_detect_tools.localapi import make_server

    # the feedback route's store: a bucket on the emulator (without one it answers 503)
    boto3.client("s3").create_bucket(Bucket="fuzz-feedback")
    handler.settings = ApiSettings(
        **{names.ENV_BUNDLE_PATH: str(bundle_dir), names.ENV_FEEDBACK_BUCKET: "fuzz-feedback"}
    )
    service.use_detector(detector)
    srv = make_server(handler.lambda_handler, "127.0.0.1", 0)
    srv.quiet = True  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    service.use_detector(None)


def _operations():
    from prediction_api.handler import openapi_document

    schema = schemathesis.openapi.from_dict(openapi_document())
    return [result.ok() for result in schema.get_all_operations()]


# The schemathesis pytest plugin does not load under this pytest, so each operation's
# hypothesis strategy is driven directly: same generation, same checks.
@pytest.mark.parametrize("operation", _operations(), ids=lambda op: op.label)
def test_api_honours_its_openapi_document(operation, base_url):
    @given(case=operation.as_strategy())
    @settings(
        max_examples=8,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case):
        response = case.call(base_url=base_url)
        case.validate_response(response, checks=CHECKS)

    check()
