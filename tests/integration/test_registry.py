"""`ocsf-detect publish` and `ocsf-detect bundles` against the emulator's S3 over HTTP."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest

from ocsf_detect import names
from ocsf_detect_tools import registry
from ocsf_detect_tools.cli import main
from ocsf_detect_tools.registry import ModelRegistry

VERSION = "1.0.0+3f2a9c1b7e4d"


def write_bundle(
    root: Path,
    version: str = VERSION,
    *,
    weights: bytes = b"onnx-weights",
    created_at: str = "2024-05-01T12:00:00+00:00",
    seconds: float = 12.5,
) -> Path:
    """A tiny bundle directory: manifest.json (listing its files' digests, as a built
    manifest does) plus a couple of small files."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"3002.onnx": weights, "3002.bin": b"\x00\x01hnsw"}
    for name, data in files.items():
        (root / name).write_bytes(data)
    manifest = {
        "format_version": 1,
        "bundle_version": version,
        "created_at": created_at,
        "classes": [3002],
        "models": {"3002": {"threshold": 0.3, "training": {"events": 900, "seconds": seconds}}},
        "golden_events": [{"class_uid": 3002, "event": {"class_uid": 3002}, "score": 0.25}],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    return root


@pytest.fixture
def s3(emulator_url):
    registry.s3_client.cache_clear()  # the CLI's client must see the emulator's endpoint
    yield boto3.client("s3")
    registry.s3_client.cache_clear()


@pytest.fixture
def bucket(s3) -> str:
    name = f"registry-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_publish_uploads_archive_and_manifest_with_checksum(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")

    code, out, _ = run_cli(capsys, "publish", "--bundle", str(bundle), "--bucket", bucket, "--json")

    assert code == 0
    result = json.loads(out)
    key = f"bundles/{VERSION}/bundle.zip"
    assert result["bundle_version"] == VERSION
    assert result["s3_uri"] == f"s3://{bucket}/{key}"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert result["object_version"] == head["VersionId"]
    sha = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert head["Metadata"][names.REGISTRY_META_MANIFEST_SHA256] == sha
    # the archive unpacks to bundle/..., i.e. /opt/bundle on a layer
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert sorted(zf.namelist()) == [
            "bundle/3002.bin",
            "bundle/3002.onnx",
            "bundle/manifest.json",
        ]
    manifest = s3.get_object(Bucket=bucket, Key=f"bundles/{VERSION}/manifest.json")
    assert manifest["Body"].read() == (bundle / "manifest.json").read_bytes()
    assert manifest["Metadata"][names.REGISTRY_META_MANIFEST_SHA256] == sha


