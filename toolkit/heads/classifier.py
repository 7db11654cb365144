"""Single-label text classification head: ``[CLS]`` (or mean-pooled tokens) -> dropout -> linear."""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from .base import Head, focal_cross_entropy, same_shape, soft_kl


class ClassifierHead(Head):
    """Classifies a text from its ``[CLS]`` vector (``pooling="cls"``, the BERT convention) or from
    the mean of its token vectors (``pooling="mean"``).

    Use ``"mean"`` for encoders pretrained with mean pooling, such as e5 (and so ``zh-e5-small-base``):
    their ``[CLS]`` output is nearly the same vector for every text (cosine 0.99998 between
    ChnSentiCorp reviews), so a ``[CLS]`` classifier starts from almost no signal.
    ``focal_gamma > 0`` trains with focal loss, which helps with imbalanced labels.

    Example:
        >>> head = ClassifierHead(32, ["neg", "pos"], focal_gamma=2.0)
        >>> head(torch.zeros(1, 5, 32), {"attention_mask": torch.ones(1, 5)}).shape
        torch.Size([1, 2])
    """

    kind = "classifier"

    def __init__(self, hidden_size: int, labels: Sequence[str], dropout: float = 0.1, focal_gamma: float = 0.0, pooling: Literal["cls", "mean"] = "cls") -> None:
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        super().__init__(hidden_size, labels, dropout=dropout, focal_gamma=focal_gamma, pooling=pooling)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(self.labels))
        self.focal_gamma = focal_gamma
        self.pooling = pooling

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.pooling == "mean":
            mask = batch["attention_mask"].to(hidden.dtype)[..., None]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        else:
            pooled = hidden[:, 0]
        return self.proj(self.dropout(pooled))

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return focal_cross_entropy(output.float(), targets, self.focal_gamma)

    def pseudo_targets(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The most probable label of each example."""
        return output.argmax(-1)

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        """KL divergence of the temperature-softened label distributions, times ``T^2``, averaged over the batch."""
        same_shape(output, teacher, self.kind)
        return soft_kl(output, teacher, temperature).mean()
