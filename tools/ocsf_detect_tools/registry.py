"""The model registry: bundle archives published to a versioned S3 bucket.

Layout (``names.REGISTRY_*``)::

    s3://<bucket>/<prefix>bundles/<bundle_version>/bundle.zip      the archive (a layer's code)
    s3://<bucket>/<prefix>bundles/<bundle_version>/manifest.json   a copy of its manifest

Both objects carry the sha256 of the manifest as user metadata. A bundle_version is
published once: publishing the same bundle again is a no-op, publishing a *different*
bundle under an existing bundle_version is refused, so ``-c modelVersion=<v>`` names one
set of bytes for ever. The S3 object version id that ``publish`` returns pins it further
(the CDK app passes it to ``Code.from_bucket``).

The registry reads and writes through boto3, which honours ``AWS_ENDPOINT_URL``; tests
point it at a local emulator. Example::

    registry = ModelRegistry("ocsf-detect-dev-models-123456789012-eu-west-1")
    result = registry.publish(Path("out/bundle"))
    print(result.bundle.bundle_version, result.bundle.object_version)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ocsf_detect import names
from ocsf_detect.detector.archive import write_archive
from ocsf_detect.detector.manifest import content_digest

_VERSION_RE = re.compile(names.BUNDLE_VERSION_PATTERN)
_META_BUNDLE_VERSION = "bundle-version"
_META_CREATED_AT = "created-at"
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


class RegistryError(Exception):
    """The registry cannot do what was asked; ``field`` names the offending input."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BundleConflictError(RegistryError):
    """A different bundle is already published under the same bundle_version."""


@dataclass(frozen=True)
class PublishedBundle:
    """One published bundle archive, as the registry bucket describes it."""

    bundle_version: str
    bucket: str
    key: str
    object_version: str | None
    size: int
    created_at: str
    manifest_sha256: str | None

    @property
    def s3_uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def pinned_uri(self) -> str:
        """The ``s3://bucket/key?versionId=...`` form of ``OCSF_DETECT_BUNDLE_S3_URI``."""
        if self.object_version:
            return f"{self.s3_uri}?versionId={self.object_version}"
        return self.s3_uri

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle_version": self.bundle_version,
            "s3_uri": self.s3_uri,
            "object_version": self.object_version,
            "size": self.size,
            "created_at": self.created_at,
            "manifest_sha256": self.manifest_sha256,
        }


@dataclass(frozen=True)
class PublishResult:
    """``created`` is False when the identical bundle was already in the registry."""

    bundle: PublishedBundle
    created: bool


@dataclass(frozen=True)
class BundleManifest:
    """The manifest fields the registry relies on, with the exact bytes they came from."""

    bundle_version: str
    created_at: str
    raw: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


def _verify_bundle_files(bundle_dir: Path, manifest: BundleManifest) -> None:
    """Every file the manifest lists is there and matches its sha256: a bundle changed
    after it was built is never published."""
    from ocsf_detect.detector.bundle import BundleError, verify_files

    try:
        verify_files(bundle_dir, json.loads(manifest.raw).get("files") or {})
    except BundleError as exc:
        raise RegistryError(f"not published: {exc}") from exc


def read_manifest(bundle_dir: Path) -> BundleManifest:
    """Read and check ``bundle_dir/manifest.json``; raise RegistryError naming the problem."""
    path = Path(bundle_dir) / names.REGISTRY_MANIFEST_NAME
    if not path.is_file():
        raise RegistryError(
            f"{bundle_dir} is not a bundle directory: {path.name} is missing "
            "(point --bundle at the output directory of `ocsf-detect train`)",
            field="bundle",
        )
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RegistryError(f"{path} is not valid JSON: {exc}", field="manifest") from exc
    if not isinstance(manifest, dict):
        raise RegistryError(f"{path} must hold a JSON object", field="manifest")
    version = manifest.get("bundle_version")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise RegistryError(
            f"{path}: bundle_version {version!r} is missing or not a safe version string "
            "(letters, digits and . + _ -, e.g. 1.0.0+3f2a9c1b7e4d)",
            field="bundle_version",
        )
    created_at = manifest.get("created_at")
    return BundleManifest(
        bundle_version=version,
        created_at=created_at if isinstance(created_at, str) else "",
        raw=raw,
    )