def test_publish_prints_the_deploy_line(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")

    code, out, _ = run_cli(
        capsys, "publish", "--bundle", str(bundle), "--bucket", bucket, "--stage", "prod"
    )

    assert code == 0
    object_version = ModelRegistry(bucket).get(VERSION).object_version
    assert object_version
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert (
        f"npx cdk deploy -c stage=prod -c modelVersion={VERSION} "
        f"-c modelObjectVersion={object_version} -c modelManifestSha256={digest}"
    ) in out
    unzipped = sum(p.stat().st_size for p in Path(bundle).rglob("*") if p.is_file())
    assert f"-c modelUnzippedBytes={unzipped}" in out  # the size budget counts the bundle
    assert VERSION in out.splitlines()[0]


def test_publishing_the_same_bundle_again_changes_nothing(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    args = ("publish", "--bundle", str(bundle), "--bucket", bucket, "--json")
    first = json.loads(run_cli(capsys, *args)[1])

    code, out, _ = run_cli(capsys, *args)

    again = json.loads(out)
    assert code == 0
    assert again["created"] is False
    assert again["object_version"] == first["object_version"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix=f"bundles/{VERSION}/bundle.zip")
    assert len(versions["Versions"]) == 1


def test_a_different_bundle_under_a_published_version_is_refused(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_cli(capsys, "publish", "--bundle", str(write_bundle(tmp_path / "a")), "--bucket", bucket)
    changed = write_bundle(tmp_path / "b", weights=b"other weights")
    # same bundle_version, different manifest bytes
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["created_at"] = "2024-06-01T00:00:00+00:00"
    (changed / "manifest.json").write_text(json.dumps(manifest))

    code, _, err = run_cli(capsys, "publish", "--bundle", str(changed), "--bucket", bucket)

    assert code == 2
    assert "already published" in err
    assert VERSION in err
    versions = s3.list_object_versions(Bucket=bucket, Prefix=f"bundles/{VERSION}/bundle.zip")
    assert len(versions["Versions"]) == 1


def test_the_same_bundle_built_again_is_the_one_already_published(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training is deterministic, so a repeated run on the same baseline gives the same
    bundle_version: its manifest differs only in when and how fast it was built."""
    first_dir = write_bundle(tmp_path / "a")
    first = json.loads(
        run_cli(capsys, "publish", "--bundle", str(first_dir), "--bucket", bucket, "--json")[1]
    )
    again = write_bundle(tmp_path / "b", created_at="2024-06-01T00:00:00+00:00", seconds=14.0)
    assert (again / "manifest.json").read_bytes() != (first_dir / "manifest.json").read_bytes()

    code, out, _ = run_cli(capsys, "publish", "--bundle", str(again), "--bucket", bucket, "--json")

    result = json.loads(out)
    assert code == 0
    assert result["created"] is False
    # the published bundle stands: its archive, object version and manifest digest
    assert result["object_version"] == first["object_version"]
    assert result["manifest_sha256"] == first["manifest_sha256"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix=f"bundles/{VERSION}/")
    assert len(versions["Versions"]) == 2  # the archive and the manifest copy, once each
    # a threshold is content: the same files with another threshold are another bundle
    other = write_bundle(tmp_path / "c")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["models"]["3002"]["threshold"] = 0.4
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "publish", "--bundle", str(other), "--bucket", bucket)
    assert code == 2
    assert "already published" in err


def test_republish_completes_an_interrupted_publish(s3, bucket: str, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    ModelRegistry(bucket, s3=s3).publish(bundle)
    s3.delete_object(Bucket=bucket, Key=f"bundles/{VERSION}/manifest.json")

    result = ModelRegistry(bucket, s3=s3).publish(bundle)

    assert result.created is False
    s3.head_object(Bucket=bucket, Key=f"bundles/{VERSION}/manifest.json")


def test_bundles_lists_published_versions(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for version in ("1.0.0+aaaa", "1.1.0+bbbb"):
        bundle = write_bundle(tmp_path / version, version)
        assert run_cli(capsys, "publish", "--bundle", str(bundle), "--bucket", bucket)[0] == 0

    code, out, _ = run_cli(capsys, "bundles", "--bucket", bucket, "--json")

    assert code == 0
    listed = json.loads(out)
    assert [b["bundle_version"] for b in listed] == ["1.0.0+aaaa", "1.1.0+bbbb"]
    for item in listed:
        assert item["size"] > 0
        assert item["object_version"]
        assert item["created_at"] == "2024-05-01T12:00:00+00:00"
        assert item["s3_uri"].endswith(f"/bundles/{item['bundle_version']}/bundle.zip")

    code, table, _ = run_cli(capsys, "bundles", "--bucket", bucket)
    assert code == 0
    header, *rows = table.splitlines()
    assert header.split() == [
        "VERSION",
        "CREATED",
        "SIZE",
        "OBJECT",
        "VERSION",
        "MANIFEST",
        "SHA256",
    ]
    assert [row.split()[0] for row in rows] == ["1.0.0+aaaa", "1.1.0+bbbb"]
    # what a staging or prod deploy pins: the object version and the manifest's digest
    assert [row.split()[-1] for row in rows] == [item["manifest_sha256"] for item in listed]


def test_prefix_keeps_registries_apart(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    code, out, _ = run_cli(
        capsys, "publish", "--bundle", str(bundle), "--bucket", bucket, "--prefix", "team-a",
        "--json",
    )  # fmt: skip
    assert code == 0
    assert json.loads(out)["s3_uri"] == f"s3://{bucket}/team-a/bundles/{VERSION}/bundle.zip"
    assert "-c modelPrefix=team-a" in json.loads(out)["deploy_command"]

    listed = json.loads(
        run_cli(capsys, "bundles", "--bucket", bucket, "--prefix", "team-a", "--json")[1]
    )
    assert [b["bundle_version"] for b in listed] == [VERSION]
    assert json.loads(run_cli(capsys, "bundles", "--bucket", bucket, "--json")[1]) == []


def test_missing_bucket_says_to_deploy_the_registry_first(
    emulator_url, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.s3_client.cache_clear()
    bundle = write_bundle(tmp_path / "bundle")

    code, _, err = run_cli(
        capsys, "publish", "--bundle", str(bundle), "--bucket", "no-such-registry"
    )

    assert code == 2
    assert "does not exist" in err
    assert "registryOnly=true" in err


def test_not_a_bundle_is_a_user_error(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(capsys, "publish", "--bundle", str(tmp_path), "--bucket", bucket)
    assert code == 2
    assert "manifest.json is missing" in err


def test_a_bundle_changed_after_it_was_built_is_not_published(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a bundle whose manifest lists its files' sha256, and then one file changed
    root = write_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"] = {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for name in ("3002.onnx", "3002.bin")
    }
    (root / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    (root / "3002.bin").write_bytes(b"\x00\x01hnsw-changed")
    # When publishing it, Then it is refused and nothing is uploaded
    code, _, err = run_cli(capsys, "publish", "--bundle", str(root), "--bucket", bucket)
    assert code == 2
    assert "3002.bin does not match its sha256" in err
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_publish_assumes_the_publisher_role_when_given(
    s3, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    iam = boto3.client("iam")
    role = iam.create_role(
        RoleName=f"publisher-{uuid.uuid4().hex[:8]}",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]

    code, out, _ = run_cli(
        capsys, "publish", "--bundle", str(bundle), "--bucket", bucket, "--role-arn", role, "--json"
    )

    assert code == 0
    assert json.loads(out)["created"] is True
    assert ModelRegistry(bucket).get(VERSION) is not None


def test_publish_says_why_the_role_cannot_be_assumed(
    bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = write_bundle(tmp_path / "bundle")
    code, _, err = run_cli(
        capsys, "publish", "--bundle", str(bundle), "--bucket", bucket, "--role-arn", "not-an-arn"
    )
    assert code == 2
    assert "cannot assume --role-arn not-an-arn" in err
