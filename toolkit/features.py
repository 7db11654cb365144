"""Training features: examples -> token ids + targets, and padded batches.

The same normalisation, tokenisation and windowing as the pipelines, so a model is trained on
exactly what it will see. Entity spans (original character offsets) are mapped to normalised
offsets, then to tokens; a span whose boundary falls inside a token, or that a window cuts, cannot
be learnt and is **counted** in :class:`FeatureReport` (never dropped silently).
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .data.examples import NerExample, PairExample, TextExample
from .normalize import Normalized, Normalizer
from .tags import flatten_spans, spans_to_tags
from .tokenization import TextTokenizer, align_spans, make_windows, sentence_breaks, token_types

logger = logging.getLogger(__name__)


@dataclass
class Feature:
    """One training sequence: ``ids`` with specials; ``target`` tag ids (word tokens) or a label id."""

    ids: np.ndarray
    target: np.ndarray | int
    segments: np.ndarray | None = None


@dataclass
class FeatureReport:
    """What feature building could not keep, by reason; logged once per dataset."""

    counts: Counter = field(default_factory=Counter)

    def log(self, name: str) -> None:
        lost = {k: v for k, v in self.counts.items() if v and k not in ("examples", "spans", "sequences")}
        if lost:
            logger.warning("%s: %s", name, ", ".join(f"{v} {k}" for k, v in sorted(lost.items())))


def to_normalized_span(norm: Normalized, start: int, end: int) -> tuple[int, int]:
    """Original ``[start, end)`` -> normalised offsets (characters removed by normalisation drop out)."""
    s = int(np.searchsorted(norm.starts, start, side="left"))
    e = int(np.searchsorted(norm.ends, end, side="right"))
    return s, e


def ner_features(
    examples: Sequence[NerExample],
    tokenizer: TextTokenizer,
    normalizer: Normalizer,
    tags: Sequence[str],
    scheme: str,
    max_length: int,
    flatten: str = "longest",
    report: FeatureReport | None = None,
) -> list[Feature]:
    """Tag-id features for a tagger head; long texts become windows like in the pipeline."""
    report = report if report is not None else FeatureReport()
    index = {t: i for i, t in enumerate(tags)}
    labels = {t.partition("-")[2] for t in tags if t != "O"}
    out: list[Feature] = []
    max_tokens = max_length - 2
    norms = [normalizer(ex.text) for ex in examples]
    encoded = tokenizer.encode([n.text for n in norms])
    for ex, norm, (ids, offsets) in zip(examples, norms, encoded):
        report.counts["examples"] += 1
        if len(ids) == 0:
            report.counts["empty texts skipped"] += 1
            continue
        spans = []
        for sp in ex.spans:
            report.counts["spans"] += 1
            if sp.label not in labels:
                report.counts[f"spans of unknown type {sp.label!r}"] += 1
                continue
            s, e = to_normalized_span(norm, sp.start, sp.end)
            if e <= s:
                report.counts["spans empty after normalisation"] += 1
                continue
            spans.append((s, e, sp.label))
        kept, dropped = flatten_spans(spans, flatten)
        report.counts["nested spans flattened away"] += len(dropped)
        token_spans, bad = align_spans(offsets, kept)
        report.counts["spans with a boundary inside a token"] += len(bad)
        breaks = sentence_breaks(norm.text, offsets) if len(ids) > max_tokens else ()
        covered = set()
        for w in make_windows(len(ids), max_tokens, breaks, stride=0):
            inside = [sp for sp in token_spans if w.start <= sp[0] and sp[1] <= w.end]
            covered.update(inside)
            local = [(s - w.start, e - w.start, lab) for s, e, lab in inside]
            target = np.array([index[t] for t in spans_to_tags(local, w.end - w.start, scheme)], dtype=np.int64)
            out.append(Feature(tokenizer.with_specials(ids[w.start : w.end]), target))
            report.counts["sequences"] += 1
        report.counts["spans cut by a window"] += len(set(token_spans)) - len(covered)
    return out


def text_features(examples: Sequence[TextExample], tokenizer: TextTokenizer, normalizer: Normalizer, labels: Sequence[str], max_length: int) -> list[Feature]:
    """Label-id features for a classifier head (texts truncated to ``max_length``)."""
    index = {lab: i for i, lab in enumerate(labels)}
    encoded = tokenizer.encode([normalizer(ex.text).text for ex in examples])
    out = []
    for ex, (ids, _) in zip(examples, encoded):
        if ex.label not in index:
            raise ValueError(f"{ex.source or 'example'}: label {ex.label!r} is not one of the head's labels {list(labels)}")
        out.append(Feature(tokenizer.with_specials(ids[: max_length - 2]), index[ex.label]))
    return out


def pair_features(examples: Sequence[PairExample], tokenizer: TextTokenizer, normalizer: Normalizer, labels: Sequence[str], max_length: int) -> list[Feature]:
    """``[CLS] a [SEP] b [SEP]`` features for a matcher head (segments: 1 = a, 2 = b)."""
    index = {lab: i for i, lab in enumerate(labels)}
    enc_a = tokenizer.encode([normalizer(ex.text_a).text for ex in examples])
    enc_b = tokenizer.encode([normalizer(ex.text_b).text for ex in examples])
    out = []
    for ex, (a, _), (b, _) in zip(examples, enc_a, enc_b):
        if ex.label not in index:
            raise ValueError(f"{ex.source or 'example'}: label {ex.label!r} is not one of the head's labels {list(labels)}")
        ids, segments = tokenizer.pair(a, b, max_length)
        out.append(Feature(ids, index[ex.label], segments))
    return out


def collate(features: Sequence[Feature], pad_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Pad a batch (dynamic padding): ``(batch, targets)``."""
    n = max(len(f.ids) for f in features)
    B = len(features)
    ids = torch.full((B, n), pad_id, dtype=torch.long)
    mask = torch.zeros((B, n), dtype=torch.long)
    types = torch.zeros((B, n), dtype=torch.long)
    segments = torch.zeros((B, n), dtype=torch.long)
    is_tagging = isinstance(features[0].target, np.ndarray)
    targets = torch.zeros((B, n), dtype=torch.long) if is_tagging else torch.zeros(B, dtype=torch.long)
    for r, f in enumerate(features):
        k = len(f.ids)
        ids[r, :k] = torch.from_numpy(f.ids)
        mask[r, :k] = 1
        if f.segments is not None:
            segments[r, :k] = torch.from_numpy(f.segments)
            types[r, :k] = torch.from_numpy(token_types(f.segments))
        if is_tagging:
            targets[r, : len(f.target)] = torch.from_numpy(f.target)
        else:
            targets[r] = int(f.target)
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if features[0].segments is not None:
        batch["segments"] = segments
    return batch, targets
