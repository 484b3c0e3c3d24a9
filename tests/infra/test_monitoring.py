"""Monitoring: the dashboard and the operational alarms that notify the ops topic."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def _ops_topic_id(s: Synthesized) -> str:
    return s.json["Outputs"]["OpsTopicArn"]["Value"]["Ref"]


def test_dashboard_shows_the_pipeline(stage_synth: Synthesized) -> None:
    _, dashboard = stage_synth.only("AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for metric in (
        names.METRIC_RECORDS_IN,
        names.METRIC_SCORED,
        names.METRIC_ANOMALIES,
        names.METRIC_REJECTED,
        "IteratorAge",
        "Errors",
        "Duration",
        "Latency",
    ):
        assert metric in body, metric
    assert names.METRICS_NAMESPACE in body
    assert f"ocsf-detect-{stage_synth.stack.settings.stage.name}" in json.dumps(
        dashboard["Properties"]["DashboardName"]
    )


def test_operational_alarms_notify_the_ops_topic(dev: Synthesized) -> None:
    ops_topic = _ops_topic_id(dev)
    alarms = dev.resources("AWS::CloudWatch::Alarm")
    by_metric: dict[str, list[dict]] = {}
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": ops_topic}], props.get("AlarmDescription")
        by_metric.setdefault(props.get("MetricName", "math"), []).append(props)
    assert "IteratorAge" in by_metric
    # quarantine queue, its DLQ, and the batch-failure queue
    assert len(by_metric["ApproximateNumberOfMessagesVisible"]) == 3
    dlq_thresholds = sorted(a["Threshold"] for a in by_metric["ApproximateNumberOfMessagesVisible"])
    assert dlq_thresholds[:2] == [0, 0]
    # function-wide errors for both functions, plus the per-alias release alarms
    assert len(by_metric["Errors"]) == 4
    assert "5XXError" in by_metric
    # findings a channel refused for good were kept, not delivered: someone must look
    (refused,) = by_metric[names.METRIC_ALERTS_QUARANTINED]
    assert (refused["Threshold"], refused["Namespace"]) == (1, names.METRICS_NAMESPACE)


def test_iterator_age_threshold_follows_the_stage(stage_synth: Synthesized) -> None:
    expected_ms = stage_synth.stack.settings.stage.monitoring.iterator_age_max_s * 1000
    thresholds = [
        a["Properties"]["Threshold"]
        for a in stage_synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "IteratorAge"
    ]
    assert thresholds == [expected_ms]


def test_ops_email_subscription_is_optional(dev: Synthesized, synth) -> None:
    assert not dev.resources("AWS::SNS::Subscription")
    s = synth("dev", opsEmail="secops@example.com")
    _, subscription = s.only("AWS::SNS::Subscription")
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == {"Ref": _ops_topic_id(s)}


def test_the_ops_topic_lets_cloudwatch_alarms_publish_from_this_account(
    stage_synth: Synthesized,
) -> None:
    # Given the ops topic every alarm notifies
    ops_topic = _ops_topic_id(stage_synth)
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in stage_synth.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": ops_topic} in p["Properties"]["Topics"]
    ]
    (statements,) = policies
    # Then its policy allows CloudWatch to publish, only for this account's alarms
    allow = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allow) == 1
    (grant,) = allow
    assert grant["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert grant["Action"] == "sns:Publish"
    assert grant["Resource"] == {"Ref": ops_topic}
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source_arn = json.dumps(grant["Condition"]["ArnLike"]["aws:SourceArn"])
    assert ":cloudwatch:" in source_arn
    assert ":alarm:*" in source_arn
    # ... and still refuses anything not over TLS
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert deny
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_a_stalled_mapping_is_not_silent(stage_synth: Synthesized) -> None:
    (iterator_age,) = [
        a["Properties"]
        for a in stage_synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "IteratorAge"
    ]
    # no IteratorAge at all (a disabled or stalled mapping) alarms, as a large one does
    assert iterator_age["TreatMissingData"] == "breaching"


def test_alarms_cover_throttled_writes_the_findings_rule_and_the_quarantine_rate(
    dev: Synthesized,
) -> None:
    alarms = [a["Properties"] for a in dev.resources("AWS::CloudWatch::Alarm").values()]
    by_metric = {a.get("MetricName"): a for a in alarms if a.get("MetricName")}
    # producers throttled on the stream
    throttled = by_metric["WriteProvisionedThroughputExceeded"]
    assert (throttled["Namespace"], throttled["Threshold"]) == ("AWS/Kinesis", 1)
    # the findings rule failing to deliver
    failed = by_metric["FailedInvocations"]
    assert failed["Namespace"] == "AWS/Events"
    assert {d["Name"] for d in failed["Dimensions"]} == {"EventBusName", "RuleName"}
    # the share of events quarantined, for the deployed bundle
    (rate,) = [
        a for a in alarms if "quarantined" in json.dumps(a.get("Metrics", [])) and "Metrics" in a
    ]
    expression = next(m["Expression"] for m in rate["Metrics"] if "Expression" in m)
    assert "100 * FILL(quarantined, 0) / FILL(events, 0)" in expression
    assert rate["Threshold"] == dev.stack.settings.stage.monitoring.quarantine_rate_max_percent
    used = {m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"] if "MetricStat" in m}
    assert used == {names.METRIC_RECORDS_IN, names.METRIC_QUARANTINED}
