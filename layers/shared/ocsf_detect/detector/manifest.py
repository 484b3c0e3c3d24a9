"""The bundle manifest: everything needed to load, verify and explain a bundle."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ocsf_detect.detector.calibrate import SeverityBand
from ocsf_detect.detector.fine import FineInfo
from ocsf_detect.detector.surprise import IsolationInfo, Tail
from ocsf_detect.features.spec import ClassSpec
from ocsf_detect.ocsf.outcomes import UnsupportedReason

# 2: index built on the distinct-behaviour net; 3: the indexed vectors ship beside the
# index (exact re-check of alerts); 4: feature specs may hold ``novel_amount`` features;
# 5: two views (k-NN distance and isolation trees) summed as surprises, the indexed
# vectors read from the index file itself. Formats 1 to 4 still load. 7: a model's spec
# may be derived (``spec_origin``), and the summary names the classes left unmodelled.
# 8: a view's tail may carry a floor (``Tail.floor``): its evidence is the surprise beyond it.
# 9: the isolation view may judge only covered events (``IsolationInfo.scope``, ``cover_radius``).
# 10: a view's tail may carry its measured range (``Tail.measured``): beyond it the surprise
# grows with the log of its ratio to it, and the trees also judge what the k-NN view puts there.
# 11: the isolation view's tail may carry an uncovered floor (``Tail.uncovered_floor``): for an
# event the trees do not judge, they add the surprise beyond it.
# 12: the index may re-rank in the weighted feature space (``IndexInfo.space_file``).
# 13: a class may carry a fine view (``ClassModel.fine``): the nearest baseline event's
# distance, its surprise added to the score.
# 14: a class's isolation trees may carry the arcs of the day their baseline covered
# (``IsolationTrees.arcs``): an hour outside one is read at its middle. A loader before 14
# would read every hour as it is.
# 15: a class's fine view may measure its distances in the weighted feature space
# (``FineInfo.numeric_file``, ``codes_file``): the index retrieves candidates by embedding.
FORMAT_VERSION = 15
MANIFEST_NAME = "manifest.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelIO(_Strict):
    file: str
    input_numeric: str
    input_categorical: str
    output: str
    n_numeric: int
    n_categorical: int
    dim: int
    opset: int


class IndexInfo(_Strict):
    file: str
    space: str
    M: int
    ef_construction: int
    ef_search: int
    k: int
    n_items: int
    recall_at_k: float
    recall_sample: int
    # share of the sample whose score exceeds the exact one by > 1% (absent: older bundles)
    score_error_rate: float | None = None
    contamination_q: float
    screened_out: int
    distinct_radius: float = 0.0  # in feature units; embedding units = x distance_ratio
    distance_ratio: float = 1.0
    merged_out: int = 0  # baseline events within the radius of an indexed one
    ids_file: str | None = None  # metadata.uid of each indexed baseline event
    vectors_file: str | None = None  # the indexed vectors, float32 .npy (formats 3, 4)
    # format 6: what each indexed behaviour stands for in the k-NN score (index.knn_score):
    # the hours in which its baseline events occurred, at most mass_cap; float32 .npy
    mass_file: str | None = None
    mass_cap: int = Field(1, ge=1)
    mass_bucket_s: int | None = None
    # format 12: the indexed behaviours in the weighted feature space the embedding
    # preserves (float32 .npy, n_items x (numeric columns + one-hot widths)); the index
    # then retrieves ``rerank_candidates`` by embedding and these rows' distances decide
    # (``index.rerank``). ``space_weights``: per categorical field; ``space_novel_weight``:
    # the novel-amount columns' (``FeatureMatrix.dense``). None: the embedding's distances.
    space_file: str | None = None
    rerank_candidates: int = Field(0, ge=0)
    space_weights: list[float] | None = None
    space_novel_weight: float = 1.0


class ScoreTails(_Strict):
    """How each view's raw score becomes its surprise (``surprise.Tail``); the event's
    score is the sum of the two."""

    knn: Tail
    isolation: Tail


class TrainingInfo(_Strict):
    method: str
    events: int
    rejected: int
    time_min_ms: int
    time_max_ms: int
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    config: dict[str, Any]


class ClassModel(_Strict):
    class_uid: int
    class_name: str
    features: ClassSpec
    # curated: a spec written for the class (tools' specs.py); derived: made at train
    # from the baseline and the OCSF schema. The runtime reads both the same way.
    spec_origin: Literal["curated", "derived"] = "curated"
    model: ModelIO
    index: IndexInfo
    # format 5: the isolation view and the tails; absent, the score is the k-NN distance
    isolation: IsolationInfo | None = None
    tails: ScoreTails | None = None
    # format 13: the fine view (``detector.fine``); absent, the class has none (a baseline
    # that is mostly a flood's record, or an older bundle)
    fine: FineInfo | None = None
    threshold: float
    alert_rate: float
    severity_bands: list[SeverityBand]
    heldout_events: int
    training: TrainingInfo


class GoldenEvent(_Strict):
    """An event with the score the bundle gave it at build time (via onnxruntime and
    hnswlib, as served); a release hook re-scores these and compares."""

    class_uid: int
    event: dict[str, Any]
    score: float
    is_anomaly: bool


class UnmodelledClass(_Strict):
    """A class the baseline held but the bundle has no model for, and why: the scorer
    tells its events' outcome the same (``ocsf.outcomes.UnsupportedReason``)."""

    reason: UnsupportedReason
    baseline_events: int
    minimum: int


