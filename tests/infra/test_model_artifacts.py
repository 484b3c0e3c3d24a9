"""Model registry bucket, the three layers, and how the model layer is chosen."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aws_cdk.assertions import Annotations, Match

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def _registry(s: Synthesized) -> tuple[str, dict]:
    found = {
        k: r
        for k, r in s.resources("AWS::S3::Bucket").items()
        if "BucketName" in r["Properties"]
        and "-models-" in json.dumps(r["Properties"]["BucketName"])
    }
    assert len(found) == 1
    return next(iter(found.items()))


def test_registry_bucket_is_versioned_encrypted_private_logged(stage_synth: Synthesized) -> None:
    registry_id, bucket = _registry(stage_synth)
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
        "ServerSideEncryptionByDefault"
    ] == {"SSEAlgorithm": "AES256"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "registry/"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    assert bucket["DeletionPolicy"] == "Retain"
    # TLS only
    stage_synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": registry_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_registry_bucket_name_is_known_before_deploy(dev: Synthesized) -> None:
    _, bucket = _registry(dev)
    name = json.dumps(bucket["Properties"]["BucketName"])
    assert "ocsf-detect-dev-models-" in name
    assert "AWS::AccountId" in name
    assert "AWS::Region" in name
    assert "ModelRegistryBucketName" in dev.json["Outputs"]


def test_model_layer_comes_from_the_registry_pinned_to_the_object_version(
    dev: Synthesized,
) -> None:
    registry_id, _ = _registry(dev)
    model = dev.stack.settings.model
    dev.template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {
            "Content": {
                "S3Bucket": {"Ref": registry_id},
                "S3Key": f"bundles/{model.version}/bundle.zip",
                "S3ObjectVersion": model.object_version,
            }
        },
    )
    layers = dev.resources("AWS::Lambda::LayerVersion")
    assert len(layers) == 3  # dependencies, shared library, model
    for layer in layers.values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]


def test_every_function_runs_on_the_code_layers(dev: Synthesized) -> None:
    layer_ids = {f"{k}" for k in dev.resources("AWS::Lambda::LayerVersion")}
    for fn in dev.resources("AWS::Lambda::Function").values():
        refs = {layer["Ref"] for layer in fn["Properties"]["Layers"]}
        assert refs == layer_ids


def test_model_prefix_moves_the_key(synth) -> None:
    s = synth("dev", modelPrefix="team-a")
    s.template.has_resource_properties(
        "AWS::Lambda::LayerVersion",
        {
            "Content": Match.object_like(
                {"S3Key": f"team-a/bundles/{s.stack.settings.model.version}/bundle.zip"}
            )
        },
    )


def test_bundle_source_s3_replaces_the_layer_with_a_read_grant(synth) -> None:
    s = synth("dev", bundleSource="s3")
    model = s.stack.settings.model
    assert len(s.resources("AWS::Lambda::LayerVersion")) == 2
    registry_id, _ = _registry(s)
    for fn in s.resources("AWS::Lambda::Function").values():
        env = fn["Properties"]["Environment"]["Variables"]
        assert names.ENV_BUNDLE_PATH not in env
        if fn["Properties"]["Handler"] == names.PRE_TRAFFIC_HANDLER:
            uri = json.dumps(env[names.ENV_MANIFEST_S3_URI])
            assert f"/bundles/{model.version}/manifest.json" in uri
        else:
            uri = json.dumps(env[names.ENV_BUNDLE_S3_URI])
            assert f"/bundles/{model.version}/bundle.zip?versionId={model.object_version}" in uri
        assert registry_id in uri
    # read only the objects of this one version (the publisher role aside: it writes)
    reads = [
        st
        for logical_id, p in s.resources("AWS::IAM::Policy").items()
        for st in p["Properties"]["PolicyDocument"]["Statement"]
        if "s3:GetObject" in st["Action"]
        and "Publisher" not in logical_id
        and registry_id in json.dumps(st["Resource"])
    ]
    assert len(reads) == 4  # scorer, predictor, and their two hooks
    for st in reads:
        assert sorted(st["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
        assert f"/bundles/{model.version}/*" in json.dumps(st["Resource"])


def test_without_model_version_only_the_registry_is_deployed(synth) -> None:
    s = synth("prod", modelVersion=None, modelObjectVersion=None, registryOnly="true")
    types = {r["Type"] for r in s.json["Resources"].values()}
    # the registry, its access logs, and the publisher role (its only writer)
    assert types == {
        "AWS::S3::Bucket",
        "AWS::S3::BucketPolicy",
        "AWS::IAM::Role",
        "AWS::IAM::Policy",
    }
    assert len(s.resources("AWS::S3::Bucket")) == 2
    assert set(s.json["Outputs"]) == {
        "ModelRegistryBucketName",
        "ModelPublisherRoleArn",
        "NextStep",
    }
    infos = Annotations.from_stack(s.stack).find_info("*", Match.string_like_regexp("modelVersion"))
    assert infos, "the registry-only synth must say what to do next"


def test_registry_keeps_its_logical_id_across_both_shapes(synth) -> None:
    first = synth("dev", modelVersion=None, modelObjectVersion=None, registryOnly="true")
    full = synth("dev")
    assert _registry(first)[0] == _registry(full)[0]


def test_stages_that_keep_data_are_termination_protected(
    dev: Synthesized, prod: Synthesized
) -> None:
    assert prod.stack.termination_protection is True
    assert dev.stack.termination_protection is False
