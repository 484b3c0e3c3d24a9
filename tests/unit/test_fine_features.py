"""Bundle format 15 (the default, ``[fine] space = "features"``): the fine view's distance
measured in the weighted feature space among the candidates the embedding's index
retrieves and the k-NN view's behaviours (``detector.fine.FineRows``), and the feedback
overlay's judged events measured there too."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from ocsf_detect.detector.bundle import BundleError, read_manifest
from ocsf_detect.detector.fine import FineRows, FineView, fine_queries
from ocsf_detect.detector.overlay import MAX_OVERLAY_VECTORS, FeedbackOverlay, Judged
from ocsf_detect.detector.scorer import (
    Detector,
    Scored,
    fine_features,
)
from ocsf_detect.features.pipeline import FeatureMatrix
from tests.conftest import small_config
from tests.unit.test_fine_view import (
    _carries_a_fine_view_per_class,
    _edit,
    _own_view,
    _served,
    _with_and_without,
)


@pytest.fixture(scope="module")
def features_bundle(bundle_dir: Path) -> Path:
    """The session bundle: the default's fine view, in the feature space (with the test
    configuration's 64 candidates, ``tests.conftest.small_config``)."""
    return bundle_dir


@pytest.fixture(scope="module")
def features_detector(features_bundle: Path) -> Detector:
    return Detector.load(features_bundle)


def test_the_default_measures_the_fine_view_in_the_feature_space() -> None:
    from ocsf_detect_tools.config import DetectorConfig

    fine = DetectorConfig().fine
    assert fine.space == "features"
    assert fine.candidates == 16


def test_the_bundle_carries_the_view_s_rows_per_spread_class(
    features_bundle: Path, features_detector: Detector
) -> None:
    manifest = _carries_a_fine_view_per_class(features_bundle, features_detector)
    for model in manifest.models.values():
        assert model.fine is not None
        # measured in the feature space (format 15), its rows listed and so verified
        assert model.fine.in_features
        assert model.fine.numeric_file in manifest.files
        assert model.fine.codes_file in manifest.files
        assert model.fine.candidates == 64  # (the fixture's)


def test_an_event_of_the_baseline_adds_nothing_and_a_new_one_adds(
    features_detector: Detector, baseline_traffic, live_traffic
) -> None:
    uid = 4001
    detector = features_detector
    view = detector._classes[uid].fine
    assert view is not None
    recorded = [e for e in baseline_traffic.events if e["class_uid"] == uid][:50]
    vectors, rows = _embedded(detector, uid, recorded)
    # An event the baseline recorded is its own nearest event: no evidence
    assert np.allclose(view.evidence(view.nearest_exact(vectors, rows)), 0.0, atol=1e-6)
    # Live attacks lie farther from every baseline event than the baseline's own do
    attacks = [
        e
        for e, label in zip(live_traffic.events, live_traffic.labels, strict=True)
        if e["class_uid"] == uid and label.is_malicious
    ][:50]
    if not attacks:
        pytest.skip("no attack of this class in the live traffic")
    new, new_rows = _embedded(detector, uid, attacks)
    assert float(np.median(view.evidence(view.nearest_exact(new, new_rows)))) > 0.5


def _embedded(detector: Detector, uid: int, events: list) -> tuple[np.ndarray, tuple]:
    """Events' embeddings and their rows as the class's fine view measures them."""
    from ocsf_detect.detector.bundle import embedding_of

    loaded = detector._classes[uid]
    parsed = [detector.parser.parse_object(e) for e in events]
    matrix = detector.pipeline(uid).transform_parsed(parsed)  # type: ignore[arg-type]
    emb = embedding_of(loaded.session, loaded.info, matrix.numeric, matrix.categorical)
    rows = fine_features(loaded, detector.pipeline(uid), matrix)
    assert rows is not None
    return emb, rows


