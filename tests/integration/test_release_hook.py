"""The CodeDeploy pre-traffic hook: the check with fakes, the adapters with botocore's
Stubber (moto has no CodeDeploy lifecycle hooks), and the manifest read from S3 over HTTP."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from release_hook import handler
from release_hook.adapters import (
    CodeDeployReporter,
    HookAdapters,
    InvocationError,
    LambdaInvoker,
    LayerManifest,
    S3Manifest,
)
from release_hook.golden import (
    ManifestError,
    Scores,
    Tolerance,
    compare,
    golden_from_manifest,
    selftest_from_response,
)
from release_hook.settings import HookSettings

from ocsf_detect import names

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:ocsf-detect-scorer:7"
VERSION = "1.0.0+3f2a9c1b7e4d"
HOOK_EVENT = {"DeploymentId": "d-ABCDEF123", "LifecycleEventHookExecutionId": "exec-42"}
GOLDEN = [0.12, 0.5, 3.75]


def manifest(version: str = VERSION, scores: list[float] = GOLDEN) -> dict[str, Any]:
    return {
        "format_version": 1,
        "bundle_version": version,
        "created_at": "2024-05-01T12:00:00+00:00",
        "classes": [3002],
        "golden_events": [
            {"class_uid": 3002, "event": {"class_uid": 3002, "n": i}, "score": s}
            for i, s in enumerate(scores)
        ],
    }


# --- fakes ---------------------------------------------------------------------------------
@dataclass
class FakeManifest:
    value: Mapping[str, Any] | Exception

    def load(self) -> Mapping[str, Any]:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


@dataclass
class FakeInvoker:
    answer: Any
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def invoke(self, function_arn: str, payload: Mapping[str, Any]) -> Any:
        self.calls.append((function_arn, dict(payload)))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@dataclass
class FakeReporter:
    reports: list[tuple[str, str, str]] = field(default_factory=list)

    def report(self, deployment_id: str, execution_id: str, status: str) -> None:
        self.reports.append((deployment_id, execution_id, status))


def settings(**overrides: Any) -> HookSettings:
    values: dict[str, Any] = {"target_function_arn": TARGET, "expected_bundle_version": VERSION}
    return HookSettings(**(values | overrides))


def run_hook(
    answer: Any, the_manifest: Any = None, **overrides: Any
) -> tuple[dict, FakeInvoker, FakeReporter]:
    invoker, reporter = FakeInvoker(answer), FakeReporter()
    adapters = HookAdapters(
        manifest=FakeManifest(manifest() if the_manifest is None else the_manifest),
        functions=invoker,
        deployments=reporter,
    )
    result = handler.handle(HOOK_EVENT, settings=settings(**overrides), adapters=adapters)
    return result, invoker, reporter


# --- the check, end to end through handle() -----------------------------------------------
def test_matching_scores_pass_and_report_succeeded() -> None:
    answer = {"bundle_version": VERSION, "scores": [0.1204, 0.5, 3.7512]}

    result, invoker, reporter = run_hook(answer)

    assert result["status"] == "Succeeded"
    assert invoker.calls == [(TARGET, {names.SELFTEST_PAYLOAD_KEY: True})]
    assert reporter.reports == [("d-ABCDEF123", "exec-42", "Succeeded")]


def test_score_mismatch_fails_the_deployment() -> None:
    answer = {"bundle_version": VERSION, "scores": [0.12, 0.9, 3.75]}

    result, _, reporter = run_hook(answer)

    assert result["status"] == "Failed"
    assert "1 of 3 golden scores differ" in result["reason"]
    assert "event 1 expected 0.5, got 0.9" in result["reason"]
    assert reporter.reports == [("d-ABCDEF123", "exec-42", "Failed")]


def test_bundle_version_mismatch_fails_the_deployment() -> None:
    answer = {"bundle_version": "0.9.0+0ld", "scores": GOLDEN}

    result, _, reporter = run_hook(answer)

    assert result["status"] == "Failed"
    assert "runs bundle 0.9.0+0ld, expected 1.0.0+3f2a9c1b7e4d" in result["reason"]
    assert reporter.reports[0][2] == "Failed"


def test_manifest_of_another_release_fails_the_deployment() -> None:
    result, invoker, _ = run_hook(
        {"bundle_version": VERSION, "scores": GOLDEN}, expected_bundle_version="2.0.0+new"
    )
    assert result["status"] == "Failed"
    assert "this release deploys 2.0.0+new" in result["reason"]
    assert invoker.calls  # the candidate was still exercised


def test_invocation_error_fails_the_deployment() -> None:
    result, _, reporter = run_hook(InvocationError(f"{TARGET} raised ImportError: no onnxruntime"))

    assert result["status"] == "Failed"
    assert "ImportError" in result["reason"]
    assert reporter.reports == [("d-ABCDEF123", "exec-42", "Failed")]


def test_unscored_golden_event_fails() -> None:
    result, _, _ = run_hook({"bundle_version": VERSION, "scores": [0.12, None, 3.75]})
    assert result["status"] == "Failed"
    assert "got no score" in result["reason"]


def test_malformed_answer_or_manifest_fails_without_crashing() -> None:
    assert run_hook({"scores": GOLDEN})[0]["status"] == "Failed"
    assert run_hook({"bundle_version": VERSION, "scores": [0.1]})[0]["status"] == "Failed"
    no_golden = manifest() | {"golden_events": []}
    result, invoker, _ = run_hook({"bundle_version": VERSION, "scores": []}, no_golden)
    assert result["status"] == "Failed"
    assert "no golden_events" in result["reason"]
    assert invoker.calls == []  # nothing to check against: do not even invoke


def test_an_unexpected_crash_still_reports_failed() -> None:
    result, _, reporter = run_hook(RuntimeError("boom"))
    assert result["status"] == "Failed"
    assert "crashed" in result["reason"]
    assert reporter.reports[0][2] == "Failed"


def test_manual_invocation_checks_without_reporting() -> None:
    invoker, reporter = FakeInvoker({"bundle_version": VERSION, "scores": GOLDEN}), FakeReporter()
    adapters = HookAdapters(FakeManifest(manifest()), invoker, reporter)

    result = handler.handle({}, settings=settings(), adapters=adapters)

    assert result["status"] == "Succeeded"
    assert reporter.reports == []


def test_lambda_handler_uses_the_cached_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    reporter = FakeReporter()
    adapters = HookAdapters(
        FakeManifest(manifest()),
        FakeInvoker({"bundle_version": VERSION, "scores": GOLDEN}),
        reporter,
    )
    monkeypatch.setenv(names.ENV_TARGET_FUNCTION_ARN, TARGET)
    monkeypatch.setattr(handler, "get_adapters", lambda: adapters)
    handler.get_settings.cache_clear()

    result = handler.lambda_handler(dict(HOOK_EVENT), LambdaContextStub())

    handler.get_settings.cache_clear()
    assert result["status"] == "Succeeded"
    assert reporter.reports == [("d-ABCDEF123", "exec-42", "Succeeded")]


class LambdaContextStub:
    function_name = "pre-traffic-hook"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:pre-traffic-hook"
    aws_request_id = "req-1"


# --- the pure comparison ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (1.0, 1.0019, True),  # within 1e-3 + 1e-3 * 1.0
        (1.0, 1.0021, False),
        (100.0, 100.1, True),  # relative part dominates
        (0.0, 0.0009, True),
        (0.0, float("nan"), False),
        (0.0, float("inf"), False),
    ],
)
def test_tolerance_is_absolute_plus_relative(expected: float, actual: float, ok: bool) -> None:
    assert Tolerance().accepts(expected, actual) is ok


def test_compare_reports_every_mismatch() -> None:
    verdict = compare(Scores(VERSION, (1.0, 2.0, 3.0)), Scores(VERSION, (1.5, 2.0, 0.0)))
    assert not verdict.passed
    assert [m.index for m in verdict.mismatches] == [0, 2]


def test_golden_scores_follow_manifest_order() -> None:
    assert golden_from_manifest(manifest()).scores == tuple(GOLDEN)
    with pytest.raises(ManifestError, match=r"golden_events\[1\]\.score"):
        golden_from_manifest(manifest() | {"golden_events": [{"score": 1}, {"score": "x"}]})
    assert selftest_from_response({"bundle_version": "v", "scores": [1, 2.5]}).scores == (1.0, 2.5)


# --- adapters over real boto3 clients ------------------------------------------------------
def _client(service: str) -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        endpoint_url="https://example.invalid",  # never reached: Stubber answers
    )


def _payload(value: Any) -> StreamingBody:
    raw = json.dumps(value).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


def test_lambda_invoker_sends_the_selftest_and_decodes_the_answer() -> None:
    client = _client("lambda")
    answer = {"bundle_version": VERSION, "scores": GOLDEN}
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "Payload": _payload(answer), "ExecutedVersion": "7"},
            {
                "FunctionName": TARGET,
                "InvocationType": "RequestResponse",
                "Payload": json.dumps({names.SELFTEST_PAYLOAD_KEY: True}).encode(),
            },
        )
        assert LambdaInvoker(client).invoke(TARGET, {names.SELFTEST_PAYLOAD_KEY: True}) == answer
        stub.assert_no_pending_responses()


def test_lambda_invoker_turns_a_function_error_into_invocation_error() -> None:
    client = _client("lambda")
    error = {"errorType": "ValueError", "errorMessage": "bundle missing at /opt/bundle"}
    with Stubber(client) as stub:
        stub.add_response(
            "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": _payload(error)}
        )
        with pytest.raises(InvocationError, match="ValueError: bundle missing"):
            LambdaInvoker(client).invoke(TARGET, {})


def test_lambda_invoker_turns_an_api_error_into_invocation_error() -> None:
    client = _client("lambda")
    with Stubber(client) as stub:
        stub.add_client_error("invoke", "ResourceNotFoundException", "Function not found")
        with pytest.raises(InvocationError, match="could not invoke"):
            LambdaInvoker(client).invoke(TARGET, {})


@pytest.mark.parametrize("status", ["Succeeded", "Failed"])
def test_codedeploy_reporter_puts_the_hook_status(status: str) -> None:
    client = _client("codedeploy")
    with Stubber(client) as stub:
        stub.add_response(
            "put_lifecycle_event_hook_execution_status",
            {"lifecycleEventHookExecutionId": "exec-42"},
            {
                "deploymentId": "d-ABCDEF123",
                "lifecycleEventHookExecutionId": "exec-42",
                "status": status,
            },
        )
        CodeDeployReporter(client).report("d-ABCDEF123", "exec-42", status)
        stub.assert_no_pending_responses()


def test_layer_manifest_reads_the_bundle_directory(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest()))
    assert LayerManifest(tmp_path).load()["bundle_version"] == VERSION
    with pytest.raises(ManifestError, match="missing"):
        LayerManifest(tmp_path / "nothing-here").load()


def test_s3_manifest_reads_a_pinned_object_version(emulator_url) -> None:
    s3 = boto3.client("s3")
    bucket = f"hook-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = f"bundles/{VERSION}/manifest.json"
    first = s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest()).encode())
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest(scores=[9.0])).encode())

    pinned = S3Manifest(s3, f"s3://{bucket}/{key}?versionId={first['VersionId']}").load()
    latest = S3Manifest(s3, f"s3://{bucket}/{key}").load()

    assert golden_from_manifest(pinned).scores == tuple(GOLDEN)
    assert golden_from_manifest(latest).scores == (9.0,)
    with pytest.raises(ManifestError, match="cannot read"):
        S3Manifest(s3, f"s3://{bucket}/bundles/none/manifest.json").load()


def test_settings_refuse_an_unversioned_target(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv(names.ENV_TARGET_FUNCTION_ARN, TARGET.rsplit(":", 1)[0] + ":live")
    # the cold start fails with a message naming the variable
    with pytest.raises(ValidationError, match=names.ENV_TARGET_FUNCTION_ARN):
        HookSettings()