class ModelRegistry:
    """Publish and list bundle archives in one registry bucket (under an optional prefix)."""

    def __init__(self, bucket: str, prefix: str = "", *, s3: Any | None = None) -> None:
        if not bucket or "/" in bucket:
            raise RegistryError(f"invalid bucket name {bucket!r}", field="bucket")
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self._s3 = s3 if s3 is not None else s3_client()

    # --- layout -------------------------------------------------------------------------
    def archive_key(self, bundle_version: str) -> str:
        return archive_key(self.prefix, bundle_version)

    def manifest_key(self, bundle_version: str) -> str:
        return manifest_key(self.prefix, bundle_version)

    # --- commands -----------------------------------------------------------------------
    def publish(self, bundle_dir: Path) -> PublishResult:
        """Upload ``bundle_dir`` as an archive plus its manifest.

        Returns the published bundle; raises BundleConflictError when a different bundle
        already holds the same bundle_version.
        """
        manifest = read_manifest(bundle_dir)
        _verify_bundle_files(Path(bundle_dir), manifest)
        key = self.archive_key(manifest.bundle_version)
        existing = self._head(key)
        if existing is not None:
            return PublishResult(self._accept_existing(manifest, key, existing), created=False)

        metadata = {
            names.REGISTRY_META_MANIFEST_SHA256: manifest.sha256,
            _META_BUNDLE_VERSION: manifest.bundle_version,
            _META_CREATED_AT: manifest.created_at,
        }
        with tempfile.TemporaryDirectory(prefix="ocsf-detect-publish-") as tmp:
            archive = write_archive(Path(bundle_dir), Path(tmp) / names.REGISTRY_ARCHIVE_NAME)
            size = archive.stat().st_size
            try:
                with archive.open("rb") as body:
                    response = self._call(
                        "put_object",
                        Bucket=self.bucket,
                        Key=key,
                        Body=body,
                        ContentType="application/zip",
                        Metadata=metadata,
                        # Two publishers racing on one version: only the first write lands.
                        IfNoneMatch="*",
                    )
            except _PreconditionFailedError:
                existing = self._head(key)
                if existing is None:  # pragma: no cover - deleted between the two calls
                    raise RegistryError(
                        f"s3://{self.bucket}/{key} changed while publishing"
                    ) from None
                return PublishResult(self._accept_existing(manifest, key, existing), created=False)
        self._put_manifest(manifest, metadata)
        bundle = PublishedBundle(
            bundle_version=manifest.bundle_version,
            bucket=self.bucket,
            key=key,
            object_version=_version_id(response),
            size=size,
            created_at=manifest.created_at,
            manifest_sha256=manifest.sha256,
        )
        return PublishResult(bundle, created=True)

    def list_bundles(self) -> list[PublishedBundle]:
        """Every published bundle, oldest first."""
        bundles = [self._describe(key, size) for key, size in self._archive_keys()]
        return sorted(bundles, key=lambda b: (b.created_at, b.bundle_version))

    def get(self, bundle_version: str) -> PublishedBundle | None:
        """The published bundle with this version, or None."""
        key = self.archive_key(bundle_version)
        head = self._head(key)
        return None if head is None else _bundle_from_head(self.bucket, key, head)

    # --- internals ----------------------------------------------------------------------
    def _accept_existing(
        self, manifest: BundleManifest, key: str, head: Mapping[str, Any]
    ) -> PublishedBundle:
        published = _bundle_from_head(self.bucket, key, head)
        if published.manifest_sha256 != manifest.sha256 and not self._same_content(manifest):
            raise BundleConflictError(
                f"bundle_version {manifest.bundle_version} is already published at "
                f"{published.s3_uri} with a different manifest (sha256 "
                f"{published.manifest_sha256 or 'unknown'}, yours {manifest.sha256}); "
                "a published version is immutable: re-version the bundle "
                "(bundle_semver in the configuration)",
                field="bundle_version",
            )
        # A previous run may have stopped between the archive and the manifest copy.
        if self._head(self.manifest_key(manifest.bundle_version)) is None:
            self._put_manifest(manifest, head.get("Metadata") or {})
        return published

    def _same_content(self, manifest: BundleManifest) -> bool:
        """Whether the published manifest describes the same bundle as ``manifest``,
        built at another time (``content_digest``: the same files, models, thresholds
        and golden events). A training run repeated on the same baseline gives such a
        bundle; it is the one already published, not a conflict."""
        try:
            response = self._call(
                "get_object", Bucket=self.bucket, Key=self.manifest_key(manifest.bundle_version)
            )
        except _MissingObjectError:
            return False
        try:
            published = json.loads(response["Body"].read())
            ours = json.loads(manifest.raw)
        except ValueError:
            return False
        if not isinstance(published, dict) or not isinstance(ours, dict):
            return False
        return content_digest(published) == content_digest(ours)

    def _put_manifest(self, manifest: BundleManifest, metadata: Mapping[str, str]) -> None:
        self._call(
            "put_object",
            Bucket=self.bucket,
            Key=self.manifest_key(manifest.bundle_version),
            Body=manifest.raw,
            ContentType="application/json",
            Metadata=dict(metadata),
        )

    def _archive_keys(self) -> Iterator[tuple[str, int]]:
        root = f"{self.prefix}{names.REGISTRY_BUNDLES_DIR}/"
        suffix = f"/{names.REGISTRY_ARCHIVE_NAME}"
        paginator = self._s3.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    # Only <root><version>/bundle.zip, nothing nested deeper.
                    if key.endswith(suffix) and "/" not in key[len(root) : -len(suffix)]:
                        yield key, int(item.get("Size", 0))
        except Exception as exc:
            raise self._translate(exc) from exc

    def _describe(self, key: str, size: int) -> PublishedBundle:
        head = self._head(key)
        if head is None:  # pragma: no cover - deleted while listing
            raise RegistryError(f"s3://{self.bucket}/{key} disappeared while listing")
        bundle = _bundle_from_head(self.bucket, key, head)
        return bundle if bundle.size else dataclasses.replace(bundle, size=size)

    def _head(self, key: str) -> Mapping[str, Any] | None:
        try:
            head: Mapping[str, Any] = self._call("head_object", Bucket=self.bucket, Key=key)
            return head
        except _MissingObjectError:
            return None

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._s3, operation)(**kwargs)
        except Exception as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: Exception) -> Exception:
        code = _error_code(exc)
        if code is None:
            if type(exc).__name__ in {"NoCredentialsError", "PartialCredentialsError"}:
                return RegistryError(
                    "no AWS credentials found: configure a profile or AWS_* variables "
                    "with access to the registry bucket",
                    field="credentials",
                )
            if type(exc).__name__ == "EndpointConnectionError":
                return RegistryError(f"cannot reach S3: {exc}", field="endpoint")
            return exc
        if code in _MISSING_CODES:
            return _MissingObjectError(str(exc))
        if code == "PreconditionFailed":
            return _PreconditionFailedError(str(exc))
        if code == "NoSuchBucket":
            return RegistryError(
                f"bucket {self.bucket} does not exist: create the stage's registry first "
                "(npx cdk deploy -c stage=<stage> -c registryOnly=true), then publish to the "
                "bucket it prints",
                field="bucket",
            )
        if code in {"AccessDenied", "403", "Forbidden"}:
            return RegistryError(
                f"access denied to s3://{self.bucket}/{self.prefix}: check the credentials "
                "and the bucket name",
                field="bucket",
            )
        return RegistryError(f"S3 error on bucket {self.bucket}: {exc}", field="bucket")