def test_an_event_the_baseline_recorded_is_at_zero_whatever_the_search(
    features_bundle: Path, baseline_traffic
) -> None:
    detector, _, view = _own_view(features_bundle, 4001)
    uid = 4001
    # Given the class's baseline events, embedded in one batch as the scorer embeds them
    recorded = [e for e in baseline_traffic.events if e["class_uid"] == uid]
    emb, rows = _embedded(detector, uid, recorded)
    # When the fine index is searched with a beam of one vector and one candidate (misses
    # its own copies)
    view.index.set_ef(1)
    narrow = FineView(view.index, view.exact, view.tail, view.copies, view.rows, 1)
    blind = FineView(view.index, view.exact, view.tail, None, view.rows, 1)
    looked_up = narrow.nearest(emb, features=rows)
    missed = blind.nearest(emb, features=rows)
    # Then every recorded event is at distance zero, found by its bytes where the search
    # missed it, and nothing else moves
    assert (looked_up == 0.0).all()
    assert (missed > 0.0).any()
    # and an event that is not a copy keeps what the search found
    other = emb[:5] + np.float32(0.01)
    other_rows = (rows[0][:5], rows[1][:5])
    assert np.array_equal(
        narrow.nearest(other, features=other_rows), blind.nearest(other, features=other_rows)
    )


def test_the_served_score_adds_the_view_and_rechecks_it_exactly(
    features_bundle: Path, live_traffic
) -> None:
    from ocsf_detect.detector.index import knn

    detector, loaded, view, events, vectors, without, served = _with_and_without(
        features_bundle, live_traffic
    )
    uid = 4001
    _, rows = _embedded(detector, uid, events)
    # The score is the two views' score plus the fine view's evidence: the distance, in
    # the feature space, to the nearest of the events the index retrieves by embedding
    # and the k-NN view's behaviours, or the exact nearest where the score could reach
    # the threshold (re-checked); never below the exact one (a candidate set that misses
    # the nearest finds a farther event)
    assert view.behaviours is not None
    near = knn(loaded.index, vectors, loaded.info.index.k)[0]
    candidates = np.hstack([knn(view.index, vectors, view.candidates)[0], view.behaviours()[near]])
    among = view.evidence(view.rows().among(rows[0], rows[1], candidates))  # type: ignore[misc]
    added = view.evidence(view.nearest_exact(vectors, rows))
    as_found = np.isclose(served.scores, without.scores + among, atol=1e-4)
    as_exact = np.isclose(served.scores, without.scores + added, atol=1e-4)
    assert (as_found | as_exact).all()
    assert (~as_found).sum() <= served.rechecked
    assert (served.scores >= without.scores + added - 1e-4).all()
    assert (among >= added - 1e-4).all()
    assert (among > added + 1e-3).any()  # (the test's network is small: some are missed)
    # and the Detector serves exactly that
    outcomes = detector.score_objects(events)
    got = np.array([o.score for o in outcomes if isinstance(o, Scored)])
    assert np.allclose(got, served.scores, atol=1e-5)
    # When the fine index's search is crippled (a beam of one vector)
    view.index.set_ef(1)
    narrow = FineView(view.index, view.exact, view.tail, view.copies, view.rows, 1)
    approximate = view.evidence(narrow.nearest(vectors, features=rows))
    _, crippled = _served(detector, uid, events, narrow)
    # Then no score falls below the exact one, and every alert's is the exact one
    exact_scores = without.scores + added
    assert (crippled.scores >= exact_scores - 1e-4).all()
    assert (approximate >= added - 1e-4).all()  # (float32 distances, a steep tail)
    alerts = crippled.scores >= loaded.info.threshold
    assert alerts.any()
    assert np.allclose(crippled.scores[alerts], exact_scores[alerts], atol=1e-4)


def _random_rows(rng: np.random.Generator, n: int, cards: tuple[int, ...], n_numeric: int):
    numeric = rng.normal(0, 2, (n, n_numeric)).astype(np.float32)
    codes = np.stack([rng.integers(0, c, n) for c in cards], axis=1).astype(np.int32)
    return numeric, codes


