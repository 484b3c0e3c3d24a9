"""The building block every Lambda function of the app is made of.

Python 3.12 on the ``functions/`` asset (one asset shared by all functions), an explicit
role that starts with nothing but writing to its own log group, a log group with a
retention (encrypted with the stage's data key: logs can quote events), X-Ray tracing,
Powertools' service name and namespace from ``names``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Size
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.constructs.nag import acknowledge
from infra.stages import Architecture
from ocsf_detect import names

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_12
DEFAULT_EPHEMERAL_STORAGE_MB = 512
"""A function's /tmp when it sets no ephemeral storage."""
_ASSET_EXCLUDE = ["**/tests", "**/__pycache__", "**/*.pyc", "**/*.egg-info", "**/.mypy_cache"]

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def retention(days: int) -> logs.RetentionDays:
    """CloudWatch Logs retention for ``days`` (one of the values CloudWatch offers)."""
    if days not in _RETENTION:
        raise ValueError(f"log retention of {days} days: use one of {sorted(_RETENTION)}")
    return _RETENTION[days]


def lambda_architecture(architecture: Architecture) -> lambda_.Architecture:
    return lambda_.Architecture.ARM_64 if architecture == "arm64" else lambda_.Architecture.X86_64


def functions_code_size() -> int:
    """Unzipped bytes of the ``functions/`` asset (what ``functions_code`` packs)."""
    return sum(
        p.stat().st_size
        for p in FUNCTIONS_DIR.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and p.suffix != ".pyc"
        and not any(
            part in ("tests", "__pycache__", ".mypy_cache") or part.endswith(".egg-info")
            for part in p.relative_to(FUNCTIONS_DIR).parts
        )
    )


def functions_code() -> lambda_.Code:
    """The ``functions/`` directory: every handler package, without tests or caches."""
    return lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=_ASSET_EXCLUDE)


class ServiceFunction(Construct):
    """A Python 3.12 function with its own least-privilege role and log group."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: str,
        description: str,
        architecture: Architecture,
        memory_mb: int,
        timeout: Duration,
        layers: Sequence[lambda_.ILayerVersion],
        environment: Mapping[str, str],
        log_retention_days: int,
        log_key: kms.IKey | None = None,
        reserved_concurrency: int | None = None,
        ephemeral_storage_mb: int | None = None,
        snap_start: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        if snap_start and (ephemeral_storage_mb or 0) > DEFAULT_EPHEMERAL_STORAGE_MB:
            raise ValueError(
                f"{construct_id}: SnapStart takes no more than {DEFAULT_EPHEMERAL_STORAGE_MB} MB "
                f"of ephemeral storage, not {ephemeral_storage_mb}"
            )
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=retention(log_retention_days),
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (execution role)",
        )
        # Instead of AWSLambdaBasicExecutionRole (every log group of the account): its own.
        self.log_group.grant_write(self.role)
        env = {
            "POWERTOOLS_SERVICE_NAME": names.SERVICE_NAME,
            "POWERTOOLS_METRICS_NAMESPACE": names.METRICS_NAMESPACE,
            **environment,
        }
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            handler=handler,
            code=functions_code(),
            description=description,
            architecture=lambda_architecture(architecture),
            memory_size=memory_mb,
            timeout=timeout,
            layers=list(layers),
            environment=env,
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=reserved_concurrency,
            ephemeral_storage_size=Size.mebibytes(ephemeral_storage_mb)
            if ephemeral_storage_mb
            else None,
            # Published versions start from a snapshot taken after init (the live alias
            # only ever points at published versions).
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments/PutTelemetryRecords support no resource-level "
            "permissions; this is the only wildcard the role holds",
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to Python 3.12 on purpose: the dependency layer is built from cp312 "
            "wheels (infra/layers.py); move both together",
        )

    def live_alias(self) -> lambda_.Alias:
        """The ``live`` alias on the current version: what traffic and CodeDeploy use."""
        return lambda_.Alias(
            self,
            "Live",
            alias_name=names.LIVE_ALIAS,
            version=self.function.current_version,
            description="Receives all traffic; CodeDeploy shifts it between versions",
        )
