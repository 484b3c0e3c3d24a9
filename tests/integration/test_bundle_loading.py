"""Bundles from S3 (moto over HTTP), as both scoring functions load them: one shared fetcher,
one stable directory per bundle, no second download, every failure a 503 on the API."""

from __future__ import annotations

import copy
import json
import os
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from ocsf_detect import names
from ocsf_detect.bundlefetch import CACHE_DIR_NAME, BundleSourceError, BundleVersionMismatchError
from ocsf_detect_tools.registry import ModelRegistry, PublishedBundle
from tests.conftest import EVENTS_DIR, api_context

TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:findings"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/quarantine"


@pytest.fixture
def bucket(emulator_url: str) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def published(bucket: str, bundle_dir: Path) -> PublishedBundle:
    return ModelRegistry(bucket).publish(bundle_dir).bundle


@pytest.fixture
def api():
    """The API handler of a fresh container: no detector loaded yet."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    from prediction_api import adapters, handler, service

    adapters.reset()
    service.use_detector(None)
    yield handler
    service.use_detector(None)
    adapters.reset()


@pytest.fixture
def configure(api, monkeypatch: pytest.MonkeyPatch):
    """``configure(**environment)``: the API's settings, as a cold start would read them."""
    from prediction_api.settings import ApiSettings

    def apply(**values: Any) -> None:
        monkeypatch.setattr(api, "settings", ApiSettings(**values))

    return apply


def get_model(api) -> tuple[int, dict[str, Any]]:
    event = json.loads((EVENTS_DIR / "api" / "model.json").read_text())
    response = api.lambda_handler(copy.deepcopy(event), api_context())
    return response["statusCode"], json.loads(response["body"])


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def delete_every_version(bucket: str) -> None:
    s3 = boto3.client("s3")
    for version in s3.list_object_versions(Bucket=bucket).get("Versions", []):
        s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])


# --- the prediction API --------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["key", "bucket"])
def test_missing_bundle_object_is_503_and_retries_in_the_same_directory(
    api, configure, tmp_root: Path, bucket: str, missing: str
) -> None:
    where = bucket if missing == "key" else f"{bucket}-gone"
    configure(**{names.ENV_BUNDLE_S3_URI: f"s3://{where}/bundles/9.9.9/bundle.zip"})

    # When two requests need the bundle, which is not in S3
    first_status, first = get_model(api)
    after_first = tree(tmp_root)
    second_status, second = get_model(api)

    # Then both are 503 bundle_unavailable with a request id and no internals
    for status, body in ((first_status, first), (second_status, second)):
        assert status == 503
        assert body["error"] == "bundle_unavailable"
        assert body["request_id"] == "req-model"
        assert "NoSuch" not in body["message"]
        assert where not in body["message"]
    # and the retry reused the one cache directory: no new directory, no partial download
    assert tree(tmp_root) == after_first
    assert [p for p in after_first if "/" not in p] == [CACHE_DIR_NAME]
    assert not [p for p in tmp_root.rglob("*") if p.is_file()]


def test_corrupt_archive_is_503_and_leaves_nothing_behind(
    api, configure, tmp_root: Path, bucket: str
) -> None:
    boto3.client("s3").put_object(Bucket=bucket, Key="bundles/x/bundle.zip", Body=b"not a zip")
    configure(**{names.ENV_BUNDLE_S3_URI: f"s3://{bucket}/bundles/x/bundle.zip"})

    status, body = get_model(api)

    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert not [p for p in tmp_root.rglob("*") if p.is_file()]


def test_s3_bundle_is_downloaded_once_per_container(
    api, configure, tmp_root: Path, bucket: str, published: PublishedBundle
) -> None:
    from prediction_api import service

    configure(
        **{
            names.ENV_BUNDLE_S3_URI: published.pinned_uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: published.bundle_version,
        }
    )
    # Given a container that loaded the pinned bundle from S3
    status, body = get_model(api)
    assert status == 200
    assert body["bundle_version"] == published.bundle_version
    after_first = tree(tmp_root)
    # only the unpacked bundle stays on disk: the archive is gone
    assert not [p for p in after_first if p.endswith(names.REGISTRY_ARCHIVE_NAME)]

    # When it loads again (as after a failed load) and S3 no longer has the bundle
    service.use_detector(None)
    delete_every_version(bucket)
    status, body = get_model(api)

    # Then it loads from the same directory without downloading anything
    assert status == 200
    assert body["bundle_version"] == published.bundle_version
    assert tree(tmp_root) == after_first


