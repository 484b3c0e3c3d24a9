"""OCSF_DETECT_EXPECTED_BUNDLE_VERSION in the stream and API functions, and the shared
fetcher's parsing (no network: the bundle comes from a directory, as from the layer)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ocsf_detect import names
from ocsf_detect.bundlefetch import (
    BundleLocation,
    BundleSourceError,
    BundleVersionMismatchError,
    cache_dir,
    check_bundle_version,
)
from tests.conftest import EVENTS_DIR, api_context

STREAM_ENV = {
    names.ENV_ALERT_TOPIC_ARN: "arn:aws:sns:us-east-1:123456789012:findings",
    names.ENV_EVENT_BUS_NAME: "findings",
    names.ENV_QUARANTINE_QUEUE_URL: "https://sqs.us-east-1.amazonaws.com/123456789012/q",
}


def bundle_version(bundle_dir: Path) -> str:
    return str(json.loads((bundle_dir / "manifest.json").read_text())["bundle_version"])


@pytest.fixture
def stream_env(monkeypatch: pytest.MonkeyPatch, bundle_dir: Path):
    """The stream function's environment with the bundle on the 'layer' path."""
    from stream_scoring import adapters

    for key, value in (STREAM_ENV | {names.ENV_BUNDLE_PATH: str(bundle_dir)}).items():
        monkeypatch.setenv(key, value)
    adapters.reset()
    yield monkeypatch
    adapters.reset()


# --- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["", "1.0 beta", "../etc", "-1.0.0"])
def test_stream_settings_refuse_a_malformed_expected_version(stream_env, value: str) -> None:
    from stream_scoring.settings import SettingsError, load_settings

    stream_env.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert names.ENV_EXPECTED_BUNDLE_VERSION in str(caught.value)
    assert caught.value.field == names.ENV_EXPECTED_BUNDLE_VERSION


def test_settings_read_the_expected_version(stream_env) -> None:
    from prediction_api.settings import ApiSettings
    from stream_scoring.settings import load_settings

    stream_env.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, "1.0.0+3f2a9c1b7e4d")
    assert load_settings().expected_bundle_version == "1.0.0+3f2a9c1b7e4d"
    assert ApiSettings().expected_bundle_version == "1.0.0+3f2a9c1b7e4d"
    stream_env.delenv(names.ENV_EXPECTED_BUNDLE_VERSION)
    assert load_settings().expected_bundle_version is None
    assert ApiSettings().expected_bundle_version is None


def test_api_settings_refuse_a_malformed_expected_version(monkeypatch) -> None:
    from prediction_api.settings import ApiSettings

    monkeypatch.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, "1.0 beta")
    with pytest.raises(ValidationError, match=names.ENV_EXPECTED_BUNDLE_VERSION):
        ApiSettings()


# --- the stream function -------------------------------------------------------------------
def test_stream_cold_start_fails_on_another_bundle_version(stream_env, bundle_dir) -> None:
    from stream_scoring import adapters

    stream_env.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, "0.0.0-other")
    with pytest.raises(BundleVersionMismatchError) as caught:
        adapters.get_detector()
    message = str(caught.value)
    assert names.ENV_EXPECTED_BUNDLE_VERSION in message
    assert "0.0.0-other" in message
    assert bundle_version(bundle_dir) in message


def test_stream_loads_the_expected_bundle_version(stream_env, bundle_dir) -> None:
    from stream_scoring import adapters

    stream_env.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, bundle_version(bundle_dir))
    assert adapters.get_detector().bundle_version == bundle_version(bundle_dir)


# --- the prediction API --------------------------------------------------------------------


@pytest.mark.parametrize("matches", [True, False])
def test_api_answers_only_with_the_expected_bundle(
    monkeypatch: pytest.MonkeyPatch, bundle_dir: Path, matches: bool
) -> None:
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import handler, service
    from prediction_api.settings import ApiSettings

    expected = bundle_version(bundle_dir) if matches else "0.0.0-other"
    settings: dict[str, Any] = {
        names.ENV_BUNDLE_PATH: str(bundle_dir),
        names.ENV_EXPECTED_BUNDLE_VERSION: expected,
    }
    monkeypatch.setattr(handler, "settings", ApiSettings(**settings))
    service.use_detector(None)
    try:
        event = json.loads((EVENTS_DIR / "api" / "model.json").read_text())
        response = handler.lambda_handler(copy.deepcopy(event), api_context())
    finally:
        service.use_detector(None)
    body = json.loads(response["body"])
    if matches:
        assert response["statusCode"] == 200
        assert body["bundle_version"] == expected
    else:
        assert response["statusCode"] == 503
        assert body["error"] == "bundle_unavailable"


# --- the shared fetcher's pure parts -------------------------------------------------------
def test_location_parses_bucket_key_and_version() -> None:
    pinned = BundleLocation.parse("s3://models/bundles/1.0.0/bundle.zip?versionId=abc.1")
    assert (pinned.bucket, pinned.key, pinned.version_id) == (
        "models",
        "bundles/1.0.0/bundle.zip",
        "abc.1",
    )
    assert pinned.get_object_request() == {
        "Bucket": "models",
        "Key": "bundles/1.0.0/bundle.zip",
        "VersionId": "abc.1",
    }
    latest = BundleLocation.parse("s3://models/bundles/1.0.0/bundle.zip")
    assert latest.version_id is None
    assert "VersionId" not in latest.get_object_request()


@pytest.mark.parametrize("uri", ["s3://models", "s3:///key", "https://models/key"])
def test_location_refuses_what_is_not_an_s3_object(uri: str) -> None:
    with pytest.raises(BundleSourceError, match=names.ENV_BUNDLE_S3_URI):
        BundleLocation.parse(uri)


def test_cache_dir_is_stable_per_object_version(tmp_path: Path) -> None:
    def where(uri: str) -> Path:
        return cache_dir(BundleLocation.parse(uri), tmp_path)

    base = "s3://models/bundles/1.0.0/bundle.zip"
    assert where(base) == where(base)
    assert where(f"{base}?versionId=a") == where(f"{base}?versionId=a")
    assert len({where(base), where(f"{base}?versionId=a"), where(f"{base}?versionId=b")}) == 3
    assert where(base).parent == tmp_path


def test_no_expected_version_checks_nothing(tmp_path: Path) -> None:
    check_bundle_version(tmp_path, None)  # not even a bundle: nothing is read


def test_the_version_names_the_content_not_the_build(bundle_dir) -> None:
    """bundle_version = semver + the content digest: everything in the manifest counts but
    when, by what and how fast it was built; a threshold alone makes another bundle."""
    import json

    from ocsf_detect.detector.manifest import content_digest

    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    digest = content_digest(manifest)
    assert manifest["bundle_version"].endswith("+" + digest[:12])
    rebuilt = json.loads(json.dumps(manifest))
    rebuilt["created_at"] = "2030-01-01T00:00:00+00:00"
    rebuilt["library_version"] = "9.9.9 (python 3.99)"
    for model in rebuilt["models"].values():
        model["training"]["seconds"] *= 3
    assert content_digest(rebuilt) == digest
    for change in ("threshold", "file"):
        other = json.loads(json.dumps(manifest))
        model = next(iter(other["models"].values()))
        if change == "threshold":
            model["threshold"] *= 1.01
        else:
            other["files"][next(iter(other["files"]))] = "0" * 64
        assert content_digest(other) != digest, change
