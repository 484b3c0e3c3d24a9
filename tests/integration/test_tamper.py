"""A published bundle changed in the registry (moto over HTTP) cannot reach a release: the
functions and the pre-traffic hook are deployed with the manifest's sha256, and refuse a
bundle or manifest that does not hash to it; the pinned object version still loads."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from ocsf_detect import names
from ocsf_detect.bundlefetch import BundleTamperedError
from ocsf_detect.detector.archive import write_archive
from ocsf_detect_tools.registry import ModelRegistry, PublishedBundle, archive_key, manifest_key

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:findings"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/quarantine"


@pytest.fixture
def published(emulator_url: str, bundle_dir: Path) -> PublishedBundle:
    bucket = f"models-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return ModelRegistry(bucket).publish(bundle_dir).bundle


def overwrite(published: PublishedBundle, bundle_dir: Path, work: Path) -> None:
    """What a writer with access to the bucket could do: a self-consistent bundle (its
    files still match its own manifest) with other golden scores, put over the published
    archive and manifest under the same keys (new object versions)."""
    changed = work / "changed"
    shutil.copytree(bundle_dir, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    for golden in manifest["golden_events"]:
        golden["score"] = 0.0
    (changed / "manifest.json").write_text(json.dumps(manifest))
    archive = write_archive(changed, work / "bundle.zip")
    s3 = boto3.client("s3")
    version = published.bundle_version
    s3.put_object(Bucket=published.bucket, Key=archive_key("", version), Body=archive.read_bytes())
    s3.put_object(
        Bucket=published.bucket,
        Key=manifest_key("", version),
        Body=(changed / "manifest.json").read_bytes(),
    )


def stream_settings(uri: str, published: PublishedBundle) -> Any:
    from stream_scoring.settings import StreamSettings

    return StreamSettings(
        **{
            names.ENV_ALERT_TOPIC_ARN: TOPIC_ARN,
            names.ENV_EVENT_BUS_NAME: "findings",
            names.ENV_QUARANTINE_QUEUE_URL: QUEUE_URL,
            names.ENV_BUNDLE_S3_URI: uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: published.bundle_version,
            names.ENV_EXPECTED_MANIFEST_SHA256: published.manifest_sha256,
        }
    )


def test_the_functions_refuse_an_overwritten_bundle_and_keep_the_pinned_one(
    tmp_root: Path, tmp_path: Path, bundle_dir: Path, published: PublishedBundle
) -> None:
    from stream_scoring.adapters import load_detector

    overwrite(published, bundle_dir, tmp_path)

    # The latest object under the key is the changed bundle: refused, naming the setting.
    with pytest.raises(BundleTamperedError) as caught:
        load_detector(stream_settings(published.s3_uri, published))
    assert caught.value.field == names.ENV_EXPECTED_MANIFEST_SHA256
    assert "changed after it was published" in caught.value.message
    # The deployment's pinned object version still holds the released bytes.
    detector = load_detector(stream_settings(published.pinned_uri, published))
    assert detector.bundle_version == published.bundle_version


def test_the_prediction_api_refuses_an_overwritten_bundle(
    tmp_root: Path, tmp_path: Path, bundle_dir: Path, published: PublishedBundle
) -> None:
    from prediction_api.service import BundleUnavailableError, _load
    from prediction_api.settings import ApiSettings

    overwrite(published, bundle_dir, tmp_path)
    settings = ApiSettings(
        **{
            names.ENV_BUNDLE_S3_URI: published.s3_uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: published.bundle_version,
            names.ENV_EXPECTED_MANIFEST_SHA256: published.manifest_sha256,
        }
    )
    with pytest.raises(BundleUnavailableError, match="changed after it was published"):
        _load(settings)


def test_the_hook_fails_the_release_on_an_overwritten_manifest(
    tmp_path: Path, bundle_dir: Path, published: PublishedBundle
) -> None:
    from release_hook import handler
    from release_hook.adapters import HookAdapters, S3Manifest
    from release_hook.settings import HookSettings

    uri = f"s3://{published.bucket}/{manifest_key('', published.bundle_version)}"
    s3 = boto3.client("s3")
    settings = HookSettings(
        **{
            names.ENV_TARGET_FUNCTION_ARN: (
                "arn:aws:lambda:us-east-1:123456789012:function:ocsf-detect-scorer:7"
            ),
            names.ENV_MANIFEST_S3_URI: uri,
            names.ENV_EXPECTED_MANIFEST_SHA256: published.manifest_sha256,
        }
    )
    golden = [
        e["score"] for e in S3Manifest(s3, uri, published.manifest_sha256).load()["golden_events"]
    ]

    class Candidate:
        """The new version answering its self-test with the released golden scores."""

        def invoke(self, function_arn: str, payload: Any) -> Any:
            return {"bundle_version": published.bundle_version, "scores": golden}

    class NoReports:
        def report(self, *args: Any) -> None:
            raise AssertionError("invoked by hand: nothing to report")

    def verdict() -> dict[str, Any]:
        adapters = HookAdapters(
            manifest=S3Manifest(s3, uri, settings.expected_manifest_sha256),
            functions=Candidate(),  # type: ignore[arg-type]
            deployments=NoReports(),  # type: ignore[arg-type]
        )
        return handler.handle({}, settings=settings, adapters=adapters)

    assert verdict()["status"] == "Succeeded"
    overwrite(published, bundle_dir, tmp_path)
    result = verdict()
    assert result["status"] == "Failed"
    assert "changed after it was published" in result["reason"]