def test_s3_bundle_of_another_version_is_503_and_logs_why(
    api, configure, tmp_root: Path, published: PublishedBundle, caplog: pytest.LogCaptureFixture
) -> None:
    configure(
        **{
            names.ENV_BUNDLE_S3_URI: published.pinned_uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: "9.9.9",
        }
    )
    status, body = get_model(api)

    # The caller gets the generic 503...
    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert "9.9.9" not in body["message"]
    # ...the log says which variable and which versions disagree
    (entry,) = [r for r in caplog.records if r.getMessage() == "bundle unavailable"]
    assert entry.levelname == "ERROR"
    assert entry.field == names.ENV_EXPECTED_BUNDLE_VERSION  # type: ignore[attr-defined]
    error = entry.error  # type: ignore[attr-defined]
    assert names.ENV_EXPECTED_BUNDLE_VERSION in error
    assert published.bundle_version in error
    assert "9.9.9" in error


# --- the stream function -------------------------------------------------------------------
def stream_settings(**values: Any):
    from stream_scoring.settings import StreamSettings

    required = {
        names.ENV_ALERT_TOPIC_ARN: TOPIC_ARN,
        names.ENV_EVENT_BUS_NAME: "findings",
        names.ENV_QUARANTINE_QUEUE_URL: QUEUE_URL,
    }
    return StreamSettings(**(required | values))


def pinned_stream_settings(published: PublishedBundle):
    """The stream function's settings as a deployment pins them: the object version and the
    bundle version it must hold."""
    return stream_settings(
        **{
            names.ENV_BUNDLE_S3_URI: published.pinned_uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: published.bundle_version,
        }
    )


def test_stream_loads_the_pinned_bundle_once(
    tmp_root: Path, bucket: str, published: PublishedBundle
) -> None:
    from stream_scoring.adapters import load_detector

    settings = pinned_stream_settings(published)
    assert load_detector(settings).bundle_version == published.bundle_version
    after_first = tree(tmp_root)

    delete_every_version(bucket)
    assert load_detector(settings).bundle_version == published.bundle_version
    assert tree(tmp_root) == after_first


def test_stream_cold_start_fails_clearly_without_its_bundle(tmp_root: Path, bucket: str) -> None:
    from stream_scoring.adapters import load_detector

    uri = f"s3://{bucket}/bundles/9.9.9/bundle.zip"
    with pytest.raises(BundleSourceError) as caught:
        load_detector(stream_settings(**{names.ENV_BUNDLE_S3_URI: uri}))
    assert uri in caught.value.message
    assert names.ENV_BUNDLE_S3_URI in caught.value.message
    assert "NoSuchKey" in caught.value.message


def test_stream_cold_start_fails_on_another_bundle_version(
    tmp_root: Path, published: PublishedBundle
) -> None:
    from stream_scoring.adapters import load_detector

    settings = stream_settings(
        **{
            names.ENV_BUNDLE_S3_URI: published.pinned_uri,
            names.ENV_EXPECTED_BUNDLE_VERSION: "9.9.9",
        }
    )
    with pytest.raises(BundleVersionMismatchError, match=names.ENV_EXPECTED_BUNDLE_VERSION):
        load_detector(settings)


