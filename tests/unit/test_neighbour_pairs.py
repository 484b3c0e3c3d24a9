"""Isometry batches with nearest-neighbour partners (``[train] neighbour_share``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ocsf_detect_tools.training import fit
from ocsf_detect_tools.training.fit import TrainConfig, _dense, _neighbours, train_embedding
from ocsf_detect_tools.training.model import TabularResNet


def _inputs(n: int) -> tuple[torch.Tensor, torch.Tensor, TabularResNet]:
    rng = np.random.default_rng(3)
    num = torch.from_numpy(rng.normal(size=(n, 5)).astype(np.float32))
    cat = torch.from_numpy(rng.integers(0, 4, size=(n, 2)).astype(np.int64))
    return num, cat, TabularResNet(5, [4, 4], width=8, blocks=1, dim=4)


def test_each_event_s_partners_are_its_nearest_others_in_the_preserved_distance() -> None:
    num, cat, model = _inputs(700)
    config = TrainConfig()
    near = _neighbours(model, num, cat, config, np.random.default_rng(0))
    # Exact search by brute force in the same weighted space
    dense = _dense(model, num, cat, config).numpy().astype(np.float64)
    d = ((dense[:, None, :] - dense[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    kth = np.sort(d, axis=1)[:, fit.NEIGHBOURS - 1]
    found = np.take_along_axis(d, near, axis=1)
    assert near.shape == (700, fit.NEIGHBOURS)
    assert not (near == np.arange(700)[:, None]).any()  # never the event itself
    assert (found <= kth[:, None] + 1e-3).all()  # (ties aside, the same 8)


def test_beyond_the_pool_partners_come_from_a_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    num, cat, model = _inputs(600)
    monkeypatch.setattr(fit, "NEIGHBOUR_POOL", 200)
    near = _neighbours(model, num, cat, TrainConfig(), np.random.default_rng(0))
    assert near.shape == (600, fit.NEIGHBOURS)
    assert len(np.unique(near)) <= 200
    assert not (near == np.arange(600)[:, None]).any()


def test_training_with_partners_runs_and_random_batches_search_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    num, cat, _ = _inputs(512)
    config = TrainConfig(
        dim=4, width=8, blocks=1, batch_size=64, max_steps=16, epochs=10, neighbour_share=0.0
    )
    cards = [4, 4]
    # Random batches (no partners) never search for them, so they draw nothing more from
    # the seed's generator than before the option existed
    with monkeypatch.context() as m:
        m.setattr(fit, "_neighbours", lambda *a: pytest.fail("searched for partners"))
        plain, _ = train_embedding(num.numpy(), cat.numpy(), cards, config)
    paired, report = train_embedding(
        num.numpy(), cat.numpy(), cards, dataclasses.replace(config, neighbour_share=0.5)
    )
    weights = [p.detach().numpy() for p in plain.parameters()]
    # With partners it trains every step and ends elsewhere
    assert report.steps == 16
    assert np.isfinite(report.losses).all()
    assert not all(
        np.array_equal(a, b.detach().numpy())
        for a, b in zip(weights, paired.parameters(), strict=True)
    )
