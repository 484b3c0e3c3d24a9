"""The stream-scoring function's configuration, validated when the container starts."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, ValidationError, model_validator

from ocsf_detect import names
from ocsf_detect.grouping import GroupingPolicy
from ocsf_detect.ocsf.limits import MAX_EVENT_BYTES
from ocsf_detect.records import (
    DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_EVENTS_PER_RECORD,
    RecordLimits,
)
from ocsf_detect.settings import EventSettings


class SettingsError(Exception):
    """A missing or malformed environment variable; the message names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StreamSettings(EventSettings):
    """The bundle and the event size cap (``EventSettings``), where alerts and poison
    records go, how hard to retry."""

    alert_topic_arn: str = Field(
        validation_alias=names.ENV_ALERT_TOPIC_ARN,
        pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]+$",
    )
    event_bus_name: str = Field(
        validation_alias=names.ENV_EVENT_BUS_NAME, min_length=1, pattern=r"^[A-Za-z0-9._/:-]+$"
    )
    quarantine_queue_url: str = Field(
        validation_alias=names.ENV_QUARANTINE_QUEUE_URL, pattern=r"^https?://\S+$"
    )
    quarantine_bucket: str | None = Field(
        default=None, validation_alias=names.ENV_QUARANTINE_BUCKET, min_length=3
    )
    publish_max_attempts: int = Field(
        default=3, ge=1, le=10, validation_alias=names.ENV_PUBLISH_MAX_ATTEMPTS
    )
    max_decompressed_bytes: int = Field(
        default=DEFAULT_MAX_DECOMPRESSED_BYTES,
        ge=MAX_EVENT_BYTES,
        le=256 * 1024 * 1024,
        validation_alias=names.ENV_MAX_DECOMPRESSED_BYTES,
        description="a gzip/zlib record inflating beyond this is rejected (too_large)",
    )
    max_batch_bytes: int = Field(
        default=DEFAULT_MAX_BATCH_DECOMPRESSED_BYTES,
        ge=MAX_EVENT_BYTES,
        le=4 * 1024 * 1024 * 1024,
        validation_alias=names.ENV_MAX_BATCH_BYTES,
        description="the events one invocation keeps of its batch; the records past it are "
        "reported as batch item failures and read by the next invocation",
    )
    max_events_per_record: int = Field(
        default=DEFAULT_MAX_EVENTS_PER_RECORD,
        ge=1,
        le=1_000_000,
        validation_alias=names.ENV_MAX_EVENTS_PER_RECORD,
        description="a record holding more events is rejected (too_many_events)",
    )

    deadline_reserve_ms: int = Field(
        default=13_000,
        ge=1_000,
        le=600_000,
        validation_alias=names.ENV_DEADLINE_RESERVE_MS,
        description="no publish or quarantine request starts with less than this left before "
        "the invocation's timeout (one request's connect and read timeouts, 2 + 10 s, and a "
        "second to answer); what is not sent is reported failed and sent again by Lambda",
    )

    alert_table_name: str | None = Field(
        default=None,
        validation_alias=names.ENV_ALERT_TABLE_NAME,
        pattern=r"^[A-Za-z0-9_.-]{3,255}$",
        description="the alert-state table: anomalies are grouped and suppression rules "
        "apply; unset, every anomaly is published as its own finding",
    )
    group_window_s: int = Field(
        default=GroupingPolicy.window_s,
        ge=60,
        le=7 * 24 * 3600,
        validation_alias=names.ENV_GROUP_WINDOW_S,
        description="length of a group's event-time window (tumbling), in seconds",
    )
    group_update_interval_s: int = Field(
        default=GroupingPolicy.update_interval_s,
        ge=0,
        le=7 * 24 * 3600,
        validation_alias=names.ENV_GROUP_UPDATE_INTERVAL_S,
        description="a group publishes an update at most once per this much event time",
    )
    group_keys: dict[int, list[str]] = Field(
        default_factory=dict,
        validation_alias=names.ENV_GROUP_KEYS,
        description="JSON: class_uid -> the event fields naming its entity, e.g. "
        '{"3002": ["user.name"]}; other classes take the first of src_endpoint.ip, '
        "user.name, actor.user.name",
    )
    group_notify_min_severity_id: int = Field(
        default=GroupingPolicy.notify_min_severity_id,
        ge=1,
        le=5,
        validation_alias=names.ENV_GROUP_NOTIFY_MIN_SEVERITY,
        description="a group speaks once its highest severity_id reaches this (1: always); "
        "below it, its anomalies are counted and stored, not published",
    )
    group_notify_min_count: int = Field(
        default=GroupingPolicy.notify_min_count,
        ge=1,
        le=1000,
        validation_alias=names.ENV_GROUP_NOTIFY_MIN_COUNT,
        description="a group speaks once it counts this many anomalies (1: at its first); "
        "until then its anomalies are counted and stored, not published",
    )
    suppression_cache_s: int = Field(
        default=60,
        ge=0,
        le=3600,
        validation_alias=names.ENV_SUPPRESSION_CACHE_S,
        description="suppression rules are read again after this many seconds",
    )

    @model_validator(mode="after")
    def _archive_for_suppressed(self) -> StreamSettings:
        if self.alert_table_name and not self.quarantine_bucket:
            raise ValueError(
                f"{names.ENV_ALERT_TABLE_NAME} needs {names.ENV_QUARANTINE_BUCKET}: "
                "suppressed findings are archived in the quarantine bucket"
            )
        return self

    @property
    def record_limits(self) -> RecordLimits:
        return RecordLimits(
            self.max_decompressed_bytes, self.max_events_per_record, self.max_batch_bytes
        )

    @property
    def grouping_policy(self) -> GroupingPolicy:
        return GroupingPolicy(
            window_s=self.group_window_s,
            update_interval_s=self.group_update_interval_s,
            notify_min_severity_id=self.group_notify_min_severity_id,
            notify_min_count=self.group_notify_min_count,
            keys={k: tuple(v) for k, v in self.group_keys.items()},
        )


def load_settings() -> StreamSettings:
    """Read and validate the environment; the error names every bad variable."""
    try:
        return StreamSettings()
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        first = str(exc.errors()[0]["loc"][0]) if exc.errors() else None
        raise SettingsError(
            "invalid stream-scoring configuration: " + "; ".join(problems), field=first
        ) from exc


@lru_cache(maxsize=1)
def get_settings() -> StreamSettings:
    """The settings of this execution environment, read once."""
    return load_settings()
