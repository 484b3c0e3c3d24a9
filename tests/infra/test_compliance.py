"""cdk-nag (AwsSolutions) and cfn-lint over every synthesized shape of the stack."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from aws_cdk import Validations
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import ManualArgs, lint

from infra.app import build_app, cdk_json_context

if TYPE_CHECKING:
    from tests.infra.conftest import Synthesized

# Every shape the context can select, synthesized once per session by the fixture.
VARIANTS = [
    ("dev", {}),
    ("staging", {}),
    ("prod", {}),
    ("dev", {"apiAuth": "api_key"}),
    ("dev", {"corsAllowOrigin": "https://console.example.com"}),
    ("dev", {"bundleSource": "s3"}),
    ("prod", {"streamShards": "2", "architecture": "arm64"}),
    ("prod", {"modelVersion": None, "modelObjectVersion": None, "registryOnly": "true"}),
]
IDS = [
    f"{stage}-{'-'.join(f'{k}={v}' for k, v in ctx.items()) or 'default'}"
    for stage, ctx in VARIANTS
]
LINT_REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture(params=VARIANTS, ids=IDS)
def variant(request: pytest.FixtureRequest, synth) -> Synthesized:
    stage, context = request.param
    return synth(stage, **context)


def test_no_unacknowledged_cdk_nag_findings(variant: Synthesized) -> None:
    report = AwsSolutionsChecks(variant.app).validate_scope(variant.stack)
    findings = [
        f"{v.rule_name} ({v.severity}) at {[r.construct_path for r in v.violating_resources]}"
        for v in report.violations
    ]
    assert findings == []
    assert report.success


def test_every_acknowledgement_has_a_reason(variant: Synthesized) -> None:
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = {
        f"{construct.node.path} {rule}": reason
        for construct in variant.stack.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for rule, reason in entry.data.items()
    }
    assert acknowledged or variant.stack.settings.model is None
    for where, reason in acknowledged.items():
        assert len(reason.split()) >= 8, f"{where}: say why, not just that ({reason!r})"


def _cdk_generated_redundancy(match) -> bool:
    """W3005 on a function's DependsOn its own role: CDK always adds it beside the GetAtt."""
    return match.rule.id == "W3005" and match.message.endswith("/Properties/Role'")


def test_cfn_lint_is_clean(variant: Synthesized) -> None:
    matches = lint(json.dumps(variant.json), config=ManualArgs(regions=LINT_REGIONS))
    problems = [
        f"{m.rule.id} line {m.linenumber}: {m.message}"
        for m in matches
        if not _cdk_generated_redundancy(m)
    ]
    assert problems == []


def test_synth_with_the_nag_plugin_succeeds(stub_layers, tmp_path) -> None:
    """The path `cdk synth` takes: cdk-nag runs as a validation plugin and would fail it."""
    context = cdk_json_context() | {
        "stage": "staging",
        "modelVersion": "2.0.0+feedbeef",
        "modelObjectVersion": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrH",
        "modelManifestSha256": "0" * 64,
    }
    app, _ = build_app(context, layer_assets=stub_layers, outdir=str(tmp_path), nag=True)
    assembly = app.synth()
    assert [s.stack_name for s in assembly.stacks] == ["OcsfDetect-staging"]


def test_the_nag_plugin_fails_synth_on_an_unacknowledged_finding(stub_layers, tmp_path) -> None:
    """Proof the guard is live: an unencrypted queue slipped into the stack stops the synth."""
    from aws_cdk import aws_sqs as sqs

    context = cdk_json_context() | {"stage": "dev", "modelVersion": "2.0.0+feedbeef"}
    app, stack = build_app(context, layer_assets=stub_layers, outdir=str(tmp_path), nag=True)
    sqs.Queue(stack, "Unencrypted", encryption=sqs.QueueEncryption.UNENCRYPTED)

    with pytest.raises(RuntimeError, match="AwsSolutions-SQS2"):
        app.synth()
    assert "AwsSolutions-SQS2" in (tmp_path / "validation-report.json").read_text()