def test_fine_rows_measure_the_weighted_feature_space() -> None:
    rng = np.random.default_rng(7)
    cards, weights, novel = (3, 5), [8.0, 2.5], ([1], 2.0)
    base_n, base_c = _random_rows(rng, 400, cards, 4)
    query_n, query_c = _random_rows(rng, 50, cards, 4)
    # Given the rows as FeatureMatrix.dense lays them out (one-hot times each field's
    # weight, the novel-amount column times its weight)
    dense_base = FeatureMatrix(base_n, base_c).dense(cards, weights, novel)
    dense_query = FeatureMatrix(query_n, query_c).dense(cards, weights, novel)
    truth = np.sqrt(((dense_query[:, None, :] - dense_base[None, :, :]) ** 2).sum(axis=2))
    # and the same rows as the fine view stores them
    rows = FineRows.of(*fine_queries(FeatureMatrix(base_n, base_c), *novel), weights)
    q_n, q_c = fine_queries(FeatureMatrix(query_n, query_c), *novel)
    # Then the distance among candidates is the dense space's nearest among them
    candidates = rng.integers(0, 400, (50, 6))
    expected = np.take_along_axis(truth, candidates, axis=1).min(axis=1)
    assert np.allclose(rows.among(q_n, q_c, candidates), expected, atol=1e-4)
    # and the exact search finds the nearest of every row
    assert np.allclose(rows.nearest_exact(q_n, q_c), truth.min(axis=1), atol=1e-4)
    # a row of the set is at distance zero from itself
    own = fine_queries(FeatureMatrix(base_n[:20], base_c[:20]), *novel)
    assert np.allclose(rows.nearest_exact(*own), 0.0)
    # The novel-amount columns are weighted on a copy: the caller's matrix is unchanged
    assert not np.shares_memory(q_n, query_n)
    assert np.array_equal(q_n[:, 0], query_n[:, 0])
    assert np.allclose(q_n[:, 1], 2.0 * query_n[:, 1])
    with pytest.raises(ValueError, match="weights"):
        FineRows.of(base_n, base_c, [1.0])


def test_the_exact_search_weighs_codes_against_numerics_over_many_blocks() -> None:
    rng = np.random.default_rng(11)
    cards, weights = (4, 3, 6), [8.0, 1.0, 2.0]
    base_n, base_c = _random_rows(rng, 600, cards, 5)
    # near-copies of some rows (a baseline's repeats: many rows within rounding of each
    # other) and rows that differ from a query in one field only
    base_n[300:400] = base_n[:100] + rng.normal(0, 1e-4, (100, 5)).astype(np.float32)
    base_c[300:400] = base_c[:100]
    rows = FineRows.of(base_n, base_c, weights)
    query_n, query_c = _random_rows(rng, 200, cards, 5)  # more than one block of queries
    query_n[:50] = base_n[:50] + np.float32(0.3)
    query_c[:50] = base_c[:50]
    query_c[:25, 0] = (base_c[:25, 0] + 1) % 4  # the heavy field differs: 2 x 8^2 away
    dense_base = FeatureMatrix(base_n, base_c).dense(cards, weights)
    dense_query = FeatureMatrix(query_n, query_c).dense(cards, weights)
    truth = np.sqrt(((dense_query[:, None, :] - dense_base[None, :, :]) ** 2).sum(axis=2))
    assert np.allclose(rows.nearest_exact(query_n, query_c), truth.min(axis=1), atol=1e-4)


