"""Bundle format 13: the fine view, each event's distance to its nearest baseline event,
built only for a class whose baseline is spread over many behaviours (``detector.fine``),
here measured in the embedding (``[fine] space = "embedding"``, as formats 13 and 14
measure it; the default's feature space: ``test_fine_features``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ocsf_detect.detector.bundle import BundleError, read_manifest
from ocsf_detect.detector.fine import FineView, fine_members, is_spread
from ocsf_detect.detector.index import distinct_net
from ocsf_detect.detector.scorer import (
    Detector,
    Scored,
    fine_features,
    isolation_of,
    serve_scores,
)
from tests.conftest import small_config


def test_a_flood_s_record_is_told_from_a_spread_baseline() -> None:
    from ocsf_detect_tools.build import top_share

    rng = np.random.default_rng(0)
    # Given a baseline that is mostly one flood (900 copies, a little jitter) beside 100
    # varied events, and one of 1,000 varied events
    flood = np.vstack([rng.normal(0, 0.01, (900, 4)), rng.normal(0, 5, (100, 4))])
    spread = rng.normal(0, 5, (1000, 4))
    shares = []
    for vectors in (flood, spread):
        kept, owner = distinct_net(vectors.astype(np.float32), 2.0, seed=0)
        shares.append(top_share(owner, len(kept), 8))
    # Then the 8 most common behaviours hold most of the flood's record, and little of
    # the spread baseline: only the spread one gets a fine view
    assert shares[0] > 0.9
    assert shares[1] < 0.2
    assert not is_spread(shares[0], 0.5)
    assert is_spread(shares[1], 0.5)
    # An empty owner list holds nothing
    assert top_share(np.zeros(0, dtype=np.int64), 0, 8) == 0.0


def test_the_fine_index_holds_every_event_up_to_its_bound() -> None:
    # Under the bound: every training and held-out event, in order
    train, hold = fine_members(80, 20, 1000, seed=1)
    assert train.tolist() == list(range(80))
    assert hold.tolist() == list(range(20))
    # Beyond it: a sorted uniform sample, training events first, the same for a seed
    train, hold = fine_members(800, 200, 500, seed=1)
    assert len(train) == 500
    assert len(hold) == 0
    assert np.all(np.diff(train) > 0)
    again, _ = fine_members(800, 200, 500, seed=1)
    assert train.tolist() == again.tolist()
    train, hold = fine_members(300, 400, 500, seed=2)
    assert len(train) == 300
    assert len(hold) == 200
    assert len(set(hold.tolist())) == 200


def test_the_build_leaves_the_view_out_for_a_flood_or_one_view() -> None:
    from ocsf_detect_tools.build import _fine_view

    rng = np.random.default_rng(4)
    train = rng.normal(size=(300, 8)).astype(np.float32)
    hold = rng.normal(size=(60, 8)).astype(np.float32)
    config = small_config()
    # A spread baseline with two views: a view over all 360 events, its tail fitted on
    # the held-out events' distances to the training events
    built = _fine_view(config, 0.1, train, hold, two_views=True)
    assert built is not None
    assert built.view.index.get_current_count() == 360
    exact = np.array([np.linalg.norm(train - h, axis=1).min() for h in hold])
    assert np.allclose(built.hold_evidence, built.view.tail.surprise(exact), atol=1e-5)
    # A held-out event is in the index afterwards: its own distance is zero
    assert np.allclose(built.view.nearest_exact(hold[:5]), 0.0, atol=1e-3)
    # None for a flood's record, a score of the k-NN view alone, or the view switched off
    assert _fine_view(config, 0.5, train, hold, two_views=True) is None
    assert _fine_view(config, 0.1, train, hold, two_views=False) is None
    off = small_config(fine={"enabled": False})
    assert _fine_view(off, 0.1, train, hold, two_views=True) is None


@pytest.fixture(scope="module")
def embedding_bundle(tmp_path_factory: pytest.TempPathFactory, baseline_traffic) -> Path:
    """The session bundle's configuration with the fine view measured in the embedding."""
    import orjson

    from ocsf_detect_tools.build import build_bundle

    out = tmp_path_factory.mktemp("fine-embedding") / "bundle"
    lines = [orjson.dumps(e) for e in baseline_traffic.events]
    build_bundle(lines, out, small_config(isolation={"enabled": True}, fine={"space": "embedding"}))
    return out


@pytest.fixture(scope="module")
def embedding_detector(embedding_bundle: Path) -> Detector:
    return Detector.load(embedding_bundle)


def _carries_a_fine_view_per_class(bundle: Path, detector: Detector):
    """The bundle's manifest, checked: generated traffic is spread over many behaviours,
    so every class has the view, over each of its baseline events (the bound is far above
    them), and the bundle passes its self-test."""
    manifest = read_manifest(bundle)
    assert manifest.format_version == 15
    per_class = manifest.training.events_per_class
    for uid, model in manifest.models.items():
        assert model.fine is not None
        assert model.fine.top_share < model.fine.flood_share
        assert model.fine.file in manifest.files
        assert model.fine.n_items == model.fine.sampled_from == per_class[uid]
    assert detector.selftest()["scores"]
    return manifest


