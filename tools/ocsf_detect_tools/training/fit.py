"""Self-supervised training of the TabularResNet on unlabeled baseline events.

Four objectives are implemented; ``docs/model.md`` compares them with numbers:

- ``isometry`` (default): the embedding preserves distances of the feature space in which
  a categorical mismatch weighs ``category_weight`` (one-hot scaled), near pairs weighted
  up (relative stress within each batch). k-NN in that space is what finds anomalies; the
  network makes it a compact, fixed-width, indexable vector, and the weighting is what
  beats unweighted raw features.
- ``hybrid``: isometry plus a small masked-reconstruction term.
- ``reconstruction``: mask a random share of the fields (numerics set to 0,
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from ocsf_detect_tools.training.model import ReconstructionHead, TabularResNet

Method = Literal["reconstruction", "contrastive", "isometry", "hybrid"]


@dataclass(frozen=True)
class TrainConfig:
    method: Method = "isometry"
    dim: int = 64
    width: int = 128
    blocks: int = 3
    dropout: float = 0.0
    numeric_skip: bool = True  # linear shortcut from the numerics to the output
    # passes over the data at most: max_steps decides for all but tiny baselines
    epochs: int = 1000
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    mask_rate: float = 0.3
    temperature: float = 0.1
    max_steps: int = 2000
    seed: int = 0
    # One thread: the network is small, so a second thread buys little on an idle machine
    # and, on a busy one (a build beside other work), thrashing costs 10x or more.
    threads: int = 1
    anchor_scale: float = 3.0  # anchor = this x the 99th percentile of |z| on training data
    category_weight: float = 8.0  # one categorical mismatch ~ an 8-sigma numeric deviation
    # one weight per categorical field (training/weights.py: redundant fields share
    # category_weight); empty: category_weight for every field
    category_weights: tuple[float, ...] = ()
    share_redundant_categories: bool = True  # how build.for_features sets category_weights
    augment: float = 1.0  # corrupted copies per batch event in the isometry loss (0: none)
    augment_range: float = 8.0  # numeric corruption range: the feature spec's clip
    augment_uniform: float = 0.0  # share of corrupted numerics drawn uniformly, not swapped
    novel_columns: tuple[int, ...] = ()  # novel-amount numerics: corrupted uniformly over
    # the clip range, weighted ``novel_weight`` in the preserved distance
    novel_weight: float = 2.0
    scaled_columns: int | None = None  # numeric columns that are values (after them: 0/1
    # missing indicators, which uniform draws must not touch); None: all are values
    max_seconds: float | None = None  # wall-clock bound: training stops after this
    # share of each isometry batch drawn as nearest neighbours of the batch's other events
    # (``_neighbours``); 0: random batches
    neighbour_share: float = 0.25


@dataclass
class TrainReport:
    method: str
    epochs: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    stopped_early: bool = False  # ``max_seconds`` was reached before the last step
    planned_steps: int = 0  # max_steps rounded up to a whole pass, or the passes' cap


# Called after every training step with (step, total steps, loss, elapsed seconds); set by
# a caller that shows progress (``observe_training``), so the build need not pass it down.
StepObserver = Callable[[int, int, float, float], None]
_observer: ContextVar[StepObserver | None] = ContextVar("training_observer", default=None)


def training_observer() -> StepObserver | None:
    """The observer ``observe_training`` installed here, if any."""
    return _observer.get()


@contextmanager
def observe_training(observer: StepObserver) -> Iterator[None]:
    """Call ``observer`` after every step of every ``train_embedding`` in this block."""
    token = _observer.set(observer)
    try:
        yield
    finally:
        _observer.reset(token)


def train_embedding(
    numeric: np.ndarray, categorical: np.ndarray, cardinalities: list[int], config: TrainConfig
) -> tuple[TabularResNet, TrainReport]:
    """Train on model inputs (``FeatureMatrix`` arrays); returns the encoder in eval mode."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    torch.set_num_threads(max(1, config.threads))
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
        numeric_skip=config.numeric_skip,
    )
    head = ReconstructionHead(config.dim, x_num.shape[1], cardinalities, config.width)
    params = list(model.parameters())
    if config.method in ("reconstruction", "hybrid"):
        params += list(head.parameters())  # the decoder of the reconstruction term
    optimiser = torch.optim.AdamW(
        params, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True
    )
    batch = min(config.batch_size, n)
    steps_per_epoch = max(1, n // batch)
    epochs = max(1, min(config.epochs, math.ceil(config.max_steps / steps_per_epoch)))
    total = epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.learning_rate, total_steps=total
    )
    report = TrainReport(config.method, epochs, total, 0.0, planned_steps=total)
    paired = round(config.neighbour_share * batch) if config.method == "isometry" and n > 1 else 0
    near = _neighbours(model, x_num, x_cat, config, rng) if paired else None
    start = time.perf_counter()
    observer = _observer.get()
    out_of_time = False
    model.train()
    head.train()
    for epoch in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        running = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch : (s + 1) * batch]
            if near is not None:
                # the last ``paired`` events make way for neighbours of the first ones
                own = idx[:paired].numpy()
                pick = rng.integers(0, near.shape[1], paired)
                idx = torch.cat([idx[: batch - paired], torch.from_numpy(near[own, pick])])
            num, cat = x_num[idx], x_cat[idx]
            if config.method == "reconstruction":
                loss = _reconstruction_loss(model, head, num, cat, config.mask_rate)
            elif config.method == "contrastive":
                loss = _contrastive_loss(model, num, cat, x_num, x_cat, config)
            elif config.method == "isometry":
                loss = _isometry_loss(model, *_augmented(model, num, cat, config), config)
            else:
                loss = _isometry_loss(
                    model, *_augmented(model, num, cat, config), config
                ) + 0.1 * _reconstruction_loss(model, head, num, cat, config.mask_rate)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 5.0)
            optimiser.step()
            scheduler.step()
            value = float(loss.detach())
            running += value
            elapsed = time.perf_counter() - start
            if observer is not None:
                observer(epoch * steps_per_epoch + s + 1, total, value, elapsed)
            out_of_time = config.max_seconds is not None and elapsed > config.max_seconds
            if out_of_time:
                break
        report.losses.append(round(running / (s + 1), 5))
        if out_of_time:
            report.epochs, report.steps = epoch + 1, epoch * steps_per_epoch + s + 1
            report.stopped_early = report.steps < total
            break
    report.seconds = round(time.perf_counter() - start, 2)
    model.eval()
    set_anchor(model, x_num, x_cat, config.anchor_scale)
    return model, report


