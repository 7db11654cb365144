"""Text to model input, the one way: used by the pipelines at inference AND by training features.

* :func:`encode_texts`: normalise (keeping the map to the original), tokenise with offsets in one
  call of the Rust tokenizer, and cut long texts into windows (:func:`toolkit.text.tokenization.make_windows`
  at sentence ends; overlapping windows at inference, disjoint ones for training).
* :func:`encode_pairs`: ``[CLS] a [SEP] b [SEP]`` with segments, truncated longest-first.
* :func:`pad_batch`: the one padder: sequences (and segments) to a padded numpy batch.

The special-token convention (``[CLS] ... [SEP]``, pair segments) is the tokenizer's
(:meth:`toolkit.text.tokenization.TextTokenizer.with_specials` and ``.pair``); nothing else writes it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np

from .normalize import Normalized, Normalizer
from .tokenization import TextTokenizer, Window, make_windows, sentence_breaks, token_types


class Encoded(NamedTuple):
    """One text, encoded: ``norm`` (normalised text + map to the original), ``ids`` and ``offsets``
    (``[n_tokens, 2]`` into ``norm.text``) without specials, and its ``windows`` as
    ``(window, ids with [CLS]/[SEP])``."""

    norm: Normalized
    ids: np.ndarray
    offsets: np.ndarray
    windows: list[tuple[Window, np.ndarray]]


def encode_texts(texts: Sequence[str], normalizer: Normalizer, tokenizer: TextTokenizer, max_length: int, overlap: bool = True) -> list[Encoded]:
    """Normalise, tokenise and window ``texts``. ``overlap=False`` gives disjoint windows (training:
    no token is learnt twice); the default overlaps them by a quarter (inference: entities cut by a
    window edge are completed by the next window)."""
    norms = [normalizer(t) for t in texts]
    max_tokens = max_length - 2
    out = []
    for norm, (ids, offsets) in zip(norms, tokenizer.encode([n.text for n in norms])):
        cuts = sentence_breaks(norm.text, offsets) if len(ids) > max_tokens else ()
        windows = make_windows(len(ids), max_tokens, cuts, stride=None if overlap else 0)
        out.append(Encoded(norm, ids, offsets, [(w, tokenizer.with_specials(ids[w.start : w.end])) for w in windows]))
    return out


def to_normalized_span(norm: Normalized, start: int, end: int) -> tuple[int, int]:
    """Original ``[start, end)`` -> normalised offsets (characters removed by normalisation drop out)."""
    s = int(np.searchsorted(norm.starts, start, side="left"))
    e = int(np.searchsorted(norm.ends, end, side="right"))
    return s, e


def encode_pairs(pairs: Sequence[tuple[str, str]], normalizer: Normalizer, tokenizer: TextTokenizer, max_length: int) -> list[tuple[np.ndarray, np.ndarray, bool]]:
    """``(ids, segments, blank)`` per pair; ``blank``: a side has no tokens (not run through the model)."""
    encoded = tokenizer.encode([normalizer(x).text for pair in pairs for x in pair])
    out = []
    for i in range(len(pairs)):
        a, b = encoded[2 * i][0], encoded[2 * i + 1][0]
        out.append((*tokenizer.pair(a, b, max_length), not (len(a) and len(b))))
    return out


@dataclass
class Padded:
    """A padded batch: ``arrays`` (``input_ids``, ``attention_mask``, ``token_type_ids`` and, when
    asked, ``segments``; int64 ``[B, L]``) and each row's length."""

    arrays: dict[str, np.ndarray]
    lengths: np.ndarray


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int, segments: Sequence[np.ndarray | None] | None = None, with_segments: bool = False) -> Padded:
    """Pad ``sequences`` (ids with specials) to the longest; ``segments`` per row (or ``None``)
    fill ``segments`` and the BERT token types (:func:`~toolkit.text.tokenization.token_types`).

    >>> pad_batch([np.array([1, 5, 2]), np.array([1, 2])], 0).arrays["input_ids"].tolist()
    [[1, 5, 2], [1, 2, 0]]
    """
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    n, width = len(sequences), int(lengths.max()) if len(sequences) else 0
    ids = np.full((n, width), pad_id, dtype=np.int64)
    mask = np.zeros((n, width), dtype=np.int64)
    types = np.zeros((n, width), dtype=np.int64)
    segs = np.zeros((n, width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        k = len(seq)
        ids[row, :k] = seq
        mask[row, :k] = 1
        seg = segments[row] if segments is not None else None
        if seg is not None:
            segs[row, :k] = seg
            types[row, :k] = token_types(seg)
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    if with_segments:
        arrays["segments"] = segs
    return Padded(arrays, lengths)
