"""Any BERT-family Chinese checkpoint folder in the bert-base-chinese layout works as a base."""
from __future__ import annotations

import json

import torch

from toolkit.model.multitask import MultiTaskModel
from toolkit.runtime.pipeline import build_pipeline
from toolkit.text.tokenization import TextTokenizer

from conftest import tiny_vocab


def test_bert_base_chinese_layout(tmp_path):
    """Only config.json + model.safetensors + vocab.txt, as bert-base-chinese ships (lower-cased)."""
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert-base-chinese-like"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(tiny_vocab()) + "\n", encoding="utf-8")
    config = BertConfig(vocab_size=len(tiny_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}), encoding="utf-8")
    assert not (folder / "tokenizer.json").exists()

    tok = TextTokenizer.from_pretrained(folder)
    ids, offsets = tok.encode(["患者CT检查"])[0]
    assert [("患者CT检查")[s:e] for s, e in offsets][:2] == ["患", "者"]
    model = MultiTaskModel.build(folder, {"ner": {"kind": "tagger", "labels": ["X"], "scheme": "BIO"}}, max_length=32).eval()
    saved = model.save(tmp_path / "model", dtype=torch.float32)
    out = build_pipeline(MultiTaskModel.load(saved))("患者三天前出现发热")
    assert out == build_pipeline(model)("患者三天前出现发热")
