"""E5S1 tensors onto ``transformers.BertModel``: config, parameter names and shapes, strict loading.

``e5.c`` indexes the position table from 0 for ``<s>`` (BERT style, not the
XLM-R offset of 2): the file's table has exactly ``max_positions`` rows, so row
``p`` maps to ``BertModel`` position id ``p`` unchanged.

Example:
    >>> m = read_e5s1("e5-small-q4.bin")                     # doctest: +SKIP
    >>> state = to_bert_state_dict(m)                        # doctest: +SKIP
    >>> bert = load_into_bert(state, bert_config_dict(m))    # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .e5s1 import E5S1, E5S1Error, E5S1Header

# E5S1 per-layer tensor suffix -> BertModel parameter name inside ``encoder.layer.{i}``.
_LAYER_MAP = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_MAP = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def bert_config_dict(model: E5S1, *, vocab_size: int | None = None, type_vocab_size: int | None = None) -> dict:
    """Keyword arguments for ``transformers.BertConfig`` equivalent to the E5S1 model.

    Example:
        >>> from transformers import BertConfig                  # doctest: +SKIP
        >>> cfg = BertConfig(**bert_config_dict(m))              # doctest: +SKIP
    """
    h = model.header
    pos_rows = model.tensors["emb.pos"].numel // h.hidden_size
    return {
        "vocab_size": int(vocab_size if vocab_size is not None else h.vocab_size),
        "hidden_size": h.hidden_size,
        "num_hidden_layers": h.num_layers,
        "num_attention_heads": h.num_heads,
        "intermediate_size": h.intermediate_size,
        "hidden_act": "gelu",
        "max_position_embeddings": pos_rows,
        "type_vocab_size": int(type_vocab_size if type_vocab_size is not None else max(h.type_vocab_size, 2)),
        "layer_norm_eps": h.layer_norm_eps,
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "pad_token_id": model.pad_id,
        "position_embedding_type": "absolute",
    }


def to_bert_state_dict(model: E5S1, *, word_embeddings: np.ndarray | None = None,
                       with_pooler: bool = True) -> dict[str, np.ndarray]:
    """Map every E5S1 tensor onto ``transformers.BertModel`` state-dict names (float32).

    ``word_embeddings`` replaces the 250k-row matrix (e.g. a pruned vocabulary).
    The type table gets a second row (a copy of row 0) if the file has only one,
    so sentence pairs with ``token_type_ids`` work. E5S1 has no pooler; with
    ``with_pooler`` an identity dense layer is added (``pooler_output`` =
    ``tanh(h_CLS)``) so that loading does not randomly initialise one.
    Raises :class:`E5S1Error` if a tensor is missing, unused or misshaped.

    Example:
        >>> sd = to_bert_state_dict(m)                           # doctest: +SKIP
        >>> sd["encoder.layer.0.attention.self.query.weight"].shape  # doctest: +SKIP
        (384, 384)
    """
    h = model.header
    H = h.hidden_size
    shapes = bert_shapes(h, vocab_size=h.vocab_size, pos_rows=h.max_positions, type_rows=h.type_vocab_size)
    names = dict(_EMB_MAP)
    for i in range(h.num_layers):
        names.update({f"l{i}.{k}": f"encoder.layer.{i}.{v}" for k, v in _LAYER_MAP.items()})
    missing = sorted(set(names) - set(model.tensors))
    extra = sorted(set(model.tensors) - set(names))
    if missing or extra:
        raise E5S1Error(f"E5S1 tensor set does not match a BERT encoder: missing {missing}, unexpected {extra}")
    pos_rows = model.tensors["emb.pos"].numel // H
    if pos_rows != h.max_positions:
        raise E5S1Error(
            f"position table has {pos_rows} rows but header says {h.max_positions}; e5.c indexes it from 0 "
            "(BERT style), a different row count means an unknown layout"
        )
    state: dict[str, np.ndarray] = {}
    for src, dst in names.items():
        if src == "emb.word" and word_embeddings is not None:
            arr = np.asarray(word_embeddings, dtype=np.float32)
            if arr.ndim != 2 or arr.shape[1] != H:
                raise E5S1Error(f"word_embeddings must be [n, {H}], got {arr.shape}")
        else:
            flat = model.tensor(src)
            expect = shapes[dst]
            if flat.size != int(np.prod(expect)):
                raise E5S1Error(f"{src}: {flat.size} values, expected shape {expect}")
            arr = flat.reshape(expect)
        state[dst] = arr
    typ = state["embeddings.token_type_embeddings.weight"]
    if typ.shape[0] < 2:
        state["embeddings.token_type_embeddings.weight"] = np.concatenate([typ, typ[:1]], axis=0)
    if with_pooler:
        state["pooler.dense.weight"] = np.eye(H, dtype=np.float32)
        state["pooler.dense.bias"] = np.zeros(H, dtype=np.float32)
    return state


def bert_shapes(h: E5S1Header, *, vocab_size: int, pos_rows: int, type_rows: int) -> dict[str, tuple[int, ...]]:
    """Expected BertModel parameter shapes for the E5S1 header (no pooler)."""
    H, F = h.hidden_size, h.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (vocab_size, H),
        "embeddings.position_embeddings.weight": (pos_rows, H),
        "embeddings.token_type_embeddings.weight": (type_rows, H),
        "embeddings.LayerNorm.weight": (H,), "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(h.num_layers):
        for k, v in _LAYER_MAP.items():
            if k.endswith(".b") or k.startswith(("aln", "oln")):
                shape: tuple[int, ...] = (F,) if k == "fi.b" else (H,)
            elif k == "fi.w":
                shape = (F, H)
            elif k == "fo.w":
                shape = (H, F)
            else:
                shape = (H, H)
            shapes[f"encoder.layer.{i}.{v}"] = shape
    return shapes


def load_into_bert(state: dict[str, np.ndarray], config_kwargs: dict):  # -> transformers.BertModel
    """Build a ``BertModel`` and load ``state`` strictly (every parameter filled, shapes checked).

    Example:
        >>> bert = load_into_bert(to_bert_state_dict(m), bert_config_dict(m))  # doctest: +SKIP
    """
    import torch
    from transformers import BertConfig, BertModel

    cfg = BertConfig(**config_kwargs)
    bert = BertModel(cfg, add_pooling_layer="pooler.dense.weight" in state)
    expected = {k: tuple(v.shape) for k, v in bert.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        diff = sorted(set(expected.items()) ^ set(got.items()))
        raise E5S1Error(f"state dict does not fill BertModel exactly: {diff[:6]}")
    bert.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return bert.eval()
