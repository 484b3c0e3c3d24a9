"""The two views of an event (k-NN distance, isolation trees) and their sum as surprises."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ocsf_detect.detector.index import distinct, exact_knn
from ocsf_detect.detector.surprise import (
    _BLOCK_PAIRS,
    TAIL_QUANTILE,
    Tail,
    average_path,
    combined,
    evidence,
    summed,
    trees_judge,
)
from ocsf_detect.features.pipeline import FeatureMatrix


def test_tail_is_the_empirical_surprise_then_exponential() -> None:
    held_out = np.arange(1000, dtype=np.float64)  # uniform 0..999
    tail = Tail.fit(held_out)
    u = tail.values[-1]
    assert u == pytest.approx(np.quantile(held_out, TAIL_QUANTILE))
    # below u: -log of the share at least as high
    assert tail.surprise(np.array([499.5]))[0] == pytest.approx(-math.log(0.5), rel=1e-3)
    # at u the two parts meet, beyond it one scale more costs one nat more
    at_u = tail.surprise(np.array([u, u + 1e-9]))
    assert at_u[1] - at_u[0] < 1e-6
    step = tail.surprise(np.array([u + tail.scale, u + 2 * tail.scale]))
    assert step[1] - step[0] == pytest.approx(1.0)
    assert tail.scale == pytest.approx(np.mean(held_out[held_out > u] - u))
    # monotone everywhere, including far below and far beyond the held-out scores
    grid = np.linspace(-100, 5000, 2000)
    assert (np.diff(tail.surprise(grid)) >= 0).all()
    assert tail.surprise(np.array([-100.0]))[0] == 0.0


def test_beyond_the_measured_range_the_surprise_grows_as_the_log_of_the_excess() -> None:
    """1,000 held-out events measure a surprise up to m = log(1001): beyond it the
    exponential tail's guess s counts m (1 + log(s / m)), keeping the order but not a
    claim of e^-300."""
    held_out = np.arange(1000, dtype=np.float64)
    tail, exponential = Tail.fit(held_out), Tail.fit(held_out, measured=False)
    assert tail.measured == pytest.approx(math.log(1001))
    assert exponential.measured is None
    grid = np.linspace(-10, 20_000, 4000)
    raw, out = exponential.surprise(grid), tail.surprise(grid)
    inside = raw <= tail.measured
    assert inside.any()
    assert (~inside).any()
    assert np.array_equal(out[inside], raw[inside])
    m = tail.measured
    assert np.allclose(out[~inside], m * (1 + np.log(raw[~inside] / m)))
    # continuous at the edge, strictly increasing beyond it
    u = tail.values[-1]
    edge = u + tail.scale * (tail.measured - tail.surprise(np.array([u]))[0])
    near = tail.surprise(np.array([edge - 1e-6, edge + 1e-6]))
    assert abs(near[1] - near[0]) < 1e-5
    assert (np.diff(out[~inside]) > 0).all()
    # far out, hundreds of nats of exponential guess become a few times the range; twice
    # as far beyond still counts m log 2 more
    assert raw[-1] > 300
    assert out[-1] == pytest.approx(m * (1 + math.log(raw[-1] / m)))
    assert out[-1] < raw[-1] / 8
    far = np.array([u + 100 * tail.scale, u + 200 * tail.scale])  # surprises ~102 and ~202
    doubled = tail.surprise(far)
    assert doubled[1] - doubled[0] == pytest.approx(m * math.log(2), rel=0.03)
    mask = tail.beyond_measure(out)
    assert mask is not None
    assert np.array_equal(mask, out >= tail.measured)
    assert exponential.beyond_measure(raw) is None


def test_the_trees_order_what_the_knn_view_puts_beyond_its_measured_range() -> None:
    """An uncovered event the k-NN view puts beyond anything measured is an alert either
    way; among such events the trees' evidence decides. Here a benign oddity the embedding
    stretches further (the trees find it ordinary) and a single attack event (the trees
    isolate it at once): the attack comes first. With the exponential tail throughout
    and the trees for covered events only, the oddity came first."""
    rng = np.random.default_rng(5)
    held_d, held_i = rng.gamma(2.0, 10.0, 500), rng.uniform(0, 1, 500)
    distance = np.array([400.0, 450.0, 30.0])  # attack, benign oddity, ordinary
    isolation = np.array([0.995, 0.3, 0.995])
    uncovered = np.zeros(3, dtype=bool)
    knn, trees = Tail.fit(held_d), Tail.fit(held_i, 0.9)
    parts = evidence(distance, isolation, (knn, trees))
    assert parts is not None
    assert parts.beyond is not None
    assert parts.beyond.tolist() == [True, True, False]
    covered_first = np.array([False, False, True])
    assert trees_judge(parts, covered_first).tolist() == [True, True, True]
    assert trees_judge(parts, None) is None  # no mask: the trees judge every event
    scores = summed(parts, uncovered)
    assert scores[0] > scores[1] > scores[2]
    assert scores[0] == pytest.approx(parts.knn[0] + parts.trees[0], abs=1e-5)
    assert scores[1] == pytest.approx(parts.knn[1], abs=1e-5)  # the trees find nothing
    assert scores[2] == pytest.approx(parts.knn[2], abs=1e-5)  # within range: k-NN alone
    old = (Tail.fit(held_d, measured=False), Tail.fit(held_i, 0.9, measured=False))
    before = combined(distance, isolation, old, uncovered)
    assert before[1] > before[0]


def test_a_degenerate_baseline_still_gives_a_usable_tail() -> None:
    tail = Tail.fit(np.full(50, 0.25))
    out = tail.surprise(np.array([0.25, 0.5, 1.0]))
    assert np.isfinite(out).all()
    assert out[0] < out[1] < out[2]


def test_combined_sums_the_surprises_and_falls_back_to_the_distance() -> None:
    a, b = Tail.fit(np.arange(100.0)), Tail.fit(np.arange(100.0) / 100)
    distance, isolation = np.array([10.0, 95.0]), np.array([0.5, 0.2])
    both = combined(distance, isolation, (a, b))
    assert both.dtype == np.float32
    assert np.allclose(both, a.surprise(distance) + b.surprise(isolation), atol=1e-5)
    assert np.array_equal(combined(distance, None, None), distance.astype(np.float32))


def test_a_floor_keeps_only_the_surprise_beyond_it() -> None:
    held_out = np.arange(1000, dtype=np.float64)
    plain, floored = Tail.fit(held_out), Tail.fit(held_out, 0.9)
    assert plain.floor == 0.0
    assert floored.floor == pytest.approx(-math.log(0.1))
    grid = np.linspace(-10, 3000, 500)
    # the same surprise; the evidence is what lies beyond the floor, never negative
    assert np.array_equal(floored.surprise(grid), plain.surprise(grid))
    assert np.allclose(floored.evidence(grid), np.maximum(plain.surprise(grid) - floored.floor, 0))
    assert np.array_equal(plain.evidence(grid), plain.surprise(grid))
    # nothing up to the 90th percentile of the held-out scores, and the order beyond it
    assert (floored.evidence(held_out[held_out <= np.quantile(held_out, 0.9)]) == 0).all()
    beyond = floored.evidence(np.array([950.0, 999.0, 2000.0]))
    assert 0 < beyond[0] < beyond[1] < beyond[2]
    with pytest.raises(ValueError, match="floor_quantile"):
        Tail.fit(held_out, 1.0)


def test_a_view_below_its_floor_leaves_the_other_views_score_alone() -> None:
    """An event that only the k-NN view finds unusual keeps its k-NN evidence whatever
    the isolation view says below its floor; the plain sum does not."""
    knn, trees = Tail.fit(np.arange(100.0)), Tail.fit(np.arange(100.0) / 100, 0.9)
    distance = np.array([120.0, 120.0, 120.0])
    isolation = np.array([0.05, 0.5, 0.85])  # all below the trees' 90th percentile
    scores = combined(distance, isolation, (knn, trees))
    assert np.allclose(scores, knn.surprise(distance), atol=1e-5)
    # beyond its floor the isolation view adds what lies beyond it
    far = combined(np.array([120.0]), np.array([0.995]), (knn, trees))[0]
    assert far == pytest.approx(
        knn.surprise(np.array([120.0]))[0] + trees.evidence(np.array([0.995]))[0], rel=1e-5
    )
    assert far > scores[0]


def test_the_overlay_credits_the_knn_surprise_to_each_view_beyond_its_floor() -> None:
    from ocsf_detect.detector.overlay import overlay_scores

    knn = Tail.fit(np.arange(100.0))
    plain, floored = Tail.fit(np.arange(100.0) / 100), Tail.fit(np.arange(100.0) / 100, 0.9)
    d = np.array([0.0, 30.0, 95.0, 400.0])
    s = knn.surprise(d)
    assert np.allclose(overlay_scores(d, (knn, plain)), 2 * s, atol=1e-5)
    assert np.allclose(overlay_scores(d, (knn, floored)), s + np.maximum(s - floored.floor, 0))
    # a floor lowers the judged score as it lowers every score that reaches the trees
    assert (overlay_scores(d, (knn, floored)) <= overlay_scores(d, (knn, plain)) + 1e-6).all()
    assert np.array_equal(overlay_scores(d, None), d.astype(np.float32))
    # with a fine view (format 13) the judged event is the nearest baseline event too:
    # that view's surprise at the same distance is added
    fine = Tail.fit(np.arange(100.0) / 10)
    assert np.allclose(
        overlay_scores(d, (knn, plain), fine), 2 * s + fine.surprise(d), rtol=1e-5, atol=1e-5
    )
    assert overlay_scores(d, (knn, plain), fine)[0] == pytest.approx(0.0, abs=1e-6)
    # a fine view in the feature space (format 15) reads the same distance in its units
    in_features = overlay_scores(d, (knn, plain), fine, d / 4)
    assert np.allclose(in_features, 2 * s + fine.surprise(d / 4), rtol=1e-5, atol=1e-5)
    assert (in_features <= overlay_scores(d, (knn, plain), fine) + 1e-6).all()


def test_average_path_known_values() -> None:
    assert average_path(1) == 0.0
    assert average_path(2) == 1.0
    # c(256) from Liu, Ting and Zhou: 2 H(255) - 2 * 255 / 256
    harmonic = math.log(255) + np.euler_gamma
    assert average_path(256) == pytest.approx(2 * harmonic - 2 * 255 / 256)


def test_flattened_trees_score_as_scikit_learn_on_the_pipelines_columns() -> None:
    from sklearn.ensemble import IsolationForest

    from ocsf_detect_tools.training.isolation import flatten

    rng = np.random.default_rng(0)
    n = 2000
    numeric = rng.normal(size=(n, 5)).astype(np.float32)
    categorical = np.stack([rng.integers(0, 4, n), rng.integers(0, 7, n)], axis=1)
    matrix = FeatureMatrix(numeric, categorical.astype(np.int64))
    novel = ((2,), 2.0)
    dense = matrix.dense([4, 7], 8.0, novel)
    forest = IsolationForest(n_estimators=40, max_samples=256, random_state=3).fit(dense)
    trees = flatten(forest, 5, [4, 7], novel, 256)
    assert (trees.column < 0).any(), "some splits are on categories"
    assert n * len(trees.roots) > 2 * _BLOCK_PAIRS, "the rows descend in several blocks"
    ours = trees.scores(numeric, categorical)
    assert np.allclose(ours, -forest.score_samples(dense), atol=1e-6)


def test_the_blocks_rows_descend_in_do_not_change_a_bit(monkeypatch) -> None:
    from sklearn.ensemble import IsolationForest

    from ocsf_detect.detector import surprise
    from ocsf_detect_tools.training.isolation import flatten

    rng = np.random.default_rng(1)
    numeric = rng.normal(size=(700, 4)).astype(np.float32)
    categorical = rng.integers(0, 5, size=(700, 1))
    dense = FeatureMatrix(numeric, categorical).dense([5], 8.0)
    forest = IsolationForest(n_estimators=30, max_samples=128, random_state=0).fit(dense)
    trees = flatten(forest, 4, [5], ((), 1.0), 128)
    scores = {}
    for pairs in (1, 30 * 7, 10**9):  # a row per block, 7 rows per block, one block
        monkeypatch.setattr(surprise, "_BLOCK_PAIRS", pairs)
        scores[pairs] = trees.scores(numeric, categorical)
    assert np.array_equal(scores[1], scores[10**9])
    assert np.array_equal(scores[210], scores[10**9])


def test_a_small_cluster_inside_the_baseline_is_caught_by_the_isolation_view() -> None:
    """Five near-identical attack events recorded in the baseline: a known service, a
    volume far beyond any benign one in three of its amounts. Rare benign events (a value
    of a categorical field seen once) lie farther from everything in the weighted space.
    The k-NN view on the distinct behaviours ranks those first (the attack's own copies
    vouch for it); the trees, grown on the distinct behaviours, cut the attack off in a
    few steps, and the summed surprise ranks it first."""
    from ocsf_detect_tools.training.isolation import grow_isolation

    rng = np.random.default_rng(7)

    def traffic(n: int, rare: int) -> FeatureMatrix:
        numeric = rng.normal(size=(n, 8)).astype(np.float32)
        service = rng.integers(0, 10, n)
        service[:rare] = 10 + np.arange(rare)  # one event per rare value
        return FeatureMatrix(numeric, service[:, None].astype(np.int64))

    cards, weight = [24], 8.0
    benign = traffic(2000, rare=14)
    attack = FeatureMatrix(
        np.tile(np.array([[6.0, 6.0, 6.0, 0, 0, 0, 0, 0]], np.float32), (5, 1))
        + rng.normal(size=(5, 8)).astype(np.float32) * 0.01,
        np.zeros((5, 1), dtype=np.int64),
    )
    baseline = FeatureMatrix(
        np.vstack([benign.numeric, attack.numeric]),
        np.vstack([benign.categorical, attack.categorical]),
    )
    y = np.r_[np.zeros(len(benign)), np.ones(len(attack))]
    dense = baseline.dense(cards, weight)
    net = distinct(dense, radius=0.5)
    held_out = traffic(400, rare=3)

    def distance(m: FeatureMatrix) -> np.ndarray:
        return exact_knn(dense[net], m.dense(cards, weight), 16)[1].mean(axis=1)

    trees = grow_isolation(
        baseline.take(net),
        cards,
        category_weight=weight,
        novel=((), 1.0),
        trees=100,
        sample_size=256,
        seed=0,
    )
    tails = (
        Tail.fit(distance(held_out)),
        Tail.fit(trees.scores(held_out.numeric, held_out.categorical)),
    )
    knn_view = distance(baseline)
    score = combined(knn_view, trees.scores(baseline.numeric, baseline.categorical), tails)

    def top5(s: np.ndarray) -> int:
        return int(y[np.argsort(-s, kind="stable")[:5]].sum())

    assert top5(knn_view) == 0
    assert top5(score) == 5


def test_trees_whose_links_loop_are_refused() -> None:
    from ocsf_detect.detector.surprise import IsolationTrees

    # Given a root whose right child links back to the root
    trees = IsolationTrees(
        column=np.array([0, 0], dtype=np.int32),
        threshold=np.zeros(2),
        code=np.zeros(2, dtype=np.int64),
        left=np.array([1, -1], dtype=np.int32),
        right=np.array([0, -1], dtype=np.int32),
        path=np.zeros(2, dtype=np.float32),
        roots=np.array([0], dtype=np.int32),
        sample_size=256,
    )
    # Then it is not a forest, and scoring is never reached
    with pytest.raises(ValueError, match="do not form trees"):
        trees.check()


def test_both_views_are_on_by_default_the_trees_for_covered_events_beyond_their_90th() -> None:
    from pydantic import ValidationError

    from ocsf_detect_tools.config import DetectorConfig

    default = DetectorConfig()
    assert default.isolation.enabled
    assert default.isolation.scope == "covered"
    assert default.index.k == 8
    assert default.isolation_floor_quantile() == pytest.approx(0.9)
    # the floor does not follow the alert rate unless asked to (null: 1 - alert_rate)
    assert DetectorConfig(alert_rate=0.01).isolation_floor_quantile() == pytest.approx(0.9)
    at_alert = {"alert_rate": 0.01, "isolation": {"evidence_quantile": None}}
    assert DetectorConfig.model_validate(at_alert).isolation_floor_quantile() == pytest.approx(0.99)
    plain = DetectorConfig.model_validate({"isolation": {"evidence_quantile": 0}})
    assert plain.isolation_floor_quantile() == 0.0
    with pytest.raises(ValidationError):
        DetectorConfig.model_validate({"isolation": {"evidence_quantile": 1.0}})
    with pytest.raises(ValidationError):
        DetectorConfig.model_validate({"isolation": {"scope": "uncovered"}})
    # with no distinct radius nothing but an exact duplicate is covered: said, not silent
    with pytest.raises(ValidationError, match='scope = "all"'):
        DetectorConfig.model_validate({"index": {"distinct_radius": 0.0}})
    everything = {"index": {"distinct_radius": 0.0}, "isolation": {"scope": "all"}}
    assert DetectorConfig.model_validate(everything).isolation.scope == "all"


def test_the_trees_add_nothing_for_an_event_the_baseline_does_not_cover() -> None:
    """scope "covered": the k-NN view alone judges an event far from every behaviour."""
    rng = np.random.default_rng(3)
    knn, trees = Tail.fit(rng.gamma(2.0, 10.0, 5000)), Tail.fit(rng.uniform(0, 1, 5000), 0.9)
    distance, isolation = np.array([15.0, 15.0, 90.0]), np.array([0.99, 0.99, 0.99])
    covered = np.array([True, False, False])
    scores = combined(distance, isolation, (knn, trees), covered)
    alone = knn.surprise(distance)
    assert scores[1] == pytest.approx(alone[1], abs=1e-5)
    assert scores[2] == pytest.approx(alone[2], abs=1e-5)
    assert scores[0] == pytest.approx(alone[0] + trees.evidence(isolation[:1])[0], abs=1e-5)
    assert scores[0] > scores[1]
    # no mask: every event covered, as bundles before format 9 score
    every = combined(distance, isolation, (knn, trees))
    assert np.allclose(every, alone + trees.evidence(isolation), atol=1e-5)


def test_a_covered_scope_needs_its_radius() -> None:
    from pydantic import ValidationError

    from ocsf_detect.detector.surprise import IsolationInfo

    base = {"file": "i.npz", "trees": 3, "sample_size": 8, "fitted_on": 9}
    weights = {"category_weight": 8.0, "novel_weight": 2.0}
    with pytest.raises(ValidationError, match="cover_radius"):
        IsolationInfo(**base, **weights, scope="covered")
    assert IsolationInfo(**base, **weights, scope="covered", cover_radius=0.03).cover() == 0.03
    assert IsolationInfo(**base, **weights).cover() is None  # format 8: "all"


def test_for_an_event_they_do_not_judge_the_trees_count_where_they_alone_would_alert() -> None:
    """Format 11: an uncovered event within the k-NN view's measured range gets the
    trees' surprise beyond their alert-quantile floor, so an event the trees isolate at
    once outranks a benign oddity the k-NN view puts a little further; one they find
    merely unusual (beyond the 0.9 floor, below the alert quantile's) gets nothing."""
    rng = np.random.default_rng(11)
    held_d, held_i = rng.gamma(2.0, 10.0, 2000), rng.beta(2.0, 8.0, 2000)
    knn = Tail.fit(held_d)
    trees = Tail.fit(held_i, 0.9, uncovered_quantile=0.995)
    assert trees.floor == pytest.approx(-math.log(0.1))
    assert trees.uncovered_floor == pytest.approx(-math.log(0.005))
    # flood-like: the trees isolate it at once; oddity: a little further for the k-NN view;
    # unusual: beyond the trees' 0.9 floor, below their alert quantile
    distance = np.array([70.0, 75.0, 70.0])
    isolation = np.array([0.95, 0.2, 0.45])
    uncovered = np.zeros(3, dtype=bool)
    parts = evidence(distance, isolation, (knn, trees))
    assert parts is not None
    assert not parts.beyond.any()  # every one within the measured range
    assert parts.trees_uncovered is not None
    scores = summed(parts, uncovered)
    isolated = trees.surprise(isolation)
    assert isolated[0] > trees.uncovered_floor > isolated[2] > trees.floor > isolated[1]
    assert scores[0] == pytest.approx(parts.knn[0] + isolated[0] - trees.uncovered_floor, abs=1e-5)
    assert scores[1] == pytest.approx(parts.knn[1], abs=1e-5)
    assert parts.trees[2] > 0  # the covered rule would count it ...
    assert scores[2] == pytest.approx(parts.knn[2], abs=1e-5)  # ... this one does not
    assert scores[0] > scores[1]
    # covered events keep the 0.9 floor
    covered = summed(parts, np.ones(3, dtype=bool))
    assert np.allclose(covered, parts.knn + parts.trees, atol=1e-5)
    # a format-10 tail (no uncovered floor): nothing for uncovered events, the oddity first
    before = combined(distance, isolation, (knn, Tail.fit(held_i, 0.9)), uncovered)
    assert np.allclose(before, parts.knn, atol=1e-5)
    assert before[1] > before[0]
    with pytest.raises(ValueError, match="uncovered_quantile"):
        Tail.fit(held_i, 0.9, uncovered_quantile=1.0)
    # below the floor the score with the trees everywhere would no longer bound it
    with pytest.raises(ValueError, match="uncovered_quantile"):
        Tail.fit(held_i, 0.9, uncovered_quantile=0.5)
    with pytest.raises(ValueError, match="below the floor"):
        Tail.model_validate({**trees.model_dump(), "uncovered_floor": 1.0})
    bound = summed(parts)  # the trees counted for every event, as the re-check decides
    assert (bound >= scores).all()


def test_the_uncovered_quantile_follows_the_alert_rate_unless_set() -> None:
    from pydantic import ValidationError

    from ocsf_detect_tools.config import DetectorConfig

    assert DetectorConfig().isolation_uncovered_quantile() == pytest.approx(0.995)
    assert DetectorConfig(alert_rate=0.01).isolation_uncovered_quantile() == pytest.approx(0.99)
    off = {"isolation": {"uncovered_quantile": 1.0}}
    assert DetectorConfig.model_validate(off).isolation_uncovered_quantile() is None
    fixed = {"isolation": {"uncovered_quantile": 0.98}}
    assert DetectorConfig.model_validate(fixed).isolation_uncovered_quantile() == 0.98
    # the trees judge every event: there is no event they do not judge
    everywhere = {"isolation": {"scope": "all"}}
    assert DetectorConfig.model_validate(everywhere).isolation_uncovered_quantile() is None
    with pytest.raises(ValidationError):
        DetectorConfig.model_validate({"isolation": {"uncovered_quantile": 1.5}})
    # below the floor the trees would count for more where they do not judge
    with pytest.raises(ValidationError, match="below the floor"):
        DetectorConfig.model_validate({"isolation": {"uncovered_quantile": 0.5}})
    at_floor = {"isolation": {"uncovered_quantile": 0.9}}
    assert DetectorConfig.model_validate(at_floor).isolation_uncovered_quantile() == 0.9
    # unset, it never falls below the floor: a high alert rate or a high floor is valid
    high_rate = DetectorConfig(alert_rate=0.2)
    assert high_rate.isolation_uncovered_quantile() == pytest.approx(0.9)
    high_floor = DetectorConfig.model_validate({"isolation": {"evidence_quantile": 0.999}})
    assert high_floor.isolation_uncovered_quantile() == pytest.approx(0.999)
    for rate in np.linspace(0.001, 0.499, 50):
        DetectorConfig(alert_rate=float(rate))  # none refused
    # the trees off: nothing to check
    off_trees = {"isolation": {"enabled": False, "uncovered_quantile": 0.5}}
    assert not DetectorConfig.model_validate(off_trees).isolation.enabled


def test_the_trees_read_time_past_the_baseline_as_an_extreme_unless_told_not_to(
    tmp_path,
) -> None:
    """The hour of day as (sin, cos), a baseline of 09:00-12:00 scored at 14:00-17:00:
    every later hour lies beyond the baseline's range on those columns, so trees free to
    cut there isolate later events sooner (time passing read as an extreme). Uncut, no
    node refers to the hour columns; within the baseline's arc, the trees cut on them
    and read an hour outside the arc as the arc's middle one. Either way a later event
    scores as its other columns do; inside the arc the hour is read as it is."""
    from ocsf_detect_tools.training.isolation import day_arc, grow_isolation

    rng = np.random.default_rng(5)

    def events(n: int, hours: tuple[float, float]) -> FeatureMatrix:
        angle = rng.uniform(*hours, size=n) / 24 * 2 * np.pi
        other = rng.normal(size=(n, 3))
        numeric = np.column_stack([other, np.sin(angle), np.cos(angle)]).astype(np.float32)
        return FeatureMatrix(numeric, rng.integers(0, 3, size=(n, 1)).astype(np.int64))

    baseline, same_hours, later = events(1500, (9, 12)), events(300, (9, 12)), events(300, (14, 17))
    settings = {"cut": {}, "uncut": {"uncut": (3, 4)}, "arc": {"arc_columns": (3, 4)}}
    grown = {
        name: grow_isolation(
            baseline,
            [3],
            category_weight=8.0,
            novel=((), 1.0),
            trees=60,
            sample_size=256,
            seed=0,
            **extra,  # type: ignore[arg-type]
        )
        for name, extra in settings.items()
    }
    hour_cuts = {n: np.isin(t.column[t.left >= 0], (3, 4)).mean() for n, t in grown.items()}
    assert hour_cuts["cut"] > 0.2  # free to, the trees cut on the hour often
    assert hour_cuts["uncut"] == 0.0
    assert hour_cuts["arc"] == hour_cuts["cut"]  # the same trees, read differently
    start, width = grown["arc"].arcs[0]  # type: ignore[index]
    assert start == pytest.approx(9 / 24 * 2 * np.pi, abs=0.01)
    assert width == pytest.approx(3 / 24 * 2 * np.pi, abs=0.01)
    # every baseline event, its arc's two ends included, is read as it is
    read = grown["arc"].within_arcs(baseline.numeric)
    assert np.array_equal(read, baseline.numeric.astype(np.float64))
    # the arc travels with the trees
    grown["arc"].save(tmp_path / "trees.npz")
    reloaded = type(grown["arc"]).load(tmp_path / "trees.npz")
    assert np.array_equal(reloaded.arcs, grown["arc"].arcs)  # type: ignore[arg-type]
    # the share of later events beyond the 95th percentile of events at the baseline's hours
    beyond = {}
    for name, trees in grown.items():
        top = np.quantile(trees.scores(same_hours.numeric, same_hours.categorical), 0.95)
        beyond[name] = (trees.scores(later.numeric, later.categorical) > top).mean()
    assert beyond["cut"] > 0.3  # later hours read as extreme
    assert beyond["uncut"] < 0.1  # about 5%: the hour does not move the trees' score
    assert beyond["arc"] < 0.1
    # inside the arc the hour is read as it is
    assert np.array_equal(
        grown["arc"].scores(same_hours.numeric, same_hours.categorical),
        grown["cut"].scores(same_hours.numeric, same_hours.categorical),
    )
    # an arc across midnight: 22:00 to 02:00
    night = np.array([22.5, 23.0, 0.5, 1.9]) / 24 * 2 * np.pi
    start, width = day_arc(np.sin(night), np.cos(night))
    assert start == pytest.approx(night[0])
    assert width == pytest.approx((1.9 + 24 - 22.5) / 24 * 2 * np.pi)
