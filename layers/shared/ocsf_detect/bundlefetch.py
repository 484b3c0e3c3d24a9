"""Where a function's bundle comes from: the model layer's directory, or an ``s3://`` archive
fetched once per execution environment.

Both scoring functions (stream and API) call ``load_detector``: ``locate_bundle``, then
``Detector.load``. An ``s3://bucket/key[?versionId=v]`` archive is downloaded and
unpacked into one stable directory per bucket/key/version under the temp dir, and reused
while it is there: a second load in the same environment (after a failure, or in a test)
downloads nothing and creates no new directory. A cached copy that no longer loads (a file
on /tmp changed or went missing) is dropped and fetched again, once. Lambda's /tmp is
small, so the archive is deleted once unpacked, and a partial download a killed process
left behind is deleted by the next fetch.

Failures (S3 errors, unreachable endpoint, an archive that is not a bundle, a full disk,
a bundle of another version than the one the function was deployed for) all raise
``BundleSourceError``, whose message says what was wrong and names the variable.

Example::

    bundle_dir = locate_bundle(
        path=Path("/opt/bundle"),
        s3_uri="s3://models/bundles/1.0.0/bundle.zip?versionId=abc",
        expected_version="1.0.0",
    )
    detector = Detector.load(bundle_dir)

or, in one step with the re-fetch of a damaged cached copy,
``load_detector(path=..., s3_uri=..., expected_version=...)``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from ocsf_detect import names
from ocsf_detect.detector.archive import ARCHIVE_ROOT, ArchiveError, extract_archive

if TYPE_CHECKING:
    from ocsf_detect.detector.scorer import Detector

CACHE_DIR_NAME = "ocsf-detect-bundle"
"""Directory under the temp dir holding one sub-directory per fetched bundle archive."""
_CHUNK_BYTES = 1 << 20
_log = logging.getLogger(__name__)


class BundleSourceError(Exception):
    """The bundle cannot be fetched or unpacked, or is not the expected one.

    ``field`` names the environment variable to look at.
    """

    def __init__(self, message: str, field: str = names.ENV_BUNDLE_S3_URI) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BundleVersionMismatchError(BundleSourceError):
    """The bundle's bundle_version is not the one the function was deployed with."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field=names.ENV_EXPECTED_BUNDLE_VERSION)


class BundleTamperedError(BundleSourceError):
    """The bundle's manifest does not hash to the one released: it was changed after."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field=names.ENV_EXPECTED_MANIFEST_SHA256)


def check_manifest_digest(raw: bytes, expected: str | None, where: str) -> None:
    """Raise ``BundleTamperedError`` unless the manifest bytes ``raw`` hash to ``expected``
    (``None`` checks nothing). The manifest lists every file's sha256, which the loader
    recomputes, so this one digest pins the whole bundle."""
    if expected is None:
        return
    found = hashlib.sha256(raw).hexdigest()
    if found != expected:
        raise BundleTamperedError(
            f"{where}: manifest.json has sha256 {found[:12]}..., but this function was "
            f"released for {expected[:12]}... ({names.ENV_EXPECTED_MANIFEST_SHA256}): the "
            "bundle was changed after it was published, refused"
        )


@dataclass(frozen=True)
class BundleLocation:
    """One archive in S3: ``s3://bucket/key[?versionId=v]``."""

    bucket: str
    key: str
    version_id: str | None = None

    @classmethod
    def parse(cls, uri: str) -> BundleLocation:
        parts = urlsplit(uri)
        key = parts.path.lstrip("/")
        if parts.scheme != "s3" or not parts.netloc or not key:
            raise BundleSourceError(
                f"{names.ENV_BUNDLE_S3_URI}={uri!r} is not s3://bucket/key[?versionId=...]"
            )
        version = parse_qs(parts.query).get("versionId")
        return cls(bucket=parts.netloc, key=key, version_id=version[0] if version else None)

    @property
    def uri(self) -> str:
        base = f"s3://{self.bucket}/{self.key}"
        return f"{base}?versionId={self.version_id}" if self.version_id else base

    def get_object_request(self) -> dict[str, str]:
        request = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            request["VersionId"] = self.version_id
        return request


def cache_dir(location: BundleLocation, root: Path | None = None) -> Path:
    """The stable directory of one archive: ``<tmp>/ocsf-detect-bundle/<sha256[:16]>``."""
    base = root if root is not None else Path(tempfile.gettempdir()) / CACHE_DIR_NAME
    return base / hashlib.sha256(location.uri.encode()).hexdigest()[:16]


