"""Releases: the ``live`` aliases move to new versions through CodeDeploy, guarded.

Per function: a LambdaDeploymentGroup with the stage's traffic-shifting config, alarms
on the alias (errors, throttles, p99 duration) plus, from the function's own metrics
(``AppSignals``), the new bundle's anomaly rate among that function's events and, for the
stream function, records it reported as failed (a version that cannot publish alerts
or quarantine returns batch-item failures from successful invocations, which the alias
error alarm never sees), automatic rollback on a failed, stopped or alarmed deployment,
and a
pre-traffic hook (``functions/release_hook``) that self-tests the new version against the
manifest's golden scores before it gets any traffic.

CodeDeploy acts through a role of its own per group, with an inline policy naming exactly
what that group touches (its alias, its alarms, its hook), in place of the AWS-managed
``AWSCodeDeployRoleForLambdaLimited`` (UpdateAlias and DescribeAlarms on every function and
alarm of the account).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.constructs.function import ServiceFunction
from infra.constructs.metrics import anomaly_rate, app_metric
from infra.constructs.model_artifacts import FunctionLayers
from infra.constructs.nag import acknowledge, logical_id
from infra.stages import Architecture, DeploymentStyle, ReleaseConfig
from ocsf_detect import names

HOOK_TIMEOUT = Duration.minutes(5)
MIN_EVENTS_PER_MINUTE = 50

_DEPLOYMENT_CONFIGS = {
    DeploymentStyle.ALL_AT_ONCE: codedeploy.LambdaDeploymentConfig.ALL_AT_ONCE,
    DeploymentStyle.CANARY_10_PERCENT_5_MINUTES: (
        codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES
    ),
    DeploymentStyle.LINEAR_10_PERCENT_EVERY_1_MINUTE: (
        codedeploy.LambdaDeploymentConfig.LINEAR_10_PERCENT_EVERY_1_MINUTE
    ),
}


@dataclass(frozen=True)
class AppSignals:
    """The function's own EMF metrics (names from ``ocsf_detect.names``) a release watches."""

    events: str
    anomalies: str
    failed_records: str | None = None


