"""Monitoring: the ops topic, the operational alarms and one dashboard per stage."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.encryption import DataKey
from infra.constructs.metrics import app_metric, app_metric_all_versions
from infra.stages import MonitoringConfig
from ocsf_detect import names

FIVE_MINUTES = Duration.minutes(5)


class Monitoring(Construct):
    """Alarms that page the ops topic, and the dashboard an operator opens first."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: str,
        config: MonitoringConfig,
        key: DataKey,
        stream: kinesis.IStream,
        scoring_alias: lambda_.IAlias,
        scoring_function: lambda_.IFunction,
        api_function: lambda_.IFunction,
        api: apigw.RestApi,
        quarantine_queue: sqs.IQueue,
        quarantine_dlq: sqs.IQueue,
        failure_queue: sqs.IQueue,
        findings_rule: events.IRule,
        findings_bus: events.IEventBus,
        bundle_version: str | None = None,
        ops_email: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.ops_topic = sns.Topic(
            self, "OpsTopic", display_name=f"ocsf-detect {stage} ops", master_key=key.key,
            enforce_ssl=True,
        )  # fmt: skip
        key.allow_service("cloudwatch.amazonaws.com")  # alarms publish to the encrypted topic
        # The topic's policy is its only grant (enforce_ssl adds a deny): without this
        # allow, CloudWatch's alarm actions cannot publish and no alarm pages anyone.
        self.ops_topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.ops_topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": Stack.of(self).account},
                    "ArnLike": {
                        "aws:SourceArn": Stack.of(self).format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if ops_email:
            self.ops_topic.add_subscription(subscriptions.EmailSubscription(ops_email))

        iterator_age = scoring_alias.metric(
            "IteratorAge", statistic="Maximum", period=Duration.minutes(1)
        )
        self.alarms: list[cw.Alarm] = [
            cw.Alarm(
                self,
                "IteratorAge",
                alarm_description="The scorer is falling behind the stream, or not reading it "
                "at all: no IteratorAge is a stalled or disabled mapping (or a silent stream)",
                metric=iterator_age,
                threshold=config.iterator_age_max_s * 1000,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=5,
                datapoints_to_alarm=3,
                treat_missing_data=cw.TreatMissingData.BREACHING,
            ),
            _depth_alarm(
                self, "QuarantineDepth", quarantine_queue, config.quarantine_depth_max,
                "Many events are being quarantined (malformed or oversized input)",
            ),
            _depth_alarm(
                self, "QuarantineDlqDepth", quarantine_dlq, 0,
                "Quarantine messages failed processing five times",
            ),
            _depth_alarm(
                self, "BatchFailureDepth", failure_queue, 0,
                "Stream batches exhausted their retries: records were skipped",
            ),
            cw.Alarm(
                self,
                "StreamWriteThrottled",
                alarm_description="Producers' writes to the stream are throttled: events are "
                "delayed, or lost if a producer gives up",
                metric=stream.metric_write_provisioned_throughput_exceeded(
                    period=FIVE_MINUTES, statistic="Sum"
                ),
                threshold=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                self,
                "FindingsRuleFailedInvocations",
                alarm_description="The findings rule could not deliver to its target",
                metric=cw.Metric(
                    namespace="AWS/Events",
                    metric_name="FailedInvocations",
                    dimensions_map={
                        "EventBusName": findings_bus.event_bus_name,
                        "RuleName": findings_rule.rule_name,
                    },
                    statistic="Sum",
                    period=FIVE_MINUTES,
                ),
                threshold=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            _errors_alarm(self, "ScorerErrors", scoring_function, "Stream scorer errors"),
            _errors_alarm(self, "PredictorErrors", api_function, "Prediction API function errors"),
            cw.Alarm(
                self,
                "ApiServerErrors",
                alarm_description="The prediction API answers 5xx",
                metric=api.metric_server_error(period=FIVE_MINUTES, statistic="Sum"),
                threshold=5,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]  # fmt: skip
        if bundle_version is not None:
            self.alarms.append(
                cw.Alarm(
                    self,
                    "QuarantineRate",
                    alarm_description=f"More than {config.quarantine_rate_max_percent:g} % of "
                    "the events the scorer reads are quarantined",
                    metric=cw.MathExpression(
                        expression="IF(FILL(events, 0) >= 20, "
                        "100 * FILL(quarantined, 0) / FILL(events, 0), 0)",
                        using_metrics={
                            "events": app_metric(
                                names.METRIC_RECORDS_IN, bundle_version, period=FIVE_MINUTES
                            ),
                            "quarantined": app_metric(
                                names.METRIC_QUARANTINED, bundle_version, period=FIVE_MINUTES
                            ),
                        },
                        label="quarantined, % of events",
                        period=FIVE_MINUTES,
                    ),
                    threshold=config.quarantine_rate_max_percent,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    evaluation_periods=3,
                    datapoints_to_alarm=2,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        if bundle_version is not None:
            self.alarms.append(
                cw.Alarm(
                    self,
                    "AlertsQuarantined",
                    alarm_description="A channel refused findings for good (SNS or "
                    "EventBridge): they were kept in the quarantine bucket, not delivered; "
                    "the scorer's log says which and why",
                    metric=app_metric(
                        names.METRIC_ALERTS_QUARANTINED, bundle_version, period=FIVE_MINUTES
                    ),
                    threshold=1,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    evaluation_periods=1,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        self.notify(*self.alarms)

        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"ocsf-detect-{stage}",
            default_interval=Duration.hours(3),
        )
        records = [
            app_metric_all_versions(name)
            for name in (
                names.METRIC_RECORDS_IN,
                names.METRIC_SCORED,
                names.METRIC_PREDICTIONS,
                names.METRIC_ANOMALIES,
                names.METRIC_PREDICTED_ANOMALIES,
                names.METRIC_REJECTED,
                names.METRIC_QUARANTINED,
                names.METRIC_ALERTS_QUARANTINED,
                # alerts confirmed by exact search / past a batch's re-check limit
                names.METRIC_ALERTS_RECHECKED,
                names.METRIC_ALERTS_UNCHECKED,
            )
        ]
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown=f"# ocsf-detect {stage}\nRecords through the scorer, findings, "
                "rejections, lag, errors and latency. Releases: see CodeDeploy.",
                width=24,
                height=2,
            ),
            cw.GraphWidget(
                title="Records in, scored, predictions, anomalies, rejected, quarantined, "
                "alerts re-checked / unchecked",
                left=records,
                width=12,
            ),
            cw.GraphWidget(
                title="Iterator age (ms)",
                left=[iterator_age, stream.metric_get_records_iterator_age_milliseconds()],
                width=12,
            ),
            cw.GraphWidget(
                title="Errors",
                left=[
                    scoring_function.metric_errors(period=FIVE_MINUTES),
                    api_function.metric_errors(period=FIVE_MINUTES),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Scorer duration (p50 / p99)",
                left=[
                    scoring_alias.metric_duration(statistic="p50"),
                    scoring_alias.metric_duration(statistic="p99"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="API latency (p50 / p99) and 4xx/5xx",
                left=[api.metric_latency(statistic="p50"), api.metric_latency(statistic="p99")],
                right=[api.metric_client_error(), api.metric_server_error()],
                width=8,
            ),
            cw.GraphWidget(
                title="Quarantine and failure queues",
                left=[
                    q.metric_approximate_number_of_messages_visible()
                    for q in (quarantine_queue, quarantine_dlq, failure_queue)
                ],
                width=12,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=12),
        )

    def notify(self, *alarms: cw.Alarm) -> None:
        """Send ``alarms`` to the ops topic when they fire and when they clear."""
        action = cw_actions.SnsAction(self.ops_topic)
        for alarm in alarms:
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)


def _depth_alarm(
    scope: Construct, construct_id: str, queue: sqs.IQueue, above: int, description: str
) -> cw.Alarm:
    return cw.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=queue.metric_approximate_number_of_messages_visible(
            period=FIVE_MINUTES, statistic="Maximum"
        ),
        threshold=above,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )


def _errors_alarm(
    scope: Construct, construct_id: str, function: lambda_.IFunction, description: str
) -> cw.Alarm:
    return cw.Alarm(
        scope,
        construct_id,
        alarm_description=description,
        metric=function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
        threshold=1,
        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        evaluation_periods=1,
        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
    )
