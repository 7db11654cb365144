"""Sentence-pair head: ``[CLS] a [SEP] b [SEP]``, features ``[CLS] + mean(a) + mean(b)`` -> MLP."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .base import Head, focal_cross_entropy, same_shape, soft_kl


class MatcherHead(Head):
    """Scores a pair of texts (similar or not, entailment ...), binary or multi-class.

    Needs ``batch["segments"]``: 1 on the tokens of ``a``, 2 on those of ``b``, 0 on ``[CLS]``,
    ``[SEP]`` and padding.

    Example:
        >>> head = MatcherHead(8, ["0", "1"])
        >>> seg = torch.tensor([[0, 1, 1, 0, 2, 0]])
        >>> head(torch.randn(1, 6, 8), {"segments": seg}).shape
        torch.Size([1, 2])
    """

    kind = "matcher"

    def __init__(
        self, hidden_size: int, labels: Sequence[str], dropout: float = 0.1, mlp_hidden: int | None = None, focal_gamma: float = 0.0
    ) -> None:
        mlp_hidden = int(mlp_hidden or hidden_size)
        super().__init__(hidden_size, labels, dropout=dropout, mlp_hidden=mlp_hidden, focal_gamma=focal_gamma)
        self.mlp = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(3 * hidden_size, mlp_hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_hidden, len(self.labels)),
        )
        self.focal_gamma = focal_gamma

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seg = batch["segments"]
        feats = [hidden[:, 0]]
        for side in (1, 2):
            mask = (seg == side).to(hidden.dtype)[..., None]
            feats.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
        return self.mlp(torch.cat(feats, dim=-1))

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return focal_cross_entropy(output.float(), targets, self.focal_gamma)

    def pseudo_targets(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The most probable label of each pair."""
        return output.argmax(-1)

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        """KL divergence of the temperature-softened label distributions, times ``T^2``, averaged over the batch."""
        same_shape(output, teacher, self.kind)
        return soft_kl(output, teacher, temperature).mean()