def test_the_build_fits_the_view_in_the_feature_space() -> None:
    from ocsf_detect_tools.build import _fine_view

    rng = np.random.default_rng(5)
    cards, weights = (4,), [8.0]
    train_n, train_c = _random_rows(rng, 200, cards, 6)
    hold_n, hold_c = _random_rows(rng, 40, cards, 6)
    # An "embedding" that distorts the feature space: two columns dropped, one scaled
    train_emb = np.hstack([train_n[:, :4] * [1, 1, 3, 1], train_c * 0.5]).astype(np.float32)
    hold_emb = np.hstack([hold_n[:, :4] * [1, 1, 3, 1], hold_c * 0.5]).astype(np.float32)
    config = small_config(fine={"candidates": 256})  # every event a candidate
    space = ((train_n, train_c), (hold_n, hold_c), weights)
    built = _fine_view(config, 0.1, train_emb, hold_emb, True, space)
    assert built is not None
    view = built.view
    assert view.rows is not None
    assert view.index.get_current_count() == 240
    # The tail is fitted on the held-out events' exact distances in the feature space
    dense_train = FeatureMatrix(train_n, train_c).dense(cards, weights)
    dense_hold = FeatureMatrix(hold_n, hold_c).dense(cards, weights)
    exact = np.array([np.linalg.norm(dense_train - h, axis=1).min() for h in dense_hold])
    assert np.allclose(built.hold_evidence, view.tail.surprise(exact), atol=1e-5)
    # and served with every event a candidate, a new event's distance is exact too
    q_n, q_c = _random_rows(rng, 30, cards, 6)
    q_emb = np.hstack([q_n[:, :4] * [1, 1, 3, 1], q_c * 0.5]).astype(np.float32)
    truth = FineRows.of(view.rows().numeric, view.rows().codes, weights).nearest_exact(q_n, q_c)
    assert np.allclose(view.nearest(q_emb, features=(q_n, q_c)), truth, atol=1e-4)
    with pytest.raises(ValueError, match="pass features"):
        view.nearest(q_emb)
    with pytest.raises(ValueError, match="pass features"):
        view.nearest_exact(q_emb)


def test_the_fine_view_s_rows_are_checked(tmp_path: Path, features_bundle: Path) -> None:
    bundle = Path(shutil.copytree(features_bundle, tmp_path / "copy"))
    uid = str(min(read_manifest(bundle).classes))

    def fine(m: dict) -> dict:
        return m["models"][uid]["fine"]

    # Weights for another number of fields than the rows hold
    _edit(bundle, lambda m: fine(m).update(category_weights=[*fine(m)["category_weights"], 1.0]))
    with pytest.raises(BundleError, match="category weights for"):
        Detector.load(bundle)
    _edit(bundle, lambda m: fine(m).update(category_weights=fine(m)["category_weights"][:-1]))
    # Codes without numeric rows' partner
    codes_file = read_manifest(bundle).models[uid].fine.codes_file  # type: ignore[union-attr]
    _edit(bundle, lambda m: fine(m).update(codes_file=None))
    with pytest.raises(BundleError, match="no codes_file"):
        Detector.load(bundle)
    _edit(bundle, lambda m: fine(m).update(codes_file=codes_file))
    # A rows file the files list does not name (so nothing verified it)
    _edit(bundle, lambda m: m["files"].pop(fine(m)["numeric_file"]))
    with pytest.raises(BundleError, match=rf"reads .*fine-{uid}-numeric\.npy, which"):
        Detector.load(bundle)


