"""The hook's edges: invoking the candidate, reading the manifest, answering CodeDeploy.

Each adapter sits behind a Protocol; ``get_adapters`` builds the boto3-backed ones once
per execution environment, and tests hand ``handler.handle`` in-memory fakes instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from ocsf_detect import names
from ocsf_detect.bundlefetch import BundleTamperedError, check_manifest_digest
from release_hook.golden import HookStatus, ManifestError
from release_hook.settings import HookSettings, get_settings

# The candidate loads its model on this first call; leave it most of the hook's 5 minutes.
INVOKE_READ_TIMEOUT_S = 240


class InvocationError(Exception):
    """The candidate version could not be invoked or raised an error."""


class FunctionInvoker(Protocol):
    def invoke(self, function_arn: str, payload: Mapping[str, Any]) -> Any:
        """Synchronously invoke ``function_arn``; return its decoded JSON answer."""
        ...


class ManifestSource(Protocol):
    def load(self) -> Mapping[str, Any]:
        """The manifest of the bundle being released."""
        ...


class DeploymentReporter(Protocol):
    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> None:
        """Tell CodeDeploy whether the lifecycle hook passed."""
        ...


@dataclass(frozen=True)
class HookAdapters:
    manifest: ManifestSource
    functions: FunctionInvoker
    deployments: DeploymentReporter


class LambdaInvoker:
    """FunctionInvoker over a boto3 Lambda client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def invoke(self, function_arn: str, payload: Mapping[str, Any]) -> Any:
        try:
            response = self._client.invoke(
                FunctionName=function_arn,
                InvocationType="RequestResponse",
                Payload=json.dumps(payload).encode(),
            )
        except Exception as exc:  # botocore ClientError, timeouts, connection errors
            raise InvocationError(f"could not invoke {function_arn}: {exc}") from exc
        body = response["Payload"].read()
        if response.get("FunctionError"):
            raise InvocationError(f"{function_arn} raised {_error_summary(body)}")
        try:
            return json.loads(body or b"null")
        except json.JSONDecodeError as exc:
            raise InvocationError(f"{function_arn} answered something other than JSON") from exc


class CodeDeployReporter:
    """DeploymentReporter over a boto3 CodeDeploy client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def report(self, deployment_id: str, execution_id: str, status: HookStatus) -> None:
        self._client.put_lifecycle_event_hook_execution_status(
            deploymentId=deployment_id,
            lifecycleEventHookExecutionId=execution_id,
            status=status,
        )


class LayerManifest:
    """The manifest on the model layer (``/opt/bundle/manifest.json``)."""

    def __init__(self, bundle_path: Path, expected_sha256: str | None = None) -> None:
        self._path = Path(bundle_path) / names.REGISTRY_MANIFEST_NAME
        self._expected = expected_sha256

    def load(self) -> Mapping[str, Any]:
        try:
            raw = self._path.read_bytes()
            _check_digest(raw, self._expected, str(self._path))
            return _as_manifest(json.loads(raw), str(self._path))
        except FileNotFoundError as exc:
            raise ManifestError(
                f"{self._path} is missing: the hook has no model layer (and no "
                f"{names.ENV_MANIFEST_S3_URI})",
                field="bundle_path",
            ) from exc
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{self._path} is not JSON: {exc}", field="bundle_path") from exc


class S3Manifest:
    """The manifest copy ``ocsf-detect publish`` puts next to the archive in S3."""

    def __init__(self, client: Any, uri: str, expected_sha256: str | None = None) -> None:
        self._client = client
        self._uri = uri
        self._expected = expected_sha256

    def load(self) -> Mapping[str, Any]:
        parts = urlsplit(self._uri)
        request: dict[str, str] = {"Bucket": parts.netloc, "Key": parts.path.lstrip("/")}
        version = parse_qs(parts.query).get("versionId")
        if version:
            request["VersionId"] = version[0]
        try:
            body = self._client.get_object(**request)["Body"].read()
            _check_digest(body, self._expected, self._uri)
            return _as_manifest(json.loads(body), self._uri)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{self._uri} is not JSON: {exc}", field="manifest_s3_uri") from exc
        except Exception as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"cannot read {self._uri}: {exc}", field="manifest_s3_uri") from exc


def build_adapters(settings: HookSettings) -> HookAdapters:
    """The boto3-backed adapters for ``settings``."""
    import boto3
    from botocore.config import Config

    invoke_config = Config(
        read_timeout=INVOKE_READ_TIMEOUT_S,
        connect_timeout=10,
        # A timed-out self-test must not be silently sent again.
        retries={"total_max_attempts": 1},
    )
    manifest: ManifestSource
    expected = settings.expected_manifest_sha256
    if settings.manifest_s3_uri:
        manifest = S3Manifest(boto3.client("s3"), settings.manifest_s3_uri, expected)
    else:
        manifest = LayerManifest(settings.bundle_path, expected)
    return HookAdapters(
        manifest=manifest,
        functions=LambdaInvoker(boto3.client("lambda", config=invoke_config)),
        deployments=CodeDeployReporter(boto3.client("codedeploy")),
    )


@lru_cache(maxsize=1)
def get_adapters() -> HookAdapters:
    """The adapters of this execution environment, built on first use."""
    return build_adapters(get_settings())


def _check_digest(raw: bytes, expected: str | None, where: str) -> None:
    """The manifest read must be the one released: its sha256 pins every file's."""
    try:
        check_manifest_digest(raw, expected, where)
    except BundleTamperedError as exc:
        raise ManifestError(exc.message, field="expected_manifest_sha256") from exc


def _as_manifest(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ManifestError(f"{where} does not hold a JSON object", field="manifest")
    return value


def _error_summary(body: bytes) -> str:
    try:
        error = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "an error"
    if isinstance(error, Mapping):
        return f"{error.get('errorType', 'Error')}: {error.get('errorMessage', '')}".strip()
    return "an error"
