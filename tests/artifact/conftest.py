"""The artifact tier: the functions as ``cdk synth`` packaged them, started as Lambda starts them.

Once per session: a small bundle is trained (``tests/conftest.py``), the dev stage is
synthesized for that bundle's version with the pinned CDK CLI, each function's code asset
and layers are laid out as a task root and one merged /opt (the bundle archive as the model
layer), and the resources the functions' variables refer to are created in the embedded
AWS emulator. Each test then starts fresh python3.12 processes on those layouts
(``ocsf_detect_tools.artifact``).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from ocsf_detect import names
from ocsf_detect.detector.archive import write_archive
from ocsf_detect_tools.artifact import (
    ACCOUNT,
    REGION,
    ArtifactError,
    Assembly,
    Invocation,
    Layout,
    SynthesizedFunction,
    find_python312,
    invoke,
    lay_out,
    read_assembly,
    referenced,
    runtime_sdk,
    synth_stage,
)
from ocsf_detect_tools.emulator import Emulator, aws_environment
from ocsf_detect_tools.replay import create_alert_table


@pytest.fixture(scope="session")
def python312() -> Path:
    found = find_python312()
    if found is None:
        message = (
            "no runnable python3.12 on PATH or under ~/.pyenv/versions: the artifact tier "
            "starts the packaged functions with Lambda's Python (install it: pyenv install 3.12)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def sdk_dir() -> Path:
    return runtime_sdk()


@pytest.fixture(scope="session")
def bundle_archive(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model layer's content: the archive ``ocsf-detect publish`` uploads."""
    return write_archive(bundle_dir, tmp_path_factory.mktemp("model") / "bundle.zip")


@pytest.fixture(scope="session")
def bundle_version(bundle_dir: Path) -> str:
    return str(json.loads((bundle_dir / "manifest.json").read_text())["bundle_version"])


@pytest.fixture(scope="session")
def assembly(
    tmp_path_factory: pytest.TempPathFactory, bundle_version: str, bundle_dir: Path
) -> Assembly:
    out = tmp_path_factory.mktemp("cdk") / "dev"
    try:
        size = sum(p.stat().st_size for p in bundle_dir.rglob("*") if p.is_file())
        synth_stage(
            out, "dev", model_version=bundle_version, context={"modelUnzippedBytes": str(size)}
        )
    except ArtifactError as exc:
        pytest.fail(str(exc))
    return read_assembly(out)


@pytest.fixture(scope="session")
def emulator() -> Iterator[str]:
    with Emulator() as emu, aws_environment(emu.endpoint_url, REGION):
        yield emu.endpoint_url


@dataclass(frozen=True)
class Deployed:
    """One packaged function, laid out, with its resolved environment."""

    function: SynthesizedFunction
    layout: Layout
    env: Mapping[str, str]

    def run(self, events: list[Any], python312: Path, **env: str) -> Invocation:
        return invoke(self.layout, {**self.env, **env}, events, python312=python312)


@dataclass(frozen=True)
class Stage:
    assembly: Assembly
    refs: Mapping[str, Any]
    functions: Mapping[str, Deployed]
    """By logical id."""
    findings_sns_queue: str
    findings_events_queue: str
    allowed_roots: tuple[Path, ...]

    def one(self, handler: str) -> Deployed:
        found = [d for d in self.functions.values() if d.function.handler == handler]
        assert len(found) == 1, f"{handler}: {len(found)} functions"
        return found[0]

    def queue(self, env_name: str, handler: str = names.STREAM_HANDLER) -> str:
        return self.one(handler).env[env_name]


def function_name(logical_id: str) -> str:
    return f"artifact-{logical_id}"[:64]


