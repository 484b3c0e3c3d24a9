"""Context parsing: every stage and override is validated, typos fail with the key's name."""

from __future__ import annotations

import pytest

from infra.stages import (
    REDRIVE_WINDOW_HOURS,
    STAGES,
    ContextError,
    DeploymentStyle,
    DeploySettings,
    IngestConfig,
    StageConfig,
)


def settings(**context: str) -> DeploySettings:
    return DeploySettings.from_context(context.get)


def test_a_model_or_registry_only_must_be_named() -> None:
    # a deploy that forgot modelVersion must not shrink a stage to its registry
    with pytest.raises(ContextError, match="registryOnly=true"):
        settings()
    s = settings(registryOnly="true")
    assert s.stage.name == "dev"
    assert s.model is None
    with pytest.raises(ContextError, match="exclude each other"):
        settings(registryOnly="true", modelVersion="1.0.0+ab")


def test_stages_share_a_shape_and_differ_in_sizes_and_release_speed() -> None:
    assert set(STAGES) == {"dev", "staging", "prod"}
    speeds = [STAGES[name].release.deployment for name in ("dev", "staging", "prod")]
    assert speeds == [
        DeploymentStyle.ALL_AT_ONCE,
        DeploymentStyle.CANARY_10_PERCENT_5_MINUTES,
        DeploymentStyle.LINEAR_10_PERCENT_EVERY_1_MINUTE,
    ]
    assert STAGES["prod"].scoring.memory_mb > STAGES["dev"].scoring.memory_mb
    assert all(stage.api.auth == "iam" for stage in STAGES.values())


def test_model_selection() -> None:
    digest = "a" * 64
    s = settings(
        stage="prod",
        modelVersion="1.2.0+abc",
        modelObjectVersion="v9",
        modelManifestSha256=digest,
        bundleSource="s3",
    )
    assert s.model is not None
    assert (s.model.version, s.model.object_version, s.model.source) == ("1.2.0+abc", "v9", "s3")
    assert s.model.manifest_sha256 == digest


@pytest.mark.parametrize(
    ("context", "names_key"),
    [
        ({"stage": "qa"}, "stage"),
        ({"modelVersion": "../etc"}, "modelVersion"),
        ({"modelObjectVersion": "v1"}, "modelObjectVersion"),
        ({"modelVersion": "1.0.0+ab", "modelManifestSha256": "ABC"}, "modelManifestSha256"),
        ({"modelVersion": "1.0.0+ab", "registryObjectLockDays": "0"}, "registryObjectLockDays"),
        ({"registryOnly": "maybe"}, "registryOnly"),
        ({"bundleSource": "efs"}, "bundleSource"),
        ({"architecture": "sparc"}, "architecture"),
        ({"apiAuth": "none"}, "apiAuth"),
        ({"streamShards": "0"}, "streamShards"),
        ({"corsAllowOrigin": "console.example.com"}, "corsAllowOrigin"),
        ({"corsAllowOrigin": "https://a.example.com'; x"}, "corsAllowOrigin"),
        ({"corsAllowOrigin": "https://a.example.com/app"}, "corsAllowOrigin"),
    ],
)
def test_bad_context_names_the_key(context: dict[str, str], names_key: str) -> None:
    with pytest.raises(ContextError, match=names_key):
        settings(**context)


def test_overrides_keep_the_rest_of_the_stage() -> None:
    s = settings(
        stage="prod", architecture="arm64", apiAuth="api_key", streamShards="3", registryOnly="1"
    )
    assert s.stage.architecture == "arm64"
    assert s.stage.api.auth == "api_key"
    assert s.stage.api.waf is True
    assert (s.stage.ingest.on_demand, s.stage.ingest.shard_count) == (False, 3)
    assert s.stage.scoring == STAGES["prod"].scoring


@pytest.mark.parametrize("origin", ["https://console.example.com", "http://localhost:5173", "*"])
def test_cors_origin_is_one_origin_or_any(origin: str) -> None:
    # it ends up quoted in API Gateway's response headers: nothing else may get in
    assert settings(registryOnly="true", corsAllowOrigin=origin).cors_allow_origin == origin


def test_the_cli_knows_every_stage() -> None:
    from infra.stages import STAGES
    from ocsf_detect import names

    assert tuple(STAGES) == names.STAGE_NAMES


def test_every_stage_keeps_the_stream_longer_than_its_retry_horizon() -> None:
    for stage in STAGES.values():
        horizon_s = stage.retry_horizon_hours * 3600
        assert stage.ingest.retention_hours * 3600 > horizon_s
        assert horizon_s >= stage.scoring.max_record_age_s + REDRIVE_WINDOW_HOURS * 3600


def test_a_stage_whose_stream_forgets_before_a_redrive_is_refused() -> None:
    with pytest.raises(ContextError, match="retry horizon"):
        StageConfig(name="short", ingest=IngestConfig(retention_hours=24))


@pytest.mark.parametrize(("stage", "most"), [("dev", 10), ("staging", 10), ("prod", 12)])
def test_a_stream_with_more_shards_than_the_scorers_reservation_serves_is_refused(
    stage: str, most: int
) -> None:
    # A shard takes up to parallelization-factor scorers at once; past the reservation
    # every batch would be throttled (and AliasThrottles roll back every release)
    assert settings(stage=stage, registryOnly="1", streamShards=str(most)).stage
    with pytest.raises(ContextError, match="reserved concurrency"):
        settings(stage=stage, registryOnly="1", streamShards=str(most + 1))


def test_every_stage_serves_an_on_demand_streams_first_shards() -> None:
    for stage in STAGES.values():
        scoring = stage.scoring
        assert stage.ingest.initial_shards * scoring.parallelization_factor <= (
            scoring.reserved_concurrency
        )
