"""The pre-traffic hook's configuration, validated when the container starts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from ocsf_detect import names

# arn:<partition>:lambda:<region>:<account>:function:<name>:<version number>
_VERSION_ARN = r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+:\d+$"


class HookSettings(BaseSettings):
    """Where the candidate and the expected scores are; how close the scores must be."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    target_function_arn: str = Field(
        validation_alias=names.ENV_TARGET_FUNCTION_ARN,
        pattern=_VERSION_ARN,
        description="version-qualified ARN of the candidate (not an alias, not $LATEST)",
    )
    bundle_path: Path = Field(
        default=Path(names.DEFAULT_BUNDLE_PATH), validation_alias=names.ENV_BUNDLE_PATH
    )
    manifest_s3_uri: str | None = Field(
        default=None, validation_alias=names.ENV_MANIFEST_S3_URI, pattern=r"^s3://[^/]+/.+"
    )
    expected_bundle_version: str | None = Field(
        default=None,
        validation_alias=names.ENV_EXPECTED_BUNDLE_VERSION,
        pattern=names.BUNDLE_VERSION_PATTERN,
    )
    abs_tolerance: float = Field(
        default=1e-3, ge=0, validation_alias=names.ENV_SELFTEST_ABS_TOLERANCE
    )
    rel_tolerance: float = Field(
        default=1e-3, ge=0, validation_alias=names.ENV_SELFTEST_REL_TOLERANCE
    )


@lru_cache(maxsize=1)
def get_settings() -> HookSettings:
    """Read the environment once per container; a bad variable fails the cold start."""
    return HookSettings()