def fetch_bundle(
    uri: str,
    *,
    s3: Any | None = None,
    cache_root: Path | None = None,
    before_read: Callable[[], None] | None = None,
) -> Path:
    """The unpacked bundle directory of the archive at ``uri``, downloaded at most once.

    ``s3`` is a boto3 S3 client (one with standard retries is made when None);
    ``cache_root`` replaces ``<tmp>/ocsf-detect-bundle``; ``before_read`` is called before
    each read of the object's body and stops the download by raising a ``BotoCoreError``
    (the API's request deadline). Raises ``BundleSourceError``.
    """
    location = BundleLocation.parse(uri)
    root = cache_dir(location, cache_root)
    bundle_dir = root / ARCHIVE_ROOT
    if (bundle_dir / names.REGISTRY_MANIFEST_NAME).is_file():
        return bundle_dir  # unpacked by an earlier load in this execution environment
    work: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_work(root)
        # A private work directory: two processes fetching the same bundle on one host
        # (a local server and a CLI, say) never share a partial file.
        work = Path(tempfile.mkdtemp(prefix=f"{_WORK_PREFIX}{os.getpid()}-", dir=root))
        archive = work / names.REGISTRY_ARCHIVE_NAME
        _download(s3 if s3 is not None else _default_client(), location, archive, before_read)
        unpacked = extract_archive(archive, work / "unpacked")
        if not unpacked.is_dir():
            raise ArchiveError(f"no {ARCHIVE_ROOT}/ directory inside")
        archive.unlink()
        # The rename is atomic: the bundle directory exists only once it is complete. One
        # that another process completed meanwhile is as good, and may be in use: kept.
        if not (bundle_dir / names.REGISTRY_MANIFEST_NAME).is_file():
            shutil.rmtree(bundle_dir, ignore_errors=True)
            try:
                unpacked.rename(bundle_dir)
            except OSError:
                if not (bundle_dir / names.REGISTRY_MANIFEST_NAME).is_file():
                    raise
    except BundleSourceError:
        raise
    except ArchiveError as exc:
        raise BundleSourceError(f"{location.uri} is not a bundle archive: {exc}") from exc
    except OSError as exc:
        raise BundleSourceError(f"cannot store {location.uri} in {root}: {exc}") from exc
    finally:
        # Whatever happened, only the unpacked bundle may stay on the small /tmp.
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    return bundle_dir


_WORK_PREFIX = ".fetch-"


