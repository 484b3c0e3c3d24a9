"""CDK entry point: ``npx cdk synth -c stage=dev [-c modelVersion=... -c modelObjectVersion=...]``.

Run from the repository root (``cdk.json``'s ``app`` is ``python3 -m infra.app``). The
stack is environment-agnostic and makes no lookups, so synth needs no AWS credentials;
cdk-nag's AwsSolutions pack runs as a validation plugin and fails the synth on any
finding that is not acknowledged in code.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.layers import REPO_ROOT, LayerBuildError, dependency_layer, shared_layer
from infra.stack import REGISTRY_ONLY_MESSAGE, LayerAssets, OcsfDetectStack, stack_name
from infra.stages import ContextError, DeploySettings

CDK_JSON = REPO_ROOT / "cdk.json"


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """The ``context`` of cdk.json (feature flags and defaults), for apps built in tests."""
    return dict(json.loads(path.read_text()).get("context", {}))


def build_app(
    context: Mapping[str, Any] | None = None,
    *,
    layer_assets: LayerAssets | None = None,
    outdir: str | None = None,
    nag: bool = True,
) -> tuple[App, OcsfDetectStack]:
    """The app and its one stack. ``layer_assets`` replaces the local layer build (tests)."""
    app = App(context=dict(context) if context is not None else None, outdir=outdir)
    settings = DeploySettings.from_context(app.node.try_get_context)

    def assets() -> LayerAssets:
        if layer_assets is not None:
            return layer_assets
        return LayerAssets(
            dependencies=dependency_layer(settings.stage.architecture), shared=shared_layer()
        )

    stack = OcsfDetectStack(
        app, stack_name(settings.stage.name), settings=settings, layer_assets=assets
    )
    if nag:
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, stack


def main() -> int:
    try:
        app, stack = build_app()
    except (ContextError, LayerBuildError) as exc:
        print(f"infra: {exc}", file=sys.stderr)
        return 1
    if stack.settings.model is None:
        print(f"infra: {REGISTRY_ONLY_MESSAGE}", file=sys.stderr)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
