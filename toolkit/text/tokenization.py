"""Tokenisation with exact character offsets, and windows for texts longer than the model.

The tokenizer is the encoder folder's own Hugging Face *fast* tokenizer. For the project's
character-level Chinese vocabularies (and bert-base-chinese) that means one token per CJK
character, WordPiece for Latin letters and digits, ``[UNK]`` for anything unknown; offsets always
come from the tokenizer itself, so an unknown character never shifts them.

Offsets here are into the text the tokenizer saw (the *normalised* text); the pipeline maps them
back to the original string with :class:`toolkit.text.normalize.Normalized`.

Entity boundaries (:func:`entity_breaks`, :func:`symbol_tokens`): the tokenizer drops whitespace, so
``"发热\\n咳嗽"`` reaches the model as two adjacent tokens. The pipeline therefore tells the decoder
where an entity may not continue: across a line or paragraph break (``\\n``, ``\\r``, U+2028,
U+2029 ...), across whitespace between two Han characters (Chinese writes no spaces inside a name
or term; ``"New York"`` or ``"2 mg"`` may stay one entity), and through a symbol token (emoji,
pictographs: never part of an entity).

Example:
    >>> tok = TextTokenizer.from_pretrained("path/to/encoder")  # doctest: +SKIP
    >>> ids, offsets = tok.encode(["患者CT检查"])[0]  # doctest: +SKIP
    >>> offsets.tolist()  # doctest: +SKIP
    [[0, 1], [1, 2], [2, 4], [4, 5], [5, 6]]
"""
from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import ModelFileMissingError, ModelFolderError

logger = logging.getLogger(__name__)

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
SENTENCE_END = frozenset("。！？!?；;…\n")
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines() splits at
_LINE_BREAK = re.compile(f"[{re.escape(LINE_BREAKS)}]")
_SPACE = re.compile(r"\s")
_HAN = re.compile("[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
# Characters that may be symbols in the sense of :func:`is_symbol`; everything else (ASCII,
# Latin-1, letterlike symbols and number forms such as ℃ and Ⅱ, CJK punctuation, enclosed and
# compatibility CJK such as ㎎, Han, full-width forms) never is, so ordinary text is skipped fast.
_MAYBE_SYMBOL = re.compile("[^\x00-\xff\u2100-\u218f\u3000-\u303f\u3200-\u33ff\u3400-\u9fff\uf900-\ufaff\uff00-\uffef]")


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
        """Load the fast tokenizer saved in ``path`` (never downloads).

        A folder without ``tokenizer.json`` or a vocabulary file is refused (``transformers`` would
        build an empty tokenizer that turns every character into ``[UNK]``), and so is a tokenizer
        with nothing but special tokens.
        """
        from transformers import AutoTokenizer

        folder = Path(path)
        if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ModelFileMissingError(f"{folder / 'tokenizer.json'} is missing: without it (or a vocab.txt) every "
                                        "character would become [UNK]; copy the encoder folder again or re-save the model")
        tokenizer = cls(AutoTokenizer.from_pretrained(str(path), use_fast=True, local_files_only=True))
        if len(tokenizer) <= len(tokenizer.hf.all_special_ids):
            raise ModelFolderError(f"the tokenizer in {path} has {len(tokenizer)} tokens, only special ones: its "
                                   "tokenizer.json or vocab.txt is empty or damaged; restore it from a good copy")
        return tokenizer

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


def is_symbol(ch: str) -> bool:
    """True for an emoji, pictograph or other non-text symbol: never part of an entity.

    That is Unicode category ``So``/``Sk`` (other / modifier symbols: 😷, ✈, skin tones), ``Co``
    (private use) or ``Cs`` (surrogates), outside the blocks where symbols belong to terms
    (Latin-1 ``°``, letterlike ``℃``, CJK compatibility ``㎎`` ...; see ``_MAYBE_SYMBOL``).
    """
    return bool(_MAYBE_SYMBOL.match(ch)) and unicodedata.category(ch) in ("So", "Sk", "Co", "Cs")


def _count_before(text: str, pattern: re.Pattern, keep=None) -> np.ndarray:
    """``c[k]`` = how many characters of ``text[:k]`` match ``pattern`` (and ``keep``)."""
    marks = np.zeros(len(text) + 1, dtype=np.int64)
    hits = [m.start() for m in pattern.finditer(text) if keep is None or keep(m.group())]
    if hits:
        marks[np.asarray(hits) + 1] = 1
    return np.cumsum(marks)


def entity_breaks(norm, offsets: np.ndarray) -> np.ndarray:
    """``[n_tokens]`` bool: True where no entity may continue from token ``i - 1`` into token ``i``.

    ``norm`` is the :class:`toolkit.text.normalize.Normalized` text that the tokenizer saw and
    ``offsets`` the tokens' offsets into ``norm.text``. The gap between two tokens is read in the
    ORIGINAL text (normalisation turns ``\\r`` and U+2028 into spaces and drops ``\\v``): it breaks
    when it holds a line break (:data:`LINE_BREAKS`), or whitespace with a Han character on both
    sides. Text without whitespace costs one regex search.

    >>> from toolkit.text.normalize import Normalizer
    >>> n = Normalizer()("头痛 发热\\nNew York")
    >>> entity_breaks(n, np.array([[0, 1], [1, 2], [3, 4], [4, 5], [6, 9], [10, 14]])).tolist()
    [False, False, True, False, True, False]
    """
    breaks = np.zeros(len(offsets), dtype=bool)
    if len(offsets) < 2 or not _SPACE.search(norm.original):
        return breaks
    gap_start = norm.ends[offsets[:-1, 1] - 1]  # original index just after the previous token
    gap_end = norm.starts[offsets[1:, 0]]  # original index of the token
    lines = _count_before(norm.original, _LINE_BREAK)
    spaces = _count_before(norm.original, _SPACE)
    breaks[1:] = lines[gap_end] > lines[gap_start]
    spaced = np.flatnonzero((spaces[gap_end] > spaces[gap_start]) & ~breaks[1:]) + 1
    text = norm.text
    for i in spaced:
        if _HAN.match(text[offsets[i - 1, 1] - 1]) and _HAN.match(text[offsets[i, 0]]):
            breaks[i] = True
    return breaks


def symbol_tokens(text: str, offsets: np.ndarray) -> np.ndarray:
    """``[n_tokens]`` bool: tokens made of symbols only (:func:`is_symbol`), e.g. ``[UNK]`` for 😷😷."""
    if not _MAYBE_SYMBOL.search(text):
        return np.zeros(len(offsets), dtype=bool)
    count = _count_before(text, _MAYBE_SYMBOL, is_symbol)
    return (count[offsets[:, 1]] - count[offsets[:, 0]]) == (offsets[:, 1] - offsets[:, 0])


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