def test_the_k_nn_view_s_behaviours_are_candidates_too(features_bundle: Path, live_traffic) -> None:
    from ocsf_detect.detector.index import knn

    detector, loaded, view = _own_view(features_bundle, 4001)
    uid = 4001
    assert view.behaviours is not None
    held = view.behaviours()
    # Every behaviour the k-NN view indexes is a baseline event the view holds: its row
    # there carries the behaviour's own embedding
    assert len(held) == loaded.info.index.n_items
    assert (held >= 0).all()
    fine_vectors = loaded._fine_vectors()
    assert np.array_equal(np.asarray(fine_vectors)[held], np.asarray(loaded.exact.vectors))
    events = [e for e in live_traffic.events if e["class_uid"] == uid][:600]
    emb, rows = _embedded(detector, uid, events)
    near = knn(loaded.index, emb, loaded.info.index.k)[0]
    # When the fine index's search is crippled (a beam of one vector, one candidate)
    view.index.set_ef(1)
    blind = FineView(view.index, view.exact, view.tail, None, view.rows, 1)
    alone = blind.nearest(emb, features=rows)
    bounded = FineView(
        view.index, view.exact, view.tail, None, view.rows, 1, view.behaviours
    ).nearest(emb, features=rows, near=near)
    exact = view.nearest_exact(emb, rows)
    # Then the behaviours the k-NN view found catch some of the search's misses, and what
    # is kept is still a distance to a baseline event: never below the exact nearest one
    by_behaviours = view.rows().among(rows[0], rows[1], held[near])  # type: ignore[misc]
    assert np.allclose(bounded, np.minimum(alone, by_behaviours), atol=1e-6)
    assert (bounded < alone - 1e-4).any()
    assert (bounded >= exact - 1e-4).all()


def test_the_fine_view_s_behaviour_rows_are_checked(tmp_path: Path, features_bundle: Path) -> None:
    bundle = Path(shutil.copytree(features_bundle, tmp_path / "copy"))
    uid = str(min(read_manifest(bundle).classes))
    model = read_manifest(bundle).models[uid]
    assert model.fine is not None
    assert model.fine.behaviours_file is not None
    path = bundle / model.fine.behaviours_file
    # A row beyond the view's events (its digest in the manifest made to match)
    rows = np.load(path)
    rows[0] = model.fine.n_items
    np.save(path, rows.astype(np.int32), allow_pickle=False)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _edit(bundle, lambda m: m["files"].update({model.fine.behaviours_file: digest}))  # type: ignore[union-attr]
    with pytest.raises(BundleError, match="names rows outside the fine view"):
        Detector.load(bundle)


