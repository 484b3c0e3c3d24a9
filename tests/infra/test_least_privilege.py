"""Least privilege, encryption where the data is, and an API hardened before Lambda runs:
checked on the synthesized templates of every stage."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from infra.stages import ContextError, DeploySettings
from ocsf_detect import names
from tests.infra.conftest import MANIFEST_SHA256, MODEL_VERSION, Synthesized

Statement = dict[str, Any]

# Every Allow statement with a wildcard action or resource must be listed here with the
# reason it cannot be narrower: (resource type, logical id prefix, actions) -> reason.
WILDCARD_REASONS: dict[tuple[str, str, tuple[str, ...]], str] = {
    ("AWS::KMS::Key", "DataKey", ("kms:*",)): (
        "the key policy's account-root statement: the account's IAM policies decide who "
        "administers and uses the key (without it the key becomes unmanageable); '*' in a "
        "key policy means this key"
    ),
    (
        "AWS::KMS::Key",
        "DataKey",
        (
            "kms:Decrypt*",
            "kms:Describe*",
            "kms:Encrypt*",
            "kms:GenerateDataKey*",
            "kms:ReEncrypt*",
        ),
    ): (
        "CloudWatch Logs' documented action set for encrypted log groups, limited by the "
        "encryption context to log groups of this account and region"
    ),
    ("AWS::KMS::Key", "DataKey", ("kms:Decrypt", "kms:GenerateDataKey")): (
        "CloudWatch alarms publishing to the encrypted ops topic, limited to this account "
        "and to CloudWatch sources of this account and region"
    ),
    ("AWS::KMS::Key", "DataKey", ("kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*")): (
        "EventBridge's archive of the findings bus, limited by the encryption context to that bus"
    ),
    ("AWS::KMS::Key", "DataKey", ("kms:DescribeKey",)): (
        "EventBridge reads the key's metadata when the archive is created (no data access)"
    ),
    ("AWS::IAM::Policy", "", ("xray:PutTelemetryRecords", "xray:PutTraceSegments")): (
        "X-Ray's write actions support no resource-level permissions"
    ),
    ("AWS::IAM::Policy", "", ("kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKey*")): (
        "data-key use on the one data key (the action name's * covers GenerateDataKey's "
        "variants for SQS/SNS senders)"
    ),
    (
        "AWS::IAM::Policy",
        "StreamScoring",
        ("kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:GenerateDataKey*"),
    ): (
        "the scorer's data-key use on the one data key: SNS/SQS senders' data keys, and "
        "kms:Decrypt/DescribeKey for the alert-state table encrypted with it"
    ),
    ("AWS::IAM::Policy", "", ("s3:PutObject",)): (
        "objects under one prefix of one bucket (access logs, quarantined payloads)"
    ),
    (
        "AWS::IAM::Policy",
        "RawArchiveRole",
        (
            "s3:AbortMultipartUpload",
            "s3:GetBucketLocation",
            "s3:GetObject",
            "s3:ListBucket",
            "s3:ListBucketMultipartUploads",
            "s3:PutObject",
        ),
    ): (
        "Firehose's documented S3-destination actions, on the raw archive bucket and its "
        "objects only: it names objects by arrival date at run time (no delete)"
    ),
    ("AWS::S3::BucketPolicy", "", ("s3:PutObject",)): (
        "S3 server access logging into one prefix of the access-log bucket"
    ),
    ("AWS::IAM::Policy", "Releases", ("lambda:InvokeFunction",)): (
        "CodeDeploy invokes its group's pre-traffic hook, and the hook the version it "
        "tests: one function and its versions (the :* suffix)"
    ),
    ("AWS::IAM::Policy", "StreamScoring", ("s3:GetObject",)): (
        "the feedback overlay's objects (feedback/overlay/*), read-only: one per finding "
        "judged benign, named by its uid at run time"
    ),
    ("AWS::IAM::Policy", "PredictionApi", ("s3:DeleteObject", "s3:GetObject", "s3:PutObject")): (
        "verdicts and overlay vectors under the feedback prefix of the feedback bucket: one "
        "object per finding, named by its uid at run time"
    ),
    ("AWS::IAM::Policy", "", ("s3:GetObject", "s3:GetObjectVersion")): (
        "the published bundle's objects under the registry prefix"
    ),
    (
        "AWS::IAM::Policy",
        "ModelRegistryPublisher",
        ("s3:GetObject", "s3:GetObjectVersion", "s3:PutObject"),
    ): (
        "the publisher writes new bundle versions under keys (and a prefix) named at publish "
        "time; it holds no delete or retention action"
    ),
}


def _documents(s: Synthesized) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for logical_id, resource in s.json["Resources"].items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind in (
            "AWS::IAM::Policy",
            "AWS::SQS::QueuePolicy",
            "AWS::SNS::TopicPolicy",
            "AWS::S3::BucketPolicy",
        ):
            yield kind, logical_id, props["PolicyDocument"]
        elif kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield kind, logical_id, policy["PolicyDocument"]
        elif kind == "AWS::KMS::Key":
            yield kind, logical_id, props["KeyPolicy"]
        elif kind == "AWS::ApiGateway::RestApi" and "Policy" in props:
            yield kind, logical_id, props["Policy"]


def _statements(s: Synthesized) -> Iterator[tuple[str, str, Statement]]:
    for kind, logical_id, document in _documents(s):
        for statement in document["Statement"]:
            yield kind, logical_id, statement


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _has_wildcard(value: Any) -> bool:
    return "*" in json.dumps(value)


def test_every_wildcard_left_has_a_written_reason(stage_synth: Synthesized) -> None:
    unexplained = []
    for kind, logical_id, statement in _statements(stage_synth):
        if statement.get("Effect") != "Allow":
            continue  # a Deny with a wildcard narrows
        actions = tuple(sorted(_listed(statement["Action"])))
        if not (_has_wildcard(actions) or _has_wildcard(statement.get("Resource"))):
            continue
        reason = next(
            (
                why
                for (k, prefix, listed), why in WILDCARD_REASONS.items()
                if k == kind and logical_id.startswith(prefix) and listed == actions
            ),
            None,
        )
        if reason is None:
            unexplained.append(f"{kind} {logical_id}: {actions} on {statement.get('Resource')}")
    assert unexplained == []


def test_codedeploy_acts_through_inline_policies_on_its_own_alias(
    stage_synth: Synthesized,
) -> None:
    groups = stage_synth.resources("AWS::CodeDeploy::DeploymentGroup")
    assert len(groups) == 2
    roles = stage_synth.resources("AWS::IAM::Role")
    policies = stage_synth.resources("AWS::IAM::Policy")
    assert "AWSCodeDeployRole" not in json.dumps(stage_synth.json)
    for group_id, group in groups.items():
        role_id = group["Properties"]["ServiceRoleArn"]["Fn::GetAtt"][0]
        role = roles[role_id]["Properties"]
        assert "ManagedPolicyArns" not in role
        assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "codedeploy.amazonaws.com"
        }
        attached = [
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in policies.values()
            if {"Ref": role_id} in p["Properties"]["Roles"]
        ]
        (statements,) = attached
        by_action = {tuple(sorted(_listed(s["Action"]))): s["Resource"] for s in statements}
        # GetAlias/UpdateAlias authorize against the unqualified function ARN (Lambda's
        # "Resources and conditions for Lambda actions": resource type Function): a
        # statement on the alias ARN alone would deny them and fail every deployment.
        alias_resource = _alias_of_group(stage_synth, group_id)
        function_arn = {"Fn::GetAtt": [_function_of_alias(stage_synth, alias_resource), "Arn"]}
        assert by_action[("lambda:GetAlias", "lambda:UpdateAlias")] == function_arn
        concurrency = _listed(by_action[("lambda:GetProvisionedConcurrencyConfig",)])
        assert function_arn in concurrency
        assert {"Ref": alias_resource} in concurrency
        alarms = _listed(by_action[("cloudwatch:DescribeAlarms",)])
        assert len(alarms) >= 3
        assert all("Fn::GetAtt" in a for a in alarms)
        assert set(by_action) == {
            ("lambda:GetAlias", "lambda:UpdateAlias"),
            ("lambda:GetProvisionedConcurrencyConfig",),
            ("cloudwatch:DescribeAlarms",),
            ("lambda:InvokeFunction",),
        }


def _alias_of_group(synth: Synthesized, group_id: str) -> str:
    """The logical id of the alias whose UpdatePolicy names this deployment group."""
    (alias_id,) = [
        k
        for k, v in synth.resources("AWS::Lambda::Alias").items()
        if f'"{group_id}"' in json.dumps(v.get("UpdatePolicy", {}))
    ]
    return alias_id


def _function_of_alias(synth: Synthesized, alias_id: str) -> str:
    alias = synth.resources("AWS::Lambda::Alias")[alias_id]
    return alias["Properties"]["FunctionName"]["Ref"]


def test_service_statements_of_the_key_carry_source_conditions(stage_synth: Synthesized) -> None:
    (key,) = stage_synth.resources("AWS::KMS::Key").values()
    for statement in key["Properties"]["KeyPolicy"]["Statement"]:
        principal = statement["Principal"]
        if "Service" not in principal or statement["Action"] == "kms:DescribeKey":
            continue
        condition = json.dumps(statement["Condition"])
        assert "aws:SourceAccount" in condition or "kms:EncryptionContext" in condition, statement
    cloudwatch = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s["Principal"].get("Service") == "cloudwatch.amazonaws.com"
    ]
    (statement,) = cloudwatch
    assert set(statement["Condition"]) == {"StringEquals", "ArnLike"}
    assert "aws:SourceArn" in statement["Condition"]["ArnLike"]


def test_the_findings_log_admits_deliveries_for_this_account_only(
    stage_synth: Synthesized,
) -> None:
    (policy,) = stage_synth.resources("AWS::Logs::ResourcePolicy").values()
    rendered = json.dumps(policy["Properties"]["PolicyDocument"])
    assert rendered.count("aws:SourceAccount") == 1  # delivery.logs
    assert rendered.count("aws:SourceArn") == 1  # EventBridge's PutLogEvents
    assert ":rule/" in rendered
    # EventBridge sends no aws:SourceArn with CreateLogStream: a source condition on it
    # refuses every delivery (AWS's eventbridge-cloudwatch pattern splits the two).
    events_statements = [
        statement
        for statement in _log_policy_statements(policy)
        if statement["Principal"] == {"Service": "events.amazonaws.com"}
    ]
    by_action = {statement["Action"]: statement for statement in events_statements}
    assert set(by_action) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert "Condition" not in by_action["logs:CreateLogStream"]
    assert set(by_action["logs:PutLogEvents"]["Condition"]) == {"ArnLike"}


def _log_policy_statements(policy: dict[str, Any]) -> list[Statement]:
    """The statements of an AWS::Logs::ResourcePolicy (a JSON string, maybe Fn::Join'ed
    around tokens: each token is replaced by a placeholder string)."""
    document = policy["Properties"]["PolicyDocument"]
    if isinstance(document, dict) and "Fn::Join" in document:
        document = "".join(p if isinstance(p, str) else "TOKEN" for p in document["Fn::Join"][1])
    return json.loads(document)["Statement"]


def test_log_groups_holding_events_or_findings_use_the_data_key(
    stage_synth: Synthesized,
) -> None:
    (key_id,) = stage_synth.resources("AWS::KMS::Key")
    groups = stage_synth.resources("AWS::Logs::LogGroup")
    for logical_id, group in groups.items():
        if "WafLog" in logical_id:
            continue  # request metadata (IPs, headers), never bodies
        assert group["Properties"].get("KmsKeyId") == {"Fn::GetAtt": [key_id, "Arn"]}, logical_id
    (archive,) = stage_synth.resources("AWS::Events::Archive").values()
    assert archive["Properties"]["KmsKeyIdentifier"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_the_stream_uses_the_data_key_in_staging_and_prod(stage_synth: Synthesized) -> None:
    (key_id,) = stage_synth.resources("AWS::KMS::Key")
    (stream,) = stage_synth.resources("AWS::Kinesis::Stream").values()
    encryption = stream["Properties"]["StreamEncryption"]
    if stage_synth.stack.settings.stage.name == "dev":
        assert encryption["KeyId"] == "alias/aws/kinesis"
    else:
        assert encryption["KeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_producers_are_told_which_key_the_stream_needs(stage_synth: Synthesized) -> None:
    # A producer writing to a stream encrypted with a customer-managed key needs
    # kms:GenerateDataKey on that key; the output names it where the stream uses it.
    (key_id,) = stage_synth.resources("AWS::KMS::Key")
    outputs = stage_synth.json["Outputs"]
    if stage_synth.stack.settings.stage.name == "dev":
        assert not any(k.startswith("StreamKeyArn") for k in outputs)
    else:
        assert outputs["StreamKeyArn"]["Value"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_the_api_gateway_account_role_is_opt_in(synth: Any) -> None:
    for stage in ("dev", "staging", "prod"):
        assert synth(stage).resources("AWS::ApiGateway::Account") == {}
    managed = synth("dev", manageApiGatewayAccount="true")
    (account,) = managed.resources("AWS::ApiGateway::Account").values()
    assert account["DeletionPolicy"] == "Retain"


def test_queues_holding_records_outlive_the_stack_in_staging_and_prod(
    stage_synth: Synthesized,
) -> None:
    queues = stage_synth.resources("AWS::SQS::Queue")
    assert len(queues) == 3  # quarantine, its dead letters, the on-failure destination
    expected = "Delete" if stage_synth.stack.settings.stage.name == "dev" else "Retain"
    for logical_id, queue in queues.items():
        assert queue["DeletionPolicy"] == expected, logical_id


def test_both_functions_reserve_concurrency_in_every_stage(stage_synth: Synthesized) -> None:
    functions = stage_synth.resources("AWS::Lambda::Function")
    for logical_id, function in functions.items():
        if logical_id.startswith(("StreamScoringScorer", "PredictionApiPredictor")):
            assert function["Properties"]["ReservedConcurrentExecutions"] >= 5, logical_id


def test_api_gateway_rejects_malformed_bodies_before_the_function(
    stage_synth: Synthesized,
) -> None:
    models = {
        m["Properties"]["Name"]: json.loads(json.dumps(m["Properties"]["Schema"]))
        for m in stage_synth.resources("AWS::ApiGateway::Model").values()
    }
    assert models["PredictRequest"]["type"] == "object"
    assert models["BatchRequest"]["required"] == ["events"]
    assert models["BatchRequest"]["properties"]["events"] == {"type": "array", "minItems": 1}
    (validator_id,) = stage_synth.resources("AWS::ApiGateway::RequestValidator")
    posts = [
        m["Properties"]
        for m in stage_synth.resources("AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "POST"
    ]
    assert len(posts) == 2
    for method in posts:
        assert method["RequestValidatorId"] == {"Ref": validator_id}
        assert set(method["RequestModels"]) == {"application/json"}


def test_client_errors_and_throttling_page_the_ops_topic(stage_synth: Synthesized) -> None:
    alarms = stage_synth.resources("AWS::CloudWatch::Alarm")
    found = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in alarms.values()
        if a["Properties"].get("MetricName") in ("4XXError",)
        or str(a["Properties"].get("MetricName", "")).endswith("-429")
    }
    assert len(found) == 2, sorted(found)
    (ops_topic,) = [
        logical_id
        for logical_id, t in stage_synth.resources("AWS::SNS::Topic").items()
        if "Ops" in logical_id or "Monitoring" in logical_id
    ]
    for props in found.values():
        assert {"Ref": ops_topic} in props["AlarmActions"]
    (metric_filter,) = stage_synth.resources("AWS::Logs::MetricFilter").values()
    assert "429" in metric_filter["Properties"]["FilterPattern"]


def test_waf_logs_to_a_log_group_where_it_is_on(synth: Any) -> None:
    prod = synth("prod")
    (config,) = prod.resources("AWS::WAFv2::LoggingConfiguration").values()
    (waf_log_id,) = [k for k in prod.resources("AWS::Logs::LogGroup") if "WafLog" in k]
    name = prod.json["Resources"][waf_log_id]["Properties"]["LogGroupName"]
    assert name.startswith("aws-waf-logs-")
    assert json.dumps({"Ref": waf_log_id}) in json.dumps(
        config["Properties"]["LogDestinationConfigs"]
    )
    assert synth("dev").resources("AWS::WAFv2::LoggingConfiguration") == {}


def test_a_resource_policy_limits_callers_when_asked(synth: Any) -> None:
    assert "Policy" not in synth("dev").only("AWS::ApiGateway::RestApi")[1]["Properties"]
    limited = synth(
        "dev", apiAllowedOrgId="o-abcdefghij", apiAllowedVpceId="vpce-0123456789abcdef0"
    )
    policy = limited.only("AWS::ApiGateway::RestApi")[1]["Properties"]["Policy"]
    denies = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    conditions = [json.dumps(s["Condition"]) for s in denies]
    assert any("aws:PrincipalOrgID" in c and "o-abcdefghij" in c for c in conditions)
    assert any("aws:SourceVpce" in c and "vpce-0123456789abcdef0" in c for c in conditions)
    # With IAM auth, a resource-policy Allow suffices for a caller of this account
    # (API Gateway's table A): no unconditional Allow, only the organization's other
    # accounts (which still need their own IAM Allow, table B).
    (allow,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allow["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": "o-abcdefghij"}
    assert allow["Condition"]["StringNotEquals"] == {
        "aws:PrincipalAccount": {"Ref": "AWS::AccountId"}
    }
    vpce_only = synth("dev", apiAllowedVpceId="vpce-0123456789abcdef0")
    policy = vpce_only.only("AWS::ApiGateway::RestApi")[1]["Properties"]["Policy"]
    assert [s["Effect"] for s in policy["Statement"]] == ["Deny"]
    # API keys: no IAM auth, so API Gateway needs the policy's explicit Allow.
    keyed = synth("dev", apiAuth="api_key", apiAllowedVpceId="vpce-0123456789abcdef0")
    policy = keyed.only("AWS::ApiGateway::RestApi")[1]["Properties"]["Policy"]
    assert [s["Effect"] for s in policy["Statement"]] == ["Allow", "Deny"]
    assert "Condition" not in policy["Statement"][0]


def test_an_organization_limit_needs_iam_auth() -> None:
    # An API-key caller carries no aws:PrincipalOrgID: the Deny would refuse everyone.
    context = {
        "stage": "dev",
        "modelVersion": MODEL_VERSION,
        "apiAuth": "api_key",
        "apiAllowedOrgId": "o-abcdefghij",
    }
    with pytest.raises(ContextError, match="needs IAM auth"):
        DeploySettings.from_context(context.get)


@pytest.mark.parametrize("stage", ["staging", "prod"])
def test_staging_and_prod_run_only_a_pinned_bundle(stage: str) -> None:
    context = {"stage": stage, "modelVersion": MODEL_VERSION}
    with pytest.raises(ContextError, match="modelObjectVersion"):
        DeploySettings.from_context(context.get)
    dev = DeploySettings.from_context({"stage": "dev", "modelVersion": MODEL_VERSION}.get)
    assert dev.model is not None
    assert dev.model.object_version is None


@pytest.mark.parametrize(
    ("key", "value"), [("apiAllowedOrgId", "org-1"), ("apiAllowedVpceId", "vpc-123")]
)
def test_caller_limits_are_validated(key: str, value: str) -> None:
    context = {"stage": "dev", "modelVersion": MODEL_VERSION, key: value}
    with pytest.raises(ContextError, match=re.escape(key)):
        DeploySettings.from_context(context.get)


def test_only_the_publisher_role_writes_to_the_registry(stage_synth: Synthesized) -> None:
    registry_id = next(
        k for k in stage_synth.resources("AWS::S3::Bucket") if k.startswith("ModelRegistry")
    )
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in stage_synth.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": registry_id}
    ]
    (deny,) = [s for s in policy if s.get("Sid") == "OnlyThePublisherWrites"]
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"AWS": "*"}
    assert {"s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(deny["Action"])
    (publisher,) = [
        k for k in stage_synth.resources("AWS::IAM::Role") if k.startswith("ModelRegistryPublisher")
    ]
    assert deny["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": [publisher, "Arn"]}}
    }
    assert "ModelPublisherRoleArn" in stage_synth.json["Outputs"]
    # the publisher may write and read, never delete or change retention
    (statements,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in stage_synth.resources("AWS::IAM::Policy").values()
        if {"Ref": publisher} in p["Properties"]["Roles"]
    ]
    actions = {a for s in statements for a in _listed(s["Action"])}
    assert not any("Delete" in a or "Retention" in a or "Governance" in a for a in actions)


def test_object_lock_is_a_stage_option(synth: Any) -> None:
    def registry(s: Synthesized) -> dict[str, Any]:
        return next(
            b["Properties"]
            for k, b in s.resources("AWS::S3::Bucket").items()
            if k.startswith("ModelRegistry")
        )

    assert "ObjectLockEnabled" not in registry(synth("prod"))
    locked = registry(synth("prod", registryObjectLockDays="30"))
    assert locked["ObjectLockEnabled"] is True
    rule = locked["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
    assert rule == {"Mode": "GOVERNANCE", "Days": 30}


def test_released_functions_and_hooks_know_the_manifest_digest(stage_synth: Synthesized) -> None:
    functions = stage_synth.resources("AWS::Lambda::Function").values()
    for function in functions:
        env = function["Properties"]["Environment"]["Variables"]
        if names.ENV_EXPECTED_BUNDLE_VERSION in env:
            assert env[names.ENV_EXPECTED_MANIFEST_SHA256] == MANIFEST_SHA256
