"""The character-level vocabulary of the base encoder, chosen from the E5S1 pieces.

Each token starts from the mean of its E5S1 rows (see :func:`plan_vocabulary`):
specials from ``<pad> <unk> <s> </s> <mask>``; text first goes through e5's normalisation map
(``，`` -> ``,``); isolated tokens (CJK, punctuation) take the piece without U+2581 (CHIP-STS train
AUC 0.783 vs 0.778 with the ``▁`` piece, 600 pairs); ``x`` takes ``▁x``, ``##x`` takes ``x``; a CJK
character without a piece of its own takes the mean of the pieces containing it; plus the
``latin_pieces`` best-scored ASCII wordpieces.

:func:`is_cjk_char` and :func:`is_split_char` say which characters the BERT pre-tokenizer isolates.

Example:
    >>> plan = plan_vocabulary(read_e5s1("e5-small-q4.bin"))      # doctest: +SKIP
    >>> plan.entries[5].token, plan.counts["cjk_piece"]           # doctest: +SKIP
    ('!', 7690)
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .e5s1 import E5S1, META, E5S1Error

DEFAULT_LATIN_PIECES = 3000
SPECIAL_TOKENS = (("[PAD]", "<pad>"), ("[UNK]", "<unk>"), ("[CLS]", "<s>"), ("[SEP]", "</s>"), ("[MASK]", "<mask>"))

# Ranges that tokenizers' BertNormalizer(handle_chinese_chars=True) isolates (note 2B920, not 2B820).
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
# Non-ideograph blocks seen in Chinese text: Latin-1/Extended (pinyin), Greek, punctuation, letterlike,
# number forms, maths, symbols, radicals, CJK symbols, kana, CJK compatibility, full/half-width forms.
SYMBOL_BLOCKS = ((0xA1, 0x24F), (0x370, 0x3FF), (0x2010, 0x205E), (0x2070, 0x20CF), (0x2100, 0x23FF),
                 (0x2460, 0x27BF), (0x2E80, 0x2FDF), (0x3000, 0x33FF), (0xFE10, 0xFE1F), (0xFE30, 0xFE6F),
                 (0xFF01, 0xFFEF))
_SKIP_CATEGORIES = ("Cc", "Cf", "Cn", "Co", "Cs", "Zs", "Zl", "Zp", "Mn", "Mc", "Me")
_LATIN = re.compile(f"{META}?[A-Za-z0-9]{{2,}}")


def is_cjk_char(ch: str) -> bool:
    """True if the BERT tokenizer puts ``ch`` in a token of its own (a CJK ideograph).

    >>> is_cjk_char("中"), is_cjk_char("，"), is_cjk_char("a")
    (True, False, False)
    """
    cp = ord(ch)
    return any(a <= cp <= b for a, b in _CJK_RANGES)


def is_split_char(ch: str) -> bool:
    """True if ``BertPreTokenizer`` isolates ``ch`` (punctuation), so no ``##`` form is needed.

    >>> is_split_char("，"), is_split_char("℃")
    (True, False)
    """
    return (ch.isascii() and not ch.isalnum() and ch.isprintable()) or unicodedata.category(ch).startswith("P")


@dataclass(frozen=True)
class VocabEntry:
    """One token of the new vocabulary and the E5S1 rows whose mean initialises it."""

    token: str
    kind: str
    rows: tuple[int, ...]


class _RowFinder:
    """Resolves a text to E5S1 piece ids the way e5.c would see it inside a sentence."""

    def __init__(self, model: E5S1) -> None:
        self.m = model
        self.tok = model.sentencepiece_tokenizer()
        self.specials = {model.bos_id, model.eos_id, model.pad_id, model.unk_id, model.mask_id}

    def piece(self, text: str) -> int | None:
        i = self.m.piece_to_id.get(text)
        return None if i is None or i in self.specials else i

    def rows(self, text: str, *, initial: bool) -> tuple[int, ...] | None:
        norm = self.m.normalize(text)
        if not norm or " " in norm:
            return None
        order = (META + norm, norm) if initial else (norm, META + norm)
        for cand in order:
            i = self.piece(cand)
            if i is not None:
                return (i,)
        ids = [t.id for t in self.tok.model.tokenize((META if initial else "") + norm)]
        if initial and len(ids) > 1 and self.m.pieces[ids[0]] == META:
            ids = ids[1:]  # a bare word-start marker carries no meaning of the character
        if not ids or self.m.unk_id in ids:
            return None
        return tuple(ids)


KINDS = ("special", "ascii", "ascii_continuation", "symbol", "symbol_continuation", "symbol_normalized",
         "symbol_normalized_continuation", "cjk_piece", "cjk_contained", "cjk_normalized",
         "cjk_normalized_continuation", "extra", "latin_initial", "latin_continuation")


@dataclass
class VocabPlan:
    """The chosen vocabulary: ``entries`` in id order, ``counts`` per kind (they sum to the
    vocabulary size) and informational ``stats``."""

    entries: list[VocabEntry]
    counts: dict[str, int]
    stats: dict[str, int]


def plan_vocabulary(
    model: E5S1,
    *,
    latin_pieces: int = DEFAULT_LATIN_PIECES,
    single_char_form: Literal["bare", "meta"] = "bare",
    extra_chars: str = "",
) -> VocabPlan:
    """Choose the character-level vocabulary and each token's source rows (see module docstring).

    Rule for a CJK character without a piece, measured on 1,500 characters that have one: the
    mean of the pieces containing it is 0.37 cosine from its own row (mean CJK row 0.28, <unk> 0.04).

    Example:
        >>> plan = plan_vocabulary(read_e5s1("e5-small-q4.bin"))      # doctest: +SKIP
        >>> plan.entries[5].token, plan.counts["cjk_piece"]           # doctest: +SKIP
        ('!', 7690)
    """
    if single_char_form not in ("bare", "meta"):
        raise ValueError(f"single_char_form must be 'bare' or 'meta', got {single_char_form!r}")
    rf = _RowFinder(model)
    isolated_initial = single_char_form == "meta"
    entries: list[VocabEntry] = []
    seen: set[str] = set()
    counts: dict[str, int] = dict.fromkeys(KINDS, 0)
    stats: Counter[str] = Counter()

    def add(token: str, kind: str, rows: tuple[int, ...]) -> None:
        if token in seen:
            return
        seen.add(token)
        entries.append(VocabEntry(token, kind, rows))
        counts[kind] += 1
        if len(rows) > 1 and kind not in ("cjk_contained", "extra"):
            stats["normalized_to_several_pieces"] += 1

    for tok, piece in SPECIAL_TOKENS:
        if piece not in model.piece_to_id:
            raise E5S1Error(f"special piece {piece!r} missing from the E5S1 vocabulary")
        add(tok, "special", (model.piece_to_id[piece],))

    def add_char(ch: str, kind: str) -> bool:
        """Add ``ch`` (and ``##ch`` unless the pre-tokenizer isolates it); False if unusable."""
        if is_split_char(ch) or is_cjk_char(ch):
            rows = rf.rows(ch, initial=isolated_initial)
            if rows is not None:
                add(ch, kind, rows)
            return rows is not None
        first, cont = rf.rows(ch, initial=True), rf.rows(ch, initial=False)
        if first is None or cont is None:
            return False
        add(ch, kind, first)
        add("##" + ch, kind + "_continuation", cont)
        return True

    for cp in range(0x21, 0x7F):
        if not add_char(chr(cp), "ascii"):
            raise E5S1Error(f"ASCII character {chr(cp)!r} has no E5S1 piece; the vocabulary is not XLM-R's")
    for a, b in SYMBOL_BLOCKS:
        for cp in range(a, b + 1):
            ch = chr(cp)
            if unicodedata.category(ch) in _SKIP_CATEGORIES or is_cjk_char(ch):
                continue
            own = rf.piece(ch) is not None or rf.piece(META + ch) is not None
            norm = model.normalize(ch)
            if (norm == ch and not own) or (norm != ch and (len(norm) > 4 or not norm.strip())):
                continue
            if not add_char(ch, "symbol" if norm == ch else "symbol_normalized"):
                stats["symbol_without_usable_piece"] += 1

    # CJK ideographs: single pieces (with or without U+2581), then characters seen only inside
    # multi-character pieces, then compatibility ideographs via the normalisation map.
    single: set[str] = set()
    containing: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(model.pieces):
        s = p[1:] if p.startswith(META) else p
        if i in rf.specials or not s:
            continue
        if len(s) == 1 and is_cjk_char(s):
            single.add(s)
        elif len(s) > 1:
            for ch in sorted(set(s)):
                if is_cjk_char(ch):
                    containing[ch].append(i)
    stats["multi_char_cjk_pieces"] = sum(
        1 for p in model.pieces if len(p.lstrip(META)) > 1 and all(map(is_cjk_char, p.lstrip(META))))
    for ch in sorted(single):
        if ord(ch) in model.norm_map:
            continue
        forms = ("bare" if rf.piece(ch) is not None else "") + ("meta" if rf.piece(META + ch) is not None else "")
        stats[f"cjk_piece_forms_{forms}"] += 1
        add_char(ch, "cjk_piece")
    for ch in sorted(set(containing) - single):
        if ord(ch) not in model.norm_map:
            add(ch, "cjk_contained", tuple(containing[ch]))
    for cp in [c for a, b in _CJK_RANGES for c in range(a, b + 1) if c in model.norm_map]:
        norm = model.normalize(chr(cp))
        if len(norm) == 1 and norm in seen:
            add_char(chr(cp), "cjk_normalized")

    cjk_rows = tuple(sorted({e.rows[0] for e in entries if e.kind == "cjk_piece"}))
    for ch in sorted(set(extra_chars)):
        if ch.strip() and ch not in seen:
            add(ch, "extra", tuple(containing.get(ch, ())) or cjk_rows)

    order = sorted((i for i, p in enumerate(model.pieces) if _LATIN.fullmatch(p)),
                   key=lambda i: (-float(model.scores[i]), i))
    stats["ascii_wordpieces_available"] = len(order)
    n_latin = 0
    for i in order:
        if n_latin >= latin_pieces:
            break
        p = model.pieces[i]
        token = p[1:] if p.startswith(META) else "##" + p
        if token not in seen:
            add(token, "latin_initial" if p.startswith(META) else "latin_continuation", (i,))
            n_latin += 1
    return VocabPlan(entries, counts, dict(sorted(stats.items())))


def embedding_matrix(model: E5S1, entries: list[VocabEntry]) -> np.ndarray:
    """Initial word embeddings ``[len(entries), hidden]`` (mean of each entry's rows), float32."""
    flat = sorted({r for e in entries for r in e.rows})
    pos = {r: k for k, r in enumerate(flat)}
    rows = model.word_rows(flat)
    out = np.empty((len(entries), model.header.hidden_size), dtype=np.float32)
    for k, e in enumerate(entries):
        out[k] = rows[[pos[r] for r in e.rows]].mean(axis=0)
    return out

