"""The stack's customer-managed KMS key: stream, queues and topics are encrypted with it."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


class DataKey(Construct):
    """One rotating KMS key per stage for the data in flight (Kinesis, SQS, SNS)."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: str, retain: bool) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"ocsf-detect {stage}: events in Kinesis, SQS queues and SNS topics",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )

    def allow_service(self, service: str) -> None:
        """Let an AWS service that publishes into our encrypted queues/topics use the key.

        CloudWatch alarms publishing to an encrypted SNS topic need exactly this.
        """
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"Allow{service.split('.', maxsplit=1)[0].capitalize()}ToUseTheKey",
                principals=[iam.ServicePrincipal(service)],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy "*" means this key
            )
        )
