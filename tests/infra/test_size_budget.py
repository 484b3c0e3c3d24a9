"""Lambda's size limits at synth: code + layers + the bundle, and /tmp for S3 bundles."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from infra.app import build_app, cdk_json_context
from infra.budget import MB, SizeBudgetError, SizePart, check_unzipped_budget
from infra.layers import BuiltLayer
from infra.stack import LayerAssets
from ocsf_detect import names
from tests.infra.conftest import MODEL_VERSION, OBJECT_VERSION


def layers_of(stub_layers: LayerAssets, deps_mb: float) -> LayerAssets:
    deps = stub_layers.dependencies
    return LayerAssets(
        dependencies=BuiltLayer(deps.path, int(deps_mb * MB), deps.key), shared=stub_layers.shared
    )


def build(stub_layers: LayerAssets, tmp_path: Any, deps_mb: float = 131, **context: Any):
    full = cdk_json_context() | {
        "stage": "dev",
        "modelVersion": MODEL_VERSION,
        "modelObjectVersion": OBJECT_VERSION,
        **context,
    }
    return build_app(
        full, layer_assets=layers_of(stub_layers, deps_mb), outdir=str(tmp_path), nag=False
    )


def test_a_bundle_that_fits_beside_the_layers_synthesizes(stub_layers, tmp_path) -> None:
    _, stack = build(stub_layers, tmp_path, modelUnzippedBytes=str(100 * MB))
    parts = {p.name.split(" (")[0]: p.size_bytes for p in stack.layers.size_parts}
    assert parts["model layer"] == 100 * MB
    assert parts["dependency layer"] == 131 * MB
    assert 0 < parts["function code"] < MB


def test_a_bundle_over_the_budget_fails_naming_each_part(stub_layers, tmp_path) -> None:
    # Given 131 MB of dependencies and a 130 MB bundle as the model layer
    with pytest.raises(SizeBudgetError) as failure:
        build(stub_layers, tmp_path, modelUnzippedBytes=str(130 * MB))
    # Then synth fails, and the message names every part with its size
    message = str(failure.value)
    assert "over Lambda's 250 MB limit" in message
    assert "dependency layer (stub-deps): 131.0 MB" in message
    assert f"model layer (bundle {MODEL_VERSION}): 130.0 MB" in message
    assert "function code (functions/)" in message
    assert "shared layer" in message


def test_without_the_bundle_size_synth_warns_and_counts_the_rest(stub_layers, tmp_path) -> None:
    _, stack = build(stub_layers, tmp_path)
    warnings = Annotations.from_stack(stack).find_warning(
        "*", Match.string_like_regexp("modelUnzippedBytes")
    )
    assert warnings
    with pytest.raises(SizeBudgetError, match="dependency layer"):
        build(stub_layers, tmp_path, deps_mb=251)


def test_s3_bundles_are_checked_against_tmp_not_the_layer_budget(stub_layers, tmp_path) -> None:
    # 200 MB from S3: not a layer, and archive + unpacked copy (400 MB) fit 512 MB of /tmp
    _, stack = build(stub_layers, tmp_path, bundleSource="s3", modelUnzippedBytes=str(200 * MB))
    assert "model layer" not in " ".join(p.name for p in stack.layers.size_parts)
    # 300 MB needs 600 MB of /tmp
    with pytest.raises(SizeBudgetError, match=r"stream function.*600\.0 MB.*512 MB"):
        build(stub_layers, tmp_path, bundleSource="s3", modelUnzippedBytes=str(300 * MB))


def test_budget_total_is_the_sum_of_its_parts() -> None:
    assert check_unzipped_budget([SizePart("a", MB), SizePart("b", 2 * MB)]) == 3 * MB
    with pytest.raises(SizeBudgetError, match=r"a: 1\.0 MB; b: 2\.0 MB"):
        check_unzipped_budget([SizePart("a", MB), SizePart("b", 2 * MB)], limit_bytes=2 * MB)


@pytest.mark.parametrize("value", ["-5", "ten", "0"])
def test_a_malformed_bundle_size_names_the_key(stub_layers, tmp_path, value: str) -> None:
    from infra.stages import ContextError

    with pytest.raises(ContextError, match="modelUnzippedBytes"):
        build(stub_layers, tmp_path, modelUnzippedBytes=value)


def test_snap_start_is_a_stage_setting_that_loads_the_bundle_at_init(synth) -> None:
    # Given SnapStart switched on for the stage
    s = synth("dev", snapStart="true")
    scoring = [
        fn["Properties"]
        for fn in s.resources("AWS::Lambda::Function").values()
        if fn["Properties"]["Handler"] in (names.STREAM_HANDLER, names.API_HANDLER)
    ]
    # Then both scoring functions snapshot published versions and load the bundle in init
    assert len(scoring) == 2
    for props in scoring:
        assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert props["Environment"]["Variables"][names.ENV_LOAD_BUNDLE_AT_INIT] == "true"
    # And by default it is off
    for fn in synth("dev").resources("AWS::Lambda::Function").values():
        assert "SnapStart" not in fn["Properties"]
        assert names.ENV_LOAD_BUNDLE_AT_INIT not in fn["Properties"]["Environment"]["Variables"]
