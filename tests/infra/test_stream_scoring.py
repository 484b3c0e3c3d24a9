"""Stream scoring: the event source mapping on the live alias, queues, bucket, role."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING

from aws_cdk.assertions import Match

from infra.constructs.stream_scoring import (
    QUARANTINE_OBJECTS,
    SUPPRESSED_OBJECTS,
    WITHHELD_OBJECTS,
)
from infra.stages import STAGES
from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def _scorer(s: Synthesized) -> tuple[str, dict]:
    functions = {
        k: r
        for k, r in s.resources("AWS::Lambda::Function").items()
        if r["Properties"]["Handler"] == names.STREAM_HANDLER
    }
    assert len(functions) == 1
    return next(iter(functions.items()))


def test_event_source_mapping_settings_follow_the_stage(stage_synth: Synthesized) -> None:
    config = STAGES[stage_synth.stack.settings.stage.name].scoring
    _, mapping = stage_synth.only("AWS::Lambda::EventSourceMapping")
    props = mapping["Properties"]
    assert props["BatchSize"] == config.batch_size
    assert props["MaximumBatchingWindowInSeconds"] == config.max_batching_window_s
    assert props["ParallelizationFactor"] == config.parallelization_factor
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["MaximumRetryAttempts"] == config.retry_attempts
    assert 0 <= props["MaximumRetryAttempts"] <= 10
    assert props["MaximumRecordAgeInSeconds"] == config.max_record_age_s
    assert 60 <= props["MaximumRecordAgeInSeconds"] <= 7 * 24 * 3600
    assert props["StartingPosition"] == "TRIM_HORIZON"
    failure_queue = props["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    assert failure_queue in stage_synth.resources("AWS::SQS::Queue")


def test_event_source_mapping_targets_the_live_alias(dev: Synthesized) -> None:
    alias_id, alias = next(
        (k, r)
        for k, r in dev.resources("AWS::Lambda::Alias").items()
        if r["Properties"]["FunctionName"]["Ref"] == _scorer(dev)[0]
    )
    assert alias["Properties"]["Name"] == names.LIVE_ALIAS
    _, mapping = dev.only("AWS::Lambda::EventSourceMapping")
    # "<function name>:live", built from the alias ARN: never $LATEST, never unqualified.
    function_name = json.dumps(mapping["Properties"]["FunctionName"])
    assert alias_id in function_name
    assert f":{names.LIVE_ALIAS}" in function_name


def test_stream_and_queues_are_encrypted(dev: Synthesized) -> None:
    _, stream = dev.only("AWS::Kinesis::Stream")
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    queues = dev.resources("AWS::SQS::Queue")
    assert len(queues) == 3  # quarantine, its DLQ, the batch-failure destination
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    # every queue denies plain HTTP
    for policy in dev.resources("AWS::SQS::QueuePolicy").values():
        statement = policy["Properties"]["PolicyDocument"]["Statement"][0]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert len(dev.resources("AWS::SQS::QueuePolicy")) == 3


def test_quarantine_queue_has_its_own_dead_letter_queue(dev: Synthesized) -> None:
    with_dlq = [
        q for q in dev.resources("AWS::SQS::Queue").values() if "RedrivePolicy" in q["Properties"]
    ]
    assert len(with_dlq) == 1
    assert with_dlq[0]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5


def test_provisioned_stream_is_a_stage_option(synth) -> None:
    s = synth("prod", streamShards="4")
    _, stream = s.only("AWS::Kinesis::Stream")
    assert stream["Properties"]["ShardCount"] == 4
    assert stream["Properties"]["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}


def test_scorer_environment_comes_from_names(dev: Synthesized) -> None:
    _, fn = _scorer(dev)
    env = fn["Properties"]["Environment"]["Variables"]
    for name in (
        names.ENV_ALERT_TOPIC_ARN,
        names.ENV_EVENT_BUS_NAME,
        names.ENV_QUARANTINE_QUEUE_URL,
        names.ENV_QUARANTINE_BUCKET,
    ):
        assert name in env
    assert env[names.ENV_BUNDLE_PATH] == names.DEFAULT_BUNDLE_PATH
    assert env[names.ENV_EXPECTED_BUNDLE_VERSION] == dev.stack.settings.model.version
    assert env["POWERTOOLS_SERVICE_NAME"] == names.SERVICE_NAME
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == names.METRICS_NAMESPACE
    assert names.ENV_BUNDLE_S3_URI not in env
    assert fn["Properties"]["Runtime"] == "python3.12"
    assert fn["Properties"]["TracingConfig"] == {"Mode": "Active"}
    assert fn["Properties"]["Architectures"] == ["x86_64"]


def test_memory_and_timeout_follow_the_stage(stage_synth: Synthesized) -> None:
    config = stage_synth.stack.settings.stage.scoring
    _, fn = _scorer(stage_synth)
    assert fn["Properties"]["MemorySize"] == config.memory_mb
    assert fn["Properties"]["Timeout"] == config.timeout_s


def test_scorer_role_is_least_privilege(dev: Synthesized) -> None:
    _, fn = _scorer(dev)
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    role = dev.json["Resources"][role_id]
    assert "ManagedPolicyArns" not in role["Properties"]
    policies = [
        p
        for p in dev.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    actions = {
        action
        for p in policies
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        for action in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    }
    assert {"sns:Publish", "events:PutEvents", "sqs:SendMessage", "s3:PutObject"} <= actions
    assert "kinesis:GetRecords" in actions
    # S3 reads: the feedback overlay only (no bundle reads when it ships as a layer)
    reads = [
        st
        for p in policies
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if any(a.startswith(("s3:Get", "s3:List")) for a in _actions(st))
    ]
    assert reads
    assert all("FeedbackBucket" in json.dumps(st["Resource"]) for st in reads)
    assert not any(a.endswith(":*") or a == "*" for a in actions)
    wildcard_resources = [
        st
        for p in policies
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if st["Resource"] == "*"
    ]
    assert [sorted(st["Action"]) for st in wildcard_resources] == [
        ["xray:PutTelemetryRecords", "xray:PutTraceSegments"]
    ]


def test_quarantine_bucket_is_private_encrypted_and_expiring(dev: Synthesized) -> None:
    dev.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Id": "expire-quarantined-payloads", "Status": "Enabled"})]
                )
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LoggingConfiguration": {
                "DestinationBucketName": Match.any_value(),
                "LogFilePrefix": "quarantine/",
            },
        },
    )


def _scorer_statements(s: Synthesized) -> list[dict]:
    _, fn = _scorer(s)
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        st
        for p in s.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_scorer_role_has_no_grant_extras_it_never_uses(dev: Synthesized) -> None:
    statements = _scorer_statements(dev)
    actions = {a for st in statements for a in _actions(st)}
    # grant_put's extras, grant_send_messages' extras, grant_encrypt_decrypt's extras
    for unused in (
        "s3:PutObjectRetention",
        "s3:PutObjectLegalHold",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        "s3:Abort*",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
        "kms:Encrypt",
        "kms:ReEncrypt*",
    ):
        assert unused not in actions, unused
    # what SQS encryption needs from a producer is there
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= actions


def test_scorer_writes_only_quarantine_objects_and_sends_only_to_its_queues(
    dev: Synthesized,
) -> None:
    statements = _scorer_statements(dev)
    (s3_put,) = [st for st in statements if "s3:PutObject" in _actions(st)]
    assert _actions(s3_put) == ["s3:PutObject"]
    bucket_id = logical_id_of(dev, "QuarantineBucket", "AWS::S3::Bucket")
    # quarantined payloads, and suppressed and withheld findings (the alert-state archive)
    assert s3_put["Resource"] == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, f"/{prefix}"]]}
        for prefix in (QUARANTINE_OBJECTS, SUPPRESSED_OBJECTS, WITHHELD_OBJECTS)
    ]
    (sqs_send,) = [st for st in statements if any(a.startswith("sqs:") for a in _actions(st))]
    assert _actions(sqs_send) == ["sqs:SendMessage"]
    queues = {ref["Fn::GetAtt"][0] for ref in sqs_send["Resource"]}
    expected = {
        logical_id_of(dev, name, "AWS::SQS::Queue")
        for name in ("QuarantineQueue", "BatchFailureQueue")
    }
    assert queues == expected


def test_the_grant_covers_the_keys_the_function_writes() -> None:
    from stream_scoring.adapters import archived_key, quarantine_key

    from ocsf_detect.names import QUARANTINE_KEY_PREFIX
    from ocsf_detect.stream import ArchivedFinding, QuarantineItem

    record = QuarantineItem(
        shard_id="shardId-000000000000",
        sequence_number="49590338271490256608559692538361571095921575989136588898",
        sub_index=3,
        partition_key="pk",
        reason="invalid_json",
        message="not JSON",
        field=None,
        payload=b"x",
        bundle_version="1.0.0+3f2a9c1b7e4d",
        quarantined_ms=1_767_225_600_000,
    )
    alert = replace(record, reason="undeliverable", channel="sns", finding_uid="f-1")
    for item in (record, alert):  # a rejected event, an undeliverable finding
        assert quarantine_key(item).startswith(QUARANTINE_KEY_PREFIX)
    # suppressed and withheld findings (the alert-state archive)
    suppressed = ArchivedFinding("f-2", b"{}", 1_767_225_600_000, rule_id="r-1", reason="known")
    withheld = ArchivedFinding("f-3", b"{}", 1_767_225_600_000, group_uid="g-1")
    assert archived_key(suppressed).startswith(SUPPRESSED_OBJECTS.rstrip("*"))
    assert archived_key(withheld).startswith(WITHHELD_OBJECTS.rstrip("*"))
    assert archived_key(withheld).endswith("/g-1/f-3.json")


def logical_id_of(s: Synthesized, construct_id: str, resource_type: str) -> str:
    (found,) = [
        k for k in s.resources(resource_type) if k.startswith(f"StreamScoring{construct_id}")
    ]
    return found


def test_prod_reserves_both_functions_and_keeps_the_stream_a_week(prod: Synthesized) -> None:
    functions = prod.resources("AWS::Lambda::Function").values()
    reserved = sorted(
        f["Properties"]["ReservedConcurrentExecutions"]
        for f in functions
        if "ReservedConcurrentExecutions" in f["Properties"]
    )
    assert reserved == [20, 50]  # the API and the scorer; the release hooks need none
    (stream,) = prod.resources("AWS::Kinesis::Stream").values()
    assert stream["Properties"]["RetentionPeriodHours"] == 168
