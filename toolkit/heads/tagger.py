"""Sequence-labelling head: linear emissions + a CRF (pytorch-crf) over the word tokens."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ..text.tags import Scheme, check_scheme, tag_set
from .base import Head, same_shape, soft_kl


class TaggerHead(Head):
    """NER head: ``dropout -> linear -> CRF`` with tags of ``scheme`` for entity types ``labels``.

    The CRF runs over the word tokens only (``[CLS]`` and ``[SEP]`` are left out). Training uses the
    CRF's log-likelihood; decoding (numpy, :class:`toolkit.kinds.decoding.TagDecoder`) applies the
    scheme's transition constraints, so it never emits an invalid sequence, and scores each entity
    with its CRF probability (see :mod:`toolkit.kinds.crf`).

    Example:
        >>> head = TaggerHead(32, ["PER", "LOC"], scheme="BIOES")
        >>> head.tags[:3]
        ['O', 'B-PER', 'I-PER']
    """

    kind = "tagger"

    def __init__(self, hidden_size: int, labels: Sequence[str], scheme: Scheme = "BIO", dropout: float = 0.1) -> None:
        scheme = check_scheme(scheme)
        super().__init__(hidden_size, labels, scheme=scheme, dropout=dropout)
        from torchcrf import CRF

        self.scheme = scheme
        self.tags = tag_set(self.labels, scheme)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_size, len(self.tags))
        self.crf = CRF(len(self.tags), batch_first=True)

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.proj(self.dropout(hidden))

    def loss(self, output: torch.Tensor, batch: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood; ``targets[b, i]`` is the tag id of word token ``i``."""
        n_words = batch["attention_mask"].sum(1) - 2
        if bool((n_words < 1).any()):
            raise ValueError("every training sequence needs at least one word token")
        width = int(n_words.max())
        emissions = output[:, 1 : 1 + width].float()
        mask = torch.arange(width, device=output.device)[None] < n_words[:, None]
        return -self.crf(emissions, targets[:, :width], mask=mask, reduction="mean")

    def distill_loss(self, output: torch.Tensor, teacher: torch.Tensor, batch: dict[str, torch.Tensor], temperature: float) -> torch.Tensor:
        """Per-token KL divergence of the temperature-softened tag distributions (softmax of the
        emissions), times ``T^2``, over the word tokens (``[CLS]``, ``[SEP]`` and padding left out),
        summed per sequence and averaged over the batch: the scale of the CRF's per-sequence
        log-likelihood in :meth:`loss`. The CRF transitions learn from the gold labels alone."""
        same_shape(output, teacher, self.kind)
        n_words = batch["attention_mask"].sum(1) - 2
        width = max(int(n_words.max()), 0)
        mask = (torch.arange(width, device=output.device)[None] < n_words[:, None]).float()
        kl = soft_kl(output[:, 1 : 1 + width], teacher[:, 1 : 1 + width], temperature)
        return (kl * mask).sum() / output.shape[0]

    @torch.no_grad()
    def pseudo_targets(self, output: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The CRF's best tag path over the word tokens of each sequence, as :meth:`loss` reads
        targets (``[B, words]``, tag 0 past a sequence's end)."""
        n_words = batch["attention_mask"].sum(1) - 2
        width = max(int(n_words.max()), 1)
        mask = torch.arange(width, device=output.device)[None] < n_words[:, None]
        mask[:, 0] = True  # pytorch-crf wants the first step on; a sequence without words has no loss anyway
        paths = self.crf.decode(output[:, 1 : 1 + width].float(), mask=mask)
        targets = torch.zeros(output.shape[0], width, dtype=torch.long, device=output.device)
        for b, path in enumerate(paths):
            targets[b, : len(path)] = torch.tensor(path, dtype=torch.long)
        return targets

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        spec["scheme"] = spec["options"].pop("scheme")
        return spec
