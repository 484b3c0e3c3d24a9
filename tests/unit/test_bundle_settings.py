"""One bundle settings model for the three functions, and the SnapStart preparation."""

from __future__ import annotations

import sys
import types

import pytest

from ocsf_detect import names
from ocsf_detect.settings import BundleSettings
from ocsf_detect.snapstart import prepare_snapshot, reseed


def test_the_three_functions_share_the_bundle_settings() -> None:
    from prediction_api.settings import ApiSettings
    from release_hook.settings import HookSettings
    from stream_scoring.settings import StreamSettings

    for model in (ApiSettings, HookSettings, StreamSettings):
        assert issubclass(model, BundleSettings)
        assert set(BundleSettings.model_fields) <= set(model.model_fields)


def test_load_at_init_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BundleSettings().load_at_init is False
    monkeypatch.setenv(names.ENV_LOAD_BUNDLE_AT_INIT, "true")
    monkeypatch.setenv(names.ENV_EXPECTED_BUNDLE_VERSION, "1.0.0+ab")
    settings = BundleSettings()
    assert settings.load_at_init is True
    assert settings.expected_bundle_version == "1.0.0+ab"


def test_prepare_snapshot_loads_and_reseeds_after_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loads: list[int] = []
    # Outside Lambda there is no runtime hook library: the bundle still loads
    assert prepare_snapshot(lambda: loads.append(1)) is False
    # Under SnapStart the runtime's snapshot_restore_py takes the after-restore hook
    registered = []
    fake = types.ModuleType("snapshot_restore_py")
    fake.register_after_restore = registered.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", fake)
    assert prepare_snapshot(lambda: loads.append(2)) is True
    assert loads == [1, 2]
    assert registered == [reseed]


def test_reseed_gives_restored_environments_different_draws() -> None:
    import random

    import numpy as np

    random.seed(7)
    np.random.seed(7)
    snapshot = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    reseed()
    assert (random.random(), np.random.random()) != snapshot
