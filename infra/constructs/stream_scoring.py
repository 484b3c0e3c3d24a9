"""Stream scoring: the function that scores Kinesis batches, and where its leftovers go.

The event source mapping is attached to the ``live`` alias, never to ``$LATEST``, so
CodeDeploy decides which version reads the stream. Records the function cannot take
(malformed, oversized) are *quarantined* by the function itself (SQS, plus a bucket for
payloads too large for a message); batches that keep failing after bisecting and the
bounded retries go to the on-failure queue as pointers into the stream.

The function's role may only send to the two queues (sqs:SendMessage, with the KMS data-key
actions SQS encryption needs) and only put objects under the quarantine prefix of the
bucket: CDK's ``grant_send_messages`` and ``grant_put`` would add KMS encrypt/re-encrypt,
object retention, legal hold, tagging and multipart-abort rights the code never uses.
"""

from __future__ import annotations

import jsii
from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.alert_state import AlertState
from infra.constructs.function import ServiceFunction
from infra.constructs.model_artifacts import FunctionLayers
from infra.constructs.nag import acknowledge, acknowledge_kms_grant, logical_id
from infra.constructs.storage import secure_bucket_props
from infra.stages import Architecture, ScoringConfig
from ocsf_detect import names

QUEUE_RETENTION = Duration.days(14)
QUEUE_VISIBILITY = Duration.seconds(30)
QUARANTINE_OBJECTS = f"{names.QUARANTINE_KEY_PREFIX}*"
"""The keys the function writes to the quarantine bucket."""
SUPPRESSED_OBJECTS = f"{names.SUPPRESSED_KEY_PREFIX}*"
"""The keys of suppressed findings in the quarantine bucket."""
WITHHELD_OBJECTS = f"{names.WITHHELD_KEY_PREFIX}*"
"""The keys of withheld findings (counted into a group without a message)."""
SQS_SEND_KMS_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
"""What a producer needs on the key of an SQS queue encrypted with a customer key."""


def grant_send_only(queue: sqs.IQueue, grantee: iam.IGrantable) -> None:
    """sqs:SendMessage (also covers SendMessageBatch) on ``queue`` and the data-key actions
    on its key; none of grant_send_messages' GetQueueAttributes/GetQueueUrl/kms:Encrypt/
    kms:ReEncrypt*."""
    queue.grant(grantee, "sqs:SendMessage")
    if queue.encryption_master_key is not None:
        queue.encryption_master_key.grant(grantee, *SQS_SEND_KMS_ACTIONS)


@jsii.implements(lambda_.IEventSourceDlq)
class SendOnlySqsDlq:
    """``sources.SqsDlq`` with the narrow grant of ``grant_send_only``."""

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(
        self, target: lambda_.IEventSourceMapping, target_handler: lambda_.IFunction
    ) -> lambda_.DlqDestinationConfig:
        grant_send_only(self.queue, target_handler)
        return lambda_.DlqDestinationConfig(destination=self.queue.queue_arn)


def encrypted_queue(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    dead_letter: sqs.IQueue | None = None,
    visibility_timeout: Duration = QUEUE_VISIBILITY,
    retain: bool = False,
) -> sqs.Queue:
    """A KMS-encrypted, TLS-only queue that keeps messages for 14 days; with ``retain``
    (staging, prod) it outlives the stack, so what it holds survives a replacement."""
    return sqs.Queue(
        scope,
        construct_id,
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        encryption=sqs.QueueEncryption.KMS,
        encryption_master_key=key,
        enforce_ssl=True,
        retention_period=QUEUE_RETENTION,
        visibility_timeout=visibility_timeout,
        dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter, max_receive_count=5)
        if dead_letter
        else None,
    )


