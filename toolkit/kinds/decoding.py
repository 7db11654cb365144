"""Numpy-only decoders: head outputs -> predictions.

They hold no torch tensors, so the PyTorch and the ONNX Runtime pipelines share them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .crf import NEG, CRFParams, forward_backward, span_log_probs, viterbi_padded
from ..results import Label
from ..text.tags import SCHEMES, Scheme, parse_tag, tags_to_spans, transition_mask


class TagDecoder:
    """Constrained Viterbi + entity confidences for a tagger head.

    Besides the scheme's constraints (no ``O -> I-X`` ...), :meth:`decode` takes two per-token masks
    that the pipeline computes from the text (see :func:`toolkit.text.tokenization.entity_breaks`):
    ``breaks`` (no entity continues into this token: a line break or a space between Han characters
    comes before it) and ``blocked`` (this token is ``O``: an emoji or other symbol). They are
    decoding constraints, not cuts made afterwards, so each score is the CRF's probability of
    exactly the span returned, and every runtime (all share this numpy code) obeys them.

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
        self._entity_tags = np.array([t != "O" for t in self.tags])
        roles = SCHEMES[scheme]
        starts = {"inside": roles["begin"], "end": roles.get("single")}
        index = {t: i for i, t in enumerate(self.tags)}
        self._pool = [  # (tag that starts an entity, continuing tag pooled into it at a fresh token)
            (index[f"{starts[role]}-{label}"], i) for i, (role, label) in enumerate(parse_tag(t, scheme) for t in self.tags)
            if role in starts and f"{starts[role]}-{label}" in index
        ]

    def decode(
        self, emissions: np.ndarray, lengths: np.ndarray, scores: bool = True, breaks: np.ndarray | None = None, blocked: np.ndarray | None = None
    ) -> list[list[tuple[int, int, str, float]]]:
        """Entities ``(start_token, end_token, label, score)`` of each sequence of ``emissions[B, L, T]``.

        Token indices count word tokens only (the first word token is 0). ``breaks`` and ``blocked``
        (``[B, L]`` bool, optional) forbid an entity to continue into a token and any entity tag on a
        token (see the class docstring).
        """
        emissions = np.asarray(emissions, dtype=np.float64)
        if emissions.shape[0] == 0:
            return []
        if emissions.shape[1] == 0:
            return [[] for _ in range(emissions.shape[0])]
        emissions = self.constrain(emissions, breaks, blocked)
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

    def constrain(self, emissions: np.ndarray, breaks: np.ndarray | None, blocked: np.ndarray | None) -> np.ndarray:
        """``emissions`` (``[B, L, T]``) under the ``breaks``/``blocked`` masks (a copy, if any).

        A blocked token gets ``NEG`` on every entity tag. At a *fresh* token (a break before it, or a
        blocked token) nothing continues: its continuing tags get ``NEG``, after their score is
        pooled (log-sum-exp) into the tag that starts the same entity (``I-X`` into ``B-X``,
        ``E-X`` into ``S-X``). The encoder does not see the whitespace that made the break, so
        "inside an X" there means "an X starts here", as the lenient reading of a corpus would say.
        """
        L = emissions.shape[1]
        fresh = None if breaks is None else np.asarray(breaks, dtype=bool)[:, :L].copy()
        if blocked is not None:
            blocked = np.asarray(blocked, dtype=bool)[:, :L]
            fresh = np.zeros_like(blocked) if fresh is None else fresh
            fresh[:, 1:] |= blocked[:, :-1]
        if (fresh is None or not fresh.any()) and (blocked is None or not blocked.any()):
            return emissions
        emissions = emissions.copy()
        if fresh is not None and fresh.any():
            at = emissions[fresh]  # [K, T]
            for begin, cont in self._pool:
                at[:, begin] = np.logaddexp(at[:, begin], at[:, cont])
            at[:, self.params.continues] += NEG
            emissions[fresh] = at
        if blocked is not None and blocked.any():
            emissions[blocked] += np.where(self._entity_tags, NEG, 0.0)
        return emissions


class LabelDecoder:
    """Softmax over class logits -> :class:`toolkit.results.Label` (a ``{"label", "score", "scores"}`` dict).

    :meth:`blank` is the answer for an input with nothing to classify (a blank text, a pair with a
    blank side): ``Label.blank()``, ``{"label": None, "score": None, "scores": {}}``, given without
    running the model.
    """

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    @staticmethod
    def blank() -> Label:
        """The explicit "nothing to classify" result (a new :class:`Label` each call)."""
        return Label.blank()

    def decode(self, logits: np.ndarray) -> list[Label]:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.size == 0:
            return []
        z = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)
        out = []
        for row in probs:
            best = int(row.argmax())
            out.append(Label(self.labels[best], round(float(row[best]), 6), {lab: round(float(p), 6) for lab, p in zip(self.labels, row)}))
        return out
