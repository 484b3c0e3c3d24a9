"""Stage configuration: dev, staging and prod differ in sizes and release speed, not shape.

``StageConfig`` is plain frozen data; ``DeploySettings.from_context`` turns the CDK
context (``-c stage=prod -c modelVersion=... ``) into a stage plus the model selection,
validating every value so that a typo fails the synth with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from ocsf_detect import names
from ocsf_detect.grouping import GroupingPolicy

Architecture = Literal["x86_64", "arm64"]
BundleSource = Literal["layer", "s3"]
ApiAuth = Literal["iam", "api_key"]

_VERSION_RE = re.compile(names.BUNDLE_VERSION_PATTERN)
_SHA256_RE = re.compile(names.SHA256_PATTERN)
# One browser origin (scheme://host[:port]) or "*": it is written into response headers.
_ORIGIN_RE = re.compile(r"^(\*|https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?)$")


class ContextError(ValueError):
    """A CDK context value is missing or malformed; the message names the key."""


class DeploymentStyle(StrEnum):
    """How CodeDeploy moves the ``live`` alias to a new version."""

    ALL_AT_ONCE = "all_at_once"
    CANARY_10_PERCENT_5_MINUTES = "canary_10_percent_5_minutes"
    LINEAR_10_PERCENT_EVERY_1_MINUTE = "linear_10_percent_every_1_minute"


ON_DEMAND_INITIAL_SHARDS = 4


@dataclass(frozen=True)
class IngestConfig:
    on_demand: bool = True
    # False: the AWS-managed aws/kinesis key (producers need no KMS grant). True: the
    # stage's customer-managed data key, for key-policy control over who reads events.
    customer_managed_key: bool = False
    shard_count: int = 1  # only used when on_demand is False
    # A week: longer than the scorer's retry horizon (StageConfig.retry_horizon_hours), so
    # that what the on-failure queue points to is still in the stream to be redriven.
    retention_hours: int = 168
    # The raw archive (Firehose -> S3, gzip, by date): future baselines, and replays past
    # the stream's retention. Days its objects are kept.
    archive: bool = True
    archive_days: int = 365

    @property
    def initial_shards(self) -> int:
        """Shards at creation: an on-demand stream starts with 4 and adds more as its
        write rate grows."""
        return ON_DEMAND_INITIAL_SHARDS if self.on_demand else self.shard_count


@dataclass(frozen=True)
class ScoringConfig:
    memory_mb: int = 1024
    timeout_s: int = 60
    # Reserved in every stage: a guaranteed share (an API burst cannot starve the stream)
    # and a cap (a backlog cannot starve the account's other functions). A shard takes up
    # to parallelization_factor scorers at once, so the stream keeps up with at most
    # reserved_concurrency / parallelization_factor shards: an on-demand stream starts at
    # 4 and grows with its write rate; past the cap batches are throttled, the stream
    # lags (the iterator-age alarm). Synth refuses a shard count above it.
    reserved_concurrency: int = 10
    ephemeral_storage_mb: int = 512
    batch_size: int = 100
    max_batching_window_s: int = 1
    parallelization_factor: int = 1
    retry_attempts: int = 2
    max_record_age_s: int = 3600
    # SnapStart on published versions: the bundle loads during init and the snapshot holds
    # it (docs/releases.md says what changes). Only with ephemeral storage of 512 MB.
    snap_start: bool = False
    # Alert groups (docs/stream.md): event-time window, least event time between two
    # updates of a group, the severity and the count from which a group publishes, and
    # per class_uid the event fields naming its entity (else src_endpoint.ip, user.name,
    # actor.user.name). By default the stream function's own (ocsf_detect.grouping).
    group_window_s: int = GroupingPolicy.window_s
    group_update_interval_s: int = GroupingPolicy.update_interval_s
    group_notify_min_severity_id: int = GroupingPolicy.notify_min_severity_id
    group_notify_min_count: int = GroupingPolicy.notify_min_count
    group_keys: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def grouping_environment(self) -> dict[str, str]:
        environment = {
            names.ENV_GROUP_WINDOW_S: str(self.group_window_s),
            names.ENV_GROUP_UPDATE_INTERVAL_S: str(self.group_update_interval_s),
            names.ENV_GROUP_NOTIFY_MIN_SEVERITY: str(self.group_notify_min_severity_id),
            names.ENV_GROUP_NOTIFY_MIN_COUNT: str(self.group_notify_min_count),
        }
        if self.group_keys:
            keys = {str(uid): list(fields) for uid, fields in self.group_keys}
            environment[names.ENV_GROUP_KEYS] = json.dumps(keys, sort_keys=True)
        return environment


@dataclass(frozen=True)
class ApiConfig:
    memory_mb: int = 1024
    timeout_s: int = 15  # API Gateway's integration timeout is 29 s
    auth: ApiAuth = "iam"
    throttle_rate: float = 20
    throttle_burst: int = 40
    quota_per_day: int = 100_000  # usage plan quota, api_key auth only
    reserved_concurrency: int = 5  # see ScoringConfig.reserved_concurrency
    # Optional resource policy: only callers from this AWS Organization (aws:PrincipalOrgID)
    # or through this VPC endpoint (aws:SourceVpce) may invoke the API.
    allowed_org_id: str | None = None
    allowed_vpce_id: str | None = None
    waf: bool = False
    waf_rate_limit_per_5min: int = 2_000
    snap_start: bool = False  # as ScoringConfig.snap_start


@dataclass(frozen=True)
class ReleaseConfig:
    deployment: DeploymentStyle = DeploymentStyle.ALL_AT_ONCE
    anomaly_rate_max_percent: float = 20.0
    errors_max_per_minute: int = 1
    p99_duration_fraction_of_timeout: float = 0.8


@dataclass(frozen=True)
class MonitoringConfig:
    iterator_age_max_s: int = 300
    quarantine_depth_max: int = 100
    quarantine_rate_max_percent: float = 5.0
    log_retention_days: int = 7
    findings_archive_days: int = 30
    quarantine_object_days: int = 30


REDRIVE_WINDOW_HOURS = 72
"""Time an operator has to redrive what the on-failure queue points to (a long weekend),
after the scorer itself gave up on a record."""


@dataclass(frozen=True)
class StageConfig:
    name: str
    architecture: Architecture = "x86_64"
    retain_data: bool = False
    # Staging and prod run only a bundle pinned by S3 object version and manifest digest
    # (-c modelObjectVersion, -c modelManifestSha256): an archive overwritten under the same
    # key cannot reach them without a release, and a changed bundle is refused at load.
    require_pinned_model: bool = False
    # Object Lock (governance mode) on the registry bucket, days each published object
    # version is protected; None: off. Only takes effect on a new registry bucket.
    registry_object_lock_days: int | None = None
    ingest: IngestConfig = field(default_factory=IngestConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)

    def __post_init__(self) -> None:
        if self.ingest.retention_hours < self.retry_horizon_hours:
            raise ContextError(
                f"stage {self.name}: the stream keeps records {self.ingest.retention_hours} h, "
                f"less than the retry horizon of {self.retry_horizon_hours:g} h (the "
                f"scorer's max record age, {self.scoring.max_record_age_s} s, and "
                f"{REDRIVE_WINDOW_HOURS} h to redrive): records it gives up on would be gone "
                "before they can be redriven"
            )

    @property
    def retry_horizon_hours(self) -> float:
        """How long after arrival a record may still need reading from the stream: the
        scorer retries it up to its max record age, then an operator redrives it."""
        return self.scoring.max_record_age_s / 3600 + REDRIVE_WINDOW_HOURS


STAGES: dict[str, StageConfig] = {
    "dev": StageConfig(name="dev"),
    "staging": StageConfig(
        name="staging",
        retain_data=True,
        require_pinned_model=True,
        ingest=IngestConfig(customer_managed_key=True),
        scoring=ScoringConfig(
            memory_mb=1536,
            batch_size=200,
            max_batching_window_s=2,
            parallelization_factor=2,
            reserved_concurrency=20,
        ),
        api=ApiConfig(throttle_rate=50, throttle_burst=100, reserved_concurrency=10),
        release=ReleaseConfig(
            deployment=DeploymentStyle.CANARY_10_PERCENT_5_MINUTES, anomaly_rate_max_percent=10.0
        ),
        monitoring=MonitoringConfig(log_retention_days=30, findings_archive_days=90),
    ),
    "prod": StageConfig(
        name="prod",
        retain_data=True,
        require_pinned_model=True,
        ingest=IngestConfig(customer_managed_key=True),
        scoring=ScoringConfig(
            memory_mb=2048,
            reserved_concurrency=50,
            timeout_s=120,
            batch_size=500,
            max_batching_window_s=5,
            parallelization_factor=4,
            retry_attempts=3,
            max_record_age_s=6 * 3600,
        ),
        # Reserved, and so capped: 200 requests/s at ~60 ms needs about 12, and a burst
        # cannot take the stream scorer's concurrency (reserved apart: 50, so up to 12
        # shards at a parallelization factor of 4).
        api=ApiConfig(
            memory_mb=2048,
            throttle_rate=200,
            throttle_burst=400,
            waf=True,
            reserved_concurrency=20,
        ),
        release=ReleaseConfig(
            deployment=DeploymentStyle.LINEAR_10_PERCENT_EVERY_1_MINUTE,
            anomaly_rate_max_percent=5.0,
        ),
        monitoring=MonitoringConfig(
            iterator_age_max_s=120,
            log_retention_days=90,
            findings_archive_days=365,
            quarantine_object_days=90,
        ),
    ),
}


@dataclass(frozen=True)
class ModelSelection:
    """Which published bundle the functions run, and how they get it."""

    version: str
    object_version: str | None = None
    prefix: str = ""
    source: BundleSource = "layer"
    unzipped_bytes: int | None = None
    """The bundle's unpacked size (``-c modelUnzippedBytes``), for the size budget."""
    manifest_sha256: str | None = None
    """sha256 of the bundle's manifest.json (``-c modelManifestSha256``, printed by
    ``ocsf-detect publish``): the functions and the release hook refuse any other."""


