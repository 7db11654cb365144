"""What a model's tokenizer lacks on a corpus: ``[UNK]`` rates, unknown characters, domain terms,
entity boundaries that fall inside added (multi-character) tokens, and which pieces of the old
tokenizer stand in for a new item (:class:`toolkit.vocab.sources.EmbeddingSources`).

Everything here works on the text the model sees: the model's own normalisation first
(:class:`toolkit.text.normalize.Normalizer`: traditional -> simplified, full-width -> half-width ...),
then its tokenizer. A traditional character that OpenCC maps to a known simplified one is therefore
*not* unknown. :mod:`toolkit.vocab.extend` uses these functions to extend a model folder's vocabulary.

Example:
    >>> tok = TextTokenizer.from_pretrained("model/encoder")                     # doctest: +SKIP
    >>> unk_rate(["患者服用5㎎"], tok, Normalizer()).char_rate                     # doctest: +SKIP
    0.3333333333333333
    >>> chars, stats = find_new_characters(["患者服用5㎎"], tok, Normalizer())      # doctest: +SKIP
    >>> chars[0]                                                                 # doctest: +SKIP
    NewCharacter(char='㎎', entries=('㎎', '##㎎'), count=1)
"""
from __future__ import annotations

import logging
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Sequence

from ..bases.vocabulary import is_cjk_char, is_split_char
from ..data.examples import NerExample, PairExample, TextExample
from ..text.normalize import Normalizer
from ..text.tokenization import TextTokenizer, align_spans

logger = logging.getLogger(__name__)

# Characters never worth a vocabulary entry: controls, format characters, surrogates, private use
# (their meaning differs between fonts and sources), unassigned code points.
SKIP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Term mining defaults (see mine_terms).
MIN_TERM_COUNT = 20
MAX_TERMS = 500
TERM_LENGTH = (2, 8)


# ------------------------------------------------------------------ corpus
def read_corpus(paths: Iterable[str | Path], format: str | None = None) -> tuple[list[str], list[NerExample]]:
    """Texts of corpus files, and the NER examples among them.

    Without ``format`` each file is plain UTF-8 text, one text per line (blank lines skipped).
    With ``format`` the files go through :func:`toolkit.data.readers.read` (``cmeee``,
    ``json-spans``, ``table-cls`` ...); a pair example gives both texts.

    Example:
        >>> texts, ner = read_corpus(["notes.txt"])                   # doctest: +SKIP
        >>> texts, ner = read_corpus(["train.txt"], format="cmeee")    # doctest: +SKIP
    """
    texts: list[str] = []
    ner: list[NerExample] = []
    for path in paths:
        path = Path(path)
        if format is None:
            if not path.is_file():
                raise FileNotFoundError(f"corpus file {path} not found; give UTF-8 text files, one text per line")
            with path.open(encoding="utf-8") as f:
                texts.extend(line.rstrip("\r\n") for line in f if line.strip())
            continue
        from ..data.readers import read

        examples, _ = read(path, format)
        for ex in examples:
            if isinstance(ex, PairExample):
                texts.extend((ex.text_a, ex.text_b))
            elif isinstance(ex, (NerExample, TextExample)):
                texts.append(ex.text)
            if isinstance(ex, NerExample):
                ner.append(ex)
    return texts, ner


