"""Ingest: the Kinesis data stream OCSF events are written to."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.constructs.nag import acknowledge
from infra.stages import IngestConfig


class Ingest(Construct):
    """An on-demand (or provisioned) stream, encrypted with aws/kinesis or the stage's key."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: IngestConfig,
        key: kms.IKey,
        retain: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_mode=kinesis.StreamMode.ON_DEMAND
            if config.on_demand
            else kinesis.StreamMode.PROVISIONED,
            shard_count=None if config.on_demand else config.shard_count,
            retention_period=Duration.hours(config.retention_hours),
            encryption=kinesis.StreamEncryption.KMS
            if config.customer_managed_key
            else kinesis.StreamEncryption.MANAGED,
            encryption_key=key if config.customer_managed_key else None,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        if config.customer_managed_key:
            acknowledge(
                self.stream,
                "AwsSolutions-KDS3",
                "IngestConfig.customer_managed_key chose the stage's rotating data key over "
                "aws/kinesis, so its key policy decides who can read security events",
            )