def test_a_bundle_measured_in_the_embedding_carries_a_fine_view_per_spread_class(
    embedding_bundle: Path, embedding_detector: Detector
) -> None:
    manifest = _carries_a_fine_view_per_class(embedding_bundle, embedding_detector)
    # measured in the embedding: no rows beside the index
    assert all(m.fine is not None and not m.fine.in_features for m in manifest.models.values())


def test_an_event_of_the_baseline_adds_nothing_and_a_new_one_adds(
    embedding_detector: Detector, baseline_traffic, live_traffic
) -> None:
    detector = embedding_detector
    uid = 4001
    view = detector._classes[uid].fine
    assert view is not None
    recorded = [e for e in baseline_traffic.events if e["class_uid"] == uid][:50]
    vectors = np.stack([j.vector for j in detector.judge_objects(recorded)])  # type: ignore[union-attr]
    # An event the baseline recorded is its own nearest event: no evidence
    assert np.allclose(view.evidence(view.nearest_exact(vectors)), 0.0, atol=1e-6)
    # Live attacks lie farther from every baseline event than the baseline's own do
    attacks = [
        e
        for e, label in zip(live_traffic.events, live_traffic.labels, strict=True)
        if e["class_uid"] == uid and label.is_malicious
    ][:50]
    if not attacks:
        pytest.skip("no attack of this class in the live traffic")
    new = np.stack([j.vector for j in detector.judge_objects(attacks)])  # type: ignore[union-attr]
    assert float(np.median(view.evidence(view.nearest_exact(new)))) > 0.5


def _own_view(bundle_dir: Path, uid: int):
    """A detector of the test's own (the fine index's search is changed), the class and
    its fine view."""
    detector = Detector.load(bundle_dir)
    loaded = detector._classes[uid]
    view = loaded.fine
    assert view is not None
    return detector, loaded, view


def test_an_event_the_baseline_recorded_is_at_zero_whatever_the_search(
    embedding_bundle: Path, baseline_traffic
) -> None:
    from ocsf_detect.detector.bundle import embedding_of

    detector, loaded, view = _own_view(embedding_bundle, 4001)
    uid = 4001
    # Given the class's baseline events, embedded in one batch as the scorer embeds them
    recorded = [e for e in baseline_traffic.events if e["class_uid"] == uid]
    parsed = [detector.parser.parse_object(e) for e in recorded]
    matrix = detector.pipeline(uid).transform_parsed(parsed)  # type: ignore[arg-type]
    emb = embedding_of(loaded.session, loaded.info, matrix.numeric, matrix.categorical)
    # When the fine index is searched with a beam of one vector (misses its own copies)
    view.index.set_ef(1)
    blind = FineView(view.index, view.exact, view.tail).nearest(emb)
    looked_up = view.nearest(emb)
    # Then every recorded event is at distance zero, found by its bytes where the search
    # missed it, and nothing else moves
    assert (looked_up == 0.0).all()
    assert (looked_up <= blind).all()
    # and an event that is not a copy keeps what the search found
    other = emb[:5] + np.float32(0.01)
    assert np.array_equal(
        view.nearest(other), FineView(view.index, view.exact, view.tail).nearest(other)
    )


def _served(
    detector: Detector,
    uid: int,
    events: list,
    fine: FineView | None,
    threshold: float | None = None,
    **extra: Any,
):
    loaded = detector._classes[uid]
    info = loaded.info
    pipeline = detector.pipeline(uid)
    parsed = [detector.parser.parse_object(e) for e in events]
    matrix = pipeline.transform_parsed(parsed)  # type: ignore[arg-type]
    vectors = np.stack([j.vector for j in detector.judge_objects(events)])  # type: ignore[union-attr]
    rows = fine_features(loaded, pipeline, matrix)  # format 15's; None for the embedding's
    assert info.tails is not None
    assert info.isolation is not None
    return vectors, serve_scores(
        loaded.index,
        lambda: loaded.exact,
        vectors,
        info.index.k,
        isolation_of(loaded.isolation, matrix.numeric, matrix.categorical),
        (info.tails.knn, info.tails.isolation),
        info.threshold if threshold is None else threshold,
        loaded.mass,
        cover_radius=info.isolation.cover(),
        fine=fine,
        fine_rows=rows,
        **extra,
    )


def _with_and_without(bundle: Path, live_traffic):
    """A detector of the test's own, its class 4001 and fine view, 600 live events of the
    class, their embeddings, and their scores served without the fine view and with it
    (the k-NN view's search as wide as its index: its part of every score is exact)."""
    uid = 4001
    detector, loaded, view = _own_view(bundle, uid)
    events = [e for e in live_traffic.events if e["class_uid"] == uid][:600]
    loaded.index.set_ef(loaded.info.index.n_items)
    vectors, without = _served(detector, uid, events, None)
    _, served = _served(detector, uid, events, view)
    return detector, loaded, view, events, vectors, without, served


