"""Synthesize each stage once per test session and share the templates.

The dependency layer is replaced by a tiny stub directory here (the template does not
depend on its contents); ``test_dependency_layer.py`` builds the real one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from infra.app import build_app, cdk_json_context
from infra.layers import BuiltLayer
from infra.stack import LayerAssets, OcsfDetectStack

MODEL_VERSION = "1.0.0+3f2a9c1b7e4d"
OBJECT_VERSION = "Xq3l0J9dfGxHh7kP2mZc5YbO.d_RTwY8"
MANIFEST_SHA256 = "9f2c41d7b0e85a3c6d1e4f7a2b9c0d3e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c"
STAGES = ("dev", "staging", "prod")


@dataclass(frozen=True)
class Synthesized:
    """One synthesized stack: the app, the stack, the assertions Template and its JSON."""

    app: App
    stack: OcsfDetectStack
    template: Template
    json: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))


@pytest.fixture(scope="session")
def stub_layers(tmp_path_factory: pytest.TempPathFactory) -> LayerAssets:
    root = tmp_path_factory.mktemp("layers")
    layers = []
    for name in ("deps", "shared"):
        python = root / name / "python"
        python.mkdir(parents=True)
        (python / f"{name}_stub.py").write_text("STUB = True\n")
        layers.append(BuiltLayer(path=root / name, size_bytes=20, key=f"stub-{name}"))
    return LayerAssets(dependencies=layers[0], shared=layers[1])


@pytest.fixture(scope="session")
def synth(
    tmp_path_factory: pytest.TempPathFactory, stub_layers: LayerAssets
) -> Callable[..., Synthesized]:
    """``synth("prod", bundleSource="s3")``: memoized per (stage, context) for the session.

    Every variant runs the same published bundle unless it passes ``modelVersion=None``
    (with ``registryOnly="true"``, the registry-only shape).
    """
    cache: dict[str, Synthesized] = {}
    outdir = tmp_path_factory.mktemp("cdk.out")

    def run(stage: str, **context: Any) -> Synthesized:
        context = {
            "modelVersion": MODEL_VERSION,
            "modelObjectVersion": OBJECT_VERSION,
            "modelManifestSha256": MANIFEST_SHA256,
        } | context
        context = {k: v for k, v in context.items() if v is not None}
        key = json.dumps({"stage": stage, **context}, sort_keys=True)
        if key not in cache:
            full_context = cdk_json_context() | {"stage": stage} | context
            app, stack = build_app(
                full_context,
                layer_assets=stub_layers,
                outdir=str(outdir / f"assembly-{len(cache)}"),
                nag=False,
            )
            template = Template.from_stack(stack)
            cache[key] = Synthesized(app, stack, template, template.to_json())
        return cache[key]

    return run


@pytest.fixture(params=STAGES)
def stage_synth(request: pytest.FixtureRequest, synth: Callable[..., Synthesized]) -> Synthesized:
    """Each stage with a published bundle, as the layer (the default)."""
    return synth(request.param)


@pytest.fixture
def dev(synth: Callable[..., Synthesized]) -> Synthesized:
    return synth("dev")


@pytest.fixture
def prod(synth: Callable[..., Synthesized]) -> Synthesized:
    return synth("prod")


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]
