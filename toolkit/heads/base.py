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

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        """How far this head's ``output`` is from a teacher head's ``teacher`` (same shape: same kind
        and labels) on ``batch``, softened by ``temperature``: zero when they agree. Used by
        ``toolkit train`` with a recipe ``teacher:`` (:mod:`toolkit.train.teacher`); a kind whose head
        does not override it cannot be distilled."""
        raise NotImplementedError(f"a {self.kind} head has no distillation loss: train this task without a teacher, "
                                  f"or give {type(self).__name__} a distill_loss(output, teacher, batch, temperature) method")

    def pseudo_targets(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """This head's decisions on ``batch`` as gold ``targets`` for :meth:`loss` (the teacher's
        pseudo-labels on unlabeled text, recipe ``pseudo_labels: true``)."""
        raise NotImplementedError(f"a {self.kind} head cannot turn its outputs into pseudo-labels: set pseudo_labels: false, "
                                  f"or give {type(self).__name__} a pseudo_targets(output, batch) method")


def same_shape(output: torch.Tensor, teacher: torch.Tensor, kind: str) -> None:
    """Refuse a teacher output that does not line up with the student's (another label set or length)."""
    if output.shape != teacher.shape:
        raise ValueError(f"the teacher's {kind} output of shape {tuple(teacher.shape)} does not match the student's {tuple(output.shape)}: "
                         "teacher and student heads need the same labels (and the same batch)")


def soft_kl(output: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(teacher / T) || softmax(output / T)) * T^2`` over the last axis, per row, in fp32
    (Hinton et al. 2015: the ``T^2`` keeps the gradient's scale independent of ``T``).

    >>> x = torch.tensor([[1.0, 2.0, 0.5]])
    >>> float(soft_kl(x, x, 2.0)[0]), bool(soft_kl(x, -x, 2.0)[0] > 0)
    (0.0, True)
    """
    t = torch.log_softmax(teacher.float() / temperature, dim=-1)
    s = torch.log_softmax(output.float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1) * temperature**2


def focal_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 0.0) -> torch.Tensor:
    """Cross-entropy, or focal loss ``-(1 - p)^gamma log p`` when ``gamma > 0`` (Lin et al. 2017)."""
    if gamma <= 0:
        return nn.functional.cross_entropy(logits, targets)
    logp = torch.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
    return (-(1 - logp.exp()).pow(gamma) * logp).mean()
