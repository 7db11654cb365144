"""Tokenisation with exact character offsets, and windows for texts longer than the model.

The tokenizer is the encoder folder's own Hugging Face *fast* tokenizer. For the project's
character-level Chinese vocabularies (and bert-base-chinese) that means one token per CJK
character, WordPiece for Latin letters and digits, ``[UNK]`` for anything unknown; offsets always
come from the tokenizer itself, so an unknown character never shifts them.

Offsets here are into the text the tokenizer saw (the *normalised* text); the pipeline maps them
back to the original string with :class:`toolkit.normalize.Normalized`.

Example:
    >>> tok = TextTokenizer.from_pretrained("path/to/encoder")  # doctest: +SKIP
    >>> ids, offsets = tok.encode(["患者CT检查"])[0]  # doctest: +SKIP
    >>> offsets.tolist()  # doctest: +SKIP
    [[0, 1], [1, 2], [2, 4], [4, 5], [5, 6]]
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

SENTENCE_END = frozenset("。！？!?；;…\n")


@dataclass(frozen=True)
class Window:
    """Tokens ``[start, end)`` of a text fed to the model as one sequence.

    Entities are kept only from the window that *owns* their first token (``[own_start,
    own_end)``); owned ranges partition the text, so overlapping windows never duplicate an entity.
    """

    start: int
    end: int
    own_start: int
    own_end: int


class TextTokenizer:
    """A thin, thread-safe wrapper over a Hugging Face fast tokenizer.

    Only ``encode_batch`` of the Rust backend is used, without padding or truncation settings
    (changing those from several threads at once is what makes HF tokenizers raise
    ``Already borrowed``); special tokens, truncation and windows are done here.
    """

    def __init__(self, hf_tokenizer) -> None:
        if not getattr(hf_tokenizer, "is_fast", False):
            raise ValueError(
                "the encoder's tokenizer must be a fast (Rust) tokenizer with offset mapping; "
                "save it with tokenizer.json (e.g. BertTokenizerFast.save_pretrained)"
            )
        self.hf = hf_tokenizer
        self._backend = hf_tokenizer.backend_tokenizer
        self.cls_id = _special_id(hf_tokenizer, "cls_token", "bos_token")
        self.sep_id = _special_id(hf_tokenizer, "sep_token", "eos_token")
        self.pad_id = _special_id(hf_tokenizer, "pad_token")
        self.unk_id = hf_tokenizer.unk_token_id

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "TextTokenizer":
        """Load the fast tokenizer saved in ``path`` (never downloads)."""
        from transformers import AutoTokenizer

        return cls(AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True))

    def save(self, path: str | Path) -> None:
        self.hf.save_pretrained(str(path))

    def __len__(self) -> int:
        return len(self.hf)

    def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Token ids and ``[start, end)`` character offsets of each text, without special tokens."""
        if not texts:
            return []
        encodings = self._backend.encode_batch(list(texts), add_special_tokens=False)
        out = []
        for enc in encodings:
            ids = np.asarray(enc.ids, dtype=np.int64)
            offsets = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)
            keep = offsets[:, 1] > offsets[:, 0]  # drop zero-width artefacts of some tokenizers
            out.append((ids[keep], offsets[keep]) if not keep.all() else (ids, offsets))
        return out

    def with_specials(self, ids: np.ndarray) -> np.ndarray:
        """``[CLS] ids [SEP]``."""
        return np.concatenate([[self.cls_id], ids, [self.sep_id]]).astype(np.int64)

    def pair(self, a: np.ndarray, b: np.ndarray, max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """``[CLS] a [SEP] b [SEP]`` and its segments (1 on a's tokens, 2 on b's, 0 on specials),
        truncated longest-first to ``max_length``."""
        if max_length < 3:
            raise ValueError(f"max_length {max_length} leaves no room for [CLS] a [SEP] b [SEP]; use at least 3")
        budget = max_length - 3
        la, lb = len(a), len(b)
        while la + lb > budget:
            if la >= lb:
                la -= 1
            else:
                lb -= 1
        ids = np.concatenate([[self.cls_id], a[:la], [self.sep_id], b[:lb], [self.sep_id]]).astype(np.int64)
        segments = np.concatenate([[0], np.ones(la, np.int64), [0], np.full(lb, 2, np.int64), [0]]).astype(np.int64)
        return ids, segments


def token_types(segments: np.ndarray) -> np.ndarray:
    """BERT token-type ids of one pair from its segments: 0 up to the first ``[SEP]``, 1 after it."""
    types = np.zeros(len(segments), dtype=np.int64)
    first_sep = 1 + int(np.argmax(segments[1:] == 0))
    types[first_sep + 1 :] = 1
    return types


def _special_id(tok, *names: str) -> int:
    for name in names:
        value = getattr(tok, f"{name}_id", None)
        if value is not None:
            return int(value)
    raise ValueError(f"the tokenizer defines none of {names}; a BERT-family tokenizer needs [CLS]/[SEP]/[PAD]")


def sentence_breaks(text: str, offsets: np.ndarray) -> list[int]:
    """Token indices after which a sentence ends (sentence punctuation or a line break)."""
    breaks = []
    n = len(offsets)
    for i in range(n - 1):
        end, nxt = int(offsets[i, 1]), int(offsets[i + 1, 0])
        if text[end - 1] in SENTENCE_END or "\n" in text[end:nxt]:
            breaks.append(i + 1)
    return breaks


def make_windows(n_tokens: int, max_tokens: int, breaks: Iterable[int] = (), stride: int | None = None) -> list[Window]:
    """Cover ``n_tokens`` tokens with windows of at most ``max_tokens``.

    Sentences (split at ``breaks``) are packed greedily into windows; a sentence longer than
    ``max_tokens`` gets sliding windows overlapping by ``stride`` tokens (default a quarter of
    ``max_tokens``), each owning the tokens up to the middle of its overlaps.

    >>> [(w.start, w.end) for w in make_windows(10, 4, breaks=[3, 6])]
    [(0, 3), (3, 6), (6, 10)]
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if n_tokens <= max_tokens:
        return [Window(0, n_tokens, 0, n_tokens)]
    stride = max_tokens // 4 if stride is None else stride
    stride = min(stride, max_tokens - 1)
    bounds = [0, *sorted(b for b in set(breaks) if 0 < b < n_tokens), n_tokens]
    windows: list[Window] = []
    start = 0
    for left, right in zip(bounds, bounds[1:]):
        if right - start <= max_tokens:
            continue  # this sentence still fits in the window being packed
        if left > start:
            windows.append(Window(start, left, start, left))
            start = left
        if right - start > max_tokens:  # one sentence longer than a window
            windows.extend(_sliding(start, right, max_tokens, stride))
            start = right
    if start < n_tokens:
        windows.append(Window(start, n_tokens, start, n_tokens))
    return windows


def _sliding(start: int, end: int, size: int, overlap: int) -> list[Window]:
    step = size - overlap
    spans = []
    s = start
    while True:
        e = min(s + size, end)
        spans.append((s, e))
        if e == end:
            break
        s += step
    windows = []
    for i, (s, e) in enumerate(spans):
        own_s = start if i == 0 else (s + spans[i - 1][1]) // 2
        own_e = end if i == len(spans) - 1 else (spans[i + 1][0] + e) // 2
        windows.append(Window(s, e, own_s, own_e))
    return windows


def align_spans(offsets: np.ndarray, spans: Iterable[tuple[int, int, str]]) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, str]]]:
    """Character spans -> token spans; returns ``(aligned, misaligned)``.

    A span is misaligned when its start or end falls inside a token (e.g. an entity that covers
    part of a Latin word piece); callers count and report those.
    """
    by_start = {int(s): i for i, s in enumerate(offsets[:, 0])}
    by_end = {int(e): i for i, e in enumerate(offsets[:, 1])}
    aligned, misaligned = [], []
    for start, end, label in spans:
        ts, te = by_start.get(start), by_end.get(end)
        if ts is None or te is None or te < ts:
            misaligned.append((start, end, label))
        else:
            aligned.append((ts, te + 1, label))
    return aligned, misaligned
