"""The prediction API's configuration, validated when the container starts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocsf_detect import names
from prediction_api.models import MAX_BATCH_EVENTS


class ApiSettings(BaseSettings):
    """Where the bundle is, who may call from a browser, how large a batch may be."""

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
        description="when set, a bundle of any other bundle_version is a 503 (and logged)",
    )
    cors_allow_origin: str | None = Field(
        default=None,
        validation_alias=names.ENV_CORS_ALLOW_ORIGIN,
        min_length=1,
        description="CORS headers are sent only when this is set",
    )
    max_batch_events: int = Field(
        default=MAX_BATCH_EVENTS,
        ge=1,
        le=MAX_BATCH_EVENTS,
        validation_alias=names.ENV_MAX_BATCH_EVENTS,
        description="events per /v1/predict/batch request; more is a 413",
    )


@lru_cache(maxsize=1)
def get_settings() -> ApiSettings:
    """Read the environment once per container; a bad variable fails the cold start."""
    return ApiSettings()
