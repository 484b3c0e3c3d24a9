"""Alerting: where Detection Findings go (an SNS topic and an EventBridge bus with an archive)."""

from __future__ import annotations

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from infra.constructs.function import retention
from ocsf_detect import names


@jsii.implements(events.IRuleTarget)
class _LogGroupTarget:
    """A rule target writing to a log group, with a native resource policy.

    (``aws_events_targets.CloudWatchLogGroup`` installs the policy through a Node.js custom
    resource; ``AWS::Logs::ResourcePolicy`` does the same without a function.)
    """

    def __init__(self, log_group: logs.LogGroup) -> None:
        self._log_group = log_group

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self._log_group.log_group_arn)


class Alerting(Construct):
    """An encrypted SNS topic and a custom event bus (archived, so findings can be replayed).

    The stream function publishes every finding to both; the example rule shows how a
    consumer selects findings on the bus by source and detail-type.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        archive_days: int,
        log_retention_days: int,
    ) -> None:
        stack = Stack.of(scope)
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "FindingsTopic",
            display_name="ocsf-detect findings",
            master_key=key,
            enforce_ssl=True,
        )
        self.bus = events.EventBus(self, "FindingsBus", description="ocsf-detect findings")
        findings = events.EventPattern(
            source=[names.EVENTBRIDGE_SOURCE], detail_type=[names.EVENTBRIDGE_DETAIL_TYPE]
        )
        # Under the bus, as EventBus.archive() puts it (same logical id), which drops kms_key.
        self.archive = events.Archive(
            self.bus,
            "FindingsArchive",
            source_event_bus=self.bus,
            description="Every Detection Finding, for `aws events start-replay`",
            event_pattern=findings,
            retention=Duration.days(archive_days),
            kms_key=key,  # findings quote the source event: the data key, not AWS-owned
        )

        # Example consumer: findings land in a log group (EventBridge needs /aws/events/).
        self.findings_log = logs.LogGroup(
            self,
            "FindingsLog",
            log_group_name=f"/aws/events/ocsf-detect-findings-{self.node.addr[:12]}",
            retention=retention(log_retention_days),
            encryption_key=key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        # EventBridge writes the log itself (events.amazonaws.com) or through CloudWatch
        # Logs' delivery service. EventBridge names the rule (aws:SourceArn) when it puts
        # events, not when it creates the log stream: a source condition on CreateLogStream
        # would refuse every delivery (AWS's own EventBridge-to-CloudWatch-Logs pattern,
        # aws-samples/serverless-patterns eventbridge-cloudwatch, splits them the same way).
        # An unconditioned CreateLogStream makes at most an empty stream; the data needs
        # PutLogEvents from a rule of this bus (its ARN names this account).
        rules_of_this_bus = stack.format_arn(
            service="events", resource="rule", resource_name=f"{self.bus.event_bus_name}/*"
        )
        logs.ResourcePolicy(
            self,
            "FindingsLogPolicy",
            policy_statements=[
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["logs:CreateLogStream"],
                    resources=[self.findings_log.log_group_arn],
                ),
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("events.amazonaws.com")],
                    actions=["logs:PutLogEvents"],
                    resources=[self.findings_log.log_group_arn],
                    conditions={"ArnLike": {"aws:SourceArn": rules_of_this_bus}},
                ),
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal("delivery.logs.amazonaws.com")],
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.findings_log.log_group_arn],
                    conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
                ),
            ],
        )
        self.example_rule = events.Rule(
            self,
            "FindingsToLog",
            description="Example: copy every OCSF Detection Finding to a log group",
            event_bus=self.bus,
            event_pattern=findings,
            targets=[_LogGroupTarget(self.findings_log)],
        )
