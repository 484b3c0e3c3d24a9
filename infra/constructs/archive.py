"""The raw archive: every record of the stream, in S3 through Firehose, gzip, by date.

It is the source of future baselines (``ocsf-detect train --events``) and of replays past
the stream's retention. Firehose reads the stream as one more consumer (it does not take
the scorer's throughput), de-aggregates KPL records, appends a newline to each record and
writes gzip objects under ``raw/YYYY/MM/DD/``; what it could not write goes under
``errors/``.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.constructs.function import retention
from infra.constructs.nag import acknowledge, logical_id
from infra.constructs.storage import secure_bucket_props

RAW_PREFIX = "raw/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/"
FRESHNESS_MAX_S = 1800
"""Alarm when the oldest record not yet in S3 is older than this: Firehose flushes every
300 s (or 64 MiB), so half an hour is six missed flushes, not a slow one."""
ERROR_PREFIX = (
    "errors/!{firehose:error-output-type}/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/"
)


class RawArchive(Construct):
    """A Firehose delivery stream from the Kinesis stream to a bucket of its own."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stream: kinesis.IStream,
        access_logs: s3.IBucket,
        archive_days: int,
        retain: bool,
        log_key: kms.IKey,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="archive-then-expire",
                    transitions=[
                        s3.Transition(
                            storage_class=s3.StorageClass.INFREQUENT_ACCESS,
                            transition_after=Duration.days(30),
                        )
                    ],
                    expiration=Duration.days(archive_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            **secure_bucket_props(logs=access_logs, log_prefix="raw-archive/", retain=retain),
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
            description="Firehose: reads the event stream, writes the raw archive",
        )
        stream.grant_read(self.role)
        # Why a delivery failed (S3 refused, the role lost a grant) is written here; the
        # freshness alarm says that it did.
        self.log_group = logs.LogGroup(
            self,
            "DeliveryLog",
            retention=retention(log_retention_days),
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_stream = self.log_group.add_stream("S3Delivery")
        self.log_group.grant_write(self.role)
        # What Firehose's S3 destination needs, on this bucket only.
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "s3:AbortMultipartUpload",
                    "s3:GetBucketLocation",
                    "s3:GetObject",
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:PutObject",
                ],
                resources=[self.bucket.bucket_arn, self.bucket.arn_for_objects("*")],
            )
        )
        self.delivery_stream = firehose.CfnDeliveryStream(
            self,
            "DeliveryStream",
            delivery_stream_type="KinesisStreamAsSource",
            kinesis_stream_source_configuration=firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                kinesis_stream_arn=stream.stream_arn, role_arn=self.role.role_arn
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=self.role.role_arn,
                compression_format="GZIP",
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.log_group.log_group_name,
                    log_stream_name=log_stream.log_stream_name,
                ),
                prefix=RAW_PREFIX,
                error_output_prefix=ERROR_PREFIX,
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=300, size_in_m_bs=64
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True,
                    processors=[
                        firehose.CfnDeliveryStream.ProcessorProperty(
                            type="AppendDelimiterToRecord",
                            parameters=[
                                firehose.CfnDeliveryStream.ProcessorParameterProperty(
                                    parameter_name="Delimiter", parameter_value="\\n"
                                )
                            ],
                        )
                    ],
                ),
            ),
        )
        # The role's policy must exist before Firehose starts reading with it (the role
        # itself is a dependency already, through its ARN).
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            self.delivery_stream.node.add_dependency(policy)
        acknowledge(
            self.delivery_stream,
            "AwsSolutions-KDF1",
            "Server-side encryption of a delivery stream applies to Direct PUT only; this one "
            "reads the Kinesis stream, which is encrypted at rest, and the bucket is too",
        )
        self.freshness_alarm = cw.Alarm(
            self,
            "Freshness",
            alarm_description="The raw archive is not being written: the oldest record not "
            f"yet delivered to S3 is over {FRESHNESS_MAX_S // 60} minutes old (the delivery "
            "log says why); past the stream's retention it is lost to the archive",
            metric=cw.Metric(
                namespace="AWS/Firehose",
                metric_name="DeliveryToS3.DataFreshness",
                dimensions_map={"DeliveryStreamName": self.delivery_stream.ref},
                statistic="Maximum",
                period=Duration.minutes(5),
            ),
            threshold=FRESHNESS_MAX_S,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=2,
            # No data: nothing waits to be delivered (a silent stream)
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )
        bucket_id = logical_id(self.bucket)
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
            "Firehose writes objects under date prefixes it chooses at run time, in this "
            "archive bucket only",
        )
