"""The raw archive: the stream, through Firehose, into S3 (gzip, partitioned by date)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def test_every_stage_archives_the_raw_stream_by_date(stage_synth: Synthesized) -> None:
    _, delivery = stage_synth.only("AWS::KinesisFirehose::DeliveryStream")
    props = delivery["Properties"]
    # Given the stage's one event stream
    stream_id, _ = stage_synth.only("AWS::Kinesis::Stream")
    # Then Firehose reads it, as a consumer of its own
    assert props["DeliveryStreamType"] == "KinesisStreamAsSource"
    source = props["KinesisStreamSourceConfiguration"]
    assert source["KinesisStreamARN"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    # ... and writes gzip objects, one event per line, under raw/YYYY/MM/DD/
    s3 = props["ExtendedS3DestinationConfiguration"]
    assert s3["CompressionFormat"] == "GZIP"
    assert s3["Prefix"] == "raw/!{timestamp:yyyy}/!{timestamp:MM}/!{timestamp:dd}/"
    assert s3["ErrorOutputPrefix"].startswith("errors/!{firehose:error-output-type}/")
    (processor,) = s3["ProcessingConfiguration"]["Processors"]
    assert processor["Type"] == "AppendDelimiterToRecord"
    # ... into a bucket of its own, kept as long as the stage says
    bucket = stage_synth.json["Resources"][s3["BucketARN"]["Fn::GetAtt"][0]]
    rule = bucket["Properties"]["LifecycleConfiguration"]["Rules"][0]
    assert rule["ExpirationInDays"] == stage_synth.stack.settings.stage.ingest.archive_days
    assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True


def test_the_archive_role_is_firehose_of_this_account_only(dev: Synthesized) -> None:
    _, delivery = dev.only("AWS::KinesisFirehose::DeliveryStream")
    role_id = delivery["Properties"]["KinesisStreamSourceConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
    trust = dev.json["Resources"][role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    (statement,) = trust
    assert statement["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }
    policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in dev.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    actions = {a for statements in policies for s in statements for a in _list(s["Action"])}
    assert "s3:PutObject" in actions
    assert "kinesis:GetRecords" in actions
    assert not {a for a in actions if a.startswith("s3:Delete")}


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_a_stalled_archive_is_logged_and_pages_the_ops_topic(stage_synth: Synthesized) -> None:
    _, delivery = stage_synth.only("AWS::KinesisFirehose::DeliveryStream")
    logging = delivery["Properties"]["ExtendedS3DestinationConfiguration"][
        "CloudWatchLoggingOptions"
    ]
    assert logging["Enabled"] is True
    # the delivery log is a group of its own, encrypted with the data key, kept for the
    # stage's log retention
    group = stage_synth.json["Resources"][logging["LogGroupName"]["Ref"]]["Properties"]
    assert "Fn::GetAtt" in group["KmsKeyId"]
    expected = stage_synth.stack.settings.stage.monitoring.log_retention_days
    assert group["RetentionInDays"] == expected
    # and an alarm on the age of what is waiting for S3 pages the ops topic
    (alarm,) = [
        a["Properties"]
        for a in stage_synth.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "DeliveryToS3.DataFreshness"
    ]
    delivery_id, _ = stage_synth.only("AWS::KinesisFirehose::DeliveryStream")
    assert alarm["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": {"Ref": delivery_id}}]
    ops = stage_synth.json["Outputs"]["OpsTopicArn"]["Value"]["Ref"]
    assert alarm["AlarmActions"] == [{"Ref": ops}]