class TrainingSummary(_Strict):
    events: int
    events_per_class: dict[str, int]
    unsupported: int
    rejected: int
    time_min_ms: int | None
    time_max_ms: int | None
    sources: list[str]
    # key: str(class_uid); absent in bundles from before derived specs
    unmodelled: dict[str, UnmodelledClass] = Field(default_factory=dict)


# What a manifest says about a build rather than about the bundle: when, by which library
# and under which version it was made, and how long each network took to train.
_BUILD_RECORD = ("bundle_version", "created_at", "library_version")


def content_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 (hex) of what a bundle is: its manifest (the JSON object) without the build
    record, so every file digest, model, threshold, tail and golden event counts, and
    nothing of when or how fast it was built. The build names the bundle by it
    (``bundle_version`` = semver + its first 12 digits): the same baseline, configuration
    and code give the same version, and two bundles of one version are the same bundle
    however often it was built."""
    body = {k: v for k, v in manifest.items() if k not in _BUILD_RECORD}
    models = body.get("models")
    if isinstance(models, Mapping):
        body["models"] = {
            uid: _without_timing(model) if isinstance(model, Mapping) else model
            for uid, model in models.items()
        }
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _without_timing(model: Mapping[str, Any]) -> dict[str, Any]:
    training = model.get("training")
    if not isinstance(training, Mapping):
        return dict(model)
    return {**model, "training": {k: v for k, v in training.items() if k != "seconds"}}


class Manifest(_Strict):
    format_version: int = FORMAT_VERSION
    bundle_version: str = Field(description="semver + content hash, e.g. 1.0.0+3f2a9c1b7e4d")
    created_at: str
    library_version: str
    classes: list[int]
    models: dict[str, ClassModel]  # key: str(class_uid) (JSON object keys are strings)
    training: TrainingSummary
    golden_events: list[GoldenEvent]
    files: dict[str, str]  # relative path -> sha256 hex

    def public_summary(self) -> dict[str, Any]:
        """What /v1/model shows: nothing about files or internals."""
        return {
            "bundle_version": self.bundle_version,
            "created_at": self.created_at,
            "classes": [
                {
                    "class_uid": m.class_uid,
                    "class_name": m.class_name,
                    "threshold": m.threshold,
                    "alert_rate": m.alert_rate,
                    "severity_bands": [b.model_dump() for b in m.severity_bands],
                    "training_events": m.training.events,
                    "embedding_dim": m.model.dim,
                    "k": m.index.k,
                }
                for m in self.models.values()
            ],
            "training": self.training.model_dump(),
        }
