"""The alert-state table: encrypted with the data key, TTL, recovery, its open-groups index,
the narrowest grants for the scorer and the API, and the schedule that closes groups."""

from __future__ import annotations

import json
from typing import Any

from infra.stages import ScoringConfig
from ocsf_detect import names
from tests.infra.conftest import Synthesized


def _table(s: Synthesized) -> tuple[str, dict[str, Any]]:
    return s.only("AWS::DynamoDB::Table")


def _role_statements(s: Synthesized, function_prefix: str) -> list[dict[str, Any]]:
    (fn,) = [
        f
        for logical_id, f in s.resources("AWS::Lambda::Function").items()
        if logical_id.startswith(function_prefix)
    ]
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        st
        for p in s.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else sorted(action)


def test_the_table_is_encrypted_with_the_data_key_expires_items_and_recovers(
    stage_synth: Synthesized,
) -> None:
    (key_id,) = stage_synth.resources("AWS::KMS::Key")
    _, table = _table(stage_synth)
    props = table["Properties"]
    assert props["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]},
    }
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == names.ALERT_TABLE_OPEN_INDEX
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    expected = "Delete" if stage_synth.stack.settings.stage.name == "dev" else "Retain"
    assert table["DeletionPolicy"] == expected


def test_the_scorer_reads_and_writes_items_of_the_table_only(dev: Synthesized) -> None:
    table_id, _ = _table(dev)
    statements = [
        st
        for st in _role_statements(dev, "StreamScoringScorer")
        if any(a.startswith("dynamodb:") for a in _actions(st))
    ]
    (statement,) = statements
    assert _actions(statement) == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ]
    rendered = json.dumps(statement["Resource"])
    assert table_id in rendered
    assert f"/index/{names.ALERT_TABLE_OPEN_INDEX}" in rendered
    assert "*" not in rendered


def test_the_api_touches_only_the_rules_partition(dev: Synthesized) -> None:
    table_id, _ = _table(dev)
    (statement,) = [
        st
        for st in _role_statements(dev, "PredictionApiPredictor")
        if any(a.startswith("dynamodb:") for a in _actions(st))
    ]
    assert _actions(statement) == ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"]
    assert statement["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["suppressions"]}
    }


def test_both_functions_are_told_the_table_and_the_scorer_its_grouping(dev: Synthesized) -> None:
    table_id, _ = _table(dev)
    config = ScoringConfig()
    functions = dev.resources("AWS::Lambda::Function")
    for prefix in ("StreamScoringScorer", "PredictionApiPredictor"):
        (fn,) = [f for k, f in functions.items() if k.startswith(prefix)]
        variables = fn["Properties"]["Environment"]["Variables"]
        assert variables[names.ENV_ALERT_TABLE_NAME] == {"Ref": table_id}
        if prefix == "StreamScoringScorer":
            assert variables[names.ENV_GROUP_WINDOW_S] == str(config.group_window_s)
            assert variables[names.ENV_GROUP_UPDATE_INTERVAL_S] == str(
                config.group_update_interval_s
            )
            assert variables[names.ENV_GROUP_NOTIFY_MIN_COUNT] == str(config.group_notify_min_count)


def test_a_schedule_closes_groups_through_the_scorers_alias(dev: Synthesized) -> None:
    (rule,) = [
        r
        for k, r in dev.resources("AWS::Events::Rule").items()
        if k.startswith("AlertStateCloseGroups")
    ]
    props = rule["Properties"]
    assert props["ScheduleExpression"] == "rate(5 minutes)"
    (target,) = props["Targets"]
    assert json.loads(target["Input"]) == {names.CLOSE_GROUPS_PAYLOAD_KEY: True}
    alias_ids = [
        k for k in dev.resources("AWS::Lambda::Alias") if k.startswith("StreamScoringScorer")
    ]
    assert len(alias_ids) == 1
    assert target["Arn"] == {"Ref": alias_ids[0]}
    permissions = [
        p["Properties"]
        for p in dev.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert [p["FunctionName"] for p in permissions] == [{"Ref": alias_ids[0]}]