@dataclass(frozen=True)
class DeploySettings:
    """Everything the context decides: the stage, the model and a few overrides."""

    stage: StageConfig
    model: ModelSelection | None  # None: the registry-only shape (-c registryOnly=true)
    ops_email: str | None = None
    cors_allow_origin: str | None = None
    manage_api_gateway_account: bool = False
    """Whether this stack sets the account-wide API Gateway CloudWatch role
    (``AWS::ApiGateway::Account``, one per account and region): opt-in, so that stages do
    not overwrite each other's or another application's setting."""

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> DeploySettings:
        """Build from ``node.try_get_context``-like lookups.

        Keys: stage, modelVersion, modelObjectVersion, modelPrefix, bundleSource,
        registryOnly, architecture, apiAuth, streamShards, snapStart, opsEmail,
        corsAllowOrigin, modelUnzippedBytes, modelManifestSha256, manageApiGatewayAccount,
        apiAllowedOrgId, apiAllowedVpceId, registryObjectLockDays.
        """
        stage_name = _text(get, "stage") or "dev"
        if stage_name not in STAGES:
            raise ContextError(
                f"-c stage={stage_name!r} is not a stage; use one of {', '.join(STAGES)}"
            )
        stage = STAGES[stage_name]

        architecture = _text(get, "architecture")
        if architecture:
            if architecture not in ("x86_64", "arm64"):
                raise ContextError(f"-c architecture={architecture!r}: use x86_64 or arm64")
            stage = dataclasses.replace(stage, architecture=architecture)  # type: ignore[arg-type]
        api_auth = _text(get, "apiAuth")
        if api_auth:
            if api_auth not in ("iam", "api_key"):
                raise ContextError(f"-c apiAuth={api_auth!r}: use iam or api_key")
            stage = dataclasses.replace(stage, api=dataclasses.replace(stage.api, auth=api_auth))  # type: ignore[arg-type]
        shards = _text(get, "streamShards")
        if shards:
            if not shards.isdigit() or int(shards) < 1:
                raise ContextError(f"-c streamShards={shards!r}: a positive shard count")
            ingest = dataclasses.replace(stage.ingest, on_demand=False, shard_count=int(shards))
            stage = dataclasses.replace(stage, ingest=ingest)
        needed = stage.ingest.initial_shards * stage.scoring.parallelization_factor
        if needed > stage.scoring.reserved_concurrency:
            # Past its reservation the scorer is throttled on every batch: the stream lags,
            # and AliasThrottles rolls back every release.
            raise ContextError(
                f"stage {stage.name}: {stage.ingest.initial_shards} shards x parallelization "
                f"factor {stage.scoring.parallelization_factor} need {needed} concurrent "
                f"scorers, above its reserved concurrency of "
                f"{stage.scoring.reserved_concurrency}; use fewer shards or raise "
                "ScoringConfig.reserved_concurrency"
            )
        if get("snapStart") is not None:
            snap_start = _flag(get, "snapStart")
            stage = dataclasses.replace(
                stage,
                scoring=dataclasses.replace(stage.scoring, snap_start=snap_start),
                api=dataclasses.replace(stage.api, snap_start=snap_start),
            )

        cors_allow_origin = _text(get, "corsAllowOrigin")
        if cors_allow_origin and not _ORIGIN_RE.match(cors_allow_origin):
            raise ContextError(
                f"-c corsAllowOrigin={cors_allow_origin!r} is not an origin: use "
                "scheme://host[:port] (e.g. https://console.example.com) or *"
            )
        org_id = _text(get, "apiAllowedOrgId")
        if org_id and not re.fullmatch(r"o-[a-z0-9]{10,32}", org_id):
            raise ContextError(f"-c apiAllowedOrgId={org_id!r} is not an organization id (o-...)")
        vpce_id = _text(get, "apiAllowedVpceId")
        if vpce_id and not re.fullmatch(r"vpce-[0-9a-f]{8,17}", vpce_id):
            raise ContextError(f"-c apiAllowedVpceId={vpce_id!r} is not a VPC endpoint id")
        if org_id and stage.api.auth != "iam":
            # An API-key caller is anonymous to IAM: it carries no aws:PrincipalOrgID, so
            # the organization's Deny would refuse every request.
            raise ContextError(
                f"-c apiAllowedOrgId={org_id!r} needs IAM auth (callers signed by an "
                "organization's principals); with apiAuth=api_key limit callers with "
                "-c apiAllowedVpceId instead"
            )
        if org_id or vpce_id:
            api = dataclasses.replace(stage.api, allowed_org_id=org_id, allowed_vpce_id=vpce_id)
            stage = dataclasses.replace(stage, api=api)
        model = _model_from_context(get)
        if model is not None and stage.require_pinned_model:
            missing = [
                key
                for key, value in (
                    ("modelObjectVersion", model.object_version),
                    ("modelManifestSha256", model.manifest_sha256),
                )
                if not value
            ]
            if missing:
                raise ContextError(
                    f"stage {stage.name} runs only a pinned bundle: pass "
                    + " and ".join(f"-c {key}" for key in missing)
                    + " (printed by `ocsf-detect publish`, listed by `ocsf-detect bundles`)"
                )
        lock_days = _text(get, "registryObjectLockDays")
        if lock_days is not None:
            if not lock_days.isdigit() or not 1 <= int(lock_days) <= 36500:
                raise ContextError(
                    f"-c registryObjectLockDays={lock_days!r}: days of governance-mode "
                    "retention (1-36500)"
                )
            stage = dataclasses.replace(stage, registry_object_lock_days=int(lock_days))
        registry_only = _flag(get, "registryOnly")
        if model is not None and registry_only:
            raise ContextError("-c registryOnly=true and -c modelVersion exclude each other")
        if model is None and not registry_only:
            # Deploying without a model would delete every function, queue and API of an
            # existing stage, so the registry-only shape must be asked for by name.
            raise ContextError(
                "no -c modelVersion: name the published bundle to run "
                "(`ocsf-detect bundles --bucket <registry>` lists them), or pass "
                "-c registryOnly=true to deploy only the model registry (first deploy of a "
                "stage; on an existing stage it removes everything else)"
            )
        return cls(
            stage=stage,
            model=model,
            ops_email=_text(get, "opsEmail"),
            cors_allow_origin=cors_allow_origin,
            manage_api_gateway_account=_flag(get, "manageApiGatewayAccount"),
        )