def damage_cached_bundle(tmp_root: Path, how: str) -> Path:
    """Change one byte of the cached copy's index, or delete it; returns the file."""
    (index,) = [p for p in tmp_root.rglob("index-*.bin") if ".fetch-" not in str(p)][:1]
    if how == "byte":
        data = bytearray(index.read_bytes())
        data[len(data) // 2] ^= 0xFF
        index.write_bytes(bytes(data))
    else:
        index.unlink()
    return index


@pytest.mark.parametrize("how", ["byte", "missing"])
def test_stream_fetches_again_when_the_cached_copy_is_damaged(
    tmp_root: Path, published: PublishedBundle, how: str
) -> None:
    from stream_scoring.adapters import load_detector

    settings = pinned_stream_settings(published)
    first = load_detector(settings)
    after_first = tree(tmp_root)
    # Given a cached copy whose index changed on disk after the first load
    index = damage_cached_bundle(tmp_root, how)

    # When the environment loads again, then it downloads the archive once more
    again = load_detector(settings)
    assert again.bundle_version == published.bundle_version
    assert index.is_file()
    assert tree(tmp_root) == after_first
    assert again.selftest()["scores"] == first.selftest()["scores"]


def test_damaged_cached_copy_without_the_s3_object_is_503(
    api, configure, tmp_root: Path, bucket: str, published: PublishedBundle
) -> None:
    from prediction_api import service

    configure(**{names.ENV_BUNDLE_S3_URI: published.pinned_uri})
    assert get_model(api)[0] == 200
    service.use_detector(None)
    damage_cached_bundle(tmp_root, "byte")
    delete_every_version(bucket)

    # The damaged copy is not used and the archive is gone: unavailable, nothing left on /tmp
    status, body = get_model(api)
    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert not [p for p in tmp_root.rglob("*") if p.is_file()]


def test_a_killed_fetchs_partial_download_is_deleted_by_the_next_fetch(
    tmp_path: Path, published: PublishedBundle
) -> None:
    import subprocess
    import sys

    from ocsf_detect.bundlefetch import BundleLocation, cache_dir, fetch_bundle

    # Given the work directories of three fetches of this bundle: one whose process was
    # killed mid-download, one of this process's id (a restarted Lambda runtime is often
    # given the same), and one of a process still running
    root = cache_dir(BundleLocation.parse(published.pinned_uri), tmp_path)
    root.mkdir(parents=True)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (gone, os.getpid(), running.pid):
            work = root / f".fetch-{pid}-x"
            work.mkdir()
            (work / names.REGISTRY_ARCHIVE_NAME).write_bytes(b"\0" * 100_000)
        # When the bundle is fetched
        bundle = fetch_bundle(published.pinned_uri, s3=boto3.client("s3"), cache_root=tmp_path)
        # Then the abandoned partial downloads are gone, the running fetch's is not
        assert (bundle / names.REGISTRY_MANIFEST_NAME).is_file()
        assert {p.name for p in root.iterdir()} == {"bundle", f".fetch-{running.pid}-x"}
    finally:
        running.kill()
        running.wait()


def test_a_download_stopped_between_reads_leaves_nothing_and_says_why(
    tmp_path: Path, published: PublishedBundle
) -> None:
    from prediction_api.adapters import OutOfTimeError

    from ocsf_detect.bundlefetch import fetch_bundle

    # Given a check before each read of the body that refuses the second read (the API's
    # request deadline running out mid-download)
    reads: list[int] = []

    def before_read() -> None:
        reads.append(1)
        if len(reads) == 2:
            raise OutOfTimeError(operation="bundle download", left_s=1.0, attempt_s=5.0)

    # When the bundle is fetched
    with pytest.raises(BundleSourceError) as caught:
        fetch_bundle(
            published.pinned_uri, s3=boto3.client("s3"), cache_root=tmp_path,
            before_read=before_read,
        )  # fmt: skip

    # Then the fetch stopped there, said why, and left no partial file behind
    assert len(reads) == 2
    assert "bundle download not attempted" in caught.value.message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    # and a fetch with time enough completes
    bundle = fetch_bundle(published.pinned_uri, s3=boto3.client("s3"), cache_root=tmp_path)
    assert (bundle / names.REGISTRY_MANIFEST_NAME).is_file()


def test_a_download_that_completes_is_not_checked_once_more(
    tmp_path: Path, published: PublishedBundle
) -> None:
    from ocsf_detect.bundlefetch import BundleLocation, fetch_bundle

    # Given a bundle object of a few MiB, read a MiB at a time
    location = BundleLocation.parse(published.pinned_uri)
    size = boto3.client("s3").head_object(**location.get_object_request())["ContentLength"]
    reads_with_bytes_left = -(-size // (1 << 20))
    assert reads_with_bytes_left >= 2
    calls: list[int] = []

    # When it is fetched with a check that refuses any read beyond the object's bytes (the
    # deadline nearly up once the last byte is in)
    def before_read() -> None:
        calls.append(1)
        if len(calls) > reads_with_bytes_left:
            raise OutOfTimeError(operation="bundle download", left_s=1.0, attempt_s=5.0)

    from prediction_api.adapters import OutOfTimeError

    bundle = fetch_bundle(
        published.pinned_uri, s3=boto3.client("s3"), cache_root=tmp_path,
        before_read=before_read,
    )  # fmt: skip

    # Then the complete download is kept: the read that only finds the end is not checked
    assert (bundle / names.REGISTRY_MANIFEST_NAME).is_file()
    assert len(calls) == reads_with_bytes_left


def test_the_apis_bundle_download_checks_the_request_before_each_read(
    api, configure, tmp_root: Path, published: PublishedBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prediction_api import adapters

    from ocsf_detect import deadline

    configure(**{names.ENV_BUNDLE_S3_URI: published.pinned_uri})
    # Given a request whose time left (29 s, less the reserve) covers the GET (the client,
    # built first, gives an attempt 2 + 5 s) but not a read of the body, were each read to
    # need a minute
    adapters.get_bundle_client()
    monkeypatch.setattr(deadline, "BUNDLE_READ_S", 60.0)
    # When it needs the bundle, then the download stops before reading: a 503, nothing kept
    status, body = get_model(api)
    assert (status, body["error"]) == (503, "bundle_unavailable")
    assert not [p for p in tmp_root.rglob("*") if p.is_file()]
    # With reads that fit, the next request loads it
    monkeypatch.setattr(deadline, "BUNDLE_READ_S", 5.0)
    status, body = get_model(api)
    assert status == 200
    assert body["bundle_version"] == published.bundle_version
