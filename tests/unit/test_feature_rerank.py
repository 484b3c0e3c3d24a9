"""Bundle format 12: the index retrieves candidates by embedding, and distances in the
weighted feature space pick the k nearest distinct behaviours (``[index]
rerank_candidates``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest

from ocsf_detect.detector.bundle import BundleError, read_manifest, sha256_file
from ocsf_detect.detector.index import exact_knn, rerank
from ocsf_detect.detector.overlay import FeedbackOverlay, Judged
from ocsf_detect.detector.scorer import Detector, Scored
from tests.conftest import small_config


def test_rerank_keeps_the_nearest_candidates_by_the_other_space() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(60, 7)).astype(np.float32)
    queries = rng.normal(size=(9, 7)).astype(np.float32)
    # Given candidates drawn at random (as a search in another space might return them)
    candidates = np.stack([rng.choice(60, 15, replace=False) for _ in range(9)])
    labels, dists = rerank(base, queries, candidates, 4)
    # Then each query keeps the 4 of its own candidates nearest in base's space, in order
    for q in range(9):
        d = np.linalg.norm(base[candidates[q]] - queries[q], axis=1)
        best = candidates[q][np.argsort(d, kind="stable")[:4]]
        assert labels[q].tolist() == best.tolist()
        assert np.allclose(dists[q], np.sort(d)[:4], atol=1e-5)
    # And with every base row as a candidate it is exact search
    everything = np.tile(np.arange(60), (9, 1))
    labels, dists = rerank(base, queries, everything, 5)
    exact_labels, exact_dists = exact_knn(base, queries, 5)
    assert labels.tolist() == exact_labels.tolist()
    assert np.allclose(dists, exact_dists, atol=1e-4)


@pytest.fixture(scope="module")
def rerank_bundle(tmp_path_factory: pytest.TempPathFactory, baseline_traffic) -> Path:
    from ocsf_detect_tools.build import build_bundle

    out = tmp_path_factory.mktemp("rerank") / "bundle"
    lines = [orjson.dumps(e) for e in baseline_traffic.events]
    # (nearly) every indexed behaviour a candidate: the re-ranked search is then exact
    build_bundle(lines, out, _config())
    return out


def _config():
    # (the fine view measures its distances in the embedding whatever the index re-ranks
    # in, so it is left out where the served score must be the model-free one)
    return small_config(
        isolation={"enabled": True},
        index={"rerank_candidates": 256, "recall_sample": 200, "ef_construction": 100},
        fine={"enabled": False},
    )


def test_a_rerank_bundle_serves_the_model_free_score(
    rerank_bundle: Path, baseline_traffic, live_traffic
) -> None:
    from ocsf_detect_tools.evaluation import weighted_knn_scores

    manifest = read_manifest(rerank_bundle)
    assert manifest.format_version == 15
    detector = Detector.load(rerank_bundle)
    assert detector.selftest()["scores"]  # its golden events score as built
    # The first class is the one whose held-out events the model-free variant draws
    # exactly as the build does (later classes hold out an equal share, not the same)
    first = min(detector.classes)
    ix = manifest.models[str(first)].index
    assert ix.space_file == f"space-{first}.npy"
    assert ix.rerank_candidates >= 0.8 * ix.n_items  # nearly every behaviour a candidate
    events = [e for e in live_traffic.events if e["class_uid"] == first][:400]
    outcomes = detector.score_objects(events)
    assert all(isinstance(o, Scored) for o in outcomes)
    served = [o.score for o in outcomes if isinstance(o, Scored)]
    # When the model-free variant (exact search on the weighted features, the build's
    # behaviours and trees) scores the same events
    model_free = weighted_knn_scores(
        [orjson.dumps(e) for e in baseline_traffic.events],
        [orjson.dumps(e) for e in events],
        _config(),
    )
    # Then the served score is that score: the network only retrieves. A candidate set
    # that misses one of the k nearest behaviours only inflates a distance (an event or
    # two of 400 here, depending on the network), never lowers one
    same = np.isclose(served, model_free, rtol=1e-4, atol=1e-4)
    assert same.mean() >= 0.99
    assert (np.asarray(served) >= model_free - 1e-4).all()


def test_the_feature_space_file_is_checked(tmp_path: Path, rerank_bundle: Path) -> None:
    bundle = Path(shutil.copytree(rerank_bundle, tmp_path / "copy"))
    first = min(read_manifest(bundle).classes)
    path = bundle / f"space-{first}.npy"
    rows = np.load(path)

    def write(array: np.ndarray, **index: object) -> None:
        np.save(path, array, allow_pickle=False)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["files"][path.name] = sha256_file(path)
        manifest["models"][str(first)]["index"].update(index)
        (bundle / "manifest.json").write_text(json.dumps(manifest))

    # A space of another width (or count) than the class's features and index
    write(rows[:, :-1])
    with pytest.raises(BundleError, match=rf"space-{first}\.npy holds"):
        Detector.load(bundle)
    write(rows[:-1])
    with pytest.raises(BundleError, match=rf"space-{first}\.npy holds"):
        Detector.load(bundle)
    # A space without the weights its queries are built with
    write(rows, space_weights=None)
    with pytest.raises(BundleError, match="no rerank_candidates or space_weights"):
        Detector.load(bundle)
    write(rows, space_weights=[1.0])
    with pytest.raises(BundleError, match="space weights for"):
        Detector.load(bundle)


def test_a_judged_benign_event_silences_itself_in_a_rerank_bundle(
    rerank_bundle: Path, live_traffic
) -> None:
    detector = Detector.load(rerank_bundle)
    anomalies = [
        o for o in detector.score_objects(live_traffic.events[:1500]) if isinstance(o, Scored)
    ]
    judged = next(o for o in anomalies if o.is_anomaly)
    # When its embedding joins the overlay (its distances are the embedding's, converted
    # to the feature space's units by the bundle's distance ratio)
    kept = detector.judge_objects([judged.event])[0]
    assert isinstance(kept, Judged)
    detector.use_overlay(FeedbackOverlay.of(detector.bundle_version, [kept]))
    after = detector.score_objects([judged.event])[0]
    # Then it no longer alerts, and its score only went down
    assert isinstance(after, Scored)
    assert not after.is_anomaly
    assert after.score < judged.score
