"""What every task head has in common."""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn


class Head(nn.Module):
    """A task head on top of the shared encoder, built from ``(hidden_size, labels, **options)``.

    ``forward(hidden, batch)`` returns the tensor that decoding needs (emissions or logits); it is
    all that runs inside the encoder pass (and all that the ONNX export contains). ``loss`` turns that
    output and the gold targets into a scalar. Turning outputs into predictions is the head's kind's
    job (numpy only, shared by every runtime: :mod:`toolkit.kinds`).
    """

    kind: ClassVar[str]

    def __init__(self, hidden_size: int, labels: Sequence[str], **options: Any) -> None:
        super().__init__()
        labels = [str(x) for x in labels]
        if len(labels) < 1 or len(set(labels)) != len(labels):
            raise ValueError(f"a {self.kind} head needs a non-empty list of distinct labels, got {labels}")
        self.hidden_size = hidden_size
        self.labels = labels
        self.options = options

    def spec(self) -> dict[str, Any]:
        """What the manifest stores to rebuild this head."""
        return {"kind": self.kind, "labels": list(self.labels), "options": dict(self.options)}

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def focal_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
    """Cross-entropy, or focal loss ``-(1 - p)^gamma log p`` when ``gamma > 0`` (Lin et al. 2017)."""
    if gamma <= 0:
        return nn.functional.cross_entropy(logits, targets)
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return (-(1 - logp.exp()).pow(gamma) * logp).mean()
