"""Which pieces of the old tokenizer stand in for a new vocabulary item: the initial embedding of an
added character or term is the mean of their embeddings (:class:`EmbeddingSources`)."""
from __future__ import annotations

import unicodedata

from ..bases.vocabulary import is_cjk_char

# ------------------------------------------------------------------ initial rows
class EmbeddingSources:
    """Which old-tokenizer pieces initialise each new entry; the new row is the mean of their rows.

    Rules, first that gives pieces without ``[UNK]``: ``own_form`` (the character itself, e.g. for
    a missing ``##μ`` of a known ``μ``), ``nfkc`` (``㎎`` -> ``mg``, ``ⅱ`` -> ``i ##i``, ``µ`` -> ``μ``),
    ``t2s``/``s2t`` (OpenCC: ``醫`` <-> ``医``); else ``cjk_mean`` (every single-CJK-character row;
    ``vocab_mean``, every non-special row, for a vocabulary without CJK). For ``##c`` the first
    piece takes its ``##`` form when the vocabulary has one. ``backend`` is the old tokenizer's
    ``tokenizers.Tokenizer``. See :mod:`toolkit.vocab.extend` for how they are used.

    Example:
        >>> src = EmbeddingSources(old_tok.hf.backend_tokenizer, old_tok.unk_id)   # doctest: +SKIP
        >>> src.for_entry("㎎"), src.for_entry("##㎏")                              # doctest: +SKIP
        (('nfkc', [88]), ('nfkc', [140, 121]))
    """

    def __init__(self, backend, unk_id: int) -> None:
        from ..text.normalize import _opencc

        self.backend = backend
        self.unk_id = int(unk_id)
        self.vocab = backend.get_vocab(with_added_tokens=True)
        specials = {i for i, t in backend.get_added_tokens_decoder().items() if t.special} | {self.unk_id}
        t2s, s2t = _opencc("t2s"), _opencc("s2t")
        self.variants = (("own_form", lambda c: c), ("nfkc", lambda c: unicodedata.normalize("NFKC", c)),
                         ("t2s", t2s.convert), ("s2t", s2t.convert))
        cjk = sorted(i for t, i in self.vocab.items() if len(t) == 1 and is_cjk_char(t) and i not in specials)
        if cjk:
            self.fallback = ("cjk_mean", cjk)
        else:
            self.fallback = ("vocab_mean", sorted(i for i in self.vocab.values() if i not in specials))

    def pieces(self, text: str) -> list[int] | None:
        """Old-tokenizer ids of ``text``, or ``None`` if empty or any is ``[UNK]``."""
        if not text.strip():
            return None
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return None if not ids or self.unk_id in ids else list(ids)

    def for_entry(self, entry: str) -> tuple[str, list[int]]:
        """``(rule, ids)`` for a WordPiece entry (``c`` or ``##c``)."""
        cont = entry.startswith("##") and len(entry) > 2
        char = entry[2:] if cont else entry
        for rule, convert in self.variants:
            form = convert(char)
            if rule != "own_form" and form == char:
                continue
            ids = self.pieces(form)
            if ids is None:
                continue
            if cont:
                first = self.backend.id_to_token(ids[0])
                if not first.startswith("##") and "##" + first in self.vocab:
                    ids[0] = self.vocab["##" + first]
            return rule, ids
        return self.fallback[0], list(self.fallback[1])

    def for_term(self, term: str, extended_backend, unk_id: int) -> tuple[str, list[int]]:
        """``(rule, ids)`` for a term: its pieces under the tokenizer that already has the new
        characters (``[UNK]`` pieces left out)."""
        ids = [i for i in extended_backend.encode(term, add_special_tokens=False).ids if i != unk_id]
        return ("term_pieces", ids) if ids else (self.fallback[0], list(self.fallback[1]))
