"""The prediction API's configuration, validated when the container starts."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from ocsf_detect import names
from ocsf_detect.settings import EventSettings
from prediction_api.models import MAX_BATCH_EVENTS


class ApiSettings(EventSettings):
    """The bundle and the event size cap (``EventSettings``), who may call from a browser,
    how large a batch may be."""

    cors_allow_origin: str | None = Field(
        default=None,
        validation_alias=names.ENV_CORS_ALLOW_ORIGIN,
        min_length=1,
        description="CORS headers are sent only when this is set",
    )
    alert_table_name: str | None = Field(
        default=None,
        validation_alias=names.ENV_ALERT_TABLE_NAME,
        pattern=r"^[A-Za-z0-9_.-]{3,255}$",
        description="the alert-state table holding the suppression rules (/v1/suppressions)",
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
