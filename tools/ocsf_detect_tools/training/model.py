"""TabularResNet: an embedding per categorical field, numerics projected in, residual MLP
blocks (LayerNorm, GELU, dropout), a linear shortcut from the numerics to the output and
an L2-normalised output embedding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def embedding_width(cardinality: int) -> int:
    """A common rule of thumb: grows with the category count, capped at 16."""
    return int(min(16, max(2, round(1.6 * cardinality**0.56))))


class ResidualBlock(nn.Module):
    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, width * 2),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width * 2, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class TabularResNet(nn.Module):
    """``model(numeric[n, d_num] float32, categorical[n, d_cat] int64) -> [n, dim]``,
    rows of unit L2 norm."""

    anchor: torch.Tensor  # a registered buffer, set after training (see forward)

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        *,
        width: int = 128,
        blocks: int = 3,
        dim: int = 64,
        dropout: float = 0.1,
        numeric_skip: bool = True,
    ) -> None:
        super().__init__()
        self.cardinalities = list(cardinalities)
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, embedding_width(card)) for card in self.cardinalities
        )
        in_width = n_numeric + sum(embedding_width(c) for c in self.cardinalities)
        self.stem = nn.Linear(in_width, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(blocks)))
        # The head produces dim - 1 free coordinates; the last one is the anchor (below).
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim - 1))
        # The blocks and the head's LayerNorm bound what a value far outside the training
        # range can do to the output; the shortcut is linear in the numerics, so a volume
        # ten units out moves the embedding about as far as ten units should.
        self.skip = nn.Linear(n_numeric, dim - 1, bias=False) if numeric_skip else None
        self.dim = dim
        self.register_buffer("anchor", torch.ones(1))

    def encode(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric]
        parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]
        x = self.stem(torch.cat(parts, dim=1))
        z = self.head(self.blocks(x))
        return z if self.skip is None else z + self.skip(numeric)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Unit vectors: ``[z, a] / |[z, a]|`` with a fixed anchor coordinate ``a``.

        Plain normalisation ``z / |z|`` keeps only the direction of ``z`` and throws away
        how far an event is from everything else, which is the very signal k-NN scoring
        needs (measured: ROC-AUC 0.86 instead of 0.998 on generated network traffic). With
        the anchor, the map is injective: near the typical |z| it is almost an isometry
        (scaled by 1/a), and events far out still land far away, towards the equator.
        """
        z = self.encode(numeric, categorical)
        a = self.anchor.expand(z.shape[0], 1)
        full = torch.cat([z, a], dim=1)
        # Written out (not F.normalize) so the exported graph is plain ONNX ops.
        return full / torch.sqrt((full * full).sum(dim=1, keepdim=True) + 1e-12)


class ReconstructionHead(nn.Module):
    """Decoder for masked-feature reconstruction: from the embedding back to every numeric
    value and every categorical field's class logits. Training only."""

    def __init__(self, dim: int, n_numeric: int, cardinalities: Sequence[int], width: int) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(dim, width), nn.GELU(), nn.Linear(width, width))
        self.numeric = nn.Linear(width, n_numeric)
        self.categorical = nn.ModuleList(nn.Linear(width, card) for card in cardinalities)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.nn.functional.gelu(self.trunk(z))
        return self.numeric(h), [head(h) for head in self.categorical]