def provision(assembly: Assembly, suffix: str) -> dict[str, Any]:
    """A moto resource for every resource the functions' variables refer to."""
    refs: dict[str, Any] = {}
    wanted = set().union(*(referenced(dict(f.variables)) for f in assembly.functions))
    for logical_id in sorted(wanted):
        resource = assembly.resource(logical_id)
        kind = resource["Type"]
        name = f"{logical_id[:40]}-{suffix}"
        if kind == "AWS::SNS::Topic":
            arn = boto3.client("sns").create_topic(Name=name)["TopicArn"]
            refs[logical_id] = {"Ref": arn, "TopicArn": arn, "TopicName": name}
        elif kind == "AWS::Events::EventBus":
            arn = boto3.client("events").create_event_bus(Name=name)["EventBusArn"]
            refs[logical_id] = {"Ref": name, "Arn": arn, "Name": name}
        elif kind == "AWS::SQS::Queue":
            sqs = boto3.client("sqs")
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
            refs[logical_id] = {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}
        elif kind == "AWS::S3::Bucket":
            bucket = name.lower()[:63]
            boto3.client("s3").create_bucket(Bucket=bucket)
            refs[logical_id] = {"Ref": bucket, "Arn": f"arn:aws:s3:::{bucket}"}
        elif kind == "AWS::Lambda::Version":
            target = resource["Properties"]["FunctionName"]["Ref"]
            arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name(target)}:1"
            refs[logical_id] = {"Ref": arn, "Version": "1"}
        elif kind == "AWS::DynamoDB::Table":  # the alert-state table, as replay creates it
            table = create_alert_table(name)
            arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"
            refs[logical_id] = {"Ref": table, "Arn": arn}
        else:
            raise ArtifactError(f"no stand-in for {logical_id} ({kind}), which a function uses")
    return refs


def findings_readers(stage_refs: Mapping[str, Any], env: Mapping[str, str], suffix: str):
    """An SQS queue subscribed to the findings topic and one targeted by a rule on the bus."""
    sqs, sns, events = boto3.client("sqs"), boto3.client("sns"), boto3.client("events")

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=f"{name}-{suffix}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    sns_url, sns_arn = queue("findings-sns")
    sns.subscribe(
        TopicArn=env[names.ENV_ALERT_TOPIC_ARN],
        Protocol="sqs",
        Endpoint=sns_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    events_url, events_arn = queue("findings-events")
    bus = env[names.ENV_EVENT_BUS_NAME]
    rule = f"findings-{suffix}"
    events.put_rule(
        Name=rule,
        EventBusName=bus,
        EventPattern=json.dumps(
            {"source": [names.EVENTBRIDGE_SOURCE], "detail-type": [names.EVENTBRIDGE_DETAIL_TYPE]}
        ),
    )
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "findings", "Arn": events_arn}])
    return sns_url, events_url


@pytest.fixture(scope="session")
def stage(
    assembly: Assembly,
    emulator: str,
    bundle_archive: Path,
    sdk_dir: Path,
    python312: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Stage:
    suffix = uuid.uuid4().hex[:8]
    refs = provision(assembly, suffix)
    root = tmp_path_factory.mktemp("layouts")
    deployed = {}
    for function in assembly.functions:
        layout = lay_out(function, root / function.logical_id, bundle_archive=bundle_archive)
        env = function.environment(layout, refs, endpoint_url=emulator, runtime_dir=sdk_dir)
        env = {**env, "AWS_LAMBDA_FUNCTION_NAME": function_name(function.logical_id)}
        deployed[function.logical_id] = Deployed(function, layout, env)
    stream_env = next(
        d.env for d in deployed.values() if d.function.handler == names.STREAM_HANDLER
    )
    sns_url, events_url = findings_readers(refs, stream_env, suffix)
    from ocsf_detect_tools.artifact import stdlib_dirs

    return Stage(
        assembly=assembly,
        refs=refs,
        functions=deployed,
        findings_sns_queue=sns_url,
        findings_events_queue=events_url,
        allowed_roots=(sdk_dir, *stdlib_dirs(python312)),
    )