def _remove_abandoned_work(root: Path) -> None:
    """Delete the work directories of fetches whose process is gone. A fetch cleans up
    after itself, unless its process was killed mid-download (Lambda's timeout or memory
    limit), and Lambda keeps /tmp for the restarted runtime: a killed attempt's partial
    archive would take space the next fetch needs, every time. A directory is named for
    its process id; it is abandoned when that process is not running, or is this one
    (a restarted runtime can be given the same id; it fetches one bundle at a time)."""
    for work in root.glob(f"{_WORK_PREFIX}*"):
        pid_text = work.name[len(_WORK_PREFIX) :].split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is not None and pid != os.getpid() and _running(pid):
            continue  # another process's fetch, under way
        shutil.rmtree(work, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # running, as another user
        return True
    return True


def check_bundle_version(
    bundle_dir: Path, expected: str | None, expected_manifest_sha256: str | None = None
) -> None:
    """Raise ``BundleVersionMismatchError`` unless the bundle in ``bundle_dir`` is ``expected``,
    and ``BundleTamperedError`` unless its manifest hashes to ``expected_manifest_sha256``.

    Reads only manifest.json (before the models and indexes are loaded); ``None`` checks
    nothing. A missing or malformed manifest raises the loader's ``BundleError``.
    """
    if expected_manifest_sha256 is not None:
        path = Path(bundle_dir) / names.REGISTRY_MANIFEST_NAME
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise BundleTamperedError(f"{path}: cannot read the manifest: {exc}") from exc
        check_manifest_digest(raw, expected_manifest_sha256, str(path))
    if expected is None:
        return
    from ocsf_detect.detector.bundle import read_manifest

    found = read_manifest(bundle_dir).bundle_version
    if found != expected:
        raise BundleVersionMismatchError(
            f"the bundle at {bundle_dir} is version {found}, but "
            f"{names.ENV_EXPECTED_BUNDLE_VERSION} is {expected}: this function was deployed "
            "for another bundle; redeploy the stack with -c modelVersion=<v> so the two agree"
        )


def locate_bundle(
    *,
    path: Path,
    s3_uri: str | None,
    expected_version: str | None,
    s3: Any | None = None,
    cache_root: Path | None = None,
    expected_manifest_sha256: str | None = None,
    before_read: Callable[[], None] | None = None,
) -> Path:
    """The directory to ``Detector.load``: ``s3_uri``'s archive (fetched once) when set,
    else ``path``; checked against ``expected_version`` and ``expected_manifest_sha256``
    when they are set; ``s3``, ``cache_root`` and ``before_read`` as ``fetch_bundle``."""
    bundle_dir = (
        fetch_bundle(s3_uri, s3=s3, cache_root=cache_root, before_read=before_read)
        if s3_uri
        else Path(path)
    )
    check_bundle_version(bundle_dir, expected_version, expected_manifest_sha256)
    return bundle_dir


def load_detector(
    *,
    path: Path,
    s3_uri: str | None,
    expected_version: str | None,
    s3: Any | None = None,
    cache_root: Path | None = None,
    expected_manifest_sha256: str | None = None,
    before_read: Callable[[], None] | None = None,
) -> Detector:
    """``Detector.load`` of what ``locate_bundle`` finds.

    The copy of an S3 archive cached by an earlier load is trusted only as far as it still
    loads: when its files no longer match the manifest (or the manifest is unreadable), it
    is deleted and the archive fetched again, once. A fresh download that fails to load
    raises the loader's ``BundleError``: the published bundle itself is wrong.
    """
    from ocsf_detect.detector.bundle import BundleError
    from ocsf_detect.detector.scorer import Detector

    def load() -> Detector:
        bundle_dir = locate_bundle(
            path=path,
            s3_uri=s3_uri,
            expected_version=expected_version,
            s3=s3,
            cache_root=cache_root,
            expected_manifest_sha256=expected_manifest_sha256,
            before_read=before_read,
        )
        return Detector.load(bundle_dir)

    if not s3_uri:
        return load()
    root = cache_dir(BundleLocation.parse(s3_uri), cache_root)
    if not (root / ARCHIVE_ROOT / names.REGISTRY_MANIFEST_NAME).is_file():
        return load()  # nothing cached: whatever fails, fails on a fresh download
    try:
        return load()
    except BundleVersionMismatchError:
        raise  # the cached copy is intact; the deployment asks for another bundle
    except (BundleError, BundleTamperedError, OSError) as exc:
        _log.warning("the cached copy of %s does not load (%s); fetching it again", s3_uri, exc)
        shutil.rmtree(root, ignore_errors=True)
    return load()


def _download(
    s3: Any,
    location: BundleLocation,
    archive: Path,
    before_read: Callable[[], None] | None = None,
) -> None:
    """Stream the object to ``archive`` (via a .part file: never a half archive), calling
    ``before_read`` before each read of its body that still has bytes to bring (the
    read that only finds the end is not checked: a complete download is kept)."""
    from botocore.exceptions import BotoCoreError, ClientError

    partial = archive.with_suffix(".part")
    check = before_read if before_read is not None else _no_check
    try:
        response = s3.get_object(**location.get_object_request())
        body = response["Body"]
        size = response.get("ContentLength")
        written = 0
        try:
            with partial.open("wb") as out:
                check()
                for chunk in body.iter_chunks(_CHUNK_BYTES):
                    out.write(chunk)
                    written += len(chunk)
                    if size is None or written < size:
                        check()  # before the next read
        finally:
            body.close()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise BundleSourceError(
            f"cannot read {location.uri} ({names.ENV_BUNDLE_S3_URI}): S3 answered {code}; "
            "check that the bundle is published there and the role may read it"
        ) from exc
    except BotoCoreError as exc:
        raise BundleSourceError(
            f"cannot read {location.uri} ({names.ENV_BUNDLE_S3_URI}): {exc}"
        ) from exc
    partial.replace(archive)


def _no_check() -> None:
    pass


def _default_client() -> Any:
    import boto3  # only for S3 bundles: the layer's path needs no AWS SDK at all
    from botocore.config import Config

    # A cold start can afford a few retries of one large GET; the read timeout is per read.
    config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
    return boto3.client("s3", config=config)
