"""Alerting: the encrypted, TLS-only topic and the archived event bus with its example rule."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_cdk.assertions import Match

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def test_topics_are_kms_encrypted_and_tls_only(dev: Synthesized) -> None:
    topics = dev.resources("AWS::SNS::Topic")
    assert len(topics) == 2  # findings + ops
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][1] == "Arn"
    policies = dev.resources("AWS::SNS::TopicPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            st["Effect"] == "Deny" and st["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for st in statements
        )


def test_data_key_rotates(dev: Synthesized) -> None:
    _, key = dev.only("AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True


def test_data_key_is_retained_in_prod_only(dev: Synthesized, prod: Synthesized) -> None:
    assert dev.only("AWS::KMS::Key")[1]["DeletionPolicy"] == "Delete"
    assert prod.only("AWS::KMS::Key")[1]["DeletionPolicy"] == "Retain"


def test_alarms_may_use_the_key_for_the_encrypted_ops_topic(dev: Synthesized) -> None:
    _, key = dev.only("AWS::KMS::Key")
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    assert any(
        st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        and set(st["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
        for st in statements
    )


def test_bus_archives_findings_for_replay(stage_synth: Synthesized) -> None:
    stage_synth.only("AWS::Events::EventBus")  # exactly one bus
    days = stage_synth.stack.settings.stage.monitoring.findings_archive_days
    stage_synth.template.has_resource_properties(
        "AWS::Events::Archive",
        {
            "RetentionDays": days,
            "EventPattern": {
                "source": [names.EVENTBRIDGE_SOURCE],
                "detail-type": [names.EVENTBRIDGE_DETAIL_TYPE],
            },
            "SourceArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        },
    )


def test_example_rule_filters_on_source_and_detail_type(dev: Synthesized) -> None:
    bus_id, _ = dev.only("AWS::Events::EventBus")
    # the rules on the findings bus (the alert-state schedule runs on the default bus)
    (rule,) = [
        r
        for r in dev.resources("AWS::Events::Rule").values()
        if r["Properties"].get("EventBusName") == {"Ref": bus_id}
    ]
    props = rule["Properties"]
    assert props["EventBusName"] == {"Ref": bus_id}
    assert props["EventPattern"] == {
        "source": [names.EVENTBRIDGE_SOURCE],
        "detail-type": [names.EVENTBRIDGE_DETAIL_TYPE],
    }
    (target,) = props["Targets"]
    log_group_id = target["Arn"]["Fn::GetAtt"][0]
    log_group = dev.json["Resources"][log_group_id]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["LogGroupName"].startswith("/aws/events/")
    # delivered through a native resource policy, not a custom resource
    _, policy = dev.only("AWS::Logs::ResourcePolicy")
    assert "events.amazonaws.com" in json.dumps(policy["Properties"]["PolicyDocument"])
    assert not dev.resources("Custom::CloudwatchLogResourcePolicy")