def test_the_served_score_adds_the_view_and_rechecks_it_exactly(
    embedding_bundle: Path, live_traffic
) -> None:
    detector, loaded, view, events, vectors, without, served = _with_and_without(
        embedding_bundle, live_traffic
    )
    uid = 4001
    # The score is the two views' score plus the fine view's evidence
    added = view.evidence(view.nearest_exact(vectors))
    assert np.allclose(served.scores, without.scores + added, atol=1e-4)
    # and the Detector serves exactly that
    outcomes = detector.score_objects(events)
    got = np.array([o.score for o in outcomes if isinstance(o, Scored)])
    assert np.allclose(got, served.scores, atol=1e-5)
    # When the fine index's search is crippled (a beam of one vector)
    view.index.set_ef(1)
    approximate = view.evidence(view.nearest(vectors))
    _, crippled = _served(detector, uid, events, view)
    # Then no score falls below the exact one, and every alert's is the exact one
    exact_scores = without.scores + added
    assert (crippled.scores >= exact_scores - 1e-4).all()
    assert (approximate >= added - 1e-4).all()  # (float32 distances, a steep tail)
    alerts = crippled.scores >= loaded.info.threshold
    assert alerts.any()
    assert np.allclose(crippled.scores[alerts], exact_scores[alerts], atol=1e-4)


def test_the_nearest_behaviour_bounds_a_stalled_search(
    embedding_bundle: Path, live_traffic
) -> None:
    from ocsf_detect.detector.index import knn

    detector, loaded, view = _own_view(embedding_bundle, 4001)
    uid = 4001
    events = [e for e in live_traffic.events if e["class_uid"] == uid][:600]
    # Every behaviour the k-NN view indexes is a baseline event's embedding: the fine view
    # holds it at distance zero
    assert np.allclose(view.nearest_exact(loaded.exact.vectors), 0.0, atol=1e-4)
    # (the k-NN view's search as wide as its index: its nearest behaviour is exact)
    loaded.index.set_ef(loaded.info.index.n_items)
    vectors, without = _served(detector, uid, events, None)
    nearest_behaviour = knn(loaded.index, vectors, 1)[1][:, 0]
    # When the fine index's search is crippled (a beam of one vector)
    view.index.set_ef(1)
    blind = view.nearest(vectors)
    bounded = view.nearest(vectors, nearest_behaviour)
    exact = view.nearest_exact(vectors)
    # Then the nearest behaviour catches some of the search's misses, and what is kept is
    # still a distance to a baseline event: never below the exact nearest one
    assert np.array_equal(bounded, np.minimum(blind, nearest_behaviour))
    assert (bounded < blind - 1e-4).any()
    assert (bounded >= exact - 1e-4).all()
    # and the served score counts exactly that, or the exact distance where the score
    # could reach the threshold and was re-checked
    _, served = _served(detector, uid, events, view)
    expected = without.scores + view.evidence(bounded)
    rechecked = without.scores + view.evidence(exact)
    as_bounded = np.isclose(served.scores, expected, atol=1e-4)
    assert (as_bounded | np.isclose(served.scores, rechecked, atol=1e-4)).all()
    assert (~as_bounded).sum() <= served.rechecked


def _edit(bundle: Path, edit) -> None:
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_the_fine_view_s_file_is_checked(tmp_path: Path, embedding_bundle: Path) -> None:
    bundle = Path(shutil.copytree(embedding_bundle, tmp_path / "copy"))
    uid = str(min(read_manifest(bundle).classes))

    def fine(m: dict) -> dict:
        return m["models"][uid]["fine"]

    # An index of another size than the manifest says
    _edit(bundle, lambda m: fine(m).update(n_items=fine(m)["n_items"] + 1))
    with pytest.raises(BundleError, match=rf"fine-{uid}\.bin holds \d+ vectors"):
        Detector.load(bundle)
    _edit(bundle, lambda m: fine(m).update(n_items=fine(m)["n_items"] - 1))
    # A fine view the files list does not name (so nothing verified it)
    _edit(bundle, lambda m: m["files"].pop(fine(m)["file"]))
    with pytest.raises(BundleError, match=rf"reads fine-{uid}\.bin, which the manifest"):
        Detector.load(bundle)


def test_a_bundle_without_the_view_scores_with_two_views(
    tmp_path: Path, embedding_bundle: Path
) -> None:
    # Given a bundle with one class's fine view taken out (as a format-12 bundle, or a
    # flood's record, has none)
    bundle = Path(shutil.copytree(embedding_bundle, tmp_path / "copy"))
    uid = min(read_manifest(bundle).classes)

    def drop(m: dict) -> None:
        name = m["models"][str(uid)].pop("fine")["file"]
        m["files"].pop(name)
        m["golden_events"] = [g for g in m["golden_events"] if g["class_uid"] != uid]

    _edit(bundle, drop)
    detector = Detector.load(bundle)
    # Then it loads, and the class scores with the two views alone
    assert detector._classes[uid].fine is None
    assert detector.selftest()["scores"]
