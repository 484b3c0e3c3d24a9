"""Releases: live aliases under CodeDeploy with alarms, rollback and the pre-traffic hook."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized

EXPECTED_CONFIG = {
    "dev": "CodeDeployDefault.LambdaAllAtOnce",
    "staging": "CodeDeployDefault.LambdaCanary10Percent5Minutes",
    "prod": "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
}


def _functions_by_handler(s: Synthesized) -> dict[str, str]:
    return {r["Properties"]["Handler"]: k for k, r in s.resources("AWS::Lambda::Function").items()}


def test_each_served_function_has_a_live_alias_on_its_current_version(
    stage_synth: Synthesized,
) -> None:
    functions = _functions_by_handler(stage_synth)
    aliases = stage_synth.resources("AWS::Lambda::Alias")
    assert len(aliases) == 2
    targets = set()
    for alias in aliases.values():
        props = alias["Properties"]
        assert props["Name"] == names.LIVE_ALIAS
        version_id = props["FunctionVersion"]["Fn::GetAtt"][0]
        assert stage_synth.json["Resources"][version_id]["Type"] == "AWS::Lambda::Version"
        targets.add(props["FunctionName"]["Ref"])
    assert targets == {functions[names.STREAM_HANDLER], functions[names.API_HANDLER]}


def test_deployment_groups_roll_back_on_failure_and_alarm(stage_synth: Synthesized) -> None:
    groups = stage_synth.resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 2
    stage = stage_synth.stack.settings.stage.name
    for group in groups.values():
        props = group["Properties"]
        assert props["DeploymentConfigName"] == EXPECTED_CONFIG[stage]
        assert props["AutoRollbackConfiguration"]["Enabled"] is True
        assert set(props["AutoRollbackConfiguration"]["Events"]) == {
            "DEPLOYMENT_FAILURE",
            "DEPLOYMENT_STOP_ON_REQUEST",
            "DEPLOYMENT_STOP_ON_ALARM",
        }
        assert props["AlarmConfiguration"]["Enabled"] is True
        assert len(props["AlarmConfiguration"]["Alarms"]) >= 3


def test_stages_release_at_different_speeds(synth) -> None:
    seen = {
        stage: {
            g["Properties"]["DeploymentConfigName"]
            for g in synth(stage).resources("AWS::CodeDeploy::DeploymentGroup").values()
        }
        for stage in EXPECTED_CONFIG
    }
    assert seen == {stage: {config} for stage, config in EXPECTED_CONFIG.items()}


def test_release_alarms_watch_the_alias(dev: Synthesized) -> None:
    alarms = dev.resources("AWS::CloudWatch::Alarm")
    groups = dev.resources("AWS::CodeDeploy::DeploymentGroup").values()
    for group in groups:
        for ref in group["Properties"]["AlarmConfiguration"]["Alarms"]:
            alarm = alarms[ref["Name"]["Ref"]]["Properties"]
            if alarm.get("Namespace") == "AWS/Lambda":
                dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
                # Resource = "<function>:live": the alias, not the function as a whole
                assert f":{names.LIVE_ALIAS}" in json.dumps(dims["Resource"])
    metrics = {
        alarms[ref["Name"]["Ref"]]["Properties"].get("MetricName")
        for group in groups
        for ref in group["Properties"]["AlarmConfiguration"]["Alarms"]
    }
    assert {"Errors", "Throttles", "Duration"} <= metrics


def _app_alarms(dev: Synthesized, metric_id: str) -> dict[str, dict]:
    return {
        k: a["Properties"]
        for k, a in dev.resources("AWS::CloudWatch::Alarm").items()
        if any(m["Id"] == metric_id for m in a["Properties"].get("Metrics", []))
    }


def _wired(dev: Synthesized) -> set[str]:
    return {
        ref["Name"]["Ref"]
        for g in dev.resources("AWS::CodeDeploy::DeploymentGroup").values()
        for ref in g["Properties"]["AlarmConfiguration"]["Alarms"]
    }


def test_new_bundle_anomaly_rate_alarm_uses_each_functions_own_emf_metrics(
    dev: Synthesized,
) -> None:
    version = dev.stack.settings.model.version
    rate_alarms = _app_alarms(dev, "anomalies")
    assert len(rate_alarms) == 2  # one per deployment group
    pairs = set()
    for alarm in rate_alarms.values():
        metrics = {m["Id"]: m for m in alarm["Metrics"]}
        (expression,) = (m["Expression"] for m in metrics.values() if "Expression" in m)
        assert "100 * FILL(anomalies, 0) / FILL(events, 0)" in expression
        for metric_id in ("anomalies", "events"):
            stat = metrics[metric_id]["MetricStat"]
            assert stat["Metric"]["Namespace"] == names.METRICS_NAMESPACE
            dims = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
            assert dims == {
                names.METRIC_DIMENSION_SERVICE: names.SERVICE_NAME,
                names.METRIC_DIMENSION_BUNDLE_VERSION: version,
            }
        pairs.add(
            (
                metrics["anomalies"]["MetricStat"]["Metric"]["MetricName"],
                metrics["events"]["MetricStat"]["Metric"]["MetricName"],
            )
        )
    # The stream's anomalies among its scored events, the API's among its predictions:
    # API traffic cannot roll back (or hide) a stream release, nor the reverse.
    assert pairs == {
        (names.METRIC_ANOMALIES, names.METRIC_SCORED),
        (names.METRIC_PREDICTED_ANOMALIES, names.METRIC_PREDICTIONS),
    }
    assert set(rate_alarms) <= _wired(dev)


def test_records_reported_failed_roll_back_a_stream_release(dev: Synthesized) -> None:
    version = dev.stack.settings.model.version
    failed = {
        k: a["Properties"]
        for k, a in dev.resources("AWS::CloudWatch::Alarm").items()
        if a["Properties"].get("MetricName") == names.METRIC_FAILED
    }
    (alarm_id,) = failed  # the stream function's group only
    alarm = failed[alarm_id]
    assert alarm["Namespace"] == names.METRICS_NAMESPACE
    dims = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dims[names.METRIC_DIMENSION_BUNDLE_VERSION] == version
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm_id in _wired(dev)


def test_pre_traffic_hook_is_wired_and_targets_the_new_version(dev: Synthesized) -> None:
    functions = dev.resources("AWS::Lambda::Function")
    for alias in dev.resources("AWS::Lambda::Alias").values():
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        hook_id = update["BeforeAllowTrafficHook"]["Ref"]
        hook = functions[hook_id]["Properties"]
        assert hook["Handler"] == names.PRE_TRAFFIC_HANDLER
        # the hook is told the exact version the alias is about to move to
        target_version = alias["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        env = hook["Environment"]["Variables"]
        assert env[names.ENV_TARGET_FUNCTION_ARN] == {"Ref": target_version}
        assert env[names.ENV_BUNDLE_PATH] == names.DEFAULT_BUNDLE_PATH
        assert env[names.ENV_EXPECTED_BUNDLE_VERSION] == dev.stack.settings.model.version
        assert hook["Timeout"] >= 60
        group_ref = update["DeploymentGroupName"]["Ref"]
        assert group_ref in dev.resources("AWS::CodeDeploy::DeploymentGroup")


def test_hook_may_invoke_only_its_target_version_and_report(dev: Synthesized) -> None:
    functions = dev.resources("AWS::Lambda::Function")
    hooks = {
        k: r
        for k, r in functions.items()
        if r["Properties"]["Handler"] == names.PRE_TRAFFIC_HANDLER
    }
    assert len(hooks) == 2
    for hook in hooks.values():
        role_id = hook["Properties"]["Role"]["Fn::GetAtt"][0]
        target = hook["Properties"]["Environment"]["Variables"][names.ENV_TARGET_FUNCTION_ARN]
        statements = [
            st
            for p in dev.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
            for st in p["Properties"]["PolicyDocument"]["Statement"]
        ]
        invoke = [st for st in statements if st["Action"] == "lambda:InvokeFunction"]
        assert [st["Resource"] for st in invoke] == [target]
        report = [
            st
            for st in statements
            if st["Action"] == "codedeploy:PutLifecycleEventHookExecutionStatus"
        ]
        assert len(report) == 1
