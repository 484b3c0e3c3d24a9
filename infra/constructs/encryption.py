"""The stack's customer-managed KMS key: queues, topics, log groups that hold events or
findings, the findings archive and (in staging and prod) the stream are encrypted with it.

Every service statement in the key policy is limited to this account (``aws:SourceAccount``)
and, where the service sends one, to this stack's resources (``aws:SourceArn`` or the
CloudWatch Logs encryption context): the key cannot be used by the same service on behalf
of another account or another application.
"""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class DataKey(Construct):
    """One rotating KMS key per stage for the data at rest and in flight."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=(
                f"ocsf-detect {stage}: events and findings in Kinesis, SQS, SNS, "
                "EventBridge archives and CloudWatch Logs"
            ),
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        self._allow_logs()

    def allow_service(self, service: str, *, source_arn: str | None = None) -> None:
        """Let an AWS service that publishes into our encrypted queues/topics use the key,
        for this account and for sources matching ``source_arn`` (may end in ``*``; by
        default the service's own resources in this account and region).

        CloudWatch alarms publishing to an encrypted SNS topic need exactly this.
        """
        prefix = service.split(".", maxsplit=1)[0]
        if source_arn is None:
            source_arn = f"arn:{Aws.PARTITION}:{prefix}:{Aws.REGION}:{Aws.ACCOUNT_ID}:*"
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"Allow{prefix.capitalize()}ToUseTheKey",
                principals=[iam.ServicePrincipal(service)],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": source_arn},
                },
            )
        )

    def _allow_logs(self) -> None:
        """CloudWatch Logs encrypts log groups of this account and region with the key
        (the encryption context names the log group)."""
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsToUseTheKey",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )
