"""Self-supervised training of the TabularResNet on unlabeled baseline events.

Two objectives are implemented; ``docs/model.md`` compares them with numbers:

- ``reconstruction`` (default): mask a random share of the fields (numerics set to 0,
  categories to the "missing" index) and train the encoder plus a small decoder to
  reconstruct every field from the L2-normalised embedding. The embedding has to keep
  what distinguishes events, which is what distance-to-normal scoring needs.
- ``contrastive`` (SCARF-style): two views of each event, each with a share of fields
  replaced by values from other events, pulled together by InfoNCE. It learns what is
  invariant to corruption, which tends to blur rare-but-real differences.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from ocsf_detect.training.model import ReconstructionHead, TabularResNet

Method = Literal["reconstruction", "contrastive"]


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "reconstruction"
    dim: int = 64
    width: int = 128
    blocks: int = 3
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    mask_rate: float = 0.3
    temperature: float = 0.1
    max_steps: int = 3000
    seed: int = 0


@dataclass
class TrainReport:
    method: str
    epochs: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)


def train_embedding(
    numeric: np.ndarray, categorical: np.ndarray, cardinalities: list[int], config: TrainConfig
) -> tuple[TabularResNet, TrainReport]:
    """Train on model inputs (``FeatureMatrix`` arrays); returns the encoder in eval mode."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    x_num = torch.from_numpy(np.ascontiguousarray(numeric, dtype=np.float32))
    x_cat = torch.from_numpy(np.ascontiguousarray(categorical, dtype=np.int64))
    n = x_num.shape[0]
    model = TabularResNet(
        x_num.shape[1],
        cardinalities,
        width=config.width,
        blocks=config.blocks,
        dim=config.dim,
        dropout=config.dropout,
    )
    head = ReconstructionHead(config.dim, x_num.shape[1], cardinalities, config.width)
    params = list(model.parameters())
    if config.method == "reconstruction":
        params += list(head.parameters())
    optimiser = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    epochs = max(1, min(config.epochs, math.ceil(config.max_steps / steps_per_epoch)))
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=total
    )
    report = TrainReport(config.method, epochs, total, 0.0)
    start = time.perf_counter()
    model.train()
    head.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        running = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            num, cat = x_num[idx], x_cat[idx]
            if config.method == "reconstruction":
                loss = _reconstruction_loss(model, head, num, cat, config.mask_rate)
            else:
                loss = _contrastive_loss(model, num, cat, x_num, x_cat, config)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimiser.step()
            scheduler.step()
            running += float(loss.detach())
        report.losses.append(round(running / steps_per_epoch, 5))
    report.seconds = round(time.perf_counter() - start, 2)
    model.eval()
    return model, report


def _mask(num: torch.Tensor, cat: torch.Tensor, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    num_mask = torch.rand_like(num) < rate
    cat_mask = torch.rand(cat.shape) < rate
    return num.masked_fill(num_mask, 0.0), cat.masked_fill(cat_mask, 0)


def _reconstruction_loss(
    model: TabularResNet,
    head: ReconstructionHead,
    num: torch.Tensor,
    cat: torch.Tensor,
    rate: float,
) -> torch.Tensor:
    masked_num, masked_cat = _mask(num, cat, rate)
    z = model(masked_num, masked_cat)
    rec_num, rec_cat = head(z)
    loss = nn.functional.mse_loss(rec_num, num)
    if rec_cat:
        ce = sum(nn.functional.cross_entropy(logits, cat[:, j]) for j, logits in enumerate(rec_cat))
        loss = loss + ce / len(rec_cat)
    return loss


def _corrupt(
    num: torch.Tensor,
    cat: torch.Tensor,
    all_num: torch.Tensor,
    all_cat: torch.Tensor,
    rate: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SCARF corruption: replace fields with the same field of random other events."""
    rows = torch.randint(0, all_num.shape[0], (num.shape[0],))
    num_mask = torch.rand_like(num) < rate
    cat_mask = torch.rand(cat.shape) < rate
    return (
        torch.where(num_mask, all_num[rows], num),
        torch.where(cat_mask, all_cat[rows], cat),
    )


def _contrastive_loss(
    model: TabularResNet,
    num: torch.Tensor,
    cat: torch.Tensor,
    all_num: torch.Tensor,
    all_cat: torch.Tensor,
    config: TrainConfig,
) -> torch.Tensor:
    a = model(*_corrupt(num, cat, all_num, all_cat, config.mask_rate * 2))
    b = model(*_corrupt(num, cat, all_num, all_cat, config.mask_rate * 2))
    logits = a @ b.T / config.temperature
    target = torch.arange(a.shape[0])
    return (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    ) / 2


def embed(model: TabularResNet, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(numeric.astype(np.float32)), torch.from_numpy(categorical))
    return out.numpy()
