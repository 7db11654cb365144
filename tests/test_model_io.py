from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from toolkit.model.manifest import Manifest
from toolkit.model.multitask import MultiTaskModel
from toolkit.runtime.pipeline import build_pipeline

TEXTS = ["张三在北京大学医院工作", "患者出现发热、咳嗽。", "CT检查未见异常"]
PAIRS = [("头痛怎么办", "头疼如何治疗"), ("发热", "咳嗽")]


def predictions(model):
    text = build_pipeline(model, ["ner", "sentiment"])(TEXTS)
    pairs = build_pipeline(model, ["match"])(PAIRS)
    return text, pairs


def test_folder_layout_has_no_pickle(tiny_folder):
    files = sorted(str(p.relative_to(tiny_folder)) for p in tiny_folder.rglob("*") if p.is_file())
    assert "toolkit.yaml" in files and "README.md" in files and "encoder/config.json" in files
    assert {"heads/ner.safetensors", "heads/sentiment.safetensors", "heads/match.safetensors"} <= set(files)
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle"))]


def test_save_load_gives_identical_predictions(tiny_model, tiny_folder):
    loaded = MultiTaskModel.load(tiny_folder)
    assert predictions(loaded) == predictions(tiny_model)


def test_fp16_folder_gives_same_labels(tiny_model, tmp_path):
    folder = tiny_model.save(tmp_path / "fp16")
    from safetensors import safe_open

    with safe_open(str(folder / "heads" / "ner.safetensors"), "np") as f:
        assert all(f.get_tensor(k).dtype == np.float16 for k in f.keys())
    (t16, p16), (t32, p32) = predictions(MultiTaskModel.load(folder)), predictions(tiny_model)
    for a, b in zip(t16, t32):
        assert [(e.label, e.start, e.end) for e in a["ner"]] == [(e.label, e.start, e.end) for e in b["ner"]]
        assert a["sentiment"]["label"] == b["sentiment"]["label"]
        assert abs(a["sentiment"]["score"] - b["sentiment"]["score"]) < 1e-2
    assert [p["label"] for p in p16] == [p["label"] for p in p32]


def test_encoder_folder_loads_with_transformers_alone(tiny_folder):
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(tiny_folder / "encoder"))
    tok = AutoTokenizer.from_pretrained(str(tiny_folder / "encoder"))
    out = model(**tok("患者发热", return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 32


def test_load_selected_tasks_only(tiny_folder):
    model = MultiTaskModel.load(tiny_folder, tasks=["sentiment"])
    assert model.tasks == ["sentiment"]
    with pytest.raises(KeyError, match="has no task 'nope'.*ner, sentiment, match"):
        MultiTaskModel.load(tiny_folder, tasks=["nope"])


def test_manifest_round_trip_and_strictness(tiny_folder, tmp_path):
    manifest = Manifest.read(tiny_folder)
    assert manifest.tasks["ner"].scheme == "BIO" and manifest.max_length == 32
    data = yaml.safe_load((tiny_folder / "toolkit.yaml").read_text(encoding="utf-8"))
    data["tasks"]["ner"]["lables"] = ["typo"]
    (tmp_path / "toolkit.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys \\['lables'\\]"):
        Manifest.read(tmp_path)
    data["tasks"]["ner"].pop("lables")
    data["format_version"] = 99
    (tmp_path / "toolkit.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ValueError, match="format_version 99"):
        Manifest.read(tmp_path)


def test_unknown_head_kind_is_reported(tiny_encoder):
    with pytest.raises(ValueError, match="unknown head kind 'parser'.*tagger"):
        MultiTaskModel.build(tiny_encoder, {"x": {"kind": "parser", "labels": ["a"]}})


def test_encoder_layers_can_be_pruned(tiny_encoder):
    from toolkit.model.encoder import Encoder

    enc = Encoder.from_pretrained(tiny_encoder, num_layers=1)
    assert enc.num_layers == 1 and len(enc.model.encoder.layer) == 1 and enc.hidden_size == 32
    with pytest.raises(ValueError, match="between 1 and 1"):
        enc.truncate(3)


def test_forward_rejects_unknown_tasks(tiny_model):
    batch = {"input_ids": torch.tensor([[2, 3]]), "attention_mask": torch.tensor([[1, 1]])}
    with pytest.raises(KeyError, match="unknown tasks"):
        tiny_model(batch, ["nope"])