class _MissingObjectError(RegistryError):
    pass


class _PreconditionFailedError(RegistryError):
    pass


def normalize_prefix(prefix: str) -> str:
    """'' stays ''; 'a/b' and '/a/b/' become 'a/b/'."""
    cleaned = prefix.strip("/")
    return f"{cleaned}/" if cleaned else ""


def bundle_dir_key(prefix: str, bundle_version: str) -> str:
    """Key prefix of everything published for one version: ``<prefix>bundles/<v>/``."""
    return f"{normalize_prefix(prefix)}{names.REGISTRY_BUNDLES_DIR}/{bundle_version}/"


def archive_key(prefix: str, bundle_version: str) -> str:
    """Key of a bundle's archive: ``<prefix>bundles/<bundle_version>/bundle.zip``."""
    return f"{bundle_dir_key(prefix, bundle_version)}{names.REGISTRY_ARCHIVE_NAME}"


def manifest_key(prefix: str, bundle_version: str) -> str:
    """Key of a bundle's manifest copy, next to its archive."""
    return f"{bundle_dir_key(prefix, bundle_version)}{names.REGISTRY_MANIFEST_NAME}"


@lru_cache(maxsize=1)
def s3_client() -> Any:
    """One boto3 S3 client per process (boto3 reads AWS_ENDPOINT_URL and the region)."""
    import boto3  # here, not at the top: `import ocsf_detect_tools.registry` stays cheap

    return boto3.client("s3")


def _error_code(exc: Exception) -> str | None:
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return None
    error = response.get("Error") or {}
    code = error.get("Code")
    return str(code) if code is not None else None


def _version_id(response: Mapping[str, Any]) -> str | None:
    version = response.get("VersionId")
    # An unversioned bucket answers "null" (or nothing): there is no version to pin.
    return None if version in (None, "", "null") else str(version)


def _bundle_from_head(bucket: str, key: str, head: Mapping[str, Any]) -> PublishedBundle:
    metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    created = metadata.get(_META_CREATED_AT) or ""
    if not created and isinstance(head.get("LastModified"), datetime):
        created = head["LastModified"].isoformat()
    version = metadata.get(_META_BUNDLE_VERSION) or key.rsplit("/", 2)[-2]
    return PublishedBundle(
        bundle_version=version,
        bucket=bucket,
        key=key,
        object_version=_version_id(head),
        size=int(head.get("ContentLength") or 0),
        created_at=created,
        manifest_sha256=metadata.get(names.REGISTRY_META_MANIFEST_SHA256),
    )
