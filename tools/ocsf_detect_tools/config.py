"""Detector configuration: defaults, overridden by a TOML file.

Example ``detector.toml``::

    alert_rate = 0.005

    [index]
    k = 8
    contamination = 0.002
    distinct_radius = 2.0
    mass_cap = 1
    mass_bucket_minutes = 60

    [isolation]
    enabled = true
    trees = 200
    sample_size = 256
    evidence_quantile = 0.9
    scope = "covered"
    # uncovered_quantile = 0.995             # omitted: 1 - alert_rate; 1: never
    measured_range = true

    [fine]
    enabled = true
    flood_share = 0.5                        # k most common behaviours' share: no fine view
    max_events = 100000

    [train]
    method = "isometry"
    max_steps = 2000

    [classes.4001]
    drop = ["dst_host"]                      # feature names to remove
    add = [{ kind = "numeric", name = "tcp_flags", path = "connection_info.tcp_flags" }]

    [classes.4001.unmapped]
    min_coverage = 0.3
    include = ["orig_ip_bytes"]
    exclude = ["resp_ip_bytes"]
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ocsf_detect.features.spec import ClassSpec, Feature, UnmappedConfig
from ocsf_detect_tools.specs import default_specs


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names the setting."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IndexConfig(_Section):
    k: int = Field(
        8,
        ge=1,
        le=256,
        description="distinct behaviours whose distances are averaged into the k-NN view",
    )
    M: int = Field(32, ge=4, le=96)
    ef_construction: int = Field(400, ge=16, le=2000)
    ef_search: int = Field(
        16,
        ge=8,
        le=128,
        description="smallest ef tried; doubled up to 128, keeping the cheapest that meets "
        "recall_target (counting exact re-checks of scores that reach the threshold)",
    )
    recall_target: float = Field(0.98, gt=0, le=1)
    recall_sample: int = Field(2000, ge=50)
    contamination: float = Field(
        0.002, ge=0, lt=0.5, description="share of the baseline dropped as most isolated"
    )
    distinct_radius: float = Field(
        2.0,
        ge=0,
        description="index only distinct behaviours: a baseline event closer than this "
        "(standardised feature units) to an indexed one is not indexed; 0 keeps all",
    )
    mass_cap: int = Field(
        1,
        ge=1,
        le=16,
        description="in the k-NN score, an indexed behaviour stands for as many baseline "
        "events as the distinct periods (mass_bucket_minutes) its events occurred in, at "
        "most this; 1 (the default): each behaviour counts once (docs/model.md, section 9)",
    )
    mass_bucket_minutes: int = Field(
        60, ge=1, le=1440, description="the period of mass_cap's recurrence count"
    )
    rerank_candidates: int = Field(
        0,
        ge=0,
        le=1024,
        description="0 (the default): the k nearest by the embedding's own distances; n: "
        "the distinct behaviours are drawn in the weighted feature space, the index "
        "retrieves n candidates per event by embedding and the feature space's distances "
        "pick the k nearest (bundle format 12; docs/model.md, section 8, measured, not "
        "the default: about half the scoring throughput)",
    )


class IsolationConfig(_Section):
    """The isolation view (``ocsf_detect.detector.surprise``), grown on the distinct
    behaviours: the forest of Liu, Ting and Zhou (2008), trees of 256, 200 of them (as
    the plain reference grows; the draw of 100 decided some contaminated rows).
    On by default, beyond the trees' held-out 90th percentile, for the events the baseline
    covers and those the k-NN view puts beyond its measured range: it catches a small
    cluster of attack events inside the baseline, which the k-NN view lets vouch for
    itself, and leaves other new events to the k-NN view (docs/model.md, section 8)."""

    enabled: bool = Field(
        True,
        description="score with both views, their evidence added; false: the k-NN distance alone",
    )
    trees: int = Field(200, ge=1, le=1000)
    sample_size: int = Field(256, ge=2, le=65_536, description="events each tree is grown on")
    evidence_quantile: float | None = Field(
        0.9,
        ge=0.0,
        lt=1.0,
        description="the isolation view adds evidence only beyond its surprise at this "
        "held-out quantile (a floor of -log(1 - q) nats; 0.9: where its exponential tail "
        "starts); null: 1 - alert_rate, where the trees alone would alert; 0: the plain "
        "sum of both views' surprises",
    )
    scope: Literal["all", "covered"] = Field(
        "covered",
        description="covered: the trees judge an event whose nearest indexed behaviour "
        "lies within the distinct radius (one the baseline holds), and one the k-NN view "
        "puts beyond its measured range (measured_range); all: every event",
    )
    uncovered_quantile: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="for an event the trees do not judge (scope covered: one the baseline "
        "does not hold, within the k-NN view's measured range), they add evidence only "
        "beyond their surprise at this held-out quantile; null: 1 - alert_rate, where the "
        "trees alone would alert; 1: never (bundles before format 11)",
    )
    hour: Literal["cut", "arc", "uncut"] = Field(
        "arc",
        description="how the trees read the hour of day (sin, cos): arc, only within the arc "
        "of the day the baseline covered (an event outside it is read at the arc's middle "
        "hour); cut: as any column (bundles before format 14); uncut: never (the hour counts "
        "in the k-NN view alone)",
    )
    measured_range: bool = Field(
        True,
        description="n held-out events measure a surprise up to m = log(n + 1): beyond it a "
        "view's surprise s counts m (1 + log(s / m)), and the trees judge what the k-NN view "
        "puts there; false: the exponential tail throughout (bundles before format 10)",
    )


class FineConfig(_Section):
    """The fine view (``ocsf_detect.detector.fine``): each event's distance to its nearest
    baseline event, every event kept, as a third surprise added to the score. It gives
    back the density the distinct behaviours drop, where density is evidence: the view is
    built only for a class whose baseline is spread over many behaviours. Where the k
    most common behaviours (k: ``[index] k``) hold ``flood_share`` of the baseline or
    more, the baseline is mostly a flood's record (a scan, a botnet's heartbeat, one noisy
    device), a fine match says only that the flood went on, and the class has no fine
    view (docs/model.md, section 8, "The fine view where the baseline is spread")."""

    enabled: bool = Field(
        True, description="build the fine view for classes whose baseline is spread"
    )
    flood_share: float = Field(
        0.5,
        gt=0.0,
        le=1.0,
        description="no fine view for a class whose k most common distinct behaviours "
        "hold this share of its baseline events or more (1: only when they hold all)",
    )
    max_events: int = Field(
        100_000,
        ge=100,
        description="baseline events the fine index holds at most (a uniform sample "
        "beyond): bounds the bundle's size and its load time",
    )
    ef_search: int = Field(
        32,
        ge=1,
        description="HNSW search width of the fine index (space = features: at least candidates)",
    )
    space: Literal["embedding", "features"] = Field(
        "features",
        description="where the nearest baseline event's distance is measured: the weighted "
        "feature space the embedding preserves, among the index's candidates and the k-NN "
        "view's behaviours (format 15, the default: docs/model.md, section 8), or the "
        "embedding itself (bundle formats 13 and 14)",
    )
    candidates: int = Field(
        16,
        ge=1,
        le=256,
        description="baseline events the fine index retrieves per event by embedding, "
        "measured in the feature space (space = features)",
    )


class TrainSection(_Section):
    method: Literal["isometry", "reconstruction", "contrastive", "hybrid"] = "isometry"
    dim: int = Field(64, ge=4, le=512)
    width: int = Field(128, ge=8, le=2048)
    blocks: int = Field(3, ge=1, le=16)
    dropout: float = Field(0.0, ge=0, lt=1)
    numeric_skip: bool = Field(
        True, description="a linear shortcut from the numeric inputs to the embedding"
    )
    epochs: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="passes over the baseline at most; any baseline of more than about 500 "
        "training events reaches max_steps first, so its size does not decide how long "
        "its network trains",
    )
    max_steps: int = Field(
        2000,
        ge=1,
        description="optimisation steps of each class's network (rounded up to a whole "
        "pass; fewer if epochs or max_minutes stops it first)",
    )
    batch_size: int = Field(256, ge=8)
    learning_rate: float = Field(2e-3, gt=0)
    mask_rate: float = Field(0.3, gt=0, lt=1)
    category_weight: float = Field(
        8.0, gt=0, description="weight of a categorical mismatch in the preserved distance"
    )
    share_redundant_categories: bool = Field(
        True,
        description="categorical fields whose mismatches go together in the baseline (a "
        "protocol and its number, a port and its service) share category_weight: each "
        "field's weight is divided by the square root of the sum of its positive mismatch "
        "correlations (training/weights.py); false: every field weighs category_weight",
    )
    augment: float = Field(
        1.0, ge=0, le=4, description="corrupted copies per event in the isometry objective"
    )
    augment_uniform: float = Field(
        0.0, ge=0, le=1, description="share of corrupted numerics drawn uniformly, not swapped"
    )
    novel_weight: float = Field(
        2.0,
        gt=0,
        description="weight of the novel-amount columns (an amount sent to a counterpart "
        "training never saw) in the preserved distance",
    )
    anchor_scale: float = Field(
        3.0, gt=0, description="output anchor as a multiple of the 99th percentile of |z|"
    )
    neighbour_share: float = Field(
        0.25,
        ge=0,
        le=0.5,
        description="share of each isometry batch drawn as nearest neighbours (in the "
        "preserved distance) of the batch's other events, so that the distances the k-NN "
        "and fine views read are trained at their own scale; 0: random batches",
    )
    max_train_events: int = Field(60_000, ge=100)
    max_minutes: float = Field(
        10.0,
        gt=0,
        allow_inf_nan=False,
        description="wall-clock bound on training each class's network: training stops "
        "there (fewer steps than planned, which the build's log says)",
    )
    seed: int = 0
    workers: int = Field(
        0,
        ge=0,
        le=64,
        description="processes training the classes' networks side by side, one class "
        "each (each trains on one thread); 0: one per core when the classes hold at least "
        "20,000 training rows together, else one after the other in the build's process. "
        "The bundle is the same either way",
    )


class ClassOverride(_Section):
    features: list[Feature] | None = None  # replaces the defaults entirely
    drop: list[str] = Field(default_factory=list)
    add: list[Feature] = Field(default_factory=list)
    unmapped: UnmappedConfig | None = None
    clip: float | None = Field(None, gt=0)


class DetectorConfig(_Section):
    alert_rate: float = Field(0.005, gt=0, lt=0.5, allow_inf_nan=False)
    holdout: float = Field(0.2, gt=0, lt=0.9, description="baseline share for calibration")
    min_class_events: int = Field(
        50, ge=10, description="baseline events a class with a curated spec needs for a model"
    )
    derive_specs: bool = Field(
        True,
        description="a class without a curated spec gets a spec derived from the baseline "
        "and the OCSF schema, when it has min_derived_events (ocsf_detect_tools.derived_specs)",
    )
    min_derived_events: int = Field(
        200, ge=10, description="baseline events a class needs for a derived spec and a model"
    )
    bundle_semver: str = "1.0.0"
    index: IndexConfig = Field(default_factory=IndexConfig)
    isolation: IsolationConfig = Field(default_factory=IsolationConfig)
    fine: FineConfig = Field(default_factory=FineConfig)
    train: TrainSection = Field(default_factory=TrainSection)
    classes: dict[int, ClassOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _covered_needs_a_radius(self) -> DetectorConfig:
        i = self.isolation
        if i.enabled and i.scope == "covered" and self.index.distinct_radius == 0:
            raise ValueError(
                'isolation scope "covered" needs index.distinct_radius > 0 (with 0, only '
                'exact duplicates count as covered): set scope = "all" or enabled = false'
            )
        q = i.uncovered_quantile
        if i.enabled and q is not None and q < 1.0 and q < self.isolation_floor_quantile() - 1e-9:
            raise ValueError(
                f"isolation.uncovered_quantile ({q}) lies below the floor's quantile "
                f"({self.isolation_floor_quantile()}): the trees would count for more where "
                "they do not judge than where they do"
            )
        if self.fine.enabled and self.fine.space == "features" and self.index.rerank_candidates > 0:
            # neither measured nor tested together: format 12 is a measured setting of
            # the fine view in the embedding (benchmarks/configs/rerank.toml)
            raise ValueError(
                '[fine] space = "features" cannot be combined with [index] rerank_candidates '
                '(format 12): set [fine] space = "embedding" with it'
            )
        return self

    def isolation_floor_quantile(self) -> float:
        """The held-out quantile beyond which the isolation view adds evidence."""
        q = self.isolation.evidence_quantile
        return 1.0 - self.alert_rate if q is None else q

    def isolation_uncovered_quantile(self) -> float | None:
        """The held-out quantile beyond which the trees add evidence for an event they do
        not judge; None: they add none there (or they judge every event). Unset: the alert
        quantile, and never below the floor's quantile (a high alert rate, a high floor)."""
        i = self.isolation
        if i.scope == "all" or i.uncovered_quantile == 1.0:
            return None
        if i.uncovered_quantile is None:
            return max(1.0 - self.alert_rate, self.isolation_floor_quantile())
        return i.uncovered_quantile

    def class_specs(self) -> dict[int, ClassSpec]:
        """Default specs with this config's per-class overrides applied."""
        specs = default_specs()
        for class_uid, override in self.classes.items():
            base = specs.get(class_uid)
            features = list(override.features or (base.features if base else []))
            unknown = set(override.drop) - {f.name for f in features}
            if unknown:
                raise ConfigError(
                    f"classes.{class_uid}.drop names unknown features: {', '.join(sorted(unknown))}"
                )
            features = [f for f in features if f.name not in set(override.drop)]
            features += override.add
            update: dict[str, Any] = {"class_uid": class_uid, "features": features}
            if override.unmapped is not None:
                update["unmapped"] = override.unmapped
            if override.clip is not None:
                update["clip"] = override.clip
            try:
                specs[class_uid] = ClassSpec.model_validate(
                    {**(base.model_dump() if base else {}), **_dump(update)}
                )
            except ValidationError as exc:
                raise ConfigError(f"classes.{class_uid}: {_first_error(exc)}") from exc
        return specs


def _dump(update: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (
            v.model_dump()
            if isinstance(v, BaseModel)
            else [x.model_dump() if isinstance(x, BaseModel) else x for x in v]
            if isinstance(v, list)
            else v
        )
        for k, v in update.items()
    }


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def load_config(path: Path | None) -> DetectorConfig:
    if path is None:
        return DetectorConfig()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a TOML text file (not UTF-8: {exc.reason})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    try:
        config = DetectorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from exc
    config.class_specs()  # surface override errors now, not mid-training
    return config
