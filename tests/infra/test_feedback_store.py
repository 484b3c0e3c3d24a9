"""The feedback bucket: private, encrypted, versioned; the API writes verdicts and overlay
vectors, the stream function only reads the overlay."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ocsf_detect import names

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized


def _function(s: Synthesized, handler: str) -> dict[str, Any]:
    (fn,) = [
        r
        for r in s.resources("AWS::Lambda::Function").values()
        if r["Properties"]["Handler"] == handler
    ]
    return fn


def _statements(s: Synthesized, fn: dict[str, Any]) -> list[dict[str, Any]]:
    role_id = fn["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        st
        for p in s.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for st in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _on_feedback(statements: list[dict[str, Any]]) -> dict[tuple[str, ...], Any]:
    out = {}
    for st in statements:
        if "FeedbackBucket" in json.dumps(st["Resource"]):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            out[tuple(sorted(actions))] = (st["Resource"], st.get("Condition"))
    return out


def _object_arn(resource: Any) -> str:
    return resource["Fn::Join"][1][1]


def test_both_functions_know_the_bucket_and_hold_only_their_own_grants(
    stage_synth: Synthesized,
) -> None:
    scorer = _function(stage_synth, names.STREAM_HANDLER)
    api = _function(stage_synth, names.API_HANDLER)
    for fn in (scorer, api):
        env = fn["Properties"]["Environment"]["Variables"]
        assert names.ENV_FEEDBACK_BUCKET in env
    scorer_grants = _on_feedback(_statements(stage_synth, scorer))
    api_grants = _on_feedback(_statements(stage_synth, api))
    # the stream function lists and reads the overlay, nothing else
    assert set(scorer_grants) == {("s3:GetObject",), ("s3:ListBucket",)}
    assert _object_arn(scorer_grants[("s3:GetObject",)][0]) == "/feedback/overlay/*"
    listed = scorer_grants[("s3:ListBucket",)][1]
    assert listed == {"StringLike": {"s3:prefix": ["feedback/overlay/*"]}}
    # the API writes and removes under the feedback prefix, and lists the overlay
    assert set(api_grants) == {
        ("s3:DeleteObject", "s3:GetObject", "s3:PutObject"),
        ("s3:ListBucket",),
    }
    objects = api_grants[("s3:DeleteObject", "s3:GetObject", "s3:PutObject")][0]
    assert _object_arn(objects) == f"/{names.FEEDBACK_KEY_PREFIX}*"


def test_the_bucket_is_private_encrypted_versioned_and_logged(dev: Synthesized) -> None:
    (bucket,) = [
        r for k, r in dev.resources("AWS::S3::Bucket").items() if k.startswith("FeedbackBucket")
    ]
    props = bucket["Properties"]
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] is True
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["LoggingConfiguration"]["LogFilePrefix"] == "feedback/"
    assert "FeedbackBucketName" in dev.json["Outputs"]
