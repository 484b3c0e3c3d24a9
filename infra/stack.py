"""The one stack of a stage. It composes the constructs and wires them; nothing else.

Two shapes, chosen by the context:

* ``-c registryOnly=true``: only the model registry (and its access-log bucket), for the
  first deploy of a stage, before any bundle can be published into the bucket;
* ``-c modelVersion=...``: everything (stream, scoring, API, alerting, releases and
  monitoring) running the bundle published under that version.

One of the two is required: a deploy that merely forgot ``modelVersion`` must not shrink
an existing stage to its registry.

The registry's construct path is the same in both shapes, so going from the first to the
second never replaces the bucket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_cdk import Annotations, CfnOutput, Duration, Stack, Tags
from constructs import Construct

from infra.constructs.alert_state import AlertState
from infra.constructs.alerting import Alerting
from infra.constructs.archive import RawArchive
from infra.constructs.encryption import DataKey
from infra.constructs.feedback import FeedbackStore
from infra.constructs.ingest import Ingest
from infra.constructs.model_artifacts import FunctionLayers, ModelRegistry
from infra.constructs.monitoring import Monitoring
from infra.constructs.prediction_api import PredictionApi
from infra.constructs.releases import AppSignals, Releases
from infra.constructs.storage import AccessLogs
from infra.constructs.stream_scoring import StreamScoring
from infra.layers import BuiltLayer
from infra.stages import DeploySettings
from ocsf_detect import names


@dataclass(frozen=True)
class LayerAssets:
    """The locally built layer directories (see ``infra.layers``)."""

    dependencies: BuiltLayer
    shared: BuiltLayer


def stack_name(stage: str) -> str:
    return f"OcsfDetect-{stage}"


REGISTRY_ONLY_MESSAGE = (
    "-c registryOnly=true: this deploys the model registry bucket only. Publish a bundle "
    "with `ocsf-detect publish --bundle DIR --bucket <ModelRegistryBucketName>`, then "
    "deploy again with the -c modelVersion=... -c modelObjectVersion=... it prints."
)


class OcsfDetectStack(Stack):
    """ocsf-detect for one stage (see the module docstring for its two shapes)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: DeploySettings,
        layer_assets: Callable[[], LayerAssets],
        **kwargs: Any,
    ) -> None:
        stage = settings.stage
        model = settings.model
        kwargs.setdefault(
            "description",
            f"ocsf-detect ({stage.name}): streaming anomaly detection for OCSF events"
            + (f", bundle {model.version}" if model else ", model registry only"),
        )
        kwargs.setdefault("termination_protection", stage.retain_data)
        super().__init__(scope, construct_id, **kwargs)
        Tags.of(self).add("project", names.SERVICE_NAME)
        Tags.of(self).add("stage", stage.name)
        self.settings = settings

        self.access_logs = AccessLogs(self, "AccessLogs")
        self.registry = ModelRegistry(
            self,
            "ModelRegistry",
            stage=stage.name,
            access_logs=self.access_logs.bucket,
            object_lock_days=stage.registry_object_lock_days,
        )
        CfnOutput(
            self,
            "ModelRegistryBucketName",
            value=self.registry.bucket.bucket_name,
            description="Bucket for `ocsf-detect publish --bucket`",
        )
        if model is None:
            Annotations.of(self).add_info(REGISTRY_ONLY_MESSAGE)
            CfnOutput(self, "NextStep", value=REGISTRY_ONLY_MESSAGE)
            return

        monitoring_config = stage.monitoring
        retention_days = monitoring_config.log_retention_days
        assets = layer_assets()
        self.data_key = DataKey(self, "DataKey", stage=stage.name, retain=stage.retain_data)
        self.ingest = Ingest(
            self, "Ingest", config=stage.ingest, key=self.data_key.key, retain=stage.retain_data
        )
        self.archive = (
            RawArchive(
                self,
                "RawArchive",
                stream=self.ingest.stream,
                access_logs=self.access_logs.bucket,
                archive_days=stage.ingest.archive_days,
                retain=stage.retain_data,
                log_key=self.data_key.key,
                log_retention_days=retention_days,
            )
            if stage.ingest.archive
            else None
        )
        self.alerting = Alerting(
            self,
            "Alerting",
            key=self.data_key.key,
            archive_days=monitoring_config.findings_archive_days,
            log_retention_days=retention_days,
        )
        self.layers = FunctionLayers(
            self,
            "Layers",
            registry=self.registry,
            model=model,
            dependencies=assets.dependencies,
            shared=assets.shared,
            architecture=stage.architecture,
        )
        self.alert_state = AlertState(
            self, "AlertState", key=self.data_key.key, retain=stage.retain_data
        )
        self.scoring = StreamScoring(
            self,
            "StreamScoring",
            config=stage.scoring,
            architecture=stage.architecture,
            stream=self.ingest.stream,
            key=self.data_key.key,
            layers=self.layers,
            topic=self.alerting.topic,
            bus=self.alerting.bus,
            access_logs=self.access_logs.bucket,
            log_retention_days=retention_days,
            quarantine_object_days=monitoring_config.quarantine_object_days,
            retain=stage.retain_data,
            alert_state=self.alert_state,
        )
        self.api = PredictionApi(
            self,
            "PredictionApi",
            stage=stage.name,
            config=stage.api,
            architecture=stage.architecture,
            layers=self.layers,
            log_retention_days=retention_days,
            log_key=self.data_key.key,
            cors_allow_origin=settings.cors_allow_origin,
            manage_account=settings.manage_api_gateway_account,
        )
        # The API manages the suppression rules (/v1/suppressions) in the alert-state table.
        self.api.function.add_environment(
            names.ENV_ALERT_TABLE_NAME, self.alert_state.table.table_name
        )
        self.alert_state.grant_rules(self.api.function)
        # Analysts' verdicts (POST /v1/feedback) and the overlay both functions search.
        self.feedback = FeedbackStore(
            self, "Feedback", access_logs=self.access_logs.bucket, retain=stage.retain_data
        )
        self.feedback.attach_scorer(self.scoring.function)
        self.feedback.attach_api(self.api.function)
        self.releases = Releases(
            self,
            "Releases",
            config=stage.release,
            architecture=stage.architecture,
            layers=self.layers,
            log_retention_days=retention_days,
            log_key=self.data_key.key,
        )
        self.releases.guard(
            "StreamScoring",
            self.scoring.service,
            self.scoring.alias,
            timeout=Duration.seconds(stage.scoring.timeout_s),
            signals=AppSignals(
                events=names.METRIC_SCORED,
                anomalies=names.METRIC_ANOMALIES,
                failed_records=names.METRIC_FAILED,
            ),
        )
        self.releases.guard(
            "PredictionApi",
            self.api.service,
            self.api.alias,
            timeout=Duration.seconds(stage.api.timeout_s),
            signals=AppSignals(
                events=names.METRIC_PREDICTIONS, anomalies=names.METRIC_PREDICTED_ANOMALIES
            ),
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            stage=stage.name,
            config=monitoring_config,
            key=self.data_key,
            stream=self.ingest.stream,
            scoring_alias=self.scoring.alias,
            scoring_function=self.scoring.function,
            api_function=self.api.function,
            api=self.api.api,
            quarantine_queue=self.scoring.quarantine_queue,
            quarantine_dlq=self.scoring.quarantine_dlq,
            failure_queue=self.scoring.failure_queue,
            findings_rule=self.alerting.example_rule,
            findings_bus=self.alerting.bus,
            bundle_version=model.version,
            ops_email=settings.ops_email,
        )
        self.monitoring.notify(*self.releases.alarms, *self.api.alarms)
        if self.archive is not None:
            self.monitoring.notify(self.archive.freshness_alarm)

        CfnOutput(self, "ModelVersion", value=model.version)
        CfnOutput(self, "StreamName", value=self.ingest.stream.stream_name)
        if stage.ingest.customer_managed_key:
            # The stream is encrypted with the data key: a producer's PutRecord(s) needs
            # kms:GenerateDataKey on it (a consumer kms:Decrypt), beside its kinesis:Put*.
            CfnOutput(
                self,
                "StreamKeyArn",
                value=self.data_key.key.key_arn,
                description="Producers need kms:GenerateDataKey on this key to write the stream",
            )
        if self.archive is not None:
            CfnOutput(self, "RawArchiveBucket", value=self.archive.bucket.bucket_name)
        CfnOutput(self, "AlertStateTableName", value=self.alert_state.table.table_name)
        CfnOutput(
            self,
            "FeedbackBucketName",
            value=self.feedback.bucket.bucket_name,
            description="Verdicts for `ocsf-detect train --feedback s3://<this>`",
        )
        CfnOutput(self, "FindingsTopicArn", value=self.alerting.topic.topic_arn)
        CfnOutput(self, "FindingsBusName", value=self.alerting.bus.event_bus_name)
        CfnOutput(self, "OpsTopicArn", value=self.monitoring.ops_topic.topic_arn)
        CfnOutput(self, "CodeDeployApplication", value=self.releases.application.application_name)
        CfnOutput(self, "ApiUrl", value=self.api.api.url)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard.dashboard_name)
        CfnOutput(self, "ScorerFunctionName", value=self.scoring.function.function_name)
        CfnOutput(self, "PredictorFunctionName", value=self.api.function.function_name)
        for name, group in self.releases.groups.items():
            CfnOutput(self, f"{name}DeploymentGroup", value=group.deployment_group_name)
            hook_logs = self.releases.hooks[name].log_group
            CfnOutput(self, f"{name}HookLogGroup", value=hook_logs.log_group_name)