def test_the_overlay_measures_a_judged_event_in_both_spaces() -> None:
    rng = np.random.default_rng(3)
    cards, weights = (3, 4), [2.0, 1.0]
    numeric, codes = _random_rows(rng, 40, cards, 5)
    dense = FeatureMatrix(numeric, codes).dense(cards, weights)
    # Given an "embedding" that is the feature space halved (the build's ratio 0.5), and
    # one query the network maps onto a judged event although its features lie far off
    emb = np.ascontiguousarray(dense * 0.5, dtype=np.float32)
    judged_at, queries_at = np.arange(8), np.arange(8, 40)
    emb[queries_at[0]] = emb[judged_at[3]]
    mismatch = FineRows.of(numeric, codes, weights).mismatch
    overlay = FeedbackOverlay.of(
        "v", [Judged(7, emb[i], (numeric[i], codes[i].astype(np.int32))) for i in judged_at]
    )
    knn_d, fine_d = overlay.nearest_in_both(
        7, emb[queries_at], (numeric[queries_at], codes[queries_at].astype(np.int32)), mismatch, 0.5
    )  # type: ignore[misc]
    # Then the fine view's distance is the feature space's to the nearest judged row
    f = np.linalg.norm(dense[queries_at][:, None, :] - dense[judged_at][None], axis=2)
    e = np.linalg.norm(emb[queries_at][:, None, :] - emb[judged_at][None], axis=2)
    assert np.allclose(fine_d, f.min(axis=1), atol=1e-4)
    # and the k-NN view's the nearest of each judged event's farther reading: the
    # network's confusion does not bring the first query near
    assert np.allclose(knn_d, np.maximum(e, 0.5 * f).min(axis=1), atol=1e-4)
    assert e[0].min() == 0.0
    assert knn_d[0] >= 0.5 * f[0].min() - 1e-6
    assert knn_d[0] > 0.1
    # A class without judged events has no distances, nor one whose events have no row
    # (they cannot be measured where the fine view measures: they silence nothing)
    assert overlay.nearest_in_both(8, emb[:2], (numeric[:2], codes[:2]), mismatch, 0.5) is None
    bare = FeedbackOverlay("v", {7: emb[judged_at]})
    assert bare.nearest_in_both(7, emb[:2], (numeric[:2], codes[:2]), mismatch, 0.5) is None
    with pytest.raises(ValueError, match="rows of 5 numeric columns"):
        overlay.nearest_in_both(7, emb[:2], (numeric[:2, :4], codes[:2]), mismatch, 0.5)
    # Rows go with their vectors: as many, and trimmed with them to the newest
    with pytest.raises(ValueError, match="for 8 vectors"):
        FeedbackOverlay("v", {7: emb[judged_at]}, {7: (numeric[:7], codes[:7])})
    kept = FeedbackOverlay("v", {7: emb[judged_at]}, {7: (numeric[judged_at], codes[judged_at])})
    assert np.array_equal(kept.rows[7][0], numeric[judged_at].astype(np.float32))
    # A class whose events carry rows keeps those that do
    mixed = FeedbackOverlay.of("v", [Judged(7, emb[0], None), Judged(7, emb[1], overlay_row(1))])
    assert mixed.count(7) == 1
    assert np.array_equal(mixed.vectors[7], emb[1:2])
    assert mixed.rows[7][1].tolist() == [[1, 1]]
    # Beyond the overlay's bound, the newest are kept, each row beside its vector
    n = MAX_OVERLAY_VECTORS + 5
    many = FeedbackOverlay(
        "v",
        {7: np.arange(n, dtype=np.float32)[:, None] * [1, 0]},
        {7: (np.arange(n, dtype=np.float32)[:, None] * [1, 0], np.zeros((n, 1), np.int32))},
    )
    assert many.count(7) == MAX_OVERLAY_VECTORS
    assert many.vectors[7][0, 0] == 5.0
    assert np.array_equal(many.rows[7][0], many.vectors[7])