NEIGHBOURS = 8  # nearest neighbours an event's batch partner is drawn from
NEIGHBOUR_POOL = 20_000  # events searched for neighbours at most (a sample beyond)


def _neighbours(
    model: TabularResNet,
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    config: TrainConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each training event's ``NEIGHBOURS`` nearest other events in the preserved distance
    (``_dense``), searched exactly among at most ``NEIGHBOUR_POOL`` of them: row indices
    (n, NEIGHBOURS). A random batch of 256 out of thousands holds almost no pair at the
    scale of an event's nearest neighbours, which is the scale the k-NN view and the fine
    view read; pairing each event with one of them trains the map there too."""
    n = x_num.shape[0]
    pool = np.arange(n) if n <= NEIGHBOUR_POOL else np.sort(rng.choice(n, NEIGHBOUR_POOL, False))
    k = min(NEIGHBOURS, len(pool) - 1)
    with torch.no_grad():
        base = _dense(model, x_num[pool], x_cat[pool], config)
        sq = (base * base).sum(dim=1)
        out = np.empty((n, k), dtype=np.int64)
        for start in range(0, n, 1024):
            rows = torch.arange(start, min(n, start + 1024))
            q = _dense(model, x_num[rows], x_cat[rows], config)
            d = (q * q).sum(dim=1, keepdim=True) - 2 * q @ base.T + sq
            # an event is not its own neighbour
            at = np.minimum(np.searchsorted(pool, rows.numpy()), len(pool) - 1)
            pooled = np.flatnonzero(pool[at] == rows.numpy())
            d[torch.from_numpy(pooled), torch.from_numpy(at[pooled])] = float("inf")
            out[start : start + len(rows)] = pool[d.topk(k, largest=False).indices.numpy()]
    return out


def set_anchor(
    model: TabularResNet, x_num: torch.Tensor, x_cat: torch.Tensor, scale: float
) -> None:
    with torch.no_grad():
        norms = torch.cat(
            [
                model.encode(x_num[s : s + 8192], x_cat[s : s + 8192]).norm(dim=1)
                for s in range(0, x_num.shape[0], 8192)
            ]
        )
        model.anchor.fill_(float(scale * torch.quantile(norms[:100_000], 0.99)) + 1e-6)


def _dense(
    model: TabularResNet, num: torch.Tensor, cat: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """The feature-space representation the embedding preserves: numerics (the
    novel-amount columns scaled by ``novel_weight``) plus one-hot categories scaled by
    their field's weight (``category_weights``, or ``category_weight`` for every field)."""
    if config.novel_columns and config.novel_weight != 1.0:
        num = num.clone()
        num[:, list(config.novel_columns)] *= config.novel_weight
    weights = config.category_weights or (config.category_weight,) * len(model.cardinalities)
    parts = [num]
    parts += [
        weights[j] * nn.functional.one_hot(cat[:, j], card).float()
        for j, card in enumerate(model.cardinalities)
    ]
    return torch.cat(parts, dim=1)


def _augmented(
    model: TabularResNet, num: torch.Tensor, cat: torch.Tensor, config: TrainConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch plus corrupted copies of it, off the baseline's manifold: a random share
    of fields replaced by another event's value (which breaks the correlations normal
    events have) or, for a share ``augment_uniform`` of numerics and for the
    ``novel_columns`` always, a value anywhere in the clip range; categories anywhere in
    their vocabulary, unseen included. Anomalies live off the manifold; without these the
    map is distance-preserving only where normal events are, and far-out events can land
    close to normal ones."""
    copies = round(config.augment * num.shape[0])
    if copies <= 0:
        return num, cat
    rows = torch.randint(0, num.shape[0], (copies,))
    src_num, src_cat = num[rows], cat[rows]
    rate = torch.rand(copies, 1) * 0.5
    other = num[torch.randint(0, num.shape[0], (copies,))]
    uniform = (torch.rand_like(src_num) * 2 - 1) * config.augment_range
    draw_uniform = torch.rand_like(src_num) < config.augment_uniform
    draw_uniform[:, list(config.novel_columns)] = True
    if config.scaled_columns is not None:
        draw_uniform[:, config.scaled_columns :] = False  # indicators stay 0/1 (swapped)
    replacement = torch.where(draw_uniform, uniform, other)
    aug_num = torch.where(torch.rand_like(src_num) < rate, replacement, src_num)
    cards = torch.tensor(model.cardinalities, dtype=torch.float32)
    random_cat = (torch.rand(src_cat.shape) * cards).long()
    aug_cat = torch.where(torch.rand(src_cat.shape) < rate, random_cat, src_cat)
    return torch.cat([num, aug_num]), torch.cat([cat, aug_cat])


def _isometry_loss(
    model: TabularResNet, num: torch.Tensor, cat: torch.Tensor, config: TrainConfig
) -> torch.Tensor:
    """Relative stress between embedding and feature-space distances within the batch,
    near pairs weighted up: k-NN scoring reads local distances."""
    z = model.encode(num, cat)
    dense = _dense(model, num, cat, config)
    d_raw = torch.cdist(dense, dense)
    d_emb = torch.cdist(z, z)
    scale = d_raw.mean().clamp_min(1e-6)
    weight = torch.exp(-d_raw / scale)
    return (weight * (d_emb - d_raw) ** 2).sum() / (weight * d_raw**2).sum().clamp_min(1e-6)


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
    # InfoNCE compares directions: normalise z itself (the anchor is set after training).
    normalize = nn.functional.normalize
    a = normalize(model.encode(*_corrupt(num, cat, all_num, all_cat, config.mask_rate * 2)))
    b = normalize(model.encode(*_corrupt(num, cat, all_num, all_cat, config.mask_rate * 2)))
    logits = a @ b.T / config.temperature
    target = torch.arange(a.shape[0])
    return (
        nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.T, target)
    ) / 2


def embed(model: TabularResNet, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model(torch.from_numpy(numeric.astype(np.float32)), torch.from_numpy(categorical))
    return out.numpy()