class Releases(Construct):
    """One CodeDeploy application; ``guard`` adds a deployment group per function."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ReleaseConfig,
        architecture: Architecture,
        layers: FunctionLayers,
        log_retention_days: int,
        log_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_key = log_key
        self._config = config
        self._architecture = architecture
        self._layers = layers
        self._log_retention_days = log_retention_days
        self.application = codedeploy.LambdaApplication(self, "Application")
        self.deployment_config = _DEPLOYMENT_CONFIGS[config.deployment]
        self.groups: dict[str, codedeploy.LambdaDeploymentGroup] = {}
        self.hooks: dict[str, ServiceFunction] = {}
        self.alarms: list[cw.Alarm] = []

    def guard(
        self,
        name: str,
        service: ServiceFunction,
        alias: lambda_.Alias,
        *,
        timeout: Duration,
        signals: AppSignals | None,
    ) -> codedeploy.LambdaDeploymentGroup:
        """Put ``alias`` under CodeDeploy with alarms and a pre-traffic self-test."""
        scope = Construct(self, name)
        version = service.function.current_version
        alarms = self._alarms(scope, alias, timeout=timeout, signals=signals)

        hook = ServiceFunction(
            scope,
            "PreTrafficHook",
            handler=names.PRE_TRAFFIC_HANDLER,
            description=f"ocsf-detect: self-tests a new {name} version before traffic shifts",
            architecture=self._architecture,
            memory_mb=512,
            timeout=HOOK_TIMEOUT,
            # The model layer is here only for its manifest.json (golden scores).
            layers=self._layers.all_layers,
            environment={
                names.ENV_TARGET_FUNCTION_ARN: version.function_arn,
                **self._layers.manifest_environment(),
            },
            log_retention_days=self._log_retention_days,
            log_key=self._log_key,
        )
        version.grant_invoke(hook.function)
        self._layers.grant_bundle_read(hook.function)

        role = self._deployer_role(scope, alias, alarms, hook)
        group = codedeploy.LambdaDeploymentGroup(
            scope,
            "DeploymentGroup",
            # Immutable view: the group cannot attach the managed policy to it.
            role=role.without_policy_updates(),
            application=self.application,
            alias=alias,
            deployment_config=self.deployment_config,
            alarms=alarms,
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
            pre_hook=hook.function,
        )
        # No explicit dependency needed: the alias's UpdatePolicy refers to the hook, so
        # CloudFormation updates the hook (with the new version's ARN) before the alias.
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{logical_id(hook.function)}.Arn>:*]",
            "Invoking this group's pre-traffic hook: the function and its versions (the :* "
            "suffix), nothing else",
        )
        self.groups[name] = group
        self.hooks[name] = hook
        self.alarms.extend(alarms)
        return group

    @staticmethod
    def _deployer_role(
        scope: Construct, alias: lambda_.Alias, alarms: list[cw.Alarm], hook: ServiceFunction
    ) -> iam.Role:
        """What CodeDeploy needs for one Lambda deployment group, and nothing more: read
        and move this function's alias, read its alarms, invoke its hook."""
        role = iam.Role(
            scope,
            "DeployerRole",
            assumed_by=iam.ServicePrincipal("codedeploy.amazonaws.com"),
            description="CodeDeploy: shifts one live alias, reads its alarms, runs its hook",
        )
        # The actions of AWSCodeDeployRoleForLambdaLimited, on this group's resources.
        # GetAlias and UpdateAlias authorize against the *unqualified* function ARN (the
        # alias is a request parameter, not part of the resource): a statement naming only
        # the alias ARN denies them, and every deployment fails. So they name this one
        # function (any of its aliases; it has only ``live``). Provisioned concurrency is
        # read per qualifier: the alias ARN, and the function ARN to be safe.
        function_arn = alias.version.lambda_.function_arn
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetAlias", "lambda:UpdateAlias"],
                resources=[function_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:GetProvisionedConcurrencyConfig"],
                resources=[function_arn, alias.function_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["cloudwatch:DescribeAlarms"],
                resources=[alarm.alarm_arn for alarm in alarms],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"],
                resources=[hook.function.function_arn, f"{hook.function.function_arn}:*"],
            )
        )
        return role

    def _alarms(
        self,
        scope: Construct,
        alias: lambda_.Alias,
        *,
        timeout: Duration,
        signals: AppSignals | None,
    ) -> list[cw.Alarm]:
        config = self._config
        minute = Duration.minutes(1)
        alarms = [
            cw.Alarm(
                scope,
                "AliasErrors",
                alarm_description="Invocation errors on the live alias during or after a release",
                metric=alias.metric_errors(period=minute, statistic="Sum"),
                threshold=config.errors_max_per_minute,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                scope,
                "AliasThrottles",
                alarm_description="Throttled invocations on the live alias",
                metric=alias.metric_throttles(period=minute, statistic="Sum"),
                threshold=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            cw.Alarm(
                scope,
                "AliasP99Duration",
                alarm_description="p99 duration on the live alias close to the timeout",
                metric=alias.metric_duration(period=minute, statistic="p99"),
                threshold=timeout.to_milliseconds() * config.p99_duration_fraction_of_timeout,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        ]
        if signals is None:
            return alarms
        version = self._layers.model.version
        if signals.failed_records is not None:
            alarms.append(
                cw.Alarm(
                    scope,
                    "NewBundleFailedRecords",
                    alarm_description=(
                        f"Records the function on bundle {version} reported as failed "
                        "(alerts or quarantine not delivered): Lambda retries them, the "
                        "shard stalls"
                    ),
                    metric=app_metric(signals.failed_records, version),
                    threshold=1,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                    evaluation_periods=3,
                    datapoints_to_alarm=2,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        alarms.append(
            cw.Alarm(
                scope,
                "NewBundleAnomalyRate",
                alarm_description=(
                    f"Share of events bundle {version} flags as anomalous; a jump means "
                    "the new model misfires"
                ),
                metric=anomaly_rate(
                    version,
                    anomalies=signals.anomalies,
                    events=signals.events,
                    min_events=MIN_EVENTS_PER_MINUTE,
                ),
                threshold=config.anomaly_rate_max_percent,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=3,
                datapoints_to_alarm=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        )
        return alarms
