"""Categorical fields that change together share their weight in the preserved distance."""

from __future__ import annotations

import numpy as np
import pytest

from ocsf_detect.features.pipeline import FeatureMatrix
from ocsf_detect_tools.training.weights import category_weights


def _fields(n: int = 600, seed: int = 0) -> np.ndarray:
    """Columns: a service, its exact alias (a port for it), an independent field, a
    constant field."""
    rng = np.random.default_rng(seed)
    service = rng.integers(0, 5, n)
    alias = (service * 7 + 3) % 11  # a different code for each service, same partition
    independent = rng.integers(0, 4, n)
    constant = np.zeros(n, dtype=np.int64)
    return np.stack([service, alias, independent, constant], axis=1)


def test_two_fields_that_always_change_together_weigh_as_one() -> None:
    # Given a field and an exact alias of it, an independent field and a constant one
    weights = category_weights(_fields(), base=8.0)
    # Then the pair shares the weight: each 8 / sqrt(2) (up to the sampling noise of its
    # correlation with the independent field), so one change of service adds
    # 2 x (8 / sqrt 2)^2 x 2 = 2 x 8^2 to the squared distance, as one field at x8 does
    assert weights[0] == pytest.approx(8.0 / np.sqrt(2), rel=0.02)
    assert weights[1] == weights[0]
    # the independent field keeps (almost exactly) the full weight
    assert weights[2] == pytest.approx(8.0, rel=0.05)
    # a field constant in the baseline keeps it: a value never seen there counts in full
    assert weights[3] == 8.0


def test_the_group_contributes_as_one_field_to_the_distance() -> None:
    codes = _fields()
    weights = category_weights(codes, base=8.0)
    matrix = FeatureMatrix(np.zeros((len(codes), 0), dtype=np.float32), codes)
    cards = [int(codes[:, j].max()) + 1 for j in range(codes.shape[1])]
    space = matrix.dense(cards, weights)
    # two events that differ only in their service (and so in its alias)
    a, b = np.flatnonzero(codes[:, 0] != codes[0, 0])[0], 0
    same_rest = codes[a, 2] == codes[b, 2]
    d2 = float(((space[a] - space[b]) ** 2).sum())
    rest = 0.0 if same_rest else 2 * weights[2] ** 2
    assert d2 == pytest.approx(2 * weights[0] ** 2 + 2 * weights[1] ** 2 + rest, rel=1e-5)
    assert d2 - rest == pytest.approx(2 * 8.0**2, rel=0.04)  # one field's worth at x8


def test_weights_are_per_field_not_per_row_order_and_can_be_switched_off() -> None:
    codes = _fields()
    shuffled = codes[np.random.default_rng(1).permutation(len(codes))]
    assert np.allclose(category_weights(codes, 8.0), category_weights(shuffled, 8.0))
    assert category_weights(codes, 8.0, shared=False).tolist() == [8.0] * 4


def test_fields_that_never_change_together_keep_their_weight() -> None:
    # Given two fields whose mismatches are negatively related (a change in one comes
    # with a match in the other more often than chance)
    n = 400
    a = np.repeat([0, 1], n // 2)
    b = np.tile([0, 1], n // 2)
    weights = category_weights(np.stack([a, b], axis=1), base=4.0)
    # Then neither is shared down: only positive correlations form a group
    assert weights.tolist() == pytest.approx([4.0, 4.0])


def test_tiny_or_empty_baselines_get_the_base_weight() -> None:
    assert category_weights(np.zeros((1, 3), dtype=np.int64), 8.0).tolist() == [8.0] * 3
    assert category_weights(np.zeros((10, 0), dtype=np.int64), 8.0).tolist() == []


def test_the_training_target_uses_each_fields_weight() -> None:
    torch = pytest.importorskip("torch")
    from ocsf_detect_tools.training.fit import TrainConfig, _dense
    from ocsf_detect_tools.training.model import TabularResNet

    # Given two categorical fields with their own weights
    model = TabularResNet(1, [2, 3], width=8, blocks=1, dim=4)
    num = torch.tensor([[0.5], [-1.0]])
    cat = torch.tensor([[0, 2], [1, 0]])
    config = TrainConfig(category_weight=8.0, category_weights=(2.0, 5.0))
    # Then the target scales each field's one-hot by its weight, as the index space does
    target = _dense(model, num, cat, config)
    assert target.tolist() == [[0.5, 2.0, 0.0, 0.0, 0.0, 5.0], [-1.0, 0.0, 2.0, 5.0, 0.0, 0.0]]
    matrix = FeatureMatrix(num.numpy(), cat.numpy())
    assert matrix.dense([2, 3], (2.0, 5.0)).tolist() == target.tolist()
    # without per-field weights, every field weighs category_weight
    plain = _dense(model, num, cat, TrainConfig(category_weight=8.0))
    assert plain[0].tolist() == [0.5, 8.0, 0.0, 0.0, 0.0, 8.0]


def test_the_fields_whose_weight_was_shared_are_named_lowest_first() -> None:
    from ocsf_detect_tools.training.weights import shared_fields

    names = ["protocol", "hour_bucket", "protocol_num", "service"]
    assert shared_fields(names, [4.0, 8.0, 4.0, 5.5], 8.0) == (
        "protocol x4.0, protocol_num x4.0, service x5.5"
    )
    assert shared_fields(names[:2], [8.0, 7.95], 8.0) == "none"  # within 1% of the base
    with pytest.raises(ValueError, match="2 category weights for 1"):
        shared_fields(names[:1], [8.0, 8.0], 8.0)
