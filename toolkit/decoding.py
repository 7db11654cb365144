"""Numpy-only decoders: head outputs -> predictions.

They hold no torch tensors, so the PyTorch and the ONNX Runtime pipelines share them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .crf import CRFParams, forward_backward, span_log_probs, viterbi_padded
from .tags import Scheme, parse_tag, tags_to_spans, transition_mask


class TagDecoder:
    """Constrained Viterbi + entity confidences for a tagger head.

    Example:
        >>> dec = TagDecoder(["O", "B-X", "I-X"], "BIO", np.zeros((3, 3)), np.zeros(3), np.zeros(3))
        >>> em = np.array([[[0, 5, 0], [0, 0, 5], [5, 0, 0]]], dtype=float)
        >>> [(s, e, lab) for s, e, lab, _ in dec.decode(em, np.array([3]))[0]]
        [(0, 2, 'X')]
    """

    def __init__(self, tags: Sequence[str], scheme: Scheme, trans: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
        self.tags = list(tags)
        self.scheme = scheme
        self.outside = self.tags.index("O") if "O" in self.tags else None
        allowed, allowed_start, allowed_end = transition_mask(self.tags, scheme)
        continues = [parse_tag(t, scheme)[0] in ("inside", "end") for t in self.tags]
        self.params = CRFParams.build(trans, start, end, allowed, allowed_start, allowed_end, continues)

    def decode(self, emissions: np.ndarray, lengths: np.ndarray, scores: bool = True) -> list[list[tuple[int, int, str, float]]]:
        """Entities ``(start_token, end_token, label, score)`` of each sequence of ``emissions[B, L, T]``.

        Token indices count word tokens only (the first word token is 0).
        """
        emissions = np.asarray(emissions, dtype=np.float64)
        if emissions.shape[0] == 0:
            return []
        if emissions.shape[1] == 0:
            return [[] for _ in range(emissions.shape[0])]
        lengths = np.asarray(lengths)
        padded = viterbi_padded(emissions, lengths, self.params)
        found = []  # (row, start, end, label)
        for b in range(len(padded)):
            path = padded[b, : int(lengths[b])]
            if self.outside is not None and (path == self.outside).all():  # all "O": no entities
                continue
            spans, _ = tags_to_spans([self.tags[i] for i in path], self.scheme)
            found += [(b, s, e, label) for s, e, label in spans]
        probs = np.ones(len(found))
        if scores and found:
            alpha, beta, log_z = forward_backward(emissions, lengths, self.params)
            rows, starts, ends = (np.array(col) for col in list(zip(*found))[:3])
            logp = span_log_probs(emissions, alpha, beta, log_z, lengths, padded, rows, starts, ends, self.params)
            probs = np.exp(np.minimum(logp, 0.0))
        results: list[list[tuple[int, int, str, float]]] = [[] for _ in range(len(padded))]
        for (b, s, e, label), prob in zip(found, probs):
            results[b].append((s, e, label, float(prob)))
        return results


class LabelDecoder:
    """Softmax over class logits -> ``{"label", "score", "scores"}``."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def decode(self, logits: np.ndarray) -> list[dict[str, Any]]:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.size == 0:
            return []
        z = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append(
                {
                    "label": self.labels[best],
                    "score": round(float(row[best]), 6),
                    "scores": {lab: round(float(p), 6) for lab, p in zip(self.labels, row)},
                }
            )
        return out