def read_terms(path: str | Path) -> list[str]:
    """Domain terms from a UTF-8 file, one per line; blank lines and ``#`` comments skipped.

    Example:
        >>> read_terms("terms.txt")   # doctest: +SKIP
        ['糖尿病', '冠状动脉']
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"terms file {path} not found; give a UTF-8 file with one term per line")
    terms = []
    for line in path.read_text(encoding="utf-8").splitlines():
        term = line.strip()
        if term and not term.startswith("#"):
            terms.append(term)
    return terms


def _normalized(texts: Sequence[str], normalizer: Normalizer | None) -> list[str]:
    return list(texts) if normalizer is None else [normalizer(t).text for t in texts]


def _batches(items: Sequence[str], size: int = 512) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ------------------------------------------------------------------ [UNK] rate
@dataclass
class UnkRate:
    """How much of a corpus becomes ``[UNK]``.

    ``tokens``/``unk_tokens`` count tokens; ``chars``/``unk_chars`` count non-space characters of
    the normalised text, ``unk_chars`` those covered by an ``[UNK]`` token (WordPiece turns a whole
    word into one ``[UNK]`` when one of its characters is unknown, so the character share is the
    one to compare between tokenizers).
    """

    texts: int = 0
    tokens: int = 0
    unk_tokens: int = 0
    chars: int = 0
    unk_chars: int = 0

    @property
    def token_rate(self) -> float:
        return self.unk_tokens / self.tokens if self.tokens else 0.0

    @property
    def char_rate(self) -> float:
        return self.unk_chars / self.chars if self.chars else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "token_rate": round(self.token_rate, 8), "char_rate": round(self.char_rate, 8)}


def unk_rate(texts: Sequence[str], tokenizer: TextTokenizer, normalizer: Normalizer | None = None) -> UnkRate:
    """``[UNK]`` token share and character share of ``texts`` under ``tokenizer``.

    ``normalizer`` is the model's (``Normalizer(manifest.normalization)``); pass ``None`` for
    texts that are normalised already.

    Example:
        >>> model = MultiTaskModel.load("my-model")                                    # doctest: +SKIP
        >>> r = unk_rate(texts, model.tokenizer, Normalizer(model.normalization))       # doctest: +SKIP
        >>> r.token_rate, r.char_rate                                                   # doctest: +SKIP
        (0.0012, 0.0015)
    """
    out = UnkRate()
    unk = tokenizer.unk_id
    for batch in _batches(_normalized(texts, normalizer)):
        for text, (ids, offsets) in zip(batch, tokenizer.encode(batch)):
            out.texts += 1
            out.tokens += len(ids)
            out.chars += sum(1 for c in text if not c.isspace())
            for k in (ids == unk).nonzero()[0]:
                s, e = offsets[k]
                out.unk_tokens += 1
                out.unk_chars += sum(1 for c in text[s:e] if not c.isspace())
    return out


# ------------------------------------------------------------------ unknown characters
@dataclass(frozen=True)
class NewCharacter:
    """A character the vocabulary lacks: the WordPiece ``entries`` to add for it (``c`` and,
    unless the pre-tokenizer always isolates it, ``##c``) and its occurrences as ``[UNK]``."""

    char: str
    entries: tuple[str, ...]
    count: int


def is_isolated(char: str) -> bool:
    """True if the BERT normaliser/pre-tokenizer always makes ``char`` a word of its own (CJK
    ideographs, punctuation), so it never needs a ``##`` continuation entry.

    >>> is_isolated("𠮷"), is_isolated("，"), is_isolated("㎎")
    (True, True, False)
    """
    return is_cjk_char(char) or is_split_char(char)


def _vocab_form(backend, char: str) -> str:
    """``char`` as the tokenizer's own normaliser leaves it (lower-casing, accent stripping)."""
    norm = backend.normalizer
    return norm.normalize_str(char).strip() if norm is not None else char


def find_new_characters(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    normalizer: Normalizer | None = None,
    min_count: int = 1,
    max_new: int | None = None,
) -> tuple[list[NewCharacter], dict[str, int]]:
    """Characters that make ``tokenizer`` produce ``[UNK]`` on ``texts``, most frequent first.

    Every ``[UNK]`` token is one WordPiece word; each of its characters is checked for the entry
    WordPiece needs there (``c`` first in the word, ``##c`` after). A character lacking it is
    counted once per occurrence. Kept: count >= ``min_count``, at most ``max_new`` (ties by code
    point). Returns ``(characters, stats)``; ``stats`` counts the ``[UNK]`` words, characters
    skipped by category (see ``SKIP_CATEGORIES``) or threshold, and ``[UNK]`` words with no
    missing character (e.g. words longer than WordPiece's ``max_input_chars_per_word``).

    Example:
        >>> chars, stats = find_new_characters(["𠮷野家", "5㎎"], tok, Normalizer())  # doctest: +SKIP
        >>> [(c.char, c.entries) for c in chars]                                     # doctest: +SKIP
        [('㎎', ('㎎', '##㎎')), ('𠮷', ('𠮷',))]
    """
    if min_count < 1:
        raise ValueError(f"min_count must be at least 1, got {min_count}")
    backend = tokenizer.hf.backend_tokenizer
    vocab = backend.get_vocab(with_added_tokens=True)
    counts: Counter[str] = Counter()
    missing: dict[str, set[str]] = {}
    stats: Counter[str] = Counter()
    skipped: set[str] = set()
    for batch in _batches(_normalized(texts, normalizer)):
        for text, (ids, offsets) in zip(batch, tokenizer.encode(batch)):
            for k in (ids == tokenizer.unk_id).nonzero()[0]:
                s, e = offsets[k]
                stats["unk_words"] += 1
                found = False
                position = 0
                for ch in text[s:e]:
                    form = _vocab_form(backend, ch)
                    if not form:
                        continue
                    if unicodedata.category(ch) in SKIP_CATEGORIES:
                        skipped.add(ch)
                        position += 1
                        continue
                    needed = form if position == 0 or is_isolated(form) else "##" + form
                    position += 1
                    if needed not in vocab:
                        counts[form] += 1
                        found = True
                        entries = [form] if is_isolated(form) else [form, "##" + form]
                        missing[form] = {x for x in entries if x not in vocab}
                if not found:
                    stats["unk_words_without_missing_char"] += 1
    stats["skipped_category_chars"] = len(skipped)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = [(c, n) for c, n in ranked if n >= min_count]
    stats["below_min_count"] = len(ranked) - len(kept)
    if max_new is not None:
        stats["over_max_new"] = max(0, len(kept) - max_new)
        kept = kept[:max_new]
    out = [NewCharacter(c, tuple(x for x in (c, "##" + c) if x in missing[c]), n) for c, n in kept]
    return out, dict(stats)


# ------------------------------------------------------------------ domain terms
def _is_single_token(tokenizer: TextTokenizer, term: str) -> bool:
    ids, _ = tokenizer.encode([term])[0]
    return len(ids) == 1 and int(ids[0]) != tokenizer.unk_id


def mine_terms(
    texts: Sequence[str],
    tokenizer: TextTokenizer,
    normalizer: Normalizer | None = None,
    min_count: int = MIN_TERM_COUNT,
    max_terms: int = MAX_TERMS,
    length: tuple[int, int] = TERM_LENGTH,
) -> list[tuple[str, int]]:
    """Frequent multi-character words of ``texts`` that are not single tokens yet, with counts.

    Segmentation is jieba's dictionary (``HMM=False``: deterministic, no guessed words). Kept:
    words of ``length[0]..length[1]`` characters, all CJK ideographs (Latin words and numbers are
    WordPiece's job), seen at least ``min_count`` times (default 20), at most ``max_terms``
    (default 500), most frequent first (ties alphabetical).

    Example:
        >>> mine_terms(medical_texts, tok, Normalizer(), min_count=50)[:2]   # doctest: +SKIP
        [('患者', 5120), ('治疗', 3377)]
    """
    try:
        import jieba
    except ImportError as err:  # pragma: no cover - jieba is a dependency
        raise ImportError("mining terms needs jieba: pip install jieba") from err
    lo, hi = length
    counts: Counter[str] = Counter()
    for text in _normalized(texts, normalizer):
        for word in jieba.lcut(text, HMM=False):
            if lo <= len(word) <= hi and all(is_cjk_char(c) for c in word):
                counts[word] += 1
    ranked = sorted(((w, n) for w, n in counts.items() if n >= min_count), key=lambda kv: (-kv[1], kv[0]))
    out = []
    for word, n in ranked:
        if len(out) >= max_terms:
            break
        if not _is_single_token(tokenizer, word):
            out.append((word, n))
    logger.info("mined %d terms (of %d words seen >= %d times)", len(out), len(ranked), min_count)
    return out


# ------------------------------------------------------------------ entity boundaries
@dataclass
class BoundaryReport:
    """Gold entity boundaries that fall strictly inside an added multi-character token.

    ``spans`` counts every gold span checked (nested ones included), ``spans_affected`` those with
    a start or end inside such a token, ``boundaries`` the boundaries themselves, ``by_term`` per
    token, ``sources`` the first affected examples (``file:line``).
    """

    examples: int = 0
    spans: int = 0
    spans_affected: int = 0
    boundaries: int = 0
    by_term: Counter = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        terms = ", ".join(f"{t} ({n})" for t, n in self.by_term.most_common(10))
        return (f"{self.spans_affected} of {self.spans} gold entity spans have {self.boundaries} boundaries inside "
                f"added tokens" + (f"; terms: {terms}" if terms else ""))

    def to_dict(self) -> dict[str, Any]:
        return {"examples": self.examples, "spans": self.spans, "spans_affected": self.spans_affected,
                "boundaries": self.boundaries, "by_term": dict(self.by_term.most_common()), "sources": self.sources}


def multi_char_added_ids(tokenizer: TextTokenizer) -> set[int]:
    """Ids of the tokenizer's non-special added tokens longer than one character (domain terms)."""
    decoder = tokenizer.hf.backend_tokenizer.get_added_tokens_decoder()
    return {i for i, tok in decoder.items() if not tok.special and len(tok.content) > 1}


def added_token_boundaries(
    examples: Sequence[NerExample],
    tokenizer: TextTokenizer,
    normalizer: Normalizer,
    term_ids: Collection[int] | None = None,
    max_sources: int = 20,
) -> BoundaryReport:
    """Count gold entity boundaries that fall inside added multi-character tokens.

    Same path as training (:meth:`toolkit.kinds.tagger.TaggerKind.features`): the model's normalisation,
    spans mapped to normalised offsets, :func:`toolkit.text.tokenization.align_spans`. A span that
    ``align_spans`` rejects counts here only for a boundary strictly inside a token whose id is in
    ``term_ids`` (default: :func:`multi_char_added_ids`); boundaries inside Latin word pieces are
    the tokenizer's old behaviour and are not counted. New single characters never count: CJK
    characters and punctuation are always tokens of their own.

    Example:
        >>> r = added_token_boundaries([NerExample("糖尿病史", [Span(0, 2, "dis")])], tok, Normalizer())  # doctest: +SKIP
        >>> r.boundaries, dict(r.by_term)                                                            # doctest: +SKIP
        (1, {'糖尿病': 1})
    """
    from ..text.encode import to_normalized_span

    ids_set = set(multi_char_added_ids(tokenizer) if term_ids is None else term_ids)
    report = BoundaryReport()
    norms = [normalizer(ex.text) for ex in examples]
    encoded = tokenizer.encode([n.text for n in norms])
    for ex, norm, (ids, offsets) in zip(examples, norms, encoded):
        report.examples += 1
        spans = []
        for sp in ex.spans:
            s, e = to_normalized_span(norm, sp.start, sp.end)
            if e > s:
                spans.append((s, e, sp.label))
        report.spans += len(spans)
        _, bad = align_spans(offsets, spans)
        for s, e, _label in bad:
            hits = [k for k in range(len(ids)) if int(ids[k]) in ids_set
                    and any(offsets[k, 0] < b < offsets[k, 1] for b in (s, e))]
            if not hits:
                continue
            report.spans_affected += 1
            for k in hits:
                inside = sum(1 for b in (s, e) if offsets[k, 0] < b < offsets[k, 1])
                report.boundaries += inside
                report.by_term[norm.text[offsets[k, 0] : offsets[k, 1]]] += inside
            if len(report.sources) < max_sources:
                report.sources.append(ex.source or ex.text[:40])
    return report