class StreamScoring(Construct):
    """The scoring function on the stream, its quarantine and its failure destination."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ScoringConfig,
        architecture: Architecture,
        stream: kinesis.IStream,
        key: kms.IKey,
        layers: FunctionLayers,
        topic: sns.ITopic,
        bus: events.IEventBus,
        access_logs: s3.IBucket,
        log_retention_days: int,
        quarantine_object_days: int,
        retain: bool = False,
        alert_state: AlertState | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        # --- where rejected records go -------------------------------------------------
        self.quarantine_dlq = encrypted_queue(self, "QuarantineDlq", key=key, retain=retain)
        self.quarantine_queue = encrypted_queue(
            self, "QuarantineQueue", key=key, dead_letter=self.quarantine_dlq, retain=retain
        )
        self.quarantine_bucket = s3.Bucket(
            self,
            "QuarantineBucket",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-quarantined-payloads",
                    expiration=Duration.days(quarantine_object_days),
                )
            ],
            **secure_bucket_props(logs=access_logs, log_prefix="quarantine/"),
        )
        self.failure_queue = encrypted_queue(self, "BatchFailureQueue", key=key, retain=retain)
        acknowledge(
            self.failure_queue,
            "AwsSolutions-SQS3",
            "This queue is itself the dead end: the stream mapping's on-failure destination "
            "(pointers to shard ranges that exhausted their retries); nothing consumes it "
            "automatically, an alarm fires on its depth",
        )

        # --- the function -----------------------------------------------------------------
        self.service = ServiceFunction(
            self,
            "Scorer",
            handler=names.STREAM_HANDLER,
            description="ocsf-detect: scores OCSF events from Kinesis, publishes findings",
            architecture=architecture,
            memory_mb=config.memory_mb,
            timeout=Duration.seconds(config.timeout_s),
            layers=layers.all_layers,
            environment={
                **layers.bundle_environment(),
                names.ENV_ALERT_TOPIC_ARN: topic.topic_arn,
                names.ENV_EVENT_BUS_NAME: bus.event_bus_name,
                names.ENV_QUARANTINE_QUEUE_URL: self.quarantine_queue.queue_url,
                names.ENV_QUARANTINE_BUCKET: self.quarantine_bucket.bucket_name,
                **({names.ENV_LOAD_BUNDLE_AT_INIT: "true"} if config.snap_start else {}),
                **(
                    {
                        names.ENV_ALERT_TABLE_NAME: alert_state.table.table_name,
                        **config.grouping_environment(),
                    }
                    if alert_state is not None
                    else {}
                ),
            },
            log_retention_days=log_retention_days,
            log_key=key,
            reserved_concurrency=config.reserved_concurrency,
            ephemeral_storage_mb=config.ephemeral_storage_mb,
            snap_start=config.snap_start,
        )
        layers.check_bundle_fits("the stream function", config.ephemeral_storage_mb)
        self.function = self.service.function
        topic.grant_publish(self.function)
        bus.grant_put_events_to(self.function)
        grant_send_only(self.quarantine_queue, self.function)
        # The bucket is SSE-S3 (secure_bucket_props): a put needs no KMS action.
        iam.Grant.add_to_principal(
            grantee=self.function,
            actions=["s3:PutObject"],
            resource_arns=[self.quarantine_bucket.arn_for_objects(QUARANTINE_OBJECTS)],
        )
        layers.grant_bundle_read(self.function)
        if alert_state is not None:
            alert_state.grant_scorer(self.function)
            # Suppressed and withheld findings are archived beside the quarantined payloads.
            iam.Grant.add_to_principal(
                grantee=self.function,
                actions=["s3:PutObject"],
                resource_arns=[
                    self.quarantine_bucket.arn_for_objects(prefix)
                    for prefix in (SUPPRESSED_OBJECTS, WITHHELD_OBJECTS)
                ],
            )
        bucket_id = logical_id(self.quarantine_bucket)
        acknowledge(
            self.service.role,
            f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{QUARANTINE_OBJECTS}]",
            "Oversized quarantined payloads are written under quarantine/<day>/<shard>/"
            "<sequence>-<sub_index>.bin, keys known only at run time; s3:PutObject only (no "
            "read, no delete, no retention, legal hold or tagging)",
        )
        if alert_state is not None:
            acknowledge(
                self.service.role,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{SUPPRESSED_OBJECTS}]",
                "Suppressed findings are archived under suppressed/<day>/<rule id>/<finding "
                "uid>.json, keys known only at run time; s3:PutObject only",
            )
            acknowledge(
                self.service.role,
                f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{WITHHELD_OBJECTS}]",
                "Findings counted into an alert group without a message are archived under "
                "withheld/<day>/<group uid>/<finding uid>.json, keys known only at run time; "
                "s3:PutObject only",
            )
        acknowledge_kms_grant(self.service.role)

        # --- the stream, read through the alias --------------------------------------------
        self.alias = self.service.live_alias()
        self.event_source = sources.KinesisEventSource(
            stream,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            batch_size=config.batch_size,
            max_batching_window=Duration.seconds(config.max_batching_window_s),
            parallelization_factor=config.parallelization_factor,
            report_batch_item_failures=True,
            bisect_batch_on_error=True,
            retry_attempts=config.retry_attempts,
            max_record_age=Duration.seconds(config.max_record_age_s),
            on_failure=SendOnlySqsDlq(self.failure_queue),
        )
        self.alias.add_event_source(self.event_source)
        self.close_groups_rule = (
            alert_state.close_groups_on_schedule(self.alias) if alert_state is not None else None
        )
