"""The bundle settings every function reads, as one model each function's settings extend.

Where the bundle is (the model layer's directory, or an ``s3://`` archive), which
``bundle_version`` the function was deployed for, and whether the bundle loads during the
init phase (SnapStart: the snapshot then holds the loaded detector). Validated when the
container starts; a malformed variable fails the cold start with a message naming it.

    class StreamSettings(BundleSettings):
        alert_topic_arn: str = Field(validation_alias=names.ENV_ALERT_TOPIC_ARN)
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocsf_detect import names
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES


class BundleSettings(BaseSettings):
    """The bundle's location and version, shared by the stream, API and release functions."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    bundle_path: Path = Field(
        default=Path(names.DEFAULT_BUNDLE_PATH),
        validation_alias=names.ENV_BUNDLE_PATH,
        description="directory of an unpacked bundle (the model layer mounts it under /opt)",
    )
    bundle_s3_uri: str | None = Field(
        default=None,
        validation_alias=names.ENV_BUNDLE_S3_URI,
        pattern=r"^s3://[^/]+/.+",
        description="bundle archive in S3; when set it wins over the bundle path",
    )
    expected_bundle_version: str | None = Field(
        default=None,
        validation_alias=names.ENV_EXPECTED_BUNDLE_VERSION,
        pattern=names.BUNDLE_VERSION_PATTERN,
        description="when set, a bundle of any other bundle_version is refused",
    )
    expected_manifest_sha256: str | None = Field(
        default=None,
        validation_alias=names.ENV_EXPECTED_MANIFEST_SHA256,
        pattern=names.SHA256_PATTERN,
        description="when set, a bundle whose manifest.json has another sha256 is refused "
        "(the loader then checks every file against that manifest)",
    )
    load_at_init: bool = Field(
        default=False,
        validation_alias=names.ENV_LOAD_BUNDLE_AT_INIT,
        description="load the bundle while the module is imported (SnapStart snapshots it)",
    )


class EventSettings(BundleSettings):
    """The bundle, and the one cap on an event's size: the stream, the API and
    ``ocsf-detect score`` reject a larger event as ``too_large``."""

    max_event_bytes: int = Field(
        default=MAX_EVENT_BYTES,
        gt=0,
        le=MAX_EVENT_BYTES,
        validation_alias=names.ENV_MAX_EVENT_BYTES,
        description="largest event accepted, in bytes of its JSON (at most 1 MiB, the "
        "Kinesis record cap); a larger one is rejected as too_large",
    )
    feedback_bucket: str | None = Field(
        default=None,
        validation_alias=names.ENV_FEEDBACK_BUCKET,
        min_length=3,
        pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
        description="bucket of analysts' verdicts and the overlay of judged-benign "
        "embeddings (ocsf_detect.feedback); unset, scoring uses the bundle alone",
    )
    feedback_refresh_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        validation_alias=names.ENV_FEEDBACK_REFRESH_S,
        description="seconds between two reads of the overlay",
    )
