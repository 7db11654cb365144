"""Span head for nested NER: Efficient GlobalPointer (Su Jianlin, 2021/2022) with rotary positions.

Every (start, end) pair of positions gets one score per entity type::

    x = Linear(hidden, 2 * head_size)(dropout(hidden))        # shared start (q) and end (k) vectors
    q, k = RoPE(x[..., :head_size]), RoPE(x[..., head_size:])  # sinusoidal rotary positions
    logits[b, c, i, j] = q_i . k_j / sqrt(head_size) + start_c(x_i) + end_c(x_j)

where ``start_c``/``end_c`` come from one ``Linear(2 * head_size, 2 * types)`` (the "efficient"
variant: the types share q/k and differ by a per-token bias, so the head stays small with many
types; the original GlobalPointer has one q/k pair per type). Cells that are no span (end before
start, longer than ``max_span`` tokens, a padding position) are set to ``-1e4`` inside the graph:
finite, so ONNX, int8 and the pipeline's finiteness check hold. Positions are built from the
sequence length at run time, so the exported graph takes any length.

Loss: GlobalPointer's multi-label categorical cross-entropy over all ``L * L`` cells of each
(sequence, type), in fp32; from a teacher: a binary KL per cell (:meth:`SpanHead.distill_loss`).
Decoding: :class:`toolkit.kinds.span.SpanDecoder` (numpy).

Example:
    >>> head = SpanHead(32, ["dis", "sym"], head_size=8, max_span=4)
    >>> head(torch.zeros(1, 6, 32), {"attention_mask": torch.ones(1, 6, dtype=torch.long)}).shape
    torch.Size([1, 2, 6, 6])
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..kinds.span import MASKED, check_options
from .base import Head, same_shape


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position encoding of ``x[B, L, d]`` (halves rotated: ``(x1, x2) -> (-x2, x1)``)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def multilabel_categorical_crossentropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log(1 + sum_neg e^s) + log(1 + sum_pos e^-s)`` per row of ``logits[N, K]`` (targets 0/1), averaged."""
    logits = (1 - 2 * targets) * logits
    neg = logits - targets * 1e12
    pos = logits - (1 - targets) * 1e12
    zeros = torch.zeros_like(logits[:, :1])
    return (torch.logsumexp(torch.cat([neg, zeros], -1), -1) + torch.logsumexp(torch.cat([pos, zeros], -1), -1)).mean()


class SpanHead(Head):
    """Nested NER head (see the module docstring); ``threshold`` and ``flat`` are decoding options
    stored in the manifest with the others."""

    kind = "span"

    def __init__(self, hidden_size: int, labels: Sequence[str], head_size: int = 64, max_span: int = 32, threshold: float = 0.5,
                 flat: bool = False, dropout: float = 0.1) -> None:
        check_options(head_size, max_span, threshold, flat, dropout)
        super().__init__(hidden_size, labels, head_size=head_size, max_span=max_span, threshold=threshold, flat=flat, dropout=dropout)
        self.head_size = head_size
        self.max_span = max_span
        self.dropout = nn.Dropout(dropout)
        self.qk = nn.Linear(hidden_size, 2 * head_size)
        self.bias = nn.Linear(2 * head_size, 2 * len(self.labels))
        half = torch.arange(head_size // 2, dtype=torch.float32)
        self.register_buffer("inv_freq", torch.pow(10000.0, -2 * half / head_size), persistent=False)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x = self.qk(self.dropout(hidden))  # [B, L, 2h]
        pos = torch.arange(x.shape[1], device=x.device, dtype=torch.float32)
        angles = pos[:, None] * self.inv_freq[None, :]  # [L, h/2]
        cos = torch.cat([angles.cos(), angles.cos()], -1).to(x.dtype)
        sin = torch.cat([angles.sin(), angles.sin()], -1).to(x.dtype)
        q, k = rotate(x[..., : self.head_size], cos, sin), rotate(x[..., self.head_size :], cos, sin)
        logits = torch.matmul(q, k.transpose(1, 2)) / self.head_size**0.5  # [B, L(start), L(end)]
        bias = self.bias(x).transpose(1, 2)  # [B, 2C, L]
        logits = logits[:, None] + bias[:, 0::2, :, None] + bias[:, 1::2, None, :]  # + start_c(i) + end_c(j)
        return torch.where(self.cells(pos, batch["attention_mask"]), logits, torch.full_like(logits, MASKED))

    def cells(self, pos: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``[B, 1, L, L]``: True at the cells that can be a span (start <= end < start + max_span,
        both real tokens); ``pos`` holds the positions ``0 .. L-1``."""
        length = pos[None, :] - pos[:, None]  # end - start
        band = (length >= 0) & (length < self.max_span)
        mask = attention_mask.bool()
        return band[None, None] & mask[:, None, :, None] & mask[:, None, None, :]

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Multi-label categorical cross-entropy; ``targets[b, c, i, j]`` is 1 for a gold span of
        type ``c`` from position ``i`` to position ``j`` (inclusive, ``[CLS]`` at 0)."""
        if targets.shape != output.shape:
            raise ValueError(f"span targets of shape {tuple(targets.shape)} do not match the head output {tuple(output.shape)}")
        n = output.shape[0] * output.shape[1]
        return multilabel_categorical_crossentropy(output.float().reshape(n, -1), targets.float().reshape(n, -1))

    @torch.no_grad()
    def pseudo_targets(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """1 at the cells that can be a span and whose probability reaches the head's threshold (the
        spans decoding would give, nested ones included), as :meth:`loss` reads targets."""
        pos = torch.arange(output.shape[-1], device=output.device, dtype=torch.float32)
        valid = self.cells(pos, batch["attention_mask"])
        return (valid & (torch.sigmoid(output.float()) >= float(self.options["threshold"]))).long()

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        """Binary cross-entropy of the student's ``sigmoid(logit / T)`` against the teacher's
        ``sigmoid(logit / T)`` at every cell that can be a span, minus the teacher's own entropy (so
        it is the binary KL divergence: zero when they agree, same gradient as the cross-entropy),
        times ``T^2``; summed over the cells of each (sequence, type) and averaged over those. Each
        cell thus trains like a binary classifier (gradient ``T * (p_student - p_teacher)``), of the
        order of the gold loss's gradient on an entity cell; a mean over the ``~L * max_span`` cells
        would leave the few entity cells almost no signal. At the start, when every cell disagrees,
        the value is large (thousands): clipping and Adam bound the steps, and it falls as soon as the
        student has the teacher's clear negatives.

        Why probabilities and not MSE on the logits: decoding reads each cell's ``sigmoid`` against a
        threshold, and almost every cell is a clear "no span" whose exact negative logit does not
        matter; MSE would spend the student's capacity copying those magnitudes (and the teacher's
        ``-1e4`` masked cells), while the cross-entropy is bounded there and sharp near the threshold.
        """
        same_shape(output, teacher, self.kind)
        pos = torch.arange(output.shape[-1], device=output.device, dtype=torch.float32)
        valid = self.cells(pos, batch["attention_mask"]).float()
        s, t = output.float() / temperature, teacher.float() / temperature
        p = torch.sigmoid(t)
        bce = nn.functional.binary_cross_entropy_with_logits
        kl = bce(s, p, reduction="none") - bce(t, p, reduction="none")
        return (kl * valid).sum() / (output.shape[0] * output.shape[1]) * temperature**2
