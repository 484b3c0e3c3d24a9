"""The pre-traffic hook's configuration, validated when the container starts."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from ocsf_detect import names
from ocsf_detect.settings import BundleSettings

# arn:<partition>:lambda:<region>:<account>:function:<name>:<version number>
_VERSION_ARN = r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+:\d+$"


class HookSettings(BundleSettings):
    """The candidate, where the expected scores are (the bundle's manifest, on the model
    layer at ``bundle_path`` or in S3), how close the scores must be."""

    target_function_arn: str = Field(
        validation_alias=names.ENV_TARGET_FUNCTION_ARN,
        pattern=_VERSION_ARN,
        description="version-qualified ARN of the candidate (not an alias, not $LATEST)",
    )
    manifest_s3_uri: str | None = Field(
        default=None, validation_alias=names.ENV_MANIFEST_S3_URI, pattern=r"^s3://[^/]+/.+"
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
