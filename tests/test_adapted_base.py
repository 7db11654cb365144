"""The shipped base encoder ``zh-e5-small-adapted``: registered, installed with the models, the
default start of `toolkit train`, fine-tuning and recipes, and a working Chinese encoder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit import registry
from toolkit.registry import DEFAULT_BASE, base_path

BIO = "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n王 B-PER\n五 I-PER\n去 O\n上 B-LOC\n海 I-LOC\n\n李 B-PER\n四 I-PER\n在 O\n广 B-LOC\n州 I-LOC\n"


def _shipped() -> Path:
    try:
        return base_path(DEFAULT_BASE)
    except FileNotFoundError:
        pytest.skip("the shipped base encoder is not in this checkout")


def test_default_base_is_a_registered_shipped_folder():
    assert DEFAULT_BASE in registry.BASES and "path" in registry.BASES[DEFAULT_BASE]
    folder = _shipped()
    assert folder == registry.pretrained_dir() / registry.BASES[DEFAULT_BASE]["path"]
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (12, 384, 16294)
    assert (folder.parent / "README.md").is_file()  # its card


def test_shipped_base_is_fp16_with_the_char_level_vocabulary():
    from safetensors import safe_open

    from toolkit.text.tokenization import TextTokenizer

    folder = _shipped()
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    assert dtypes == {"F16"}
    # the same vocabulary as zh-e5-small-base, which every shipped model's encoder also has
    ours = TextTokenizer.from_pretrained(folder)
    models = TextTokenizer.from_pretrained(registry.pretrained_dir() / "ner-medical" / "encoder")
    assert ours.hf.get_vocab() == models.hf.get_vocab()


def test_shipped_base_embeds_a_paraphrase_closer_than_an_unrelated_question():
    import torch

    from toolkit.model.encoder import Encoder
    from toolkit.text.tokenization import TextTokenizer

    folder = _shipped()
    encoder, tok = Encoder.from_pretrained(folder), TextTokenizer.from_pretrained(folder)
    encoder.eval()
    texts = ["糖尿病人能吃西瓜吗", "糖尿病患者可以吃西瓜吗", "高血压吃什么药", "今天北京天气怎么样"]
    batch = tok.hf(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vectors = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    cos = vectors @ vectors.T
    assert cos[0, 1] > cos[0, 2] + 0.05 and cos[0, 1] > cos[0, 3] + 0.05


def test_recipe_without_encoder_starts_from_the_default_base():
    from toolkit.train.recipe import Recipe, TaskRecipe

    def recipe(**given):
        r = Recipe(name="x", tasks={"ner": TaskRecipe(kind="tagger", train="a.bio")}, **given)
        r.check()
        return r

    assert recipe().encoder == DEFAULT_BASE
    assert recipe(encoder="my/encoder").encoder == "my/encoder"
    assert recipe(from_model="ner-medical").encoder == ""  # a continued model brings its own encoder


def test_missing_shipped_base_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.PRETRAINED_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pip install"):
        base_path(DEFAULT_BASE)
    assert base_path(tmp_path / "mine") == tmp_path / "mine"  # a folder is taken as it is


def test_loading_a_base_as_a_model_says_what_to_do_with_it():
    """Regression: `toolkit run zh-e5-small-adapted TEXT` said only "unknown model" although `toolkit list` shows the name."""
    import toolkit
    from toolkit.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="base encoder, not a model.*toolkit train ner"):
        toolkit.load(DEFAULT_BASE)


def test_cli_and_finetune_default_to_the_adapted_base():
    import inspect

    from toolkit.train.finetune import finetune

    assert inspect.signature(finetune).parameters["start"].default == DEFAULT_BASE == "zh-e5-small-adapted"


def test_user_fine_tunes_from_the_default_base_without_naming_it(tmp_path, capsys):
    """`toolkit train ner --train FILE` with no --from: the shipped base, 12 layers, learns the file."""
    _shipped()
    import toolkit
    from toolkit.cli import main

    (tmp_path / "train.bio").write_text(BIO, encoding="utf-8")
    out = tmp_path / "my-ner"
    args = ["train", "ner", "--train", str(tmp_path / "train.bio"), "--dev", str(tmp_path / "train.bio"),
            "--out", str(out), "--epochs", "40", "--lr", "3e-4", "--max-length", "16", "--no-progress"]
    assert main(args) == 0
    assert f"--from {DEFAULT_BASE}" in (out / "README.md").read_text(encoding="utf-8")  # the card's command
    ner = toolkit.load(str(out))
    assert json.loads((out / "encoder" / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"] == 12
    found = ner(["张三在北京", "王五去上海"])
    assert [(e.text, e.label) for e in found[0]] == [("张三", "PER"), ("北京", "LOC")]
