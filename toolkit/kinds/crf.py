"""Constrained CRF decoding and entity confidences in numpy (batched).

Training uses ``torchcrf.CRF`` (pytorch-crf); decoding lives here, in numpy, so that the PyTorch
and the ONNX Runtime paths share it. Invalid transitions (see :func:`toolkit.text.tags.transition_mask`)
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
_TINY = 1e-300  # log(_TINY) ~ -690: "impossible" in the scaled recursions (exp underflows to 0 anyway)


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
    paths = viterbi_padded(emissions, lengths, p)
    return [paths[b, : int(n)] for b, n in enumerate(np.asarray(lengths))]


def viterbi_padded(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> np.ndarray:
    """:func:`viterbi` as one ``[B, L]`` array (positions past a sequence's length hold tag 0)."""
    emissions = np.asarray(emissions, dtype=np.float64)
    B, L, T = emissions.shape
    lengths = np.asarray(lengths)
    score = p.start[None] + emissions[:, 0]
    history = np.zeros((B, max(L - 1, 0), T), dtype=np.int64)
    for t in range(1, L):
        cand = score[:, :, None] + p.trans[None]  # [B, prev, next]
        history[:, t - 1] = cand.argmax(axis=1)
        new = cand.max(axis=1) + emissions[:, t]
        score = np.where((t < lengths)[:, None], new, score)
    last = np.clip(lengths - 1, 0, None)
    rows = np.arange(B)
    tag = (score + p.end[None]).argmax(axis=1)
    paths = np.zeros((B, L), dtype=np.int64)
    paths[rows, last] = tag
    for t in range(L - 2, -1, -1):  # backtrack every row at once; rows not started yet keep their last tag
        inside = t < last
        tag = np.where(inside, history[rows, t, tag], tag)
        paths[:, t] = np.where(inside, tag, paths[:, t])
    return paths


def forward_backward(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log alpha ``[B, L, T]`` (emission included), log beta ``[B, L, T]`` and log Z ``[B]``.

    The recursions run in probability space, rescaled at every step (one ``[B, T] @ [T, T]``
    product per position instead of a ``[B, T, T]`` log-sum-exp: about 4x faster); forbidden
    transitions have probability exactly 0. Should a step underflow (emissions hundreds of nats
    apart), the batch is redone in log space.
    """
    emissions = np.asarray(emissions, dtype=np.float64)
    lengths = np.asarray(lengths)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scaled = _forward_backward_scaled(emissions, lengths, p)
    return scaled if scaled is not None else _forward_backward_log(emissions, lengths, p)


def _forward_backward_scaled(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    B, L, T = emissions.shape
    last = np.clip(lengths - 1, 0, None)
    steps = np.arange(L)
    shift = emissions.max(axis=2)  # [B, L]
    probs = np.exp(emissions - shift[:, :, None])  # [B, L, T], each row's best tag has 1
    top = p.trans.max()
    move = np.exp(p.trans - top)  # [T, T]; forbidden -> 0
    # forward: alpha_t = (alpha_{t-1} @ move) * probs_t, rescaled to sum 1; the logs of the scales go to `norms`
    alpha = np.empty((B, L, T))
    norms = np.empty((B, L))
    a = np.exp(p.start - p.start.max())[None] * probs[:, 0]
    for t in range(L):
        if t:
            a = (a @ move) * probs[:, t]
        norm = a.sum(axis=1, keepdims=True)
        a = a / norm
        alpha[:, t] = a
        norms[:, t] = norm[:, 0]
    log_norms = np.log(norms)
    offset = p.start.max() + np.cumsum(log_norms + shift, axis=1) + steps * top  # [B, L]
    alpha = np.log(np.maximum(alpha, _TINY)) + offset[:, :, None]
    # backward from each row's last token: beta_t = move @ (probs_{t+1} * beta_{t+1}), rescaled likewise
    beta = np.empty((B, L, T))
    back = np.ones((B, L))
    end = np.exp(p.end - p.end.max())[None]
    b = np.zeros((B, T))
    for t in range(L - 1, -1, -1):
        if t < L - 1:
            b = (probs[:, t + 1] * b) @ move.T
        b = np.where((t == last)[:, None], end, b)
        norm = np.where(t <= last, b.sum(axis=1), 1.0)[:, None]
        b = b / norm
        beta[:, t] = b
        back[:, t] = norm[:, 0]
    live = steps[None] <= last[:, None]  # [B, L]
    if not (np.isfinite(log_norms).all() and (back[live] > 0).all() and np.isfinite(back).all()):
        return None
    grow = np.where(live, np.log(back) + np.where(steps[None] == last[:, None], p.end.max(), top + np.roll(shift, -1, axis=1)), 0.0)
    offset = np.cumsum(grow[:, ::-1], axis=1)[:, ::-1]  # sum over k >= t
    beta = np.where(live[:, :, None], np.log(np.maximum(beta, _TINY)) + offset[:, :, None], NEG)
    log_z = _logsumexp(alpha[np.arange(B), last] + p.end[None], axis=1)
    return alpha, beta, log_z


def _forward_backward_log(emissions: np.ndarray, lengths: np.ndarray, p: CRFParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    B, L, T = emissions.shape
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


def span_log_probs(
    emissions: np.ndarray, alpha: np.ndarray, beta: np.ndarray, log_z: np.ndarray, lengths: np.ndarray, paths: np.ndarray,
    rows: np.ndarray, starts: np.ndarray, ends: np.ndarray, p: CRFParams,
) -> np.ndarray:
    """Log probability of each entity ``k`` of a batch: that tokens ``[starts[k], ends[k])`` of
    sequence ``rows[k]`` carry exactly ``paths[rows[k]]``'s tags and the next token does not continue
    the entity. ``emissions``/``alpha``/``beta`` are ``[B, L, T]``, ``paths`` ``[B, L]`` (padded).
    All entities at once: no Python loop over entities or tokens."""
    rows, starts, ends = (np.asarray(x, dtype=np.int64) for x in (rows, starts, ends))
    if rows.size == 0:
        return np.zeros(0)
    B, L, _ = emissions.shape
    every = np.arange(B)[:, None]
    unary = emissions[every, np.arange(L)[None], paths]  # [B, L] score of the path's tag
    pair = np.zeros((B, L))
    pair[:, 1:] = p.trans[paths[:, :-1], paths[:, 1:]]
    inner = np.cumsum(unary + pair, axis=1)  # inner[e-1] - inner[s] + unary[s] = the span's own score
    first = paths[rows, starts]
    score = inner[rows, ends - 1] - inner[rows, starts] + unary[rows, starts]
    prev = np.maximum(starts - 1, 0)
    enter = _logsumexp(alpha[rows, prev] + p.trans[:, first].T, axis=1)
    score += np.where(starts == 0, p.start[first], enter)
    last_tag = paths[rows, ends - 1]
    after = np.minimum(ends, L - 1)
    nxt = p.trans[last_tag] + emissions[rows, after] + beta[rows, after]
    leave = _logsumexp(np.where(p.continues[None], NEG, nxt), axis=1)
    score += np.where(ends >= np.asarray(lengths)[rows], p.end[last_tag], leave)
    return score - np.asarray(log_z)[rows]
