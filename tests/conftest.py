"""Shared fixtures: a small bundle trained once per test session on generated traffic,
and the location of the real third-party data (tests that read it skip without it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("OCSF_DETECT_DATA", REPO.parent / "shared" / "data"))
EVENTS_DIR = REPO / "events"


def require_data(*parts: str) -> Path:
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (set OCSF_DETECT_DATA to its folder)")
    return path


def small_config(**overrides: object):
    """A detector config that trains in seconds (tests only; defaults are for real use)."""
    from ocsf_detect_tools.config import DetectorConfig

    base: dict[str, object] = {
        "min_class_events": 30,
        "train": {"epochs": 60, "max_steps": 400, "width": 64, "blocks": 2, "dim": 32},
        "index": {"recall_sample": 200, "ef_construction": 100},
        # A network trained in seconds retrieves poorly: with the default's 16 candidates
        # a quarter of its fine distances are inflated, and more events reach the
        # threshold on that upper bound than a batch's exact re-checks take, so alerts
        # would depend on the batch (docs/model.md, section 8); 64 keep them near exact.
        "fine": {"candidates": 64},
    }
    base.update(overrides)
    return DetectorConfig.model_validate(base)


@pytest.fixture(scope="session")
def baseline_traffic():
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    return generate_traffic(4000, seed=11, attacks=False)


@pytest.fixture(scope="session")
def live_traffic():
    from ocsf_detect_tools.simulate.traffic import generate_traffic

    return generate_traffic(2000, seed=12, attacks=True)


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory, baseline_traffic) -> Path:
    """A real bundle (4001, 4003, 3002 models) built from generated baseline traffic, with
    both score views, so that every test of the served path runs the isolation trees."""
    import orjson

    from ocsf_detect_tools.build import build_bundle

    out = tmp_path_factory.mktemp("bundle") / "bundle"
    lines = [orjson.dumps(e) for e in baseline_traffic.events]
    build_bundle(lines, out, small_config(isolation={"enabled": True}))
    return out


@pytest.fixture(scope="session")
def detector(bundle_dir: Path):
    from ocsf_detect.detector.scorer import Detector

    return Detector.load(bundle_dir)


def api_context():
    """A Lambda context for the prediction API handler, run in-process."""
    from ocsf_detect_tools.localcontext import LocalContext

    return LocalContext(function_name="prediction-api", timeout_s=29.0)
