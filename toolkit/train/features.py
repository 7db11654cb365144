"""Training features: examples -> token ids + targets (the kind's), and padded torch batches.

The text goes through the same code as at inference (:mod:`toolkit.text.encode`): normalisation,
tokenisation, windows; the head's kind (:mod:`toolkit.kinds`) then makes its targets. What cannot be
learnt (a span boundary inside a token, a span cut by a window ...) is **counted** in
:class:`FeatureReport`, never dropped silently.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..kinds import Feature, HeadKind
from ..text.normalize import Normalizer
from ..text.encode import encode_pairs, encode_texts, pad_batch
from ..text.tokenization import TextTokenizer

logger = logging.getLogger(__name__)


@dataclass
class FeatureReport:
    """What feature building could not keep, by reason; logged once per dataset."""

    counts: Counter = field(default_factory=Counter)

    def log(self, name: str) -> None:
        lost = {k: v for k, v in self.counts.items() if v and k not in ("examples", "spans", "sequences")}
        if lost:
            logger.warning("%s: %s", name, ", ".join(f"{v} {k}" for k, v in sorted(lost.items())))


def build_features(kind: HeadKind, examples: Sequence, spec: Any, tokenizer: TextTokenizer, normalizer: Normalizer, max_length: int,
                   report: FeatureReport | None = None, **options: Any) -> list[Feature]:
    """Training features of ``examples`` for a head of ``kind`` described by ``spec`` (a
    :class:`~toolkit.model.manifest.TaskSpec`); ``options`` are the kind's (e.g. a tagger's ``flatten``)."""
    report = report if report is not None else FeatureReport()
    if kind.input == "pair":
        encoded: list = encode_pairs([(ex.text_a, ex.text_b) for ex in examples], normalizer, tokenizer, max_length)
    else:
        encoded = encode_texts([ex.text for ex in examples], normalizer, tokenizer, max_length, overlap=False)
    return kind.features(examples, encoded, spec, max_length, tokenizer, report, **options)


def collate(features: Sequence[Feature], pad_id: int, kind: HeadKind) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad a batch (dynamic padding): ``(batch, targets)`` as torch tensors."""
    pair = features[0].segments is not None
    padded = pad_batch([f.ids for f in features], pad_id, [f.segments for f in features], with_segments=pair)
    width = padded.arrays["input_ids"].shape[1]
    return {k: torch.from_numpy(v) for k, v in padded.arrays.items()}, torch.from_numpy(kind.targets(features, width))


__all__ = ["Feature", "FeatureReport", "build_features", "collate"]
