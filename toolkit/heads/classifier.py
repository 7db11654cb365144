"""Single-label text classification head: ``[CLS]`` -> dropout -> linear."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..decoding import LabelDecoder
from .base import Head, focal_cross_entropy


class ClassifierHead(Head):
    """Classifies a text from its ``[CLS]`` vector.

    ``focal_gamma > 0`` trains with focal loss, which helps with imbalanced labels.

    Example:
        >>> head = ClassifierHead(32, ["neg", "pos"], focal_gamma=2.0)
        >>> head(torch.zeros(1, 5, 32), {}).shape
        torch.Size([1, 2])
    """

    kind = "classifier"

    def __init__(self, hidden_size: int, labels: Sequence[str], dropout: float = 0.1, focal_gamma: float = 0.0) -> None:
        super().__init__(hidden_size, labels, dropout=dropout, focal_gamma=focal_gamma)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(self.labels))
        self.focal_gamma = focal_gamma

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(self.dropout(hidden[:, 0]))

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return focal_cross_entropy(output.float(), targets, self.focal_gamma)

    def decoder(self) -> LabelDecoder:
        return LabelDecoder(self.labels)
