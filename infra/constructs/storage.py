"""Buckets: the access-log bucket, and the defaults every other bucket of the app shares."""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.nag import acknowledge


def secure_bucket_props(
    *, logs: s3.IBucket | None, log_prefix: str, retain: bool = True
) -> dict[str, Any]:
    """Keyword arguments every data bucket gets: encrypted, private, TLS-only, logged."""
    props: dict[str, Any] = {
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "enforce_ssl": True,
        "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        # Buckets hold models and evidence: never deleted with the stack.
        "removal_policy": RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    }
    if logs is not None:
        props["server_access_logs_bucket"] = logs
        props["server_access_logs_prefix"] = log_prefix
    return props


class AccessLogs(Construct):
    """The bucket receiving S3 server access logs of the registry and quarantine buckets."""

    def __init__(self, scope: Construct, construct_id: str, *, retention_days: int = 365) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            # Server access logging only delivers to SSE-S3 buckets.
            **secure_bucket_props(logs=None, log_prefix=""),
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(retention_days))
            ],
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "This is the access-log destination; logging it into itself would loop and "
            "logging it elsewhere only moves the question",
        )