def overlay_row(i: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(5, np.float32), np.zeros(2, np.int32) + i


def test_a_fine_view_s_rows_of_another_shape_are_refused(
    tmp_path: Path, features_bundle: Path
) -> None:
    bundle = Path(shutil.copytree(features_bundle, tmp_path / "copy"))
    uid = str(min(read_manifest(bundle).classes))
    fine = read_manifest(bundle).models[uid].fine
    assert fine is not None
    assert fine.numeric_file is not None
    # A numeric file a column short (its digest in the manifest made to match)
    path = bundle / fine.numeric_file
    np.save(path, np.load(path)[:, :-1], allow_pickle=False)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    _edit(bundle, lambda m: m["files"].update({fine.numeric_file: digest}))
    with pytest.raises(BundleError, match=rf"fine-{uid}-numeric\.npy holds float32"):
        Detector.load(bundle)


def test_the_feature_space_is_refused_beside_format_12_s_rerank() -> None:
    # (format 12 was measured with the fine view in the embedding; the two together are
    # neither measured nor tested): refused with the configuration, before any training
    with pytest.raises(ValueError, match="cannot be combined"):
        small_config(
            isolation={"enabled": True},
            index={"recall_sample": 200, "ef_construction": 100, "rerank_candidates": 32},
        )
    rerank = small_config(
        isolation={"enabled": True},
        index={"recall_sample": 200, "ef_construction": 100, "rerank_candidates": 32},
        fine={"space": "embedding"},
    )
    assert rerank.fine.space == "embedding"


def test_the_served_score_refuses_an_overlay_without_its_feature_distance(
    features_detector: Detector, live_traffic
) -> None:
    events = [e for e in live_traffic.events if e["class_uid"] == 4001][:20]
    view = features_detector._classes[4001].fine
    with pytest.raises(ValueError, match="pass the overlay's rows"):
        _served(features_detector, 4001, events, view, overlay_distance=np.zeros(len(events)))


def test_under_a_flood_the_alerts_resting_on_the_fine_view_are_rechecked_first(
    features_bundle: Path, live_traffic
) -> None:
    detector, _, view, events, _, without, _ = _with_and_without(features_bundle, live_traffic)
    uid = 4001
    # Given a fine view whose search misses most nearest events (one candidate, a beam of
    # one vector), so its evidence is often far above the exact one
    view.index.set_ef(1)
    narrow = FineView(view.index, view.exact, view.tail, view.copies, view.rows, 1)
    # and a flood: events that the k-NN view and the trees alone put over the threshold
    # (a tenth of the class's), repeated, with ordinary events among them
    threshold = float(np.quantile(without.scores, 0.9))
    over = without.scores >= threshold
    flood = [e for e, o in zip(events, over, strict=True) if o] * 25
    ordinary = [e for e, o in zip(events, over, strict=True) if not o][:150]
    order = np.random.default_rng(0).permutation(len(flood) + len(ordinary))
    batch = [(flood + ordinary)[i] for i in order]
    vectors, base = _served(detector, uid, batch, None, threshold)
    _, served = _served(detector, uid, batch, narrow, threshold)
    _, rows = _embedded(detector, uid, batch)
    exact = base.scores + view.evidence(view.nearest_exact(vectors, rows))
    # an alert here rests on the fine view (its evidence as the search found it)
    found = base.scores + view.evidence(narrow.nearest(vectors, features=rows))
    resting = (base.scores < threshold) & (found >= threshold)
    # When it is scored in one batch: the re-checks cannot cover every score that could
    # reach the threshold, but they can cover those
    limit = served.rechecked
    assert served.unchecked > 0
    assert 0 < resting.sum() <= limit
    assert (found[resting] > exact[resting] + 1e-3).any()  # inflated by a missed nearest
    # Then every event whose alert rests on the fine view has its exact score: the
    # re-checks went to them before the events the other views alone put over it
    assert np.allclose(served.scores[resting], exact[resting], atol=1e-4)
    # and whether an event alerts does not depend on the batch it comes in
    chunks = [
        _served(detector, uid, batch[i : i + 50], narrow, threshold)[1]
        for i in range(0, len(batch), 50)
    ]
    assert sum(c.unchecked for c in chunks) > 0
    alerts = np.concatenate([c.scores for c in chunks]) >= threshold
    assert np.array_equal(alerts, served.scores >= threshold)
    assert np.array_equal(alerts, exact >= threshold)


def test_a_row_s_distance_does_not_depend_on_the_candidates_beside_it() -> None:
    # Given fields whose mismatch shares do not add up exactly in float32
    rng = np.random.default_rng(3)
    cards = (3, 4, 5, 3, 6, 4)
    weights = list(rng.uniform(1.0, 9.0, len(cards)))
    rows = FineRows.of(*_random_rows(rng, 2000, cards, 12), weights)
    q_n, q_c = _random_rows(rng, 300, cards, 12)
    candidates = rng.integers(0, 2000, (300, 24))
    # When each query's candidates are measured in one block, and one at a time
    together = rows.among(q_n, q_c, candidates)
    nearest = [
        min(
            rows.among(q_n[i : i + 1], q_c[i : i + 1], candidates[i : i + 1, j : j + 1])[0]
            for j in range(24)
        )
        for i in range(300)
    ]
    # Then every distance is the same to the last bit (the search and its exact re-check
    # measure a row alike)
    assert np.array_equal(together, np.array(nearest, dtype=np.float32))
    # and the exact search gives what measuring its nearest row alone gives
    exact = rows.nearest_exact(q_n, q_c)
    full = np.stack([np.arange(2000)] * 5)
    assert np.array_equal(exact[:5], rows.among(q_n[:5], q_c[:5], full))
