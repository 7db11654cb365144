"""Constrained CRF decoding and entity confidences in numpy (batched).

Training uses ``torchcrf.CRF`` (pytorch-crf); decoding lives here, in numpy, so that the PyTorch
and the ONNX Runtime paths share it. Invalid transitions (see :func:`toolkit.tags.transition_mask`)
get a score of ``-1e4``, so Viterbi can never return an invalid tag sequence.

Entity confidence: the CRF's probability that the entity is exactly there,
``P(y[s..e] = (B-X, I-X, ..., I-X) and y[e+1] does not continue it | x)``, computed from the
forward and backward log-potentials. It is ``1.0`` when the model is certain and falls when the
model hesitates over the boundaries or the type.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEG = -1e4


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))).squeeze(axis)


@dataclass(frozen=True)
class CRFParams:
    """The CRF's scores with the scheme's constraints folded in (``NEG`` where not allowed)."""

    trans: np.ndarray  # [T, T] score of prev -> next
    start: np.ndarray  # [T]
    end: np.ndarray  # [T]
    continues: np.ndarray  # [T] bool: tag continues an entity (I-/M-/E-)

    @classmethod
    def build(cls, trans, start, end, allowed, allowed_start, allowed_end, continues) -> "CRFParams":
        f = lambda a: np.asarray(a, dtype=np.float64)  # noqa: E731
        return cls(
            np.where(allowed, f(trans), NEG),
            np.where(allowed_start, f(start), NEG),
            np.where(allowed_end, f(end), NEG),
            np.asarray(continues, dtype=bool),
        )


def viterbi(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> list[np.ndarray]:
    """Best tag path for each sequence of a padded batch ``emissions[B, L, T]``."""
    emissions = np.asarray(emissions, dtype=np.float64)
    B, L, T = emissions.shape
    lengths = np.asarray(lengths)
    score = p.start[None] + emissions[:, 0]
    history = np.zeros((B, max(L - 1, 0), T), dtype=np.int64)
    for t in range(1, L):
        cand = score[:, :, None] + p.trans[None]  # [B, prev, next]
        best = cand.argmax(axis=1)
        new = np.take_along_axis(cand, best[:, None, :], axis=1)[:, 0] + emissions[:, t]
        active = (t < lengths)[:, None]
        score = np.where(active, new, score)
        history[:, t - 1] = best
    score = score + p.end[None]
    paths = []
    for b in range(B):
        n = int(lengths[b])
        if n == 0:
            paths.append(np.zeros(0, dtype=np.int64))
            continue
        tag = int(score[b].argmax())
        path = [tag]
        for t in range(n - 2, -1, -1):
            tag = int(history[b, t, tag])
            path.append(tag)
        paths.append(np.array(path[::-1], dtype=np.int64))
    return paths


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log alpha ``[B, L, T]`` (emission included), log beta ``[B, L, T]`` and log Z ``[B]``."""
    emissions = np.asarray(emissions, dtype=np.float64)
    B, L, T = emissions.shape
    lengths = np.asarray(lengths)
    alpha = np.full((B, L, T), NEG)
    beta = np.full((B, L, T), NEG)
    alpha[:, 0] = p.start[None] + emissions[:, 0]
    for t in range(1, L):
        alpha[:, t] = _logsumexp(alpha[:, t - 1, :, None] + p.trans[None], axis=1) + emissions[:, t]
    last = np.clip(lengths - 1, 0, None)
    beta[np.arange(B), last] = p.end[None]
    for t in range(L - 2, -1, -1):
        nxt = _logsumexp(p.trans[None] + (emissions[:, t + 1] + beta[:, t + 1])[:, None, :], axis=2)
        beta[:, t] = np.where((t < last)[:, None], nxt, beta[:, t])
    log_z = _logsumexp(alpha[np.arange(B), last] + p.end[None], axis=1)
    return alpha, beta, log_z


def span_log_prob(
    emissions: np.ndarray, alpha: np.ndarray, beta: np.ndarray, log_z: float, length: int, tags: np.ndarray, s: int, e: int, p: CRFParams
) -> float:
    """Log probability that tokens ``[s, e)`` carry exactly ``tags[s:e]`` and token ``e`` does not
    continue the entity (one sequence: ``emissions[L, T]``, ``alpha``/``beta`` likewise)."""
    y = tags
    if s == 0:
        score = p.start[y[s]]
    else:
        score = _logsumexp(alpha[s - 1] + p.trans[:, y[s]], axis=0)
    score += emissions[s, y[s]]
    for t in range(s + 1, e):
        score += p.trans[y[t - 1], y[t]] + emissions[t, y[t]]
    if e >= length:
        score += p.end[y[e - 1]]
    else:
        nxt = p.trans[y[e - 1]] + emissions[e] + beta[e]
        score += _logsumexp(np.where(p.continues, NEG, nxt), axis=0)
    return float(score - log_z)