def _model_from_context(get: Callable[[str], Any]) -> ModelSelection | None:
    version = _text(get, "modelVersion")
    object_version = _text(get, "modelObjectVersion")
    source = _text(get, "bundleSource") or "layer"
    if source not in ("layer", "s3"):
        raise ContextError(f"-c bundleSource={source!r}: use layer or s3")
    if not version:
        if object_version:
            raise ContextError("-c modelObjectVersion needs -c modelVersion too")
        return None
    if not _VERSION_RE.match(version):
        raise ContextError(
            f"-c modelVersion={version!r} is not a bundle_version (e.g. 1.0.0+3f2a9c1b7e4d)"
        )
    size = _text(get, "modelUnzippedBytes")
    if size is not None and (not size.isdigit() or int(size) < 1):
        raise ContextError(
            f"-c modelUnzippedBytes={size!r}: the bundle's unpacked size in bytes "
            "(the sum of its files' sizes)"
        )
    digest = _text(get, "modelManifestSha256")
    if digest is not None and not _SHA256_RE.match(digest):
        raise ContextError(
            f"-c modelManifestSha256={digest!r}: the 64 lowercase hex digits "
            "`ocsf-detect publish` prints"
        )
    return ModelSelection(
        version=version,
        object_version=object_version,
        manifest_sha256=digest,
        prefix=_text(get, "modelPrefix") or "",
        source=source,  # type: ignore[arg-type]
        unzipped_bytes=int(size) if size is not None else None,
    )


def _text(get: Callable[[str], Any], key: str) -> str | None:
    value = get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _flag(get: Callable[[str], Any], key: str) -> bool:
    value = get(key)
    if value is None or value is False:
        return False
    if value is True:
        return True
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ContextError(f"-c {key}={value!r}: use true or false")
